//! A shard: one pinned executor (see [`executor`]) running a slice of every parallel
//! operator.
//!
//! The graph builds the shard's operator instances on its thread (`crate::graph`); the
//! shard then runs one loop: poll every chain head whose downstream channels have credit,
//! send partly filled batches that are due, service checkpoints, and — when a turn found
//! nothing to do — spin briefly, then park until another shard wakes it.

pub(crate) mod executor;

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::ShardCheckpoint;
use crate::control::JobControl;
use crate::error::{Error, Failure, FailureKind};
use crate::head::{BlockedFlag, Head, SenderDriver};
use crate::instrument::{ShardProfile, ShardStats};
use crate::park::ShardWaker;
use crate::shard_info::ShardInfo;

/// Longest a parked shard sleeps before it looks around again on its own.
const PARK_TIMEOUT: Duration = Duration::from_millis(1);

/// A chain head and what can block it.
pub(crate) struct HeadSlot {
    pub head: Box<dyn Head>,
    /// Senders reachable from this head through chained calls.
    pub blockers: Vec<BlockedFlag>,
}

/// What a shard runs: the job's operator instances on this shard, as the graph built them.
pub(crate) struct Plan {
    pub heads: Vec<HeadSlot>,
    pub senders: Vec<Rc<RefCell<dyn SenderDriver>>>,
    pub node_names: Vec<String>,
    /// The shard's time accounting (what its operators were charged).
    pub profile: Rc<ShardProfile>,
    /// Where the loop publishes the shard's busy, idle, backpressured and checkpoint time.
    pub stats: Arc<ShardStats>,
}

pub(crate) struct Shard {
    info: ShardInfo,
    heads: Vec<HeadSlot>,
    senders: Vec<Rc<RefCell<dyn SenderDriver>>>,
    node_names: Vec<String>,
    waker: Arc<ShardWaker>,
    abort: Arc<AtomicBool>,
    spin_before_park: Duration,
    checkpoint: Option<Rc<ShardCheckpoint>>,
    control: Arc<JobControl>,
    profile: Rc<ShardProfile>,
    stats: Arc<ShardStats>,
}

/// What one turn of a shard's loop found.
struct Turn {
    /// It did work.
    worked: bool,
    /// A chain head that is not done was held back (a downstream channel without credit,
    /// or a subscription without room).
    blocked: bool,
    /// Every chain head is done.
    all_done: bool,
    /// A sender still holds records it could not send.
    unsent: bool,
}

impl Shard {
    /// The shard `info` running `plan` (built on this thread by the graph).
    pub(crate) fn new(
        info: ShardInfo,
        plan: Plan,
        waker: Arc<ShardWaker>,
        abort: Arc<AtomicBool>,
        spin_before_park: Duration,
        checkpoint: Option<Rc<ShardCheckpoint>>,
        control: Arc<JobControl>,
    ) -> Shard {
        Shard {
            info,
            heads: plan.heads,
            senders: plan.senders,
            node_names: plan.node_names,
            waker,
            abort,
            spin_before_park,
            checkpoint,
            control,
            profile: plan.profile,
            stats: plan.stats,
        }
    }

    /// Runs the shard to completion (its numbers are in the job's `NodeStats`).
    pub(crate) async fn run(mut self) -> Result<(), Error> {
        let mut clock = TurnClock::new(&self.profile, &self.stats);
        let result = self.run_loop(&mut clock).await;
        clock.end();
        self.stats.end();
        if let Err(e) = &result {
            self.abort.store(true, Ordering::SeqCst);
            if !matches!(e, Error::Aborted { .. }) {
                tracing::error!(error = %e, "shard failed");
            }
        }
        result
    }

    async fn run_loop(&mut self, clock: &mut TurnClock) -> Result<(), Error> {
        let mut idle_since: Option<Instant> = None;
        loop {
            // The previous turn ends here: its step, and its park or yield.
            clock.end();
            if self.control.cancelled() {
                return Ok(());
            }
            if self.abort.load(Ordering::Relaxed) {
                return Err(Error::Aborted {
                    shard: self.info.index,
                });
            }
            let turn = match catch_unwind(AssertUnwindSafe(|| self.step())) {
                Ok(Ok(turn)) => turn,
                Ok(Err((failure, exchange))) => return Err(self.error(failure, exchange)),
                Err(panic) => return Err(self.panic_error(panic)),
            };
            clock.note(&turn);
            // Stopping at a savepoint: the shard ends once its sinks committed it (and
            // what they had received before its barrier went out), without an end of
            // stream.
            let stop_at = self.control.stopping_at();
            let savepoint_committed = stop_at > 0
                && !turn.unsent
                && self
                    .checkpoint
                    .as_ref()
                    .is_some_and(|c| c.committed() >= stop_at);
            if savepoint_committed {
                return Ok(());
            }
            if turn.all_done
                && !turn.unsent
                && stop_at == 0
                && self.checkpoint.as_ref().map_or(true, |c| c.may_stop())
            {
                return Ok(());
            }
            if turn.worked {
                idle_since = None;
            } else {
                let now = Instant::now();
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) >= self.spin_before_park {
                    let (heads, senders, abort) = (&self.heads, &self.senders, &self.abort);
                    self.waker.park(PARK_TIMEOUT, || {
                        abort.load(Ordering::Relaxed)
                            || heads.iter().any(|h| h.head.has_input())
                            || senders.iter().any(|s| s.borrow().has_returns())
                    });
                    idle_since = None;
                } else {
                    // Spinning: give the core to any runnable thread (the host's).
                    std::thread::yield_now();
                }
            }
            executor::yield_if_needed().await;
        }
    }

    /// One turn of the loop.
    fn step(&mut self) -> Result<Turn, (Failure, Option<String>)> {
        let mut worked = false;
        let mut all_done = true;
        let mut held_back = false;
        for slot in &mut self.heads {
            if slot.head.is_done() {
                continue;
            }
            all_done = false;
            let blockers = &slot.blockers;
            let blocked = || blockers.iter().any(|b| b.get());
            if blocked() {
                held_back = true;
                continue;
            }
            match slot.head.poll(&blocked) {
                Ok(w) => worked |= w,
                Err(f) => return Err((f, slot.head.exchange_name().map(str::to_string))),
            }
        }
        let now = Instant::now();
        let mut unsent = false;
        for sender in &self.senders {
            unsent |= sender
                .borrow_mut()
                .poll(now, !worked)
                .map_err(|f| (f, None))?;
        }
        if let Some(checkpoint) = &self.checkpoint {
            for slot in &mut self.heads {
                if slot.head.is_done() {
                    slot.head
                        .late_barrier()
                        .map_err(|f| (f, slot.head.exchange_name().map(str::to_string)))?;
                }
            }
            let started = self.profile.enabled().then(Instant::now);
            let serviced = checkpoint.service().map_err(|f| (f, None))?;
            if let Some(started) = started {
                self.profile.checkpoint_work(started.elapsed());
            }
            if serviced {
                // A sink's commit may have started on another thread (`Sink::pending`):
                // the shard must not stop at a savepoint before it finished.
                for sender in &self.senders {
                    unsent |= sender
                        .borrow_mut()
                        .poll(now, false)
                        .map_err(|f| (f, None))?;
                }
            }
            worked |= serviced;
        }
        Ok(Turn {
            worked,
            blocked: held_back,
            all_done,
            unsent,
        })
    }

    fn operator_name(&self, node: Option<usize>) -> String {
        node.and_then(|n| self.node_names.get(n).cloned())
            .unwrap_or_else(|| "<runtime>".to_string())
    }

    fn error(&self, failure: Failure, exchange: Option<String>) -> Error {
        match (failure.kind, failure.operator, exchange) {
            (FailureKind::Corrupt, None, Some(exchange)) => Error::CorruptBatch {
                shard: self.info.index,
                exchange,
                message: failure.message,
            },
            (_, node, _) => Error::OperatorFailed {
                operator: self.operator_name(node),
                shard: self.info.index,
                cause: failure.cause().cloned(),
                message: failure.message,
            },
        }
    }

    fn panic_error(&self, panic: Box<dyn Any + Send>) -> Error {
        Error::OperatorPanicked {
            operator: self.operator_name(crate::instrument::take_current_node()),
            shard: self.info.index,
            message: crate::error::panic_message(&*panic),
        }
    }
}

/// Splits the shard loop's wall time into busy, idle, backpressured and checkpoint time,
/// one turn at a time (one `Instant` per turn; nothing with profiling off). A turn runs from
/// the end of the previous one through its step and its park or yield. Its checkpoint work
/// (snapshots at barriers, the checkpoint service) is checkpoint time. A turn that did work
/// is busy for the rest; one that found nothing to do is busy only for the operators'
/// callbacks it ran (processing time reaching an operator, say), and idle for the rest, or
/// backpressured if a chain head was held back for lack of credit or room.
struct TurnClock {
    profile: Rc<ShardProfile>,
    stats: Arc<ShardStats>,
    mark: Option<Instant>,
    /// `ShardProfile::totals` at `mark`.
    totals: (u64, u64),
    /// What the turn under way found so far.
    worked: bool,
    blocked: bool,
}

impl TurnClock {
    fn new(profile: &Rc<ShardProfile>, stats: &Arc<ShardStats>) -> Self {
        let mark = profile.enabled().then(Instant::now);
        if let Some(at) = mark {
            stats.start(at);
        }
        TurnClock {
            profile: profile.clone(),
            stats: stats.clone(),
            mark,
            totals: profile.totals(),
            worked: false,
            blocked: false,
        }
    }

    /// What the turn's step found.
    #[inline]
    fn note(&mut self, turn: &Turn) {
        (self.worked, self.blocked) = (turn.worked, turn.blocked);
    }

    /// Ends the turn that began at the mark and starts the next.
    #[inline]
    fn end(&mut self) {
        let Some(mark) = self.mark else {
            return;
        };
        let (worked, blocked) = (self.worked, self.blocked);
        (self.worked, self.blocked) = (false, false);
        let now = Instant::now();
        let turn = now.saturating_duration_since(mark).as_nanos() as u64;
        let (charged, checkpoint) = self.profile.totals();
        // Saturating: a panic that unwound through open regions (the job then fails)
        // leaves `charged` behind.
        let charged_delta = charged.saturating_sub(self.totals.0);
        let checkpoint_delta = checkpoint.saturating_sub(self.totals.1);
        (self.mark, self.totals) = (Some(now), (charged, checkpoint));
        let rest = turn.saturating_sub(checkpoint_delta);
        let busy = if worked {
            rest
        } else {
            charged_delta.saturating_sub(checkpoint_delta).min(rest)
        };
        let s = &self.stats;
        s.turn_ended(now);
        ShardStats::add(&s.checkpoint_ns, checkpoint_delta);
        ShardStats::add(&s.busy_ns, busy);
        let waiting = if blocked {
            &s.backpressured_ns
        } else {
            &s.idle_ns
        };
        ShardStats::add(waiting, rest - busy);
    }
}
