//! Joins restored on an unchanged shard count keep each shard's own clock.
//!
//! A join behind `assume_keyed_by` has no exchange in front: each shard's join sees the
//! watermark of its own shard's source, and the shards' watermarks differ at a checkpoint
//! (here split 1 holds its watermark 20,000 ms behind its records on purpose). Restored
//! with the minimum over the shards, shard 0's join would take back shard 1's watermark:
//! records late on shard 0 (dropped in a run without a failure) would open windows that
//! had fired and been dropped, and fire them again. So each shard must take back its own.
//!
//! The runs are driven by events, not by timing: the sources stop at a position until the
//! test lets them go on; the test waits until the joins' watermarks got there, asks for a
//! checkpoint ([`JobHandle::checkpoint_now`](rill_runtime::JobHandle::checkpoint_now)),
//! waits until it completed, then cancels the job (a crash: what came after the checkpoint
//! is not kept) and restores it.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{committed, scratch, write_lines};
use rill_operators::prelude::*;
use rill_runtime::checkpoint::{Checkpointing, Guarantee, SplitPosition};
use rill_runtime::{
    shard_of_key, Config, Dataflow, Failure, JobHandle, Runtime, Source, SourceOutput,
    SourceStatus, Timestamp,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbers in the source (split `i` of 2: the numbers `n % 2 == i`).
const END: u64 = 60_000;
/// Where the first run's sources wait for the checkpoint.
const GATE: u64 = 30_000;
/// How far split 1's watermark stays behind its records.
const LAG: u64 = 20_000;
/// A number `n` on split 0 with `n % 10 == 4` has the event time `n - LATE`: behind its
/// shard's watermark (dropped by the joins), not behind split 1's.
const LATE: u64 = 10_000;
/// Keys per shard.
const KEYS: u64 = 50;

/// Numbers `0..END` of this shard's split, at most up to `gate` (then idle until the gate
/// moves); the watermark of split 1 lags [`LAG`] behind its next number.
struct GatedSource {
    split: SplitPosition,
    gate: Arc<AtomicU64>,
    watermark: Timestamp,
}

impl Source<u64> for GatedSource {
    fn poll(&mut self, out: &mut SourceOutput<u64>, max: usize) -> Result<SourceStatus, Failure> {
        let gate = self.gate.load(Ordering::Acquire).min(END);
        let step = self.split.of as u64;
        let mut emitted = 0;
        while self.split.position < gate && emitted < max.min(256) {
            out.give(self.split.position);
            self.split.position += step;
            emitted += 1;
        }
        if self.split.position >= END {
            return Ok(SourceStatus::Done);
        }
        let lag = if self.split.split == 1 { LAG } else { 0 };
        let watermark = self.split.position.saturating_sub(lag) as Timestamp;
        if watermark > self.watermark {
            self.watermark = watermark;
            out.watermark(watermark)?;
        }
        Ok(if emitted > 0 {
            SourceStatus::Emitted
        } else {
            SourceStatus::Idle
        })
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(vec![self.split])
    }

    fn restore(&mut self, mut splits: Vec<SplitPosition>) -> Result<(), Failure> {
        self.split = splits.pop().expect("one split per shard");
        Ok(())
    }
}

/// (key, event time, number)
type Ev = (u32, i64, u64);

/// The key of `n`: one of [`KEYS`] keys that live on the shard of `n`'s split (2 shards).
fn key(n: u64) -> u32 {
    let shard = (n % 2) as usize;
    (0u32..)
        .filter(|k| shard_of_key(k, 2) == shard)
        .nth(((n / 2) % KEYS) as usize)
        .expect("keys of every shard")
}

fn event(n: u64) -> Ev {
    let time = if n % 2 == 0 && n % 10 == 4 && n >= LATE {
        n - LATE
    } else {
        n
    };
    (key(n), time as i64, n)
}

/// A window join and an interval join of the numbers with themselves, keyed without an
/// exchange, into `out/window` and `out/interval`.
fn job(out: &Path, gate: Arc<AtomicU64>) -> Dataflow {
    let mut df = Dataflow::new();
    let events = df
        .source("numbers", move |shard| GatedSource {
            split: SplitPosition {
                split: shard.index as u32,
                of: shard.shards as u32,
                position: shard.index as u64,
            },
            gate: gate.clone(),
            watermark: Timestamp::MIN,
        })
        .map("events", event);
    let left = events.assume_keyed_by(|e: &Ev| e.0);
    let right = events.map("right", |e: Ev| e).assume_keyed_by(|e: &Ev| e.0);
    let windowed = left.window_join(
        &right,
        "window join",
        Windows::tumbling(100),
        |a: &Ev| a.1,
        |b: &Ev| b.1,
        |k, w, a, b| format!("{k},{},{},{}", w.start, a.2, b.2),
    );
    let interval = left.interval_join(
        &right,
        "interval join",
        0,
        4,
        |a: &Ev| a.1,
        |b: &Ev| b.1,
        |k, a, b| format!("{k},{},{}", a.2, b.2),
    );
    write_lines(&windowed, "window sink", &out.join("window"));
    write_lines(&interval, "interval sink", &out.join("interval"));
    df
}

fn config(checkpoints: &Path, guarantee: Guarantee) -> Config {
    Config::default().shards(2).pin(false).checkpointing(
        Checkpointing::new(checkpoints)
            .interval(None)
            .guarantee(guarantee),
    )
}

/// Waits until `ok` holds for the job's metrics (or fails after a minute).
fn wait_for(job: &JobHandle, what: &str, ok: impl Fn(&JobHandle) -> bool) {
    let start = Instant::now();
    while !ok(job) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The input watermark of operator `name` on each shard.
fn watermarks(job: &JobHandle, name: &str) -> Vec<Timestamp> {
    let report = job.metrics();
    let op = report.operators.iter().find(|o| o.name == name);
    op.expect("the operator").watermarks.clone()
}

/// The rows committed in `out/window` and `out/interval`, as one set.
fn rows(out: &Path) -> BTreeSet<String> {
    let window = committed(&out.join("window")).into_iter();
    let interval = committed(&out.join("interval")).into_iter();
    window
        .map(|r| format!("w {r}"))
        .chain(interval.map(|r| format!("i {r}")))
        .collect()
}

/// A run without a failure, and a run that checkpoints at the gate, fails and is
/// restored on as many shards: the restored run commits the same rows.
fn restore_keeps_each_shards_clock(name: &str, guarantee: Guarantee) {
    let dir = scratch(name);
    let reference = dir.join("reference");
    Runtime::new(Config::default().shards(2).pin(false))
        .unwrap()
        .run(job(&reference, Arc::new(AtomicU64::new(u64::MAX))))
        .unwrap();
    let want = rows(&reference);
    assert!(want.len() > 1_000, "{} rows", want.len());

    let (checkpoints, out) = (dir.join("checkpoints"), dir.join("out"));
    let gate = Arc::new(AtomicU64::new(GATE));
    let job1 = Runtime::new(config(&checkpoints, guarantee))
        .unwrap()
        .spawn(job(&out, gate.clone()))
        .unwrap();
    // Both shards' joins are at the gate: shard 0 at 30,000, shard 1 at 30,001 - LAG.
    for join in ["window join", "interval join"] {
        wait_for(&job1, "the joins at the gate", |job| {
            let w = watermarks(job, join);
            w[0] >= GATE as i64 && w[1] > (GATE - LAG) as i64
        });
    }
    job1.checkpoint_now();
    wait_for(&job1, "the checkpoint", |job| {
        job.latest_checkpoint() >= Some(1)
    });
    job1.cancel().unwrap();

    gate.store(u64::MAX, Ordering::Release);
    let report = Runtime::new(config(&checkpoints, guarantee))
        .unwrap()
        .run(job(&out, gate))
        .unwrap();
    assert!(report.checkpoints.unwrap().restored_from.is_some());
    let got = rows(&out);
    let extra: Vec<&String> = got.difference(&want).take(5).collect();
    let missing: Vec<&String> = want.difference(&got).take(5).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "rows the run without a failure has not: {extra:?}; rows missing: {missing:?}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exactly_once_joins_without_an_exchange_restore_their_own_watermark() {
    restore_keeps_each_shards_clock("join-own-clock", Guarantee::ExactlyOnce);
}

/// Under unaligned barriers a shard's join saw a watermark of its own at its barrier,
/// exchange or not; with `assume_keyed_by` the shards' watermarks differ most.
#[test]
fn at_least_once_joins_without_an_exchange_restore_their_own_watermark() {
    restore_keeps_each_shards_clock("join-own-clock-alo", Guarantee::AtLeastOnce);
}
