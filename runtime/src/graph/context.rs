//! What an operator's factory receives on its shard.

use crate::checkpoint::CheckpointContext;
use crate::clock::Clock;
use crate::context::ShardInfo;

/// The shard an operator instance is built on, and the shard's settings: handed to every
/// source, operator and sink factory (timely hands its `Worker` to the user's closure), so
/// that nothing reaches an operator through a thread-local. It derefs to its
/// [`ShardInfo`], so `ctx.index` and `ctx.shards` read as before.
///
/// ```
/// use rill_runtime::{Config, Dataflow, OpResult, Operator, Output, Runtime};
///
/// /// Tags each record with the shard that saw it.
/// struct Tag(usize);
/// impl Operator<u64> for Tag {
///     type Out = Output<(usize, u64)>;
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
}

impl ShardContext {
    pub(crate) fn new(
        info: ShardInfo,
        clock: Clock,
        checkpoint: Option<CheckpointContext>,
    ) -> Self {
        ShardContext {
            info,
            clock,
            checkpoint,
        }
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
}

impl std::ops::Deref for ShardContext {
    type Target = ShardInfo;
    fn deref(&self) -> &ShardInfo {
        &self.info
    }
}
