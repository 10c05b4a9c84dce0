//! Per-operator accounting on a shard: record counters, and which operator is running, so
//! that an error or panic can name it.

use std::cell::Cell;
use std::rc::Rc;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::checkpoint::{local, Coordinator, SplitPosition, StateReader, StateWriter};
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

/// The node whose code runs now on this shard's thread.
pub(crate) fn current_node() -> Option<usize> {
    let node = CURRENT_NODE.with(|c| c.get());
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

/// An operator input that counts records, marks its node as running, and records the
/// last checkpoint barrier it passed (each barrier passes an input once).
pub(crate) struct Instrumented<P> {
    inner: P,
    node: usize,
    counter: Rc<Cell<u64>>,
    barrier: Option<Rc<Cell<u64>>>,
}

impl<P> Instrumented<P> {
    pub fn new(inner: P, node: usize, counter: Rc<Cell<u64>>) -> Self {
        Instrumented {
            inner,
            node,
            counter,
            barrier: local::coordinator().map(|_| local::register_input()),
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

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let previous = enter(self.node);
        let result = self.inner.restore(state);
        leave(previous);
        attribute(result, self.node)
    }
}

/// A source's part in checkpoints: barrier injection, and leases under at-most-once.
struct SourceCheckpoint {
    coord: Arc<Coordinator>,
    injected: Rc<Cell<u64>>,
    /// At-most-once: the positions leased so far (none written yet: empty).
    leased: Option<Vec<SplitPosition>>,
    shard: usize,
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
    checkpoint: Option<SourceCheckpoint>,
}

impl<S, T: Clone> SourceHead<S, T> {
    pub fn new(
        source: S,
        out: Output<T>,
        node: usize,
        counter: Rc<Cell<u64>>,
        budget: usize,
        clock: Clock,
        shard: usize,
    ) -> Self {
        let checkpoint = local::coordinator().map(|coord| SourceCheckpoint {
            coord,
            injected: local::register_source(),
            leased: local::at_most_once().then(Vec::new),
            shard,
        });
        SourceHead {
            checkpoint,
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

impl<S: Source<T>, T: Clone> SourceHead<S, T> {
    fn positions(&self) -> Result<Vec<SplitPosition>, Failure> {
        self.source.checkpoint().ok_or_else(|| {
            Failure::new(
                "this source is not replayable (Source::checkpoint returns None), so the job \
                 cannot take checkpoints",
            )
        })
    }

    /// Injects the requested barrier if there is a new one: records the source's
    /// positions and sends the barrier down the chain (also after the end of the stream,
    /// so that operators whose input ended still take part in checkpoints).
    fn inject(&mut self) -> OpResult {
        let Some(cp) = &self.checkpoint else {
            return Ok(());
        };
        if cp.leased.is_some() {
            return self.renew_lease();
        }
        let requested = cp.coord.requested.load(Ordering::Acquire);
        if requested <= cp.injected.get() {
            return Ok(());
        }
        let mut state = StateWriter::default();
        for p in self.positions()? {
            state.put_split(p.split, p)?;
        }
        local::submit(self.node, requested, state);
        self.out.progress(Progress::Barrier(requested))?;
        if let Some(cp) = &self.checkpoint {
            cp.injected.set(requested);
        }
        Ok(())
    }

    /// At-most-once: before the source may pass its lease, writes a new one further
    /// ahead, so that a restarted job resumes after everything this one emitted.
    fn renew_lease(&mut self) -> OpResult {
        let positions = self.positions()?;
        let ahead = self.source.lease_ahead();
        let cp = self.checkpoint.as_mut().expect("called with a checkpoint");
        let leased = cp.leased.as_mut().expect("at-most-once");
        let due = leased.len() != positions.len()
            || positions
                .iter()
                .zip(leased.iter())
                .any(|(p, l)| l.position.saturating_sub(p.position) < ahead / 2);
        if !due {
            return Ok(());
        }
        let lease: Vec<SplitPosition> = positions
            .iter()
            .map(|p| SplitPosition {
                position: p.position.saturating_add(ahead),
                ..*p
            })
            .collect();
        crate::checkpoint::write_lease(&cp.coord, cp.shard, self.node, &lease)?;
        *leased = lease;
        Ok(())
    }
}

impl<T: Clone, S: Source<T>> Head for SourceHead<S, T> {
    fn late_barrier(&mut self) -> Result<(), Failure> {
        if self.checkpoint.as_ref().is_some_and(|c| c.leased.is_none()) {
            let previous = enter(self.node);
            let result = self.inject();
            leave(previous);
            return attribute(result, self.node);
        }
        Ok(())
    }

    fn poll(&mut self, _blocked: &dyn Fn() -> bool) -> Result<bool, Failure> {
        if self.done {
            return Ok(false);
        }
        let previous = enter(self.node);
        let result = (|| {
            self.inject()?;
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
