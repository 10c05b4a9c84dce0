//! Per-operator accounting on a shard: record counters, time busy in callbacks, and which
//! operator is running, so that an error or panic can name it; and each shard's time
//! busy, idle, backpressured and on checkpoints (see `docs/metrics.md`, "Where the time
//! goes").
//!
//! Busy time is measured where the runtime hands a batch or a progress message to an
//! operator ([`Instrumented`]), where a source's chain head polls its source, and around an
//! exchange's sending and receiving side: an `Instant` before and after, never per record.
//! Chained operators call each other inside one callback, so each measured region
//! subtracts the time of the regions nested in it ([`ShardProfile`]): an operator's busy
//! time is exclusive, its downstream's time is the downstream's.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Failure, OpResult};
use crate::head::Head;
use crate::progress::Progress;
use crate::push::Push;
use crate::time::{Timestamp, MIN_WATERMARK};

thread_local! {
    /// The node whose code runs now on this shard's thread (`usize::MAX`: none).
    static CURRENT_NODE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Records one operator instance dropped (e.g. a window operator's records that came too
/// late), which the job report shows per operator and shard
/// ([`OperatorReport::dropped`](crate::OperatorReport::dropped)). An operator's factory
/// gets its counter from [`ShardContext::dropped_records`](crate::ShardContext::dropped_records).
/// It is `Send`, so that it can sit in an operator's `Send` configuration; each shard's
/// instance has its own, so the atomic is never contended.
#[derive(Debug, Clone, Default)]
pub struct DroppedRecords(Arc<AtomicU64>);

impl DroppedRecords {
    /// Counts `n` more dropped records.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The records dropped so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One operator instance's live numbers, written by its shard and read by the job's handle
/// while the job runs: records in (records emitted, for a source), the records it dropped,
/// and the watermark of each of its inputs (for a source, the watermark it emitted). One writer each, so the
/// atomics are never contended; a store per batch or progress message, not per record.
/// Padded to cache lines: the job allocates every shard's `NodeStats` side by side, and
/// one shard's writes must not invalidate the line another shard writes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct NodeStats {
    records: AtomicU64,
    watermarks: Mutex<Vec<Arc<AtomicI64>>>,
    /// What the operator counted as dropped (handed to it by its `ShardContext`).
    dropped: DroppedRecords,
    /// Records emitted, one cell per output port (each port's `Output` stores its count).
    outputs: Mutex<Vec<Arc<AtomicU64>>>,
    /// Time in the operator's callbacks, exclusive of the operators it called, in ns.
    busy_ns: AtomicU64,
}

impl NodeStats {
    /// The operator's dropped-record counter.
    pub(crate) fn dropped(&self) -> &DroppedRecords {
        &self.dropped
    }

    /// Adds `n` records (called by the node's one writer).
    #[inline]
    pub(crate) fn count(&self, n: u64) {
        let now = self.records.load(Ordering::Relaxed);
        self.records.store(now + n, Ordering::Relaxed);
    }

    /// Sets the record count (a source's: what it emitted so far).
    #[inline]
    pub(crate) fn set_records(&self, n: u64) {
        self.records.store(n, Ordering::Relaxed);
    }

    pub(crate) fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// A new input's watermark cell.
    pub(crate) fn watermark_cell(&self) -> Arc<AtomicI64> {
        let cell = Arc::new(AtomicI64::new(MIN_WATERMARK));
        self.watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cell.clone());
        cell
    }

    /// A new output port's emitted-records cell.
    pub(crate) fn output_cell(&self) -> Arc<AtomicU64> {
        let cell = Arc::new(AtomicU64::new(0));
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cell.clone());
        cell
    }

    /// Records emitted on all output ports.
    pub(crate) fn records_out(&self) -> u64 {
        let cells = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Adds exclusive busy time (called by the node's one writer, its shard).
    #[inline]
    fn add_busy(&self, ns: u64) {
        let now = self.busy_ns.load(Ordering::Relaxed);
        self.busy_ns.store(now + ns, Ordering::Relaxed);
    }

    /// Time busy in the operator's callbacks so far.
    pub(crate) fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }

    /// The minimum over the node's inputs' watermarks (`MIN_WATERMARK` before any).
    pub(crate) fn watermark(&self) -> Timestamp {
        let cells = self.watermarks.lock().unwrap_or_else(|e| e.into_inner());
        cells
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(MIN_WATERMARK)
    }
}

/// Exclusive time accounting on one shard's thread: measured regions nest (an operator's
/// callback calls its downstream's), and each region is charged its own time minus that of
/// the regions inside it. `children` holds, for the region open now, the time of the
/// regions that ran inside it so far; at the top (the shard's loop) it grows by every
/// outermost region's time, which the loop reads to split a turn.
#[derive(Debug)]
pub(crate) struct ShardProfile {
    enabled: bool,
    children: Cell<u64>,
    /// Checkpoint work on the record path so far (snapshots at barriers, the shard's
    /// checkpoint service), in ns; also counted in `children`, so no operator is charged.
    checkpoint: Cell<u64>,
}

/// An open region: when it started, and the enclosing region's `children` so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    start: Instant,
    outer_children: u64,
}

impl ShardProfile {
    pub(crate) fn new(enabled: bool) -> Self {
        ShardProfile {
            enabled,
            children: Cell::new(0),
            checkpoint: Cell::new(0),
        }
    }

    /// Whether time is measured (`Config::profile`).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Opens a region (nothing when profiling is off).
    #[inline]
    pub(crate) fn start(&self) -> Option<Region> {
        if !self.enabled {
            return None;
        }
        Some(Region {
            start: Instant::now(),
            outer_children: self.children.replace(0),
        })
    }

    /// Closes `region`, charging `stats` its time minus the nested regions' time.
    #[inline]
    pub(crate) fn stop(&self, region: Option<Region>, stats: &NodeStats) {
        let Some(r) = region else {
            return;
        };
        let elapsed = r.start.elapsed().as_nanos() as u64;
        stats.add_busy(elapsed.saturating_sub(self.children.get()));
        self.children.set(r.outer_children + elapsed);
    }

    /// Closes `region` of a poll that found nothing to do (a source with nothing due, an
    /// exchange with no batch waiting): its own time is not charged to its node (it is the
    /// shard's idle polling), only the regions nested in it stay counted.
    #[inline]
    pub(crate) fn stop_idle(&self, region: Option<Region>) {
        if let Some(r) = region {
            self.children.set(r.outer_children + self.children.get());
        }
    }

    /// Counts `took` of checkpoint work done inside the region open now (or in the loop):
    /// the shard's checkpoint time, not the operator's.
    pub(crate) fn checkpoint_work(&self, took: Duration) {
        if self.enabled {
            let ns = took.as_nanos() as u64;
            self.children.set(self.children.get() + ns);
            self.checkpoint.set(self.checkpoint.get() + ns);
        }
    }

    /// What the shard's loop reads between turns: the time of every outermost region so
    /// far (operators and checkpoint work), and the checkpoint work among it, in ns.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.children.get(), self.checkpoint.get())
    }
}

/// One shard's time, written by its loop once per turn and read by the job's handle: busy
/// (turns that did work, less checkpoint work), idle (turns that found nothing to do:
/// spinning and parked), backpressured (turns that found nothing to do while a chain head
/// was held back for lack of credit or room in a subscription), and checkpoint work. Each
/// turn goes to exactly one of them (or is split between busy and the others), so they add
/// up to the loop's wall time.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ShardStats {
    pub busy_ns: AtomicU64,
    pub idle_ns: AtomicU64,
    pub backpressured_ns: AtomicU64,
    pub checkpoint_ns: AtomicU64,
    /// When the shard's loop started.
    started: OnceLock<Instant>,
    /// From the loop's start to the end of its last completed turn, in ns.
    turns_ns: AtomicU64,
    /// The loop's wall time once it ended, in ns (0 while it runs).
    ended_ns: AtomicU64,
}

impl ShardStats {
    /// Marks the loop's start.
    pub(crate) fn start(&self, at: Instant) {
        let _ = self.started.set(at);
    }

    /// Marks the loop's end.
    pub(crate) fn end(&self) {
        if let Some(s) = self.started.get() {
            let ns = (s.elapsed().as_nanos() as u64).max(1);
            self.ended_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// Marks the end of a turn at `at`.
    #[inline]
    pub(crate) fn turn_ended(&self, at: Instant) {
        if let Some(s) = self.started.get() {
            let ns = at.saturating_duration_since(*s).as_nanos() as u64;
            self.turns_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// Adds `ns` to `counter` (the shard is its one writer).
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, ns: u64) {
        if ns > 0 {
            let now = counter.load(Ordering::Relaxed);
            counter.store(now + ns, Ordering::Relaxed);
        }
    }

    /// The loop's wall time: to its end (measured on its own, not added up from the
    /// turns), or while it runs to the end of its last completed turn, so that a live
    /// snapshot's parts add up to it too (the turn under way is counted once it ends).
    pub(crate) fn wall(&self) -> Duration {
        match self.ended_ns.load(Ordering::Relaxed) {
            0 => Duration::from_nanos(self.turns_ns.load(Ordering::Relaxed)),
            ns => Duration::from_nanos(ns),
        }
    }
}

/// A push that only measures the time spent in it, for node `stats` (an exchange's sending
/// side, charged to the exchange; its records are counted where they arrive).
pub(crate) struct Timed<P> {
    pub inner: P,
    pub profile: Rc<ShardProfile>,
    pub stats: Arc<NodeStats>,
}

impl<T, P: Push<T>> Push<T> for Timed<P> {
    #[inline]
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        let region = self.profile.start();
        let result = self.inner.push(batch);
        self.profile.stop(region, &self.stats);
        result
    }

    fn progress(&mut self, progress: Progress) -> OpResult {
        let region = self.profile.start();
        let result = self.inner.progress(progress);
        self.profile.stop(region, &self.stats);
        result
    }
}

/// A chain head whose polls are charged to node `stats` (an exchange's receiving side:
/// reading its batches; the operators it calls are charged their own time).
pub(crate) struct TimedHead {
    pub inner: Box<dyn Head>,
    pub profile: Rc<ShardProfile>,
    pub stats: Arc<NodeStats>,
}

impl Head for TimedHead {
    fn poll(&mut self, blocked: &dyn Fn() -> bool) -> Result<bool, Failure> {
        let region = self.profile.start();
        let result = self.inner.poll(blocked);
        match result {
            Ok(false) => self.profile.stop_idle(region),
            _ => self.profile.stop(region, &self.stats),
        }
        result
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    fn has_input(&self) -> bool {
        self.inner.has_input()
    }

    fn exchange_name(&self) -> Option<&str> {
        self.inner.exchange_name()
    }

    fn late_barrier(&mut self) -> Result<(), Failure> {
        let region = self.profile.start();
        let result = self.inner.late_barrier();
        self.profile.stop(region, &self.stats);
        result
    }
}

/// The node that was running when a panic unwound, if any; resets the marker.
pub(crate) fn take_current_node() -> Option<usize> {
    let node = CURRENT_NODE.with(|c| c.replace(usize::MAX));
    (node != usize::MAX).then_some(node)
}

#[inline]
pub(crate) fn enter(node: usize) -> usize {
    CURRENT_NODE.with(|c| c.replace(node))
}

#[inline]
pub(crate) fn leave(previous: usize) {
    CURRENT_NODE.with(|c| c.set(previous));
}

pub(crate) fn attribute(result: OpResult, node: usize) -> OpResult {
    result.map_err(|mut e: Failure| {
        e.operator.get_or_insert(node);
        e
    })
}

/// An operator input that counts records, marks its node as running, and records the
/// last checkpoint barrier it passed (each barrier passes an input once).
pub(crate) struct Instrumented<P> {
    inner: P,
    node: usize,
    stats: Arc<NodeStats>,
    watermark: Arc<AtomicI64>,
    barrier: Option<Rc<Cell<u64>>>,
    profile: Rc<ShardProfile>,
}

impl<P> Instrumented<P> {
    /// `barrier`: the cell the shard's checkpoint reads this input's last barrier from
    /// (none without checkpoints).
    pub fn new(
        inner: P,
        node: usize,
        stats: Arc<NodeStats>,
        barrier: Option<Rc<Cell<u64>>>,
        profile: Rc<ShardProfile>,
    ) -> Self {
        Instrumented {
            inner,
            node,
            watermark: stats.watermark_cell(),
            stats,
            barrier,
            profile,
        }
    }
}

impl<T, P: Push<T>> Push<T> for Instrumented<P> {
    #[inline]
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        self.stats.count(batch.len() as u64);
        let region = self.profile.start();
        let previous = enter(self.node);
        let result = self.inner.push(batch);
        leave(previous);
        self.profile.stop(region, &self.stats);
        attribute(result, self.node)
    }

    fn progress(&mut self, progress: Progress) -> OpResult {
        if let (Progress::Barrier(id), Some(seen)) = (progress, &self.barrier) {
            if id <= seen.get() {
                return Ok(());
            }
        }
        if let Progress::Watermark(w) = progress {
            self.watermark.store(w, Ordering::Relaxed);
        }
        let region = self.profile.start();
        let previous = enter(self.node);
        let result = self.inner.progress(progress);
        leave(previous);
        self.profile.stop(region, &self.stats);
        if let (Progress::Barrier(id), Some(seen)) = (progress, &self.barrier) {
            if result.is_ok() {
                seen.set(id);
            }
        }
        attribute(result, self.node)
    }
}
