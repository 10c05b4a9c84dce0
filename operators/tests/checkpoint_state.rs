//! Checkpointed state across versions of a job and across every stateful operator: state
//! is found by operator id (inserting a stateless operator keeps it; removing a stateful one
//! is refused unless allowed), and each built-in stateful operator survives a crash and a
//! new shard count.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use rill_operators::prelude::*;
use rill_runtime::checkpoint::Checkpointing;
use rill_runtime::{Config, Dataflow, Runtime, Stream, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let keyed = numbers(df, EVENTS / 2, crash_after).key_by(|n: &u64| n % 11);
    let row = |kind: &'static str| move |(k, v): (u64, u64)| format!("{kind},{k},{v}");
    let reduce = keyed
        .reduce("reduce", |a: &u64, b| (*a).max(b))
        .map("r", row("reduce"));
    let sum = keyed.sum("sum", |n: &u64| *n).map("s", row("sum"));
    let min = keyed.min("min", |n: &u64| *n).map("mn", row("min"));
    let max = keyed.max("max", |n: &u64| *n).map("mx", row("max"));
    let spec = || WindowSpec::event_time(Windows::tumbling(500), |n: &u64| *n as Timestamp);
    fn pane<V: std::fmt::Display>(
        kind: &'static str,
    ) -> impl Fn(rill_operators::window::Pane<u64, V>) -> String + Clone {
        move |p| format!("{kind},{},{},{}", p.key, p.window.start, p.value)
    }
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
        write_lines(&rows, "sink", out);
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
