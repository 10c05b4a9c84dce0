//! The chain head of a source on one shard: polls it, stamps processing time, injects
//! checkpoint barriers (or renews at-most-once leases), and ends its stream when it is done.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Source, SourceStatus};
use crate::checkpoint::{ShardCheckpoint, SplitPosition, StateWriter, Stopwatch, SPLITS};
use crate::clock::{system_now, Clock};
use crate::control::JobControl;
use crate::error::{Failure, OpResult};
use crate::head::Head;
use crate::instrument::{attribute, enter, leave, NodeStats, ShardProfile};
use crate::progress::Progress;
use crate::push::SourceOutput;
use crate::time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

/// A source's part in checkpoints: barrier injection, and leases under at-most-once.
struct SourceCheckpoint {
    shard: Rc<ShardCheckpoint>,
    injected: Rc<Cell<u64>>,
    /// At-most-once: the positions leased so far (none written yet: empty).
    leased: Option<Vec<SplitPosition>>,
    /// The newest completed checkpoint, set by the shard's completion hook.
    completed: Rc<Cell<u64>>,
    /// The positions of injected checkpoints not yet reported complete to the source.
    injected_positions: VecDeque<(u64, Vec<SplitPosition>)>,
}

/// Whether a source still takes input, after the job's handle asked it to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Not asked.
    Open,
    /// Closed, and emitting what it already held (polled until it is done).
    Draining,
    /// Polled no more.
    Closed,
}

/// The chain head of a source: polls it and ends its stream when it is done.
pub(crate) struct SourceHead<S, T: Clone> {
    source: S,
    out: SourceOutput<T>,
    node: usize,
    stats: Arc<NodeStats>,
    watermark: Arc<std::sync::atomic::AtomicI64>,
    budget: usize,
    done: bool,
    clock: Clock,
    stamped: Timestamp,
    checkpoint: Option<SourceCheckpoint>,
    control: Arc<JobControl>,
    closing: Closing,
    profile: Rc<ShardProfile>,
}

/// What a source's chain head needs from its shard.
pub(crate) struct SourceShard {
    /// Records per poll.
    pub budget: usize,
    pub clock: Clock,
    pub checkpoint: Option<Rc<ShardCheckpoint>>,
    pub control: Arc<JobControl>,
    /// The shard's time accounting (the source's busy time, its barrier's checkpoint work).
    pub profile: Rc<ShardProfile>,
}

impl<S, T: Clone> SourceHead<S, T> {
    pub fn new(
        source: S,
        out: SourceOutput<T>,
        node: usize,
        stats: Arc<NodeStats>,
        shard: SourceShard,
    ) -> Self {
        let SourceShard {
            budget,
            clock,
            checkpoint,
            control,
            profile,
        } = shard;
        let checkpoint = checkpoint.map(|shard| {
            let completed = Rc::new(Cell::new(0));
            let hook = completed.clone();
            shard.on_complete(Box::new(move |id| {
                hook.set(hook.get().max(id));
                Ok(())
            }));
            SourceCheckpoint {
                injected: shard.register_source(),
                leased: shard.at_most_once().then(Vec::new),
                completed,
                injected_positions: VecDeque::new(),
                shard,
            }
        });
        SourceHead {
            checkpoint,
            source,
            out,
            node,
            watermark: stats.watermark_cell(),
            stats,
            budget,
            done: false,
            clock,
            stamped: MIN_WATERMARK,
            control,
            closing: Closing::Open,
            profile,
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
        let requested = cp.shard.coordinator().requested.load(Ordering::Acquire);
        // Read after `requested` (the coordinator stores it before): a savepoint's
        // barrier is never seen without its stop.
        let stop_at = self.control.stopping_at();
        if stop_at > 0 && self.closing == Closing::Draining {
            // Stopping at a savepoint: what the source held goes before the barrier.
            return Ok(());
        }
        if stop_at > 0 && requested >= stop_at && self.closing == Closing::Open {
            if self.source.close() {
                self.closing = Closing::Draining;
                return Ok(());
            }
            self.closing = Closing::Closed;
        }
        if requested <= cp.injected.get() {
            return Ok(());
        }
        let shard = cp.shard.clone();
        let started = Stopwatch::start();
        let mut state = StateWriter::default();
        let positions = self.positions()?;
        for &p in &positions {
            state.section(SPLITS, 1).put_split(p.split, p)?;
        }
        let took = started.elapsed();
        self.profile.checkpoint_work(took.wall);
        shard.submit(self.node, requested, state, took);
        self.out.inner().send(Progress::Barrier(requested))?;
        if let Some(cp) = &mut self.checkpoint {
            cp.injected.set(requested);
            cp.injected_positions.push_back((requested, positions));
        }
        Ok(())
    }

    /// Tells the source about the newest completed checkpoint it injected, with the
    /// positions it reported for it (older ones it injected are dropped unreported).
    fn report_completed(&mut self) -> OpResult {
        let Some(cp) = &mut self.checkpoint else {
            return Ok(());
        };
        let completed = cp.completed.get();
        let mut newest = None;
        while cp
            .injected_positions
            .front()
            .is_some_and(|(id, _)| *id <= completed)
        {
            newest = cp.injected_positions.pop_front();
        }
        match newest {
            Some((id, positions)) => self.source.on_checkpoint_complete(id, &positions),
            None => Ok(()),
        }
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
        let shard = cp.shard.index();
        crate::checkpoint::write_lease(cp.shard.coordinator(), shard, self.node, &lease)?;
        *leased = lease;
        Ok(())
    }
}

impl<T: Clone, S: Source<T>> Head for SourceHead<S, T> {
    fn late_barrier(&mut self) -> Result<(), Failure> {
        if self.checkpoint.as_ref().is_some_and(|c| c.leased.is_none()) {
            let region = self.profile.start();
            let previous = enter(self.node);
            let result = self.inject();
            leave(previous);
            self.profile.stop(region, &self.stats);
            return attribute(result, self.node);
        }
        Ok(())
    }

    fn poll(&mut self, _blocked: &dyn Fn() -> bool) -> Result<bool, Failure> {
        if self.done {
            return Ok(false);
        }
        let region = self.profile.start();
        let previous = enter(self.node);
        let result = (|| {
            if self.closing == Closing::Open
                && (self.control.stop_requested() || self.control.stopping_at() > 0)
            {
                self.closing = if self.source.close() {
                    Closing::Draining
                } else {
                    Closing::Closed
                };
            }
            self.report_completed()?;
            self.inject()?;
            let stop_at = self.control.stopping_at();
            if stop_at > 0
                && self
                    .checkpoint
                    .as_ref()
                    .is_some_and(|c| c.injected.get() >= stop_at)
            {
                // The savepoint's barrier is out: nothing follows it (no end of stream,
                // the job resumes from the savepoint).
                self.done = true;
                return Ok(SourceStatus::Idle);
            }
            if self.clock == Clock::System {
                let now = system_now();
                if now > self.stamped {
                    self.stamped = now;
                    self.out.inner().send(Progress::ProcessingTime(now))?;
                }
            }
            let status = match self.closing {
                Closing::Closed => SourceStatus::Done,
                _ => self.source.poll(&mut self.out, self.budget)?,
            };
            self.out.flush()?;
            if status == SourceStatus::Done {
                if stop_at > 0 && self.closing != Closing::Open {
                    // Drained for a savepoint: its barrier comes next, and no end.
                    self.closing = Closing::Closed;
                    return Ok(SourceStatus::Emitted);
                }
                self.out.watermark(MAX_WATERMARK)?;
                self.out.inner().send(Progress::End)?;
                self.done = true;
            }
            Ok(status)
        })();
        leave(previous);
        match result {
            // Nothing was due: polling it was the shard's idle time, not the source's work.
            Ok(SourceStatus::Idle) => self.profile.stop_idle(region),
            _ => self.profile.stop(region, &self.stats),
        }
        self.stats.set_records(self.out.given());
        self.watermark
            .store(self.out.current_watermark(), Ordering::Relaxed);
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
