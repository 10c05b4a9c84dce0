//! What an operator's factory receives on its shard.

use std::hash::Hash;
use std::rc::Rc;

use crate::checkpoint::{CheckpointContext, Guarantee};
use crate::clock::Clock;
use crate::data::StateData;
use crate::instrument::DroppedRecords;
use crate::shard_info::ShardInfo;
use crate::state::{Changes, KeyedState, ListState, MapState, Registry, Timers, ValueState};

/// The shard an operator instance is built on, and the shard's settings: handed to every
/// source, operator and sink factory (timely hands its `Worker` to the user's closure), so
/// that nothing reaches an operator through a thread-local. It derefs to its
/// [`ShardInfo`], so `ctx.index` and `ctx.shards` read as before.
///
/// ```
/// use rill_runtime::{Config, Dataflow, OpResult, Operator, OperatorState, Output, Runtime};
///
/// /// Tags each record with the shard that saw it.
/// struct Tag(usize);
/// impl Operator<u64> for Tag {
///     type Out = Output<(usize, u64)>;
///     const STATE: OperatorState = OperatorState::Stateless;
///     fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> OpResult {
///         batch.drain(..).for_each(|n| out.give((self.0, n)));
///         Ok(())
///     }
/// }
///
/// let mut df = Dataflow::new();
/// let out = df
///     .vec_source("numbers", (0..4u64).collect())
///     .unary("tag", |ctx| Tag(ctx.index)) // `ctx` is the shard's ShardContext
///     .collect("out");
/// Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
/// let mut got = out.take();
/// got.sort();
/// assert_eq!(got, [(0, 0), (0, 2), (1, 1), (1, 3)]);
/// ```
#[derive(Debug, Clone)]
pub struct ShardContext {
    info: ShardInfo,
    clock: Clock,
    checkpoint: Option<CheckpointContext>,
    states: Rc<Registry>,
    /// Per node: the records its instance on this shard dropped.
    dropped: Rc<[DroppedRecords]>,
}

impl ShardContext {
    pub(crate) fn new(
        info: ShardInfo,
        clock: Clock,
        checkpoint: Option<CheckpointContext>,
        dropped: Vec<DroppedRecords>,
    ) -> Self {
        let snapshots = checkpoint.is_some_and(|c| c.guarantee != Guarantee::AtMostOnce);
        let changes = if snapshots {
            Changes::Tracked
        } else {
            Changes::Untracked
        };
        ShardContext {
            info,
            clock,
            checkpoint,
            states: Rc::new(Registry::new(changes)),
            dropped: dropped.into(),
        }
    }

    /// The keyed-state tables operators registered on this shard.
    pub(crate) fn states(&self) -> &Registry {
        &self.states
    }

    /// This shard and the shard count.
    pub fn info(&self) -> ShardInfo {
        self.info
    }

    /// The clock processing time comes from.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The job's checkpoint settings (guarantee, first epoch of this run), or `None` when
    /// it runs without checkpoints: what a two-phase-commit sink needs to know.
    pub fn checkpoint(&self) -> Option<CheckpointContext> {
        self.checkpoint
    }

    /// A value per key for the operator being built, named `name` (unique in the operator),
    /// that the runtime checkpoints (incrementally), restores and rescales by key group:
    /// the operator writes no snapshot code for it. Call from the operator's factory.
    ///
    /// ```
    /// use rill_runtime::state::ValueState;
    /// use rill_runtime::{Config, Dataflow, OpResult, Operator, OperatorState, Output, Runtime};
    ///
    /// /// A running count per key, kept in the runtime's state.
    /// struct Count(ValueState<u64, u64>);
    /// impl Operator<u64> for Count {
    ///     type Out = Output<(u64, u64)>;
    ///     const STATE: OperatorState = OperatorState::Checkpointed;
    ///     fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> OpResult {
    ///         for key in batch.drain(..) {
    ///             let n = self.0.update(key, || 0, |n| {
    ///                 *n += 1;
    ///                 *n
    ///             });
    ///             out.give((key, n));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut df = Dataflow::new();
    /// let out = df
    ///     .vec_source("keys", vec![1u64, 2, 1])
    ///     .exchange(rill_runtime::Partitioning::by_key(|k: &u64| *k))
    ///     .unary("count", |ctx| Count(ctx.value_state("counts")))
    ///     .collect("out");
    /// Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(1, 1), (1, 2), (2, 1)]);
    /// ```
    pub fn value_state<K, V>(&self, name: &str) -> ValueState<K, V>
    where
        K: StateData + Hash + Eq,
        V: StateData,
    {
        ValueState(self.states.table(name))
    }

    /// A map per key (see [`ShardContext::value_state`]).
    pub fn map_state<K, UK, UV>(&self, name: &str) -> MapState<K, UK, UV>
    where
        K: StateData + Hash + Eq,
        UK: StateData + Ord,
        UV: StateData,
    {
        MapState(self.states.table(name))
    }

    /// A list per key (see [`ShardContext::value_state`]).
    pub fn list_state<K, V>(&self, name: &str) -> ListState<K, V>
    where
        K: StateData + Hash + Eq,
        V: StateData,
    {
        ListState(self.states.table(name))
    }

    /// Timers per key (see [`ShardContext::value_state`]): the operator fires them from
    /// its watermark or processing-time callback with [`Timers::pop_due`].
    pub fn timers<K>(&self, name: &str) -> Timers<K>
    where
        K: StateData + Hash + Eq,
    {
        Timers(self.states.timers(name))
    }

    /// The counter of records the operator being built drops on this shard (late records,
    /// say), which the job report shows as its
    /// [`OperatorReport::dropped`](crate::OperatorReport::dropped). Call from the
    /// operator's factory.
    ///
    /// ```
    /// use rill_runtime::{
    ///     Config, Dataflow, DroppedRecords, OpResult, Operator, OperatorState, Output, Runtime,
    /// };
    ///
    /// /// Passes even numbers on and drops odd ones, counting them.
    /// struct Evens(DroppedRecords);
    /// impl Operator<u64> for Evens {
    ///     type Out = Output<u64>;
    ///     const STATE: OperatorState = OperatorState::Stateless;
    ///     fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> OpResult {
    ///         for n in batch.drain(..) {
    ///             if n % 2 == 0 {
    ///                 out.give(n);
    ///             } else {
    ///                 self.0.add(1);
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut df = Dataflow::new();
    /// df.vec_source("numbers", (0..10u64).collect())
    ///     .unary("evens", |ctx| Evens(ctx.dropped_records()))
    ///     .discard("out");
    /// let report = Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
    /// assert_eq!(report.operator("evens").unwrap().dropped_total(), 5);
    /// ```
    pub fn dropped_records(&self) -> DroppedRecords {
        self.dropped[self.states.node()].clone()
    }

    /// Whether keyed state tables should track their changes, for incremental
    /// checkpoints (tracked when the job takes snapshots).
    pub fn state_changes(&self) -> Changes {
        self.states.changes()
    }

    /// An empty keyed state table for an operator of this shard, tracking its changes if
    /// the job takes snapshots ([`ShardContext::state_changes`]).
    pub fn keyed_state<K: Clone + Hash + Eq, V>(&self) -> KeyedState<K, V> {
        KeyedState::with_changes(self.state_changes())
    }
}

impl std::ops::Deref for ShardContext {
    type Target = ShardInfo;
    fn deref(&self) -> &ShardInfo {
        &self.info
    }
}
