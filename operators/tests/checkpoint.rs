//! Checkpoints and recovery in process: a job whose operator fails on purpose part-way is
//! restarted from its checkpoint directory, on another shard count, until it completes;
//! its committed output (transactional part files) is compared with a plain computation.
//! Both multi-input paths that align barriers are covered: a union feeding a keyed
//! operator, and a two-input operator.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_operators::file_sink::write_part_files;
use rill_operators::prelude::*;
use rill_runtime::checkpoint::{Checkpointing, Guarantee, SplitPosition, StateReader, StateWriter};
use rill_runtime::{
    hash_key, BinaryOperator, Config, Dataflow, Failure, OpResult, Operator, Output, Partitioning,
    Runtime, Source, SourceOutput, SourceStatus, Stream, Timestamp,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: u64 = 120_000;
const WINDOW: u64 = 1_000;

/// Numbers `0..end` in splits `s, s + of, ...`; the event time of `n` is `n`.
struct RangeSource {
    splits: Vec<SplitPosition>,
    end: u64,
    watermark: Timestamp,
}

impl Source<u64> for RangeSource {
    fn poll(&mut self, out: &mut SourceOutput<u64>, max: usize) -> Result<SourceStatus, Failure> {
        let mut emitted = 0;
        while emitted < max {
            let Some(s) = self
                .splits
                .iter_mut()
                .filter(|s| s.position < self.end)
                .min_by_key(|s| s.position)
            else {
                return Ok(SourceStatus::Done);
            };
            out.give(s.position);
            s.position += s.of as u64;
            emitted += 1;
        }
        let next = self
            .splits
            .iter()
            .map(|s| s.position)
            .filter(|&p| p < self.end)
            .min();
        if let Some(next) = next {
            if next as Timestamp > self.watermark {
                self.watermark = next as Timestamp;
                out.watermark(self.watermark)?;
            }
        }
        Ok(SourceStatus::Emitted)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(self.splits.clone())
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        self.splits = splits;
        Ok(())
    }
}

/// Counts per (window, key), emitted when the watermark passes the window.
#[derive(Default)]
struct WindowCounts {
    counts: BTreeMap<(u64, u64), u64>,
}

impl WindowCounts {
    fn add(&mut self, batch: &mut Vec<(u64, u64)>) {
        for (key, n) in batch.drain(..) {
            *self.counts.entry((n / WINDOW, key)).or_default() += 1;
        }
    }

    fn fire(&mut self, watermark: Timestamp, out: &mut Output<String>) {
        while let Some(entry) = self.counts.first_entry() {
            let (w, key) = *entry.key();
            if ((w + 1) * WINDOW) as Timestamp > watermark {
                break;
            }
            let count = entry.remove();
            out.give(format!("{w},{key},{count}"));
        }
    }

    fn snapshot(&self, state: &mut StateWriter) -> OpResult {
        state.put_keyed_all(
            self.counts
                .iter()
                .map(|(&(w, key), &count)| (hash_key(&key), (w, key, count))),
        )
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        for (w, key, count) in state.keyed_values::<(u64, u64, u64)>()? {
            *self.counts.entry((w, key)).or_default() += count;
        }
        Ok(())
    }
}

impl Operator<(u64, u64)> for WindowCounts {
    type Out = Output<String>;
    fn on_batch(&mut self, batch: &mut Vec<(u64, u64)>, _out: &mut Self::Out) -> OpResult {
        self.add(batch);
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        self.fire(watermark, out);
        Ok(())
    }
    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.fire(Timestamp::MAX, out);
        Ok(())
    }
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        WindowCounts::snapshot(self, state)
    }
    fn restore(&mut self, state: &StateReader) -> OpResult {
        WindowCounts::restore(self, state)
    }
}

/// The same counts over two inputs.
#[derive(Default)]
struct TwoInputCounts(WindowCounts);

impl BinaryOperator<(u64, u64), (u64, u64)> for TwoInputCounts {
    type Out = Output<String>;
    fn on_left(&mut self, batch: &mut Vec<(u64, u64)>, _out: &mut Self::Out) -> OpResult {
        self.0.add(batch);
        Ok(())
    }
    fn on_right(&mut self, batch: &mut Vec<(u64, u64)>, _out: &mut Self::Out) -> OpResult {
        self.0.add(batch);
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        self.0.fire(watermark, out);
        Ok(())
    }
    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.0.fire(Timestamp::MAX, out);
        Ok(())
    }
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.0.snapshot(state)
    }
    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.0.restore(state)
    }
}

/// Fails once the shards together saw `after` records (0: never), like a crashing task.
struct Crash {
    seen: Arc<AtomicU64>,
    after: u64,
}

impl Operator<u64> for Crash {
    type Out = Output<u64>;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> OpResult {
        let seen = self.seen.fetch_add(batch.len() as u64, Ordering::Relaxed) + batch.len() as u64;
        if self.after > 0 && seen >= self.after {
            return Err(Failure::new("injected crash"));
        }
        out.give_vec(batch);
        Ok(())
    }
}

/// Numbers `0..end` from a [`RangeSource`] on every shard, through a [`Crash`] after
/// `crash_after` records, slowed down a little (a sleep every `pace` numbers) so that
/// checkpoints happen before the crash.
fn numbers(df: &mut Dataflow, end: u64, crash_after: u64, pace: u64) -> Stream<u64> {
    let seen = Arc::new(AtomicU64::new(0));
    df.source("numbers", move |shard| RangeSource {
        splits: vec![SplitPosition {
            split: shard.index as u32,
            of: shard.shards as u32,
            position: shard.index as u64,
        }],
        end,
        watermark: Timestamp::MIN,
    })
    .unary("crash", move |_| Crash {
        seen: seen.clone(),
        after: crash_after,
    })
    .map("pace", move |n: u64| {
        if n % pace == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
        n
    })
}

fn keyed(stream: &Stream<u64>, name: &str, modulus: u64, offset: u64) -> Stream<(u64, u64)> {
    stream
        .map(name, move |n: u64| (offset + n % modulus, n))
        .exchange(Partitioning::by_key(|r: &(u64, u64)| r.0))
}

/// How a later version of the job differs from the one that took the checkpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Same,
    /// A stateless operator inserted before the counts.
    ExtraMap,
    /// The stateful counts removed: the sink gets the records as they are.
    NoCounts,
}

fn dataflow(out: &Path, crash_after: u64, two_input: bool) -> Dataflow {
    shaped(out, crash_after, two_input, Shape::Same)
}

fn shaped(out: &Path, crash_after: u64, two_input: bool, shape: Shape) -> Dataflow {
    let mut df = Dataflow::new();
    let numbers = numbers(&mut df, EVENTS, crash_after, 4096);
    let a = keyed(&numbers, "by 97", 97, 0);
    let b = keyed(&numbers, "by 13", 13, 1000);
    let counts = match shape {
        Shape::NoCounts => a.union(&[b]).map("as rows", |(k, n)| format!("{k},{n}")),
        _ if two_input => a.binary(&b, "counts", |_| TwoInputCounts::default()),
        Shape::ExtraMap => a
            .union(&[b])
            .map("extra", |r: (u64, u64)| r)
            .unary("counts", |_| WindowCounts::default()),
        Shape::Same => a.union(&[b]).unary("counts", |_| WindowCounts::default()),
    };
    write_part_files(
        &counts,
        "sink",
        out,
        None,
        |line: &String, buf: &mut Vec<u8>| {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        },
    );
    df
}

fn expected() -> Vec<String> {
    let mut counts: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for n in 0..EVENTS {
        *counts.entry((n / WINDOW, n % 97)).or_default() += 1;
        *counts.entry((n / WINDOW, 1000 + n % 13)).or_default() += 1;
    }
    let mut rows: Vec<String> = counts
        .into_iter()
        .map(|((w, k), c)| format!("{w},{k},{c}"))
        .collect();
    rows.sort();
    rows
}

fn committed(out: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for e in fs::read_dir(out).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if name.starts_with("part-") {
            rows.extend(
                fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    rows.sort();
    rows
}

/// The fields of CSV rows, read with one reader.
fn fields(rows: &[String]) -> Vec<csv::StringRecord> {
    let text = rows.join("\n");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("a CSV row"))
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rill-ckpt-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

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

#[test]
fn exactly_once_through_a_union_across_crashes_and_shard_counts() {
    let dir = attempts(
        "union",
        Guarantee::ExactlyOnce,
        false,
        &[(2, 40_000), (3, 50_000), (1, 0)],
    );
    assert_eq!(committed(&dir.join("out")), expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exactly_once_through_a_two_input_operator_across_crashes_and_shard_counts() {
    let dir = attempts(
        "binary",
        Guarantee::ExactlyOnce,
        true,
        &[(3, 45_000), (2, 30_000), (2, 0)],
    );
    assert_eq!(committed(&dir.join("out")), expected());
    fs::remove_dir_all(dir).unwrap();
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
    numbers(&mut df, EVENTS, crash_after, 4096)
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

impl SinkLines for Stream<rill_operators::window::Pane<u64, i64>> {
    fn sink_lines(&self, out: &Path) {
        write_part_files(self, "sink", out, None, |p, buf: &mut Vec<u8>| {
            buf.extend_from_slice(
                format!(
                    "{},{},{},{},{:?},{},{},{}\n",
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

#[test]
fn exactly_once_windows_with_early_firings_and_retractions() {
    let dir = scratch("windows");
    let reference = dir.join("reference");
    Runtime::new(Config::default().shards(1).pin(false))
        .unwrap()
        .run(window_dataflow(&reference, 0))
        .unwrap();
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let mut restored = 0;
    // One shard, so that the order of records per key, and with it where the count
    // trigger fires, is the same in every run.
    for crash_after in [30_000, 70_000, 0] {
        let config = Config::default().shards(1).pin(false).checkpointing(
            Checkpointing::new(&checkpoints).interval(Some(Duration::from_millis(15))),
        );
        match Runtime::new(config)
            .unwrap()
            .run(window_dataflow(&out, crash_after))
        {
            Ok(report) => {
                assert_eq!(crash_after, 0);
                restored += report.checkpoints.unwrap().restored_from.is_some() as u32;
            }
            Err(e) => assert!(e.to_string().contains("injected crash"), "{e}"),
        }
    }
    assert_eq!(restored, 1);
    let want = committed(&reference);
    assert!(want.iter().any(|l| l.contains("Early")), "no early panes");
    assert!(want.iter().any(|l| l.ends_with(",true")), "no retractions");
    assert_eq!(committed(&out), want);
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
        let counts = numbers(&mut df, EVENTS, crash_after, 4096)
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
        let numbers = numbers(&mut df, EVENTS / 2, crash_after, 2048);
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
        write_part_files(
            &interval.union(&[windowed]),
            "sink",
            out,
            None,
            |l: &String, buf: &mut Vec<u8>| {
                buf.extend_from_slice(l.as_bytes());
                buf.push(b'\n');
            },
        );
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

/// Runs the job once, crashing after 40,000 records, so that its checkpoints hold state.
fn crashed_run(dir: &Path) -> Checkpointing {
    let checkpointing =
        Checkpointing::new(dir.join("checkpoints")).interval(Some(Duration::from_millis(15)));
    let config = Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(checkpointing.clone());
    let err = Runtime::new(config)
        .unwrap()
        .run(dataflow(&dir.join("out"), 40_000, false))
        .expect_err("the run crashes");
    assert!(err.to_string().contains("injected crash"), "{err}");
    checkpointing
}

fn rerun(checkpointing: Checkpointing, dir: &Path, shape: Shape) -> rill_runtime::Result<u64> {
    let config = Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(checkpointing);
    let report = Runtime::new(config)
        .unwrap()
        .run(shaped(&dir.join("out"), 0, false, shape))?;
    Ok(report.checkpoints.unwrap().restored_from.expect("restored"))
}

#[test]
fn inserting_a_stateless_operator_keeps_the_checkpointed_state() {
    let dir = scratch("insert");
    let checkpointing = crashed_run(&dir);
    // State is found by operator id (the name), not by position: the counts, the source
    // and the sink moved down the graph and still restore.
    rerun(checkpointing, &dir, Shape::ExtraMap).expect("restores");
    assert_eq!(committed(&dir.join("out")), expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn removing_a_stateful_operator_is_refused_unless_allowed() {
    let dir = scratch("remove");
    let checkpointing = crashed_run(&dir);
    let err = rerun(checkpointing.clone(), &dir, Shape::NoCounts).expect_err("refused");
    match &err {
        rill_runtime::Error::UnmatchedState { operators, .. } => {
            assert_eq!(operators, &["counts".to_string()], "{err}")
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        err.to_string().contains("allow_non_restored_state"),
        "{err}"
    );
    // Allowed: the job starts from the checkpoint without the counts' state.
    let restored = rerun(
        checkpointing.allow_non_restored_state(true),
        &dir,
        Shape::NoCounts,
    )
    .expect("runs");
    assert!(restored > 0);
    fs::remove_dir_all(dir).unwrap();
}

/// Every stateful operator that once had no checkpointed variant, in one job: rolling
/// reduce, sum, min and max, a windowed sum, a full-window function and an aggregation with
/// a late side output. Rows: `kind,key,...`.
fn every_plain_operator(df: &mut Dataflow, crash_after: u64) -> Stream<String> {
    let keyed = numbers(df, EVENTS / 2, crash_after, 2048).key_by(|n: &u64| n % 11);
    let row = |kind: &'static str| move |(k, v): (u64, u64)| format!("{kind},{k},{v}");
    let reduce = keyed
        .reduce("reduce", |a: &u64, b| (*a).max(b))
        .map("r", row("reduce"));
    let sum = keyed.sum("sum", |n: &u64| *n).map("s", row("sum"));
    let min = keyed.min("min", |n: &u64| *n).map("mn", row("min"));
    let max = keyed.max("max", |n: &u64| *n).map("mx", row("max"));
    let spec = || WindowSpec::event_time(Windows::tumbling(500), |n: &u64| *n as Timestamp);
    let pane = |kind: &'static str| {
        move |p: rill_operators::window::Pane<u64, i64>| {
            format!("{kind},{},{},{}", p.key, p.window.start, p.value)
        }
    };
    let windowed_sum = keyed
        .window(spec())
        .sum("windowed sum", |n: &u64| *n as i64)
        .map("ws", pane("windowed sum"));
    let process = keyed
        .window(spec())
        .process("windowed process", |_, _, ns: &[u64]| ns.len() as i64)
        .map("wp", pane("windowed process"));
    let (counted, late) = keyed
        .window(spec())
        .aggregate_with_late("with late", rill_operators::window::Count::new());
    let counted = counted.map("wl", pane("with late"));
    let late = late.map("late", |n: u64| format!("late,{n}"));
    reduce.union(&[sum, min, max, windowed_sum, process, counted, late])
}

#[test]
fn every_plain_stateful_operator_survives_a_crash_and_a_new_shard_count() {
    let dir = scratch("plain");
    let run = |out: &Path, shards: usize, crash_after: u64, checkpoints: Option<&Path>| {
        let mut df = Dataflow::new();
        let rows = every_plain_operator(&mut df, crash_after);
        write_part_files(&rows, "sink", out, None, |l: &String, buf: &mut Vec<u8>| {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        });
        let mut config = Config::default().shards(shards).pin(false);
        if let Some(c) = checkpoints {
            config = config
                .checkpointing(Checkpointing::new(c).interval(Some(Duration::from_millis(15))));
        }
        Runtime::new(config).unwrap().run(df)
    };
    let reference = dir.join("reference");
    run(&reference, 2, 0, None).expect("reference run");
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let err = run(&out, 2, 25_000, Some(&checkpoints)).expect_err("crashes");
    assert!(err.to_string().contains("injected crash"), "{err}");
    let report = run(&out, 3, 0, Some(&checkpoints)).expect("recovers");
    assert!(report.checkpoints.unwrap().restored_from.is_some());
    let (got, want) = (committed(&out), committed(&reference));
    // Windows are exact under the source's exact watermarks: identical panes.
    let windowed = |rows: &[String]| -> Vec<String> {
        rows.iter()
            .filter(|r| !r.starts_with(['r', 's', 'm']))
            .cloned()
            .collect()
    };
    let want_windowed = windowed(&want);
    assert!(!want_windowed.is_empty());
    assert_eq!(windowed(&got), want_windowed);
    // A rolling aggregate's values depend on how its key's records from two producer
    // shards interleave; exactly-once shows in one update per record, and in the final
    // aggregate (the largest value for sum, max and reduce-to-max; the smallest for min).
    let rolling = |rows: &[String]| -> BTreeMap<(String, u64), (usize, u64)> {
        let mut m: BTreeMap<(String, u64), (usize, u64)> = BTreeMap::new();
        for f in fields(rows) {
            if !["reduce", "sum", "min", "max"].contains(&&f[0]) {
                continue;
            }
            let (k, v): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            let first = if &f[0] == "min" { u64::MAX } else { 0 };
            let e = m.entry((f[0].to_string(), k)).or_insert((0, first));
            let last = if &f[0] == "min" {
                e.1.min(v)
            } else {
                e.1.max(v)
            };
            *e = (e.0 + 1, last);
        }
        m
    };
    let want_rolling = rolling(&want);
    assert_eq!(want_rolling.len(), 44, "4 rolling aggregates of 11 keys");
    assert_eq!(rolling(&got), want_rolling);
    fs::remove_dir_all(dir).unwrap();
}
