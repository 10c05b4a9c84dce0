//! The job description's nodes, and the context that turns one into its instance on a
//! shard.

use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;

use crate::checkpoint::{ShardCheckpoint, StateReader};
use crate::data::Data;
use crate::error::OpResult;
use crate::exchange::ErasedExchange;
use crate::graph::ShardContext;
use crate::head::Head;
use crate::instrument::{attribute, enter, leave, Instrumented, ShardProfile};
use crate::operator::unary::UnaryInput;
use crate::operator::{Operator, OperatorState, Snapshots};
use crate::push::{Output, Push, SourceOutput};
use crate::source::Source;
use crate::source::{SourceHead, SourceShard};

/// One output port of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StreamId {
    pub node: usize,
    pub port: usize,
}

/// Where a node's input comes from, and whether through an exchange.
pub(crate) struct InputDesc {
    pub stream: StreamId,
    pub exchange: Option<usize>,
}

impl InputDesc {
    pub fn forward(stream: StreamId) -> Self {
        InputDesc {
            stream,
            exchange: None,
        }
    }
}

/// What building a node on a shard gives: one `Box<dyn Push<I>>` per input (as `Any`), or
/// a source's chain head.
pub(crate) enum Built {
    Inputs(Vec<Box<dyn Any>>),
    Source(Box<dyn Head>),
}

pub(crate) type BuildFn = Box<dyn Fn(&mut NodeBuilder<'_>) -> Built + Send + Sync>;

pub(crate) struct NodeDesc {
    pub name: String,
    pub inputs: Vec<InputDesc>,
    pub build: BuildFn,
}

pub(crate) struct ExchangeDesc {
    /// What reports call it: the user's name, or the partitioning and the operators it
    /// feeds (see [`GraphDesc::add`]).
    pub name: String,
    /// The partitioning's short name, e.g. `key-hash`.
    pub partitioning: &'static str,
    /// True if the user named it: consumers do not rename it.
    pub named: bool,
    /// The operators it feeds, in the order they were added.
    pub consumers: Vec<String>,
    /// Its pass-through node, which carries the same name in reports.
    pub node: usize,
    pub edge: Box<dyn ErasedExchange>,
}

/// The logical graph: nodes in creation order, which is a topological order (a node's
/// inputs always come from earlier nodes).
#[derive(Default)]
pub(crate) struct GraphDesc {
    pub nodes: Vec<NodeDesc>,
    pub exchanges: Vec<ExchangeDesc>,
    pub hooks: Vec<std::sync::Arc<dyn crate::checkpoint::JobHook>>,
    /// Problems found while the dataflow was built: (operator, problem).
    pub problems: Vec<(String, String)>,
    /// Ids given with [`Stream::uid`](crate::Stream::uid), by node.
    pub uids: std::collections::HashMap<usize, String>,
    /// The inputs fed by host programs, bound to the shards when the job starts.
    pub inputs: Vec<std::sync::Arc<dyn crate::source::input::InputBinding>>,
}

impl GraphDesc {
    /// Adds `node`. An unnamed exchange it reads from is named after it (and after every
    /// other operator it feeds): `key-hash -> count`, so that a report of a job with several
    /// exchanges tells them apart.
    pub fn add(&mut self, node: NodeDesc) -> usize {
        for input in &node.inputs {
            let feeds = self
                .exchanges
                .iter_mut()
                .find(|x| x.node == input.stream.node);
            if let Some(x) = feeds.filter(|x| !x.named) {
                x.consumers.push(node.name.clone());
                x.name = format!("{} -> {}", x.partitioning, x.consumers.join(", "));
                self.nodes[x.node].name = x.name.clone();
            }
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The nodes' names, in order: what reports identify them by.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The nodes' operator ids, in order: what checkpoints find their state by. A node's id
    /// is its uid if it was given one, else its name; the second node with the same id
    /// gets `#2` appended, the third `#3`, and so on (so the ids of nodes whose names are
    /// unique do not depend on their position in the graph). An exchange's node holds no
    /// state; its id is `exchange:` and its name, apart from the operators' ids, so that
    /// naming an exchange like an operator does not change the operator's id.
    pub fn operator_ids(&self) -> Vec<String> {
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        (0..self.nodes.len())
            .map(|i| {
                let name = self.uids.get(&i).unwrap_or(&self.nodes[i].name);
                let base = if self.exchanges.iter().any(|x| x.node == i) {
                    format!("exchange:{name}")
                } else {
                    name.clone()
                };
                let n = seen.entry(base.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    base
                } else {
                    format!("{base}#{n}")
                }
            })
            .collect()
    }

    pub fn add_exchange(&mut self, exchange: ExchangeDesc) -> usize {
        self.exchanges.push(exchange);
        self.exchanges.len() - 1
    }
}

/// Builds one node's instance on a shard. Consumers are built before producers, so a
/// node's outputs can be wired to the already built inputs of its consumers.
pub(crate) struct NodeBuilder<'a> {
    /// What the node's factory receives.
    pub context: &'a ShardContext,
    pub node: usize,
    pub batch_records: usize,
    pub consumers: &'a mut HashMap<StreamId, Vec<Box<dyn Any>>>,
    pub stats: std::sync::Arc<crate::instrument::NodeStats>,
    /// The shard's time accounting (busy time per operator).
    pub profile: Rc<ShardProfile>,
    /// The shard's part in checkpoints, when the job takes them.
    pub checkpoint: Option<Rc<ShardCheckpoint>>,
    /// The first failure met while building (a restore that failed).
    pub failure: Option<crate::error::Failure>,
    /// The error a fallible factory returned (the node is not built).
    pub build_failure: Option<crate::error::Failure>,
    /// Wakes this shard when it parked (for hosts that send to it or read from it).
    pub waker: std::sync::Arc<crate::park::ShardWaker>,
    /// What the job's handle asks of the shards.
    pub control: std::sync::Arc<crate::control::JobControl>,
    /// Flags of the node that, while set, keep the chain heads feeding it from being
    /// scheduled (a sink waiting for room), and what the shard's loop polls to clear them.
    pub blocking: Vec<(
        crate::head::BlockedFlag,
        std::rc::Rc<std::cell::RefCell<dyn crate::head::SenderDriver>>,
    )>,
}

impl NodeBuilder<'_> {
    /// The output for port `port`, pushing to every consumer built so far.
    pub fn output<U: Data>(&mut self, port: usize) -> Output<U> {
        let consumers = self
            .consumers
            .remove(&StreamId {
                node: self.node,
                port,
            })
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                *c.downcast::<Box<dyn Push<U>>>()
                    .expect("a consumer's input has its stream's record type")
            })
            .collect();
        let mut output = Output::new(consumers, self.batch_records);
        output.publish_given(self.stats.output_cell());
        output
    }

    /// Wraps an input so that its records are counted, failures name this node, and (with
    /// checkpoints) the shard knows which barrier it passed last.
    pub fn input<I: 'static>(&mut self, push: impl Push<I> + 'static) -> Box<dyn Any> {
        let barrier = self.checkpoint.as_ref().map(|c| c.register_input());
        let (node, stats, profile) = (self.node, self.stats.clone(), self.profile.clone());
        let push = Instrumented::new(push, node, stats, barrier, profile);
        let push: Box<dyn Push<I>> = Box::new(push);
        Box::new(push)
    }

    /// What `make` built, or `None` after noting its error (the job then fails to start,
    /// naming the node: [`Error::OperatorBuild`](crate::Error::OperatorBuild)).
    pub fn made<X>(&mut self, made: Result<X, crate::error::Failure>) -> Option<X> {
        match made {
            Ok(x) => Some(x),
            Err(e) => {
                self.build_failure.get_or_insert(e);
                None
            }
        }
    }

    /// The input of one-input operator `op` writing to `out`.
    pub fn unary_input<I: 'static, Op: Operator<I> + 'static>(
        &mut self,
        op: Op,
        out: Op::Out,
    ) -> Box<dyn Any>
    where
        Op::Out: 'static,
    {
        self.declared(Op::STATE);
        let input = UnaryInput::new(op, out, self.snapshots());
        self.input::<I>(input)
    }

    /// Notes what the node's operator declared it keeps: state it does not checkpoint
    /// fails the job's start under checkpointing
    /// ([`OperatorState::NotCheckpointed`]).
    pub fn declared(&mut self, state: OperatorState) {
        if self.checkpoint.is_some() && state == OperatorState::NotCheckpointed {
            self.build_failure.get_or_insert(crate::error::Failure::new(
                "the operator keeps state it does not checkpoint (OperatorState::NotCheckpointed): \
                 run the job without checkpointing, or checkpoint the state (snapshot/restore or \
                 registered tables) and declare OperatorState::Checkpointed",
            ));
        }
    }

    /// Where this node's operator hands its state at a barrier.
    pub fn snapshots(&self) -> Option<Snapshots> {
        self.checkpoint.clone().map(|checkpoint| Snapshots {
            node: self.node,
            checkpoint,
            tables: Rc::from(self.context.states().of(self.node)),
            profile: self.profile.clone(),
        })
    }

    /// When the job restores from a checkpoint, hands this node's state to `restore` (the
    /// operator's own restore), before any record arrives.
    pub fn restore(&mut self, restore: impl FnOnce(&StateReader) -> OpResult) {
        let Some(state) = self.checkpoint.as_ref().and_then(|c| c.restored(self.node)) else {
            return;
        };
        let previous = enter(self.node);
        let mut result = restore(&state);
        for (section, table) in self.context.states().of(self.node) {
            result = result.and_then(|()| table.restore(&state.section(&section, 1)?));
        }
        leave(previous);
        if let Err(e) = attribute(result, self.node) {
            self.failure.get_or_insert(e);
        }
    }

    /// A chain head polling `source`, rewound to its checkpointed splits if the job
    /// restores.
    pub fn source_head<T: Data>(
        &mut self,
        mut source: impl Source<T> + 'static,
        out: SourceOutput<T>,
    ) -> Box<dyn Head> {
        if let Some(state) = self.checkpoint.as_ref().and_then(|c| c.restored(self.node)) {
            let restored = state
                .section(crate::checkpoint::SPLITS, 1)
                .and_then(|s| s.values::<crate::checkpoint::SplitPosition>())
                .and_then(|splits| source.restore(splits));
            if let Err(e) = attribute(restored, self.node) {
                self.failure.get_or_insert(e);
            }
        }
        Box::new(SourceHead::new(
            source,
            out,
            self.node,
            self.stats.clone(),
            SourceShard {
                budget: self.batch_records,
                clock: self.context.clock(),
                checkpoint: self.checkpoint.clone(),
                control: self.control.clone(),
                profile: self.profile.clone(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Dataflow, Partitioning};

    #[test]
    fn exchanges_are_named_after_their_consumers_and_apart_from_operator_ids() {
        let mut df = Dataflow::new();
        let numbers = df.vec_source("numbers", vec![1u64, 2, 3]);
        let keyed = numbers.exchange(Partitioning::by_key(|n: &u64| *n));
        keyed.discard("a");
        keyed.discard("b");
        numbers.exchange(Partitioning::Rebalance);
        numbers
            .exchange_named("count", Partitioning::Broadcast)
            .discard("count");
        let graph = df.into_graph();
        let names: Vec<&str> = graph.exchanges.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["key-hash -> a, b", "exchange(rebalance)", "count"]);
        assert_eq!(
            graph.operator_ids(),
            [
                "numbers",
                "exchange:key-hash -> a, b",
                "a",
                "b",
                "exchange:exchange(rebalance)",
                "exchange:count",
                "count",
            ]
        );
    }
}
