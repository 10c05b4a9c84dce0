//! A shard: one pinned glommio executor running a slice of every parallel operator.
//!
//! The shard builds its operator instances from the job description (consumers first, so
//! that each output is wired straight into its consumers' inputs), then runs one loop:
//! poll every chain head whose downstream channels have credit, send partly filled
//! batches that are due, and — when a turn found nothing to do — spin briefly, then park
//! until another shard wakes it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint;
use crate::clock::Clock;
use crate::context::ShardInfo;
use crate::error::{Error, Failure, FailureKind};
use crate::exchange::channel::{ChannelLimits, ChannelRx, ChannelTx};
use crate::graph::{Built, GraphDesc, NodeBuilder, StreamId};
use crate::head::{BlockedFlag, Head, SenderDriver};
use crate::park::ShardWaker;

/// Longest a parked shard sleeps before it looks around again on its own.
const PARK_TIMEOUT: Duration = Duration::from_millis(1);

/// The channel ends of one shard, indexed by exchange.
pub(crate) struct ShardEndpoints {
    pub tx: Vec<Vec<ChannelTx>>,
    pub rx: Vec<Vec<ChannelRx>>,
}

pub(crate) struct ShardSettings {
    pub limits: ChannelLimits,
    pub spin_before_park: Duration,
    pub clock: Clock,
}

struct HeadSlot {
    head: Box<dyn Head>,
    /// Senders reachable from this head through chained calls.
    blockers: Vec<BlockedFlag>,
}

pub(crate) struct Shard {
    info: ShardInfo,
    heads: Vec<HeadSlot>,
    senders: Vec<Rc<RefCell<dyn SenderDriver>>>,
    counters: Vec<Rc<Cell<u64>>>,
    node_names: Vec<String>,
    waker: Arc<ShardWaker>,
    abort: Arc<AtomicBool>,
    spin_before_park: Duration,
    checkpointing: bool,
}

impl Shard {
    /// Instantiates every node of `graph` on this shard.
    pub(crate) fn build(
        graph: &GraphDesc,
        info: ShardInfo,
        mut endpoints: ShardEndpoints,
        settings: &ShardSettings,
        waker: Arc<ShardWaker>,
        abort: Arc<AtomicBool>,
    ) -> Result<Shard, Error> {
        let n = graph.nodes.len();
        let counters: Vec<Rc<Cell<u64>>> = (0..n).map(|_| Rc::new(Cell::new(0))).collect();
        let mut consumers: HashMap<StreamId, Vec<Box<dyn Any>>> = HashMap::new();
        let mut consumer_reach: HashMap<StreamId, Vec<BlockedFlag>> = HashMap::new();
        let mut heads = Vec::new();
        let mut senders: Vec<Rc<RefCell<dyn SenderDriver>>> = Vec::new();
        for node in (0..n).rev() {
            let desc = &graph.nodes[node];
            let mut builder = NodeBuilder {
                shard: info,
                node,
                batch_records: settings.limits.batch_records,
                clock: settings.clock,
                consumers: &mut consumers,
                counter: counters[node].clone(),
                failure: None,
            };
            let built = (desc.build)(&mut builder);
            if let Some(f) = builder.failure.take() {
                return Err(Error::Restore(format!(
                    "operator '{}' on shard {}: {}",
                    desc.name, info.index, f.message
                )));
            }
            // Every sender this node's outputs reach through chained calls.
            let mut reach: Vec<BlockedFlag> = Vec::new();
            consumer_reach.retain(|id, flags| {
                if id.node == node {
                    reach.append(flags);
                    false
                } else {
                    true
                }
            });
            match built {
                Built::Source(head) => heads.push(HeadSlot {
                    head,
                    blockers: reach,
                }),
                Built::Inputs(pushes) => {
                    for (push, input) in pushes.into_iter().zip(&desc.inputs) {
                        match input.exchange {
                            None => {
                                consumers.entry(input.stream).or_default().push(push);
                                consumer_reach
                                    .entry(input.stream)
                                    .or_default()
                                    .extend(reach.iter().cloned());
                            }
                            Some(x) => {
                                let ex = &graph.exchanges[x];
                                let built = ex.edge.build(
                                    ex.name.clone(),
                                    info.index,
                                    push,
                                    std::mem::take(&mut endpoints.tx[x]),
                                    std::mem::take(&mut endpoints.rx[x]),
                                    settings.limits,
                                );
                                heads.push(HeadSlot {
                                    head: built.head,
                                    blockers: reach.clone(),
                                });
                                senders.push(built.driver);
                                consumers
                                    .entry(input.stream)
                                    .or_default()
                                    .push(built.sender_push);
                                consumer_reach
                                    .entry(input.stream)
                                    .or_default()
                                    .push(built.blocked);
                            }
                        }
                    }
                }
            }
        }
        Ok(Shard {
            info,
            heads,
            senders,
            counters,
            node_names: graph.nodes.iter().map(|d| d.name.clone()).collect(),
            waker,
            abort,
            spin_before_park: settings.spin_before_park,
            checkpointing: crate::checkpoint::local::coordinator().is_some(),
        })
    }

    /// Runs the shard to completion. Returns the per-node record counts.
    pub(crate) async fn run(mut self) -> Result<Vec<u64>, Error> {
        let result = self.run_loop().await;
        if result.is_err() {
            self.abort.store(true, Ordering::SeqCst);
        }
        result?;
        Ok(self.counters.iter().map(|c| c.get()).collect())
    }

    async fn run_loop(&mut self) -> Result<(), Error> {
        let mut idle_since: Option<Instant> = None;
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Err(Error::Aborted {
                    shard: self.info.index,
                });
            }
            let (worked, finished) = match catch_unwind(AssertUnwindSafe(|| self.step())) {
                Ok(Ok(turn)) => turn,
                Ok(Err((failure, exchange))) => return Err(self.error(failure, exchange)),
                Err(panic) => return Err(self.panic_error(panic)),
            };
            if finished && (!self.checkpointing || checkpoint::local::may_stop()) {
                return Ok(());
            }
            if worked {
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
                    std::hint::spin_loop();
                }
            }
            glommio::yield_if_needed().await;
        }
    }

    /// One turn of the loop: returns (did work, shard finished).
    fn step(&mut self) -> Result<(bool, bool), (Failure, Option<String>)> {
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
        if self.checkpointing {
            for slot in &mut self.heads {
                if slot.head.is_done() {
                    slot.head
                        .late_barrier()
                        .map_err(|f| (f, slot.head.exchange_name().map(str::to_string)))?;
                }
            }
            checkpoint::local::service().map_err(|f| (f, None))?;
        }
        Ok((worked, all_done && !unsent))
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
                message: failure.message,
            },
        }
    }

    fn panic_error(&self, panic: Box<dyn Any + Send>) -> Error {
        let message = if let Some(s) = panic.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = panic.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_string()
        };
        Error::OperatorPanicked {
            operator: self.operator_name(crate::instrument::take_current_node()),
            shard: self.info.index,
            message,
        }
    }
}
