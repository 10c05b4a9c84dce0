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
}

/// What one turn of a shard's loop found.
struct Turn {
    /// It did work.
    worked: bool,
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
        }
    }

    /// Runs the shard to completion (its numbers are in the job's `NodeStats`).
    pub(crate) async fn run(mut self) -> Result<(), Error> {
        let result = self.run_loop().await;
        if let Err(e) = &result {
            self.abort.store(true, Ordering::SeqCst);
            if !matches!(e, Error::Aborted { .. }) {
                tracing::error!(error = %e, "shard failed");
            }
        }
        result
    }

    async fn run_loop(&mut self) -> Result<(), Error> {
        let mut idle_since: Option<Instant> = None;
        loop {
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
        for slot in &mut self.heads {
            if slot.head.is_done() {
                continue;
            }
            all_done = false;
            let blockers = &slot.blockers;
            let blocked = || blockers.iter().any(|b| b.get());
            if blocked() {
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
            worked |= checkpoint.service().map_err(|f| (f, None))?;
        }
        Ok(Turn {
            worked,
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
