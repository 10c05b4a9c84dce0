//! Per-operator accounting on a shard: record counters, and which operator is running, so
//! that an error or panic can name it.

use std::cell::Cell;
use std::rc::Rc;

use crate::clock::{system_now, Clock};
use crate::error::{Failure, OpResult};
use crate::push::{Output, Progress, Push};
use crate::shard::head::Head;
use crate::source::{Source, SourceStatus};
use crate::time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

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
fn enter(node: usize) -> usize {
    CURRENT_NODE.with(|c| c.replace(node))
}

#[inline]
fn leave(previous: usize) {
    CURRENT_NODE.with(|c| c.set(previous));
}

fn attribute(result: OpResult, node: usize) -> OpResult {
    result.map_err(|mut e: Failure| {
        e.operator.get_or_insert(node);
        e
    })
}

/// An operator input that counts records and marks its node as running.
pub(crate) struct Instrumented<P> {
    inner: P,
    node: usize,
    counter: Rc<Cell<u64>>,
}

impl<P> Instrumented<P> {
    pub fn new(inner: P, node: usize, counter: Rc<Cell<u64>>) -> Self {
        Instrumented {
            inner,
            node,
            counter,
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
        let previous = enter(self.node);
        let result = self.inner.progress(progress);
        leave(previous);
        attribute(result, self.node)
    }
}

/// The chain head of a source: polls it and ends its stream when it is done.
pub(crate) struct SourceHead<S, T: Clone> {
    source: S,
    out: Output<T>,
    node: usize,
    counter: Rc<Cell<u64>>,
    budget: usize,
    done: bool,
    clock: Clock,
    stamped: Timestamp,
}

impl<S, T: Clone> SourceHead<S, T> {
    pub fn new(
        source: S,
        out: Output<T>,
        node: usize,
        counter: Rc<Cell<u64>>,
        budget: usize,
        clock: Clock,
    ) -> Self {
        SourceHead {
            source,
            out,
            node,
            counter,
            budget,
            done: false,
            clock,
            stamped: MIN_WATERMARK,
        }
    }
}

impl<T: Clone, S: Source<T>> Head for SourceHead<S, T> {
    fn poll(&mut self, _blocked: &dyn Fn() -> bool) -> Result<bool, Failure> {
        if self.done {
            return Ok(false);
        }
        let previous = enter(self.node);
        let result = (|| {
            if self.clock == Clock::System {
                let now = system_now();
                if now > self.stamped {
                    self.stamped = now;
                    self.out.progress(Progress::ProcessingTime(now))?;
                }
            }
            let status = self.source.poll(&mut self.out, self.budget)?;
            self.out.flush()?;
            if status == SourceStatus::Done {
                self.out.progress(Progress::Watermark(MAX_WATERMARK))?;
                self.out.progress(Progress::End)?;
                self.done = true;
            }
            Ok(status)
        })();
        leave(previous);
        self.counter.set(self.out.given());
        let status = result.map_err(|mut e: Failure| {
            e.operator.get_or_insert(self.node);
            e
        })?;
        Ok(status != SourceStatus::Idle)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn has_input(&self) -> bool {
        // A source is polled on every loop turn; an idle one must not keep its shard awake.
        false
    }
}
