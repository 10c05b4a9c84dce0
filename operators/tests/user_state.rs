//! A user's operator that keeps all of its state in the runtime's keyed state (a value, a
//! map and a list per key, and timers) and writes no snapshot code: it survives a crash and
//! a new shard count with incremental checkpoints, and recovery falls back past a damaged
//! increment.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{committed, keyed, numbers, scratch, write_lines, EVENTS, WINDOW};
use rill_runtime::checkpoint::Checkpointing;
use rill_runtime::state::{ListState, MapState, Timers, ValueState};
use rill_runtime::{
    Config, Dataflow, OpResult, Operator, OperatorState, Output, Runtime, Timestamp,
};

/// Per key: a running total (value), counts per window (map), every 1000th number (list),
/// and an event-time timer per window that emits the window's count when it closes.
struct PerKey {
    total: ValueState<u64, u64>,
    windows: MapState<u64, u64, u64>,
    samples: ListState<u64, u64>,
    timers: Timers<u64>,
}

impl PerKey {
    fn fire(&mut self, upto: Timestamp, out: &mut Output<String>) {
        while let Some((time, key)) = self.timers.pop_due(upto) {
            let w = time as u64 / WINDOW - 1;
            let count = self
                .windows
                .remove(&key, &w)
                .expect("a window with a timer");
            out.give(format!("window,{key},{w},{count}"));
        }
    }
}

impl Operator<(u64, u64)> for PerKey {
    type Out = Output<String>;
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<(u64, u64)>, _out: &mut Self::Out) -> OpResult {
        for (key, n) in batch.drain(..) {
            self.total.update(key, || 0, |t| *t += 1);
            let w = n / WINDOW;
            let count = self.windows.get(&key, &w).unwrap_or(0);
            self.windows.put(key, w, count + 1);
            if n % 1000 == 0 {
                self.samples.add(key, n);
            }
            self.timers.set(key, ((w + 1) * WINDOW) as Timestamp);
        }
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        self.fire(watermark, out);
        Ok(())
    }
    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.fire(Timestamp::MAX, out);
        self.total
            .for_each(|k, t| out.give(format!("total,{k},{t}")));
        self.samples.for_each(|k, s| {
            let mut s = s.to_vec();
            s.sort();
            out.give(format!("samples,{k},{s:?}"));
        });
        Ok(())
    }
}

fn job(out: &Path, crash_after: u64) -> Dataflow {
    let mut df = Dataflow::new();
    let rows =
        keyed(&numbers(&mut df, EVENTS, crash_after), "by 97", 97, 0).unary("per key", |ctx| {
            PerKey {
                total: ctx.value_state("total"),
                windows: ctx.map_state("windows"),
                samples: ctx.list_state("samples"),
                timers: ctx.timers("closing"),
            }
        });
    write_lines(&rows, "sink", out);
    df
}

fn expected() -> Vec<String> {
    let mut windows: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
    let mut samples: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for n in 0..EVENTS {
        let key = n % 97;
        *windows.entry((key, n / WINDOW)).or_default() += 1;
        *totals.entry(key).or_default() += 1;
        if n % 1000 == 0 {
            samples.entry(key).or_default().push(n);
        }
    }
    let mut rows: Vec<String> = windows
        .into_iter()
        .map(|((k, w), c)| format!("window,{k},{w},{c}"))
        .chain(totals.into_iter().map(|(k, t)| format!("total,{k},{t}")))
        .chain(
            samples
                .into_iter()
                .map(|(k, s)| format!("samples,{k},{s:?}")),
        )
        .collect();
    rows.sort();
    rows
}

fn run(out: &Path, shards: usize, crash_after: u64, dir: &Path) -> rill_runtime::Result<u64> {
    let checkpointing = Checkpointing::new(dir)
        .interval(Some(Duration::from_millis(15)))
        .chain_length(4);
    let config = Config::default()
        .shards(shards)
        .pin(false)
        .checkpointing(checkpointing);
    let report = Runtime::new(config)?.run(job(out, crash_after))?;
    Ok(report
        .checkpoints
        .and_then(|c| c.restored_from)
        .unwrap_or(0))
}

/// The ids of complete checkpoints under `dir` whose manifest names an earlier base.
fn increments(dir: &Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let Ok(text) = fs::read_to_string(e.path().join("MANIFEST")) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap()
        };
        if field("base ") < field("id ") {
            ids.push(field("id "));
        }
    }
    ids.sort();
    ids
}

#[test]
fn user_state_survives_a_crash_and_a_new_shard_count_with_incremental_checkpoints() {
    let dir = scratch("user-state");
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let err = run(&out, 2, 60_000, &checkpoints).expect_err("crashes");
    assert!(err.to_string().contains("injected crash"), "{err}");
    assert!(
        !increments(&checkpoints).is_empty(),
        "the crashed run left incremental checkpoints"
    );
    let restored = run(&out, 3, 0, &checkpoints).expect("recovers");
    assert!(restored > 0, "restored from a checkpoint");
    assert_eq!(committed(&out), expected());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn recovery_falls_back_past_a_damaged_increment() {
    let dir = scratch("user-state-damaged");
    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    run(&out, 2, 60_000, &checkpoints).expect_err("crashes");
    let newest = *increments(&checkpoints).last().expect("an increment");
    let file = checkpoints
        .join(format!("chk-{newest:06}"))
        .join("shard-000.bin");
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&file, bytes).unwrap();
    let restored = run(&out, 2, 0, &checkpoints).expect("recovers");
    assert!(
        restored > 0 && restored < newest,
        "restored {restored}, damaged {newest}"
    );
    assert_eq!(committed(&out), expected());
    fs::remove_dir_all(dir).unwrap();
}
