//! Checkpoints and recovery in process: a job whose operator fails on purpose part-way is
//! restarted from its checkpoint directory, on another shard count, until it completes;
//! its committed output (transactional part files) is compared with a plain computation.
//! Both multi-input paths that align barriers are covered: a union feeding a keyed
//! operator, and a two-input operator.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rill_operators::file_sink::write_part_files;
use rill_operators::prelude::*;
use rill_runtime::checkpoint::{Checkpointing, Guarantee};
use rill_runtime::{shard_of_key, Config, Dataflow, Partitioning, Runtime, Stream, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the job on each shard count in turn, crashing after the given number of records
/// (0: let it finish); returns the run's checkpoints taken and restored.
fn attempts(name: &str, guarantee: Guarantee, two_input: bool, plan: &[(usize, u64)]) -> PathBuf {
    let dir = scratch(name);
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let restored = AtomicU64::new(0);
    for &(shards, crash_after) in plan {
        let config = Config::default().shards(shards).pin(false).checkpointing(
            Checkpointing::new(&checkpoints)
                .interval(Some(Duration::from_millis(15)))
                .guarantee(guarantee),
        );
        let result = Runtime::new(config)
            .unwrap()
            .run(dataflow(&out, crash_after, two_input));
        match result {
            Ok(report) => {
                assert_eq!(crash_after, 0, "the crash did not happen");
                let stats = report.checkpoints.expect("checkpoint stats");
                if stats.restored_from.is_some() {
                    restored.fetch_add(1, Ordering::Relaxed);
                }
                // A shard's time on a checkpoint's state lies within the checkpoint; its
                // longest piece lies within that, names its operator, and ran on the CPU
                // for at most its length (the clocks differ by their resolution).
                for r in &stats.completed {
                    assert!(
                        r.snapshot > Duration::ZERO && r.snapshot <= r.duration,
                        "{r:?}"
                    );
                    assert!(r.stall > Duration::ZERO && r.stall <= r.snapshot, "{r:?}");
                    assert!(r.stall_cpu <= r.stall + Duration::from_millis(1), "{r:?}");
                    let (piece, operator) = r.stall_in.split_once(' ').expect("a piece");
                    assert!(["barrier", "archive"].contains(&piece), "{r:?}");
                    assert!(!operator.is_empty(), "{r:?}");
                }
            }
            Err(e) => {
                assert!(crash_after > 0, "{e}");
                assert!(e.to_string().contains("injected crash"), "{e}");
            }
        }
    }
    assert!(
        restored.load(Ordering::Relaxed) > 0,
        "the last run did not restore from a checkpoint"
    );
    dir
}

/// Exactly once across the `plan`'s crashes and shard counts: the committed output is the
/// plain computation's.
fn exactly_once(name: &str, two_input: bool, plan: &[(usize, u64)]) {
    let dir = attempts(name, Guarantee::ExactlyOnce, two_input, plan);
    assert_eq!(committed(&dir.join("out")), expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exactly_once_through_a_union_across_crashes_and_shard_counts() {
    exactly_once("union", false, &[(2, 40_000), (3, 50_000), (1, 0)]);
}

#[test]
fn exactly_once_through_a_two_input_operator_across_crashes_and_shard_counts() {
    exactly_once("binary", true, &[(3, 45_000), (2, 30_000), (2, 0)]);
}

#[test]
fn at_least_once_loses_no_window_and_never_undercounts() {
    let dir = attempts("alo", Guarantee::AtLeastOnce, false, &[(2, 40_000), (2, 0)]);
    // Without alignment a snapshot can hold records after the barrier, which are replayed:
    // a window may fire twice (once before the failure, again from the replayed records)
    // or count a record twice. So every window and key has a row counting at least its
    // records; none is missing.
    let parse = |rows: &[String]| -> Vec<((u64, u64), u64)> {
        fields(rows)
            .iter()
            .map(|r| {
                let f: Vec<u64> = r.iter().map(|x| x.parse().unwrap()).collect();
                ((f[0], f[1]), f[2])
            })
            .collect()
    };
    let mut best: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let rows = committed(&dir.join("out"));
    for (k, c) in parse(&rows) {
        let b = best.entry(k).or_default();
        *b = (*b).max(c);
    }
    let want: BTreeMap<(u64, u64), u64> = parse(&expected()).into_iter().collect();
    assert_eq!(
        best.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "a window or key is missing (or made up)"
    );
    for (k, c) in &want {
        assert!(best[k] >= *c, "{k:?}: {} < {c}", best[k]);
    }
    eprintln!(
        "at-least-once: {} rows for {} windows and keys",
        rows.len(),
        want.len()
    );
    fs::remove_dir_all(dir).unwrap();
}

/// Sliding windows with early count firings and retracting panes: what is restored
/// includes accumulators, pane indexes, the last pane's value and the trigger's counts.
fn window_dataflow(out: &Path, crash_after: u64) -> Dataflow {
    let mut df = Dataflow::new();
    numbers(&mut df, EVENTS, crash_after)
        .key_by(|n: &u64| n % 7)
        .window(
            WindowSpec::event_time(Windows::sliding(2_000, 1_000), |n: &u64| *n as i64)
                .trigger(Trigger::after_watermark_with(
                    Some(Trigger::AfterCount(40)),
                    None,
                ))
                .accumulation(Accumulation::Retracting),
        )
        .count("panes")
        .sink_lines(out);
    df
}

trait SinkLines {
    fn sink_lines(&self, out: &Path);
}

/// Lines as they are.
impl SinkLines for Stream<String> {
    fn sink_lines(&self, out: &Path) {
        write_lines(self, "sink", out);
    }
}

/// Panes as lines; the key as `Debug` writes it.
impl<K: std::fmt::Debug + rill_runtime::Data> SinkLines
    for Stream<rill_operators::window::Pane<K, u64>>
{
    fn sink_lines(&self, out: &Path) {
        write_part_files(self, "sink", out, None, |p, buf: &mut Vec<u8>| {
            buf.extend_from_slice(
                format!(
                    "{:?},{},{},{},{:?},{},{},{}\n",
                    p.key,
                    p.window.start,
                    p.window.end,
                    p.value,
                    p.timing,
                    p.index,
                    p.is_last,
                    p.retraction
                )
                .as_bytes(),
            );
        });
    }
}

/// Runs `job` writing to `dir/out` with checkpoints in `dir/checkpoints`, once per
/// `(shards, crash after)`: a run crashes where asked, the last one (`0`) completes.
/// Returns how many runs restored from a checkpoint.
fn crash_and_restore(
    dir: &Path,
    runs: &[(usize, u64)],
    job: impl Fn(&Path, u64) -> Dataflow,
) -> u32 {
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let mut restored = 0;
    for &(shards, crash_after) in runs {
        let config = Config::default().shards(shards).pin(false).checkpointing(
            Checkpointing::new(&checkpoints).interval(Some(Duration::from_millis(15))),
        );
        match Runtime::new(config).unwrap().run(job(&out, crash_after)) {
            Ok(report) => {
                assert_eq!(crash_after, 0);
                restored += report.checkpoints.unwrap().restored_from.is_some() as u32;
            }
            Err(e) => assert!(e.to_string().contains("injected crash"), "{e}"),
        }
    }
    restored
}

#[test]
fn exactly_once_windows_with_early_firings_and_retractions() {
    let dir = scratch("windows");
    let reference = dir.join("reference");
    Runtime::new(Config::default().shards(1).pin(false))
        .unwrap()
        .run(window_dataflow(&reference, 0))
        .unwrap();
    let out = dir.join("out");
    // One shard, so that the order of records per key, and with it where the count
    // trigger fires, is the same in every run.
    let runs = [(1, 30_000), (1, 70_000), (1, 0)];
    assert_eq!(crash_and_restore(&dir, &runs, window_dataflow), 1);
    let want = committed(&reference);
    assert!(want.iter().any(|l| l.contains("Early")), "no early panes");
    assert!(want.iter().any(|l| l.ends_with(",true")), "no retractions");
    assert_eq!(committed(&out), want);
    fs::remove_dir_all(dir).unwrap();
}

/// Sliding counts with the default trigger: pre-aggregated before the key exchange.
fn pre_aggregated_dataflow(out: &Path, crash_after: u64) -> Dataflow {
    let mut df = Dataflow::new();
    numbers(&mut df, EVENTS, crash_after)
        .key_by(|n: &u64| n % 7)
        .window(WindowSpec::event_time(
            Windows::sliding(2_000, 1_000),
            |n: &u64| *n as i64,
        ))
        .count("panes")
        .sink_lines(out);
    df
}

/// The pre-aggregation sends its partials at each barrier, so it has no state to write:
/// across crashes and shard counts, the committed panes are those of a run without.
#[test]
fn exactly_once_pre_aggregated_windows_across_crashes_and_shard_counts() {
    let dir = scratch("pre-aggregated");
    let reference = dir.join("reference");
    let report = Runtime::new(Config::default().shards(1).pin(false))
        .unwrap()
        .run(pre_aggregated_dataflow(&reference, 0))
        .unwrap();
    assert!(report.operator("panes (pre-aggregate)").is_some());
    let out = dir.join("out");
    let runs = [(2, 30_000), (3, 70_000), (2, 0)];
    assert_eq!(crash_and_restore(&dir, &runs, pre_aggregated_dataflow), 1);
    let want = committed(&reference);
    assert!(!want.is_empty());
    assert_eq!(committed(&out), want);
    fs::remove_dir_all(dir).unwrap();
}

/// Windows on each shard's own records, without an exchange (the source's split `i` is
/// the numbers `n % 2 == i`, keyed by a key that lives on shard `i`).
fn local_windows_dataflow(out: &Path, crash_after: u64) -> Dataflow {
    let mut df = Dataflow::new();
    let owner = |n: &u64| {
        let shard = (n % 2) as usize;
        (0u32..)
            .find(|k| shard_of_key(k, 2) == shard)
            .expect("a key of each shard")
    };
    numbers(&mut df, EVENTS, crash_after)
        .assume_keyed_by(owner)
        .window(WindowSpec::event_time(
            Windows::sliding(4_000, 2_000),
            |n: &u64| *n as i64,
        ))
        .sum("sums", |n: &u64| *n)
        .sink_lines(out);
    df
}

/// An operator without an exchange in front saw a watermark of its own at its barrier (the
/// shards' sources advance apart): restored on as many shards, each takes its own back. (With
/// the minimum over the shards, a shard ahead fired again, after the restore, windows whose
/// panes it had already committed.)
#[test]
fn exactly_once_windows_without_an_exchange_restore_their_own_watermark() {
    let runs = [(2, 40_000), (2, 70_000), (2, 0)];
    committed_as_uninterrupted("local-windows", &runs, local_windows_dataflow);
}

fn window_all_dataflow(out: &Path, crash_after: u64) -> Dataflow {
    let mut df = Dataflow::new();
    numbers(&mut df, EVENTS, crash_after)
        .window_all(WindowSpec::event_time(
            Windows::sliding(4_000, 2_000),
            |n: &u64| *n as i64,
        ))
        .sum("sums", |n: &u64| *n)
        .map("line", |p| {
            let (w, last) = (p.window, p.is_last);
            format!("{},{},{},{},{last}", w.start, w.end, p.value, p.index)
        })
        .sink_lines(out);
    df
}

/// `window_all` across crashes and shard counts: the committed panes are those of a run
/// without. (When its first phase kept its partials keyed by `()` on every shard, a
/// restore put every shard's on one shard, one overwriting the others: wrong sums.)
#[test]
fn exactly_once_window_all_across_crashes_and_shard_counts() {
    let runs = [(2, 35_000), (2, 35_000), (3, 35_000), (2, 0)];
    committed_as_uninterrupted("window-all", &runs, window_all_dataflow);
}

/// Window Top-N: key 0 takes the first 1,500 numbers of every 4,000, keys 1 to 7 the
/// rest in turn, so key 0 wins a window with records it got long before the window
/// closes (at the checkpoint the source waits for, at a multiple of 17,500, too): a
/// restore must find it at the top without another record for it.
fn top_dataflow(out: &Path, crash_after: u64) -> Dataflow {
    let mut df = Dataflow::new();
    numbers(&mut df, EVENTS, crash_after)
        .key_by(|n: &u64| if n % 4_000 < 1_500 { 0 } else { 1 + n % 7 })
        .window(WindowSpec::event_time(
            Windows::sliding(4_000, 2_000),
            |n: &u64| *n as i64,
        ))
        .top_count("top")
        .map("line", |p| {
            let mut keys = p.value;
            keys.sort();
            let (w, last) = (p.window, p.is_last);
            format!("{},{},{keys:?},{},{last}", w.start, w.end, p.index)
        })
        .sink_lines(out);
    df
}

/// Window Top-N across crashes and shard counts: its windows' counts are keyed state by
/// key group, restored onto any shard count, and a restore finds each window's top again;
/// the committed tops are those of a run without.
#[test]
fn exactly_once_top_across_crashes_and_shard_counts() {
    let runs = [(2, 35_000), (2, 35_000), (3, 35_000), (2, 0)];
    committed_as_uninterrupted("top", &runs, top_dataflow);
}

/// Runs `job` uninterrupted on 2 shards, then through `runs` (see [`crash_and_restore`];
/// the last run restores): the committed output must be the uninterrupted run's.
fn committed_as_uninterrupted(
    name: &str,
    runs: &[(usize, u64)],
    job: impl Fn(&Path, u64) -> Dataflow,
) {
    let dir = scratch(name);
    let reference = dir.join("reference");
    Runtime::new(Config::default().shards(2).pin(false))
        .unwrap()
        .run(job(&reference, 0))
        .unwrap();
    assert_eq!(crash_and_restore(&dir, runs, &job), 1);
    let want = committed(&reference);
    assert!(!want.is_empty());
    assert_eq!(committed(&dir.join("out")), want);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn file_source_replays_from_its_offset_and_sends_bad_lines_aside() {
    use rill_operators::file_source::file_source;
    let dir = scratch("file");
    fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.txt");
    let mut text = String::new();
    let mut good = Vec::new();
    for i in 0..50_000u64 {
        if i % 997 == 0 {
            text.push_str(&format!("oops {i}\n"));
        } else {
            text.push_str(&format!("{i}\n"));
            good.push(i);
        }
        if i % 5000 == 0 {
            text.push('\n'); // empty lines are skipped
        }
    }
    fs::write(&input, text).unwrap();
    let build = |out: &Path, bad_out: &Path, crash_after: u64| {
        let mut df = Dataflow::new();
        let src = file_source(&mut df, "file", &input, |l: &str| {
            l.parse::<u64>().map_err(|e| e.to_string())
        });
        let seen = Arc::new(AtomicU64::new(0));
        let records = src
            .records
            .unary("crash", move |_| Crash {
                seen: seen.clone(),
                after: crash_after,
            })
            .map("pace", |n: u64| {
                if n % 1024 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                n
            })
            .exchange(Partitioning::by_key(|n: &u64| *n));
        write_part_files(&records, "sink", out, None, |n: &u64, buf: &mut Vec<u8>| {
            buf.extend_from_slice(format!("{n}\n").as_bytes());
        });
        write_part_files(
            &src.bad_lines,
            "bad lines",
            bad_out,
            None,
            |b: &rill_operators::file_source::BadLine, buf: &mut Vec<u8>| {
                buf.extend_from_slice(format!("{}:{}\n", b.offset, b.line).as_bytes());
            },
        );
        df
    };
    let (checkpoints, out, bad_out) = (dir.join("ck"), dir.join("out"), dir.join("bad"));
    for (shards, crash_after) in [(2, 20_000), (3, 0)] {
        let config = Config::default().shards(shards).pin(false).checkpointing(
            Checkpointing::new(&checkpoints).interval(Some(Duration::from_millis(10))),
        );
        let result = Runtime::new(config)
            .unwrap()
            .run(build(&out, &bad_out, crash_after));
        match result {
            Ok(report) => {
                assert_eq!(crash_after, 0);
                let restored = report.checkpoints.unwrap().restored_from;
                assert!(restored.is_some(), "the second run started from scratch");
            }
            Err(e) => assert!(crash_after > 0 && e.to_string().contains("injected crash")),
        }
    }
    let mut got: Vec<u64> = committed(&out).iter().map(|l| l.parse().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, good);
    let bad = committed(&bad_out);
    assert_eq!(bad.len(), 50_000 / 997 + 1);
    assert!(bad.iter().all(|l| l.contains(":oops ")), "{bad:?}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exactly_once_rolling_counts_across_a_crash_and_a_new_shard_count() {
    let dir = scratch("rolling");
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let build = |crash_after: u64| {
        let mut df = Dataflow::new();
        let counts = numbers(&mut df, EVENTS, crash_after)
            .key_by(|n: &u64| n % 97)
            .count("count");
        write_part_files(
            &counts,
            "sink",
            &out,
            None,
            |(k, c): &(u64, u64), buf: &mut Vec<u8>| {
                buf.extend_from_slice(format!("{k},{c}\n").as_bytes());
            },
        );
        df
    };
    let mut restored = false;
    for (shards, crash_after) in [(2, 50_000), (3, 0)] {
        let config = Config::default().shards(shards).pin(false).checkpointing(
            Checkpointing::new(&checkpoints).interval(Some(Duration::from_millis(15))),
        );
        match Runtime::new(config).unwrap().run(build(crash_after)) {
            Ok(report) => restored = report.checkpoints.unwrap().restored_from.is_some(),
            Err(e) => assert!(e.to_string().contains("injected crash"), "{e}"),
        }
    }
    assert!(restored);
    // Every key's running count takes each value from 1 to its number of records once.
    let mut want: Vec<String> = (0..97u64)
        .flat_map(|k| {
            let n = (EVENTS - k).div_ceil(97);
            (1..=n).map(move |c| format!("{k},{c}"))
        })
        .collect();
    want.sort();
    assert_eq!(committed(&out), want);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exactly_once_joins_across_a_crash_and_a_new_shard_count() {
    let dir = scratch("joins");
    let build = |out: &Path, crash_after: u64| {
        let mut df = Dataflow::new();
        let numbers = numbers(&mut df, EVENTS / 2, crash_after);
        let left = numbers.key_by(|n: &u64| n % 13);
        let right = numbers
            .filter("thirds", |n: &u64| n % 3 == 0)
            .key_by(|n: &u64| n % 13);
        let interval = left.interval_join(
            &right,
            "interval",
            -30,
            30,
            |n: &u64| *n as Timestamp,
            |n: &u64| *n as Timestamp,
            |k: &u64, a: &u64, b: &u64| format!("i,{k},{a},{b}"),
        );
        let windowed = left.window_join(
            &right,
            "window",
            Windows::tumbling(100),
            |n: &u64| *n as Timestamp,
            |n: &u64| *n as Timestamp,
            |k: &u64, w: &rill_operators::window::Window, a: &u64, b: &u64| {
                format!("w,{k},{},{a},{b}", w.start)
            },
        );
        write_lines(&interval.union(&[windowed]), "sink", out);
        df
    };
    let reference = dir.join("reference");
    Runtime::new(Config::default().shards(2).pin(false))
        .unwrap()
        .run(build(&reference, 0))
        .unwrap();
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let mut restored = false;
    for (shards, crash_after) in [(2, 25_000), (1, 0)] {
        let config = Config::default().shards(shards).pin(false).checkpointing(
            Checkpointing::new(&checkpoints).interval(Some(Duration::from_millis(15))),
        );
        match Runtime::new(config).unwrap().run(build(&out, crash_after)) {
            Ok(report) => restored = report.checkpoints.unwrap().restored_from.is_some(),
            Err(e) => assert!(e.to_string().contains("injected crash"), "{e}"),
        }
    }
    assert!(restored);
    let want = committed(&reference);
    assert!(want.iter().any(|l| l.starts_with("i,")) && want.iter().any(|l| l.starts_with("w,")));
    assert_eq!(committed(&out), want);
    fs::remove_dir_all(dir).unwrap();
}
