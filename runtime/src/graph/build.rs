//! Instantiating the graph on one shard: every node's instance, built on the shard's own
//! thread from the node's `Send` factory, consumers first, so that each output is wired
//! straight into its consumers' inputs (chained edges are direct calls); exchange edges
//! become a sender on the producing side and a receiver (a chain head) on this shard.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::{Built, GraphDesc, NodeBuilder, ShardContext, StreamId};
use crate::checkpoint::ShardCheckpoint;
use crate::clock::Clock;
use crate::error::Error;
use crate::exchange::channel::{ChannelLimits, ChannelRx, ChannelTx};
use crate::exchange::EdgeOnShard;
use crate::head::{BlockedFlag, SenderDriver};
use crate::instrument::{DroppedRecords, NodeStats, ShardProfile, ShardStats};
use crate::shard::{HeadSlot, Plan};
use crate::shard_info::ShardInfo;

/// The channel ends of one shard, indexed by exchange.
#[derive(Default)]
pub(crate) struct ShardEndpoints {
    pub tx: Vec<Vec<ChannelTx>>,
    pub rx: Vec<Vec<ChannelRx>>,
}

/// What a shard shares with the job's handle and the host: how to wake the shard, the
/// job's control requests, and its nodes' live numbers (one per node).
pub(crate) struct ShardLinks {
    pub waker: Arc<crate::park::ShardWaker>,
    pub control: Arc<crate::control::JobControl>,
    pub stats: Vec<Arc<NodeStats>>,
    /// The shard's time accounting, and where its loop publishes its time.
    pub profile: Rc<ShardProfile>,
    pub shard_stats: Arc<ShardStats>,
}

/// Builds every node of `graph` on shard `info`.
pub(crate) fn instantiate(
    graph: &GraphDesc,
    info: ShardInfo,
    mut endpoints: ShardEndpoints,
    limits: ChannelLimits,
    clock: Clock,
    checkpoint: Option<Rc<ShardCheckpoint>>,
    shard: ShardLinks,
) -> Result<Plan, Error> {
    let stats = shard.stats;
    let dropped: Vec<DroppedRecords> = stats.iter().map(|s| s.dropped().clone()).collect();
    let checkpoint_context = checkpoint.as_ref().map(|c| c.context());
    let context = ShardContext::new(info, clock, checkpoint_context, dropped);
    let n = graph.nodes.len();
    let mut consumers: HashMap<StreamId, Vec<Box<dyn Any>>> = HashMap::new();
    let mut consumer_reach: HashMap<StreamId, Vec<BlockedFlag>> = HashMap::new();
    let mut heads = Vec::new();
    let mut senders: Vec<Rc<RefCell<dyn SenderDriver>>> = Vec::new();
    let mut reach_own: Vec<BlockedFlag> = Vec::new();
    for node in (0..n).rev() {
        let desc = &graph.nodes[node];
        let mut builder = NodeBuilder {
            context: &context,
            node,
            batch_records: limits.batch_records,
            consumers: &mut consumers,
            stats: stats[node].clone(),
            profile: shard.profile.clone(),
            checkpoint: checkpoint.clone(),
            failure: None,
            build_failure: None,
            waker: shard.waker.clone(),
            control: shard.control.clone(),
            blocking: Vec::new(),
        };
        context.states().enter(node);
        // A factory that panics fails the job (naming the operator) instead of leaving the
        // other shards and the coordinator waiting for this one.
        let built =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (desc.build)(&mut builder)))
                .map_err(|panic| Error::OperatorPanicked {
                operator: desc.name.clone(),
                shard: info.index,
                message: crate::error::panic_message(&*panic),
            })?;
        for (flag, driver) in std::mem::take(&mut builder.blocking) {
            reach_own.push(flag);
            senders.push(driver);
        }
        if let Some(f) = builder.build_failure.take() {
            return Err(Error::OperatorBuild {
                operator: desc.name.clone(),
                shard: info.index,
                cause: f.cause().cloned(),
                message: f.message,
            });
        }
        if let Some(f) = builder.failure.take() {
            return Err(Error::Restore {
                operator: desc.name.clone(),
                shard: info.index,
                cause: f.cause().cloned(),
                message: f.message,
            });
        }
        // Every sender this node's outputs reach through chained calls, and the node's own.
        let mut reach: Vec<BlockedFlag> = std::mem::take(&mut reach_own);
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
                            let edge = EdgeOnShard {
                                shard: info.index,
                                tx: std::mem::take(&mut endpoints.tx[x]),
                                rx: std::mem::take(&mut endpoints.rx[x]),
                                limits,
                                checkpoint: checkpoint.clone(),
                                timing: shard
                                    .profile
                                    .enabled()
                                    .then(|| (shard.profile.clone(), stats[ex.node].clone())),
                            };
                            let built = ex.edge.build(ex.name.clone(), push, edge);
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
    Ok(Plan {
        heads,
        senders,
        node_names: graph.node_names(),
        profile: shard.profile,
        stats: shard.shard_stats,
    })
}
