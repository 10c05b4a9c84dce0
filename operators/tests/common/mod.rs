//! Helpers shared by the tests: for the checkpoint tests a replayable numbers source, an
//! operator that crashes on purpose, windowed counts with hand-written snapshots, the
//! dataflows built from them, and reading the committed part files back; for the window
//! tests a source that plays a script of records, watermarks and processing times.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_operators::file_sink::write_part_files;
use rill_operators::prelude::*;
use rill_operators::window::{Pane, Sum, WindowedStream};
use rill_runtime::checkpoint::{Guarantee, SplitPosition, StateReader, StateWriter};
use rill_runtime::{
    hash_key, shard_of_key, BinaryOperator, Collected, Config, Dataflow, Failure, JobReport,
    OpResult, Operator, OperatorState, Output, Partitioning, Runtime, ShardContext, Source,
    SourceOutput, SourceStatus, Stream, Timestamp, MAX_WATERMARK,
};

pub const EVENTS: u64 = 120_000;
pub const WINDOW: u64 = 1_000;

/// Numbers `0..end` in splits `s, s + of, ...`; the event time of `n` is `n`.
///
/// With a `hold` of `h` records, the source stops at the number `start + h` (`start`: the
/// smallest position it begins or is restored at) until two checkpoint barriers passed it
/// there: the first checkpoint, taken with every record before that number, is then
/// complete (a checkpoint starts only after the previous one completed). A crash after
/// more than `h` records therefore always finds a checkpoint at that record, whatever the
/// timing: the crash tests are driven by the barrier at record N, not by sleeps.
pub struct RangeSource {
    splits: Vec<SplitPosition>,
    end: u64,
    watermark: Timestamp,
    /// Records to emit before waiting for a checkpoint (0: never wait).
    hold: u64,
    /// The number the source waits at (`u64::MAX`: none).
    gate: u64,
    /// Barriers that passed the source while it waited at the gate.
    barriers: Cell<u32>,
}

impl RangeSource {
    /// Sets the gate `hold` records after the smallest position.
    fn set_gate(&mut self) {
        let start = self.splits.iter().map(|s| s.position).min();
        self.gate = match (self.hold, start) {
            (0, _) | (_, None) => u64::MAX,
            (hold, Some(start)) => start + hold,
        };
        self.barriers.set(0);
    }

    /// True while the source waits at its gate for a complete checkpoint.
    fn waiting(&self, next: u64) -> bool {
        next >= self.gate && self.barriers.get() < 2
    }
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
            if s.position >= self.gate && self.barriers.get() < 2 {
                break;
            }
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
            if emitted == 0 && self.waiting(next) {
                return Ok(SourceStatus::Idle);
            }
        }
        Ok(SourceStatus::Emitted)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        let next = self.splits.iter().map(|s| s.position).min();
        if next.is_some_and(|n| n >= self.gate) {
            self.barriers.set(self.barriers.get() + 1);
        }
        Some(self.splits.clone())
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        self.splits = splits;
        self.set_gate();
        Ok(())
    }
}

/// Counts per (window, key), emitted when the watermark passes the window.
#[derive(Default)]
pub struct WindowCounts {
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
    const STATE: OperatorState = OperatorState::Checkpointed;
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
pub struct TwoInputCounts(WindowCounts);

impl BinaryOperator<(u64, u64), (u64, u64)> for TwoInputCounts {
    type Out = Output<String>;
    const STATE: OperatorState = OperatorState::Checkpointed;
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
pub struct Crash {
    pub seen: Arc<AtomicU64>,
    pub after: u64,
}

impl Operator<u64> for Crash {
    type Out = Output<u64>;
    const STATE: OperatorState = OperatorState::Stateless;
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
/// `crash_after` records (0: never). With checkpoints (not at-most-once), the source waits
/// at half of `crash_after` until a checkpoint there completed, so that every crashed run
/// leaves a checkpoint to restore.
pub fn numbers(df: &mut Dataflow, end: u64, crash_after: u64) -> Stream<u64> {
    let seen = Arc::new(AtomicU64::new(0));
    df.source("numbers", move |shard| {
        let snapshots = shard
            .checkpoint()
            .is_some_and(|c| c.guarantee != Guarantee::AtMostOnce);
        let mut source = RangeSource {
            splits: vec![SplitPosition {
                split: shard.index as u32,
                of: shard.shards as u32,
                position: shard.index as u64,
            }],
            end,
            watermark: Timestamp::MIN,
            hold: if snapshots { crash_after / 2 } else { 0 },
            gate: u64::MAX,
            barriers: Cell::new(0),
        };
        source.set_gate();
        source
    })
    .unary("crash", move |_| Crash {
        seen: seen.clone(),
        after: crash_after,
    })
}

pub fn keyed(stream: &Stream<u64>, name: &str, modulus: u64, offset: u64) -> Stream<(u64, u64)> {
    stream
        .map(name, move |n: u64| (offset + n % modulus, n))
        .exchange(Partitioning::by_key(|r: &(u64, u64)| r.0))
}

/// How a later version of the job differs from the one that took the checkpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Same,
    /// A stateless operator inserted before the counts.
    ExtraMap,
    /// The stateful counts removed: the sink gets the records as they are.
    NoCounts,
}

pub fn dataflow(out: &Path, crash_after: u64, two_input: bool) -> Dataflow {
    shaped(out, crash_after, two_input, Shape::Same)
}

pub fn shaped(out: &Path, crash_after: u64, two_input: bool, shape: Shape) -> Dataflow {
    let mut df = Dataflow::new();
    let numbers = numbers(&mut df, EVENTS, crash_after);
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
    write_lines(&counts, "sink", out);
    df
}

/// Writes each row as a line of part files in `dir` (a sink named `name`).
pub fn write_lines(rows: &Stream<String>, name: &str, dir: &Path) {
    write_part_files(rows, name, dir, None, |line: &String, buf: &mut Vec<u8>| {
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    });
}

/// Runs `df` on `shards` unpinned shards.
pub fn run_on(shards: usize, df: Dataflow) -> rill_runtime::Result<JobReport> {
    Runtime::new(Config::default().shards(shards).pin(false))?.run(df)
}

pub fn expected() -> Vec<String> {
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

pub fn committed(out: &Path) -> Vec<String> {
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
pub fn fields(rows: &[String]) -> Vec<csv::StringRecord> {
    let text = rows.join("\n");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("a CSV row"))
        .collect()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rill-ckpt-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// A scripted record: (key, value, event time).
pub type Ev = (u32, i64, i64);

/// One step of a script: a record, a watermark, or a processing time.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    Record(Ev),
    Watermark(i64),
    Tick(i64),
}

/// Plays a script's steps in order.
pub struct Script {
    steps: Arc<Vec<Step>>,
    next: usize,
    /// (shard, shards) of the shard it plays on: its one split in checkpoints.
    split: (u32, u32),
    /// (shard, shards): play only the records of the keys this shard owns.
    owner: Option<(usize, usize)>,
}

impl Script {
    /// Plays the script on shard `s`, giving only the records of the keys it owns (as the
    /// replay CLI does): every window operator then sees the script's watermarks and
    /// processing times in the script's order, so processing-time firings are certain on
    /// any shard count.
    pub fn by_key(steps: Arc<Vec<Step>>, s: &ShardContext) -> Script {
        Script {
            steps,
            next: 0,
            split: Script::split_of(s),
            owner: Some((s.index, s.shards)),
        }
    }

    /// Plays the whole script on shard 0 and nothing on the other shards.
    pub fn on_first_shard(steps: Arc<Vec<Step>>, s: &ShardContext) -> Script {
        Script {
            steps: if s.index == 0 { steps } else { Arc::default() },
            next: 0,
            split: Script::split_of(s),
            owner: None,
        }
    }

    /// Plays every watermark and processing time on shard `s`, and record `i` if `s` is
    /// shard `i % shards`: an operator after a key exchange sees the minimum of the
    /// shards' watermarks.
    pub fn round_robin(steps: &[Step], s: &ShardContext) -> Script {
        let mine = steps
            .iter()
            .enumerate()
            .filter(|&(i, step)| !matches!(step, Step::Record(_)) || i % s.shards == s.index)
            .map(|(_, step)| *step);
        Script {
            steps: Arc::new(mine.collect()),
            next: 0,
            split: Script::split_of(s),
            owner: None,
        }
    }

    fn split_of(s: &ShardContext) -> (u32, u32) {
        (s.index as u32, s.shards as u32)
    }
}

/// Sums the values per key and window: the panes and the late side output, collected.
pub fn sums_with_late(
    windowed: WindowedStream<Ev, u32>,
) -> (Collected<Pane<u32, i64>>, Collected<Ev>) {
    let (panes, late) = windowed.aggregate_with_late("sum", Sum::new(|e: &Ev| e.1));
    (panes.collect("panes"), late.collect("late"))
}

/// Each event followed by the perfect watermark (the smallest event time still to come).
pub fn perfect_watermarks(events: &[Ev]) -> Vec<Step> {
    let mut steps = Vec::with_capacity(2 * events.len());
    for (i, &e) in events.iter().enumerate() {
        let w = events[i + 1..]
            .iter()
            .map(|e| e.2)
            .min()
            .unwrap_or(MAX_WATERMARK);
        steps.push(Step::Record(e));
        steps.push(Step::Watermark(w));
    }
    steps
}

impl Source<Ev> for Script {
    fn poll(&mut self, out: &mut SourceOutput<Ev>, max: usize) -> Result<SourceStatus, Failure> {
        for _ in 0..max {
            let Some(&step) = self.steps.get(self.next) else {
                return Ok(SourceStatus::Done);
            };
            self.next += 1;
            match step {
                Step::Record(e) => match self.owner {
                    Some((shard, shards)) if shard_of_key(&e.0, shards) != shard => {}
                    _ => out.give(e),
                },
                Step::Watermark(w) => out.watermark(w)?,
                Step::Tick(t) => out.processing_time(t)?,
            }
        }
        Ok(SourceStatus::Emitted)
    }

    /// Its position in its steps: a job on a script can take checkpoints (and restore on
    /// the same shard count only: each shard's steps are its own).
    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        let (split, of) = self.split;
        Some(vec![SplitPosition {
            split,
            of,
            position: self.next as u64,
        }])
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        match splits[..] {
            [p] if (p.split, p.of) == self.split => {
                self.next = p.position as usize;
                Ok(())
            }
            _ => Err(Failure::new(
                "a script restores on the shard count it ran on only",
            )),
        }
    }
}
