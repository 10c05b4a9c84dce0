//! Per-operator accounting on a shard: record counters, and which operator is running, so
//! that an error or panic can name it.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Failure, OpResult};
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
#[derive(Debug, Default)]
pub(crate) struct NodeStats {
    records: AtomicU64,
    watermarks: Mutex<Vec<Arc<AtomicI64>>>,
    /// What the operator counted as dropped (handed to it by its `ShardContext`).
    dropped: DroppedRecords,
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
}

impl<P> Instrumented<P> {
    /// `barrier`: the cell the shard's checkpoint reads this input's last barrier from
    /// (none without checkpoints).
    pub fn new(
        inner: P,
        node: usize,
        stats: Arc<NodeStats>,
        barrier: Option<Rc<Cell<u64>>>,
    ) -> Self {
        Instrumented {
            inner,
            node,
            watermark: stats.watermark_cell(),
            stats,
            barrier,
        }
    }
}

impl<T, P: Push<T>> Push<T> for Instrumented<P> {
    #[inline]
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        self.stats.count(batch.len() as u64);
        let previous = enter(self.node);
        let result = self.inner.push(batch);
        leave(previous);
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
        let previous = enter(self.node);
        let result = self.inner.progress(progress);
        leave(previous);
        if let (Progress::Barrier(id), Some(seen)) = (progress, &self.barrier) {
            if result.is_ok() {
                seen.set(id);
            }
        }
        attribute(result, self.node)
    }
}
