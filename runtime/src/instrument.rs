//! Per-operator accounting on a shard: record counters, and which operator is running, so
//! that an error or panic can name it.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Failure, OpResult};
use crate::progress::Progress;
use crate::push::Push;

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
    counter: Rc<Cell<u64>>,
    barrier: Option<Rc<Cell<u64>>>,
}

impl<P> Instrumented<P> {
    /// `barrier`: the cell the shard's checkpoint reads this input's last barrier from
    /// (none without checkpoints).
    pub fn new(
        inner: P,
        node: usize,
        counter: Rc<Cell<u64>>,
        barrier: Option<Rc<Cell<u64>>>,
    ) -> Self {
        Instrumented {
            inner,
            node,
            counter,
            barrier,
        }
    }
}

impl<T, P: Push<T>> Push<T> for Instrumented<P> {
    #[inline]
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        self.counter.set(self.counter.get() + batch.len() as u64);
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
