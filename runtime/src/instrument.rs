//! Per-operator accounting on a shard: record counters, and which operator is running, so
//! that an error or panic can name it.

use std::cell::Cell;
use std::rc::Rc;

use crate::error::{Failure, OpResult};
use crate::progress::Progress;
use crate::push::Push;

thread_local! {
    /// The node whose code runs now on this shard's thread (`usize::MAX`: none).
    static CURRENT_NODE: Cell<usize> = const { Cell::new(usize::MAX) };
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
