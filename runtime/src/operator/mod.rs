//! The operator interfaces: what a parallel operator instance does with a batch, a
//! watermark and the end of its input.
//!
//! One instance of each operator runs on every shard and owns its state there (it need not
//! be `Send`). The runtime calls it with batches in arrival order; the instance writes its
//! results to its [`Outputs`]. Progress belongs to the runtime: once a callback returns,
//! the runtime forwards the input's watermark, processing time, checkpoint barriers and end
//! of stream downstream, behind the records the callback emitted. An operator can hold its
//! output watermark back ([`Output::hold_watermark`](crate::Output::hold_watermark)), never
//! forge or drop progress. The callbacks' defaults do nothing; what an operator keeps
//! between callbacks it must declare ([`OperatorState`]), so that saying nothing cannot
//! lose state at a restore.
//!
//! The runtime's side is in [`unary`] (one input), [`binary`] (two inputs sharing one
//! instance) and [`union`] (merging streams); the last two also align checkpoint barriers
//! under exactly-once.

pub(crate) mod binary;
pub(crate) mod unary;
pub(crate) mod union;

use std::rc::Rc;

use crate::checkpoint::{ShardCheckpoint, StateReader, StateWriter, Stopwatch};
use crate::error::OpResult;
use crate::instrument::ShardProfile;
use crate::push::Outputs;
use crate::state::Registered;
use crate::time::Timestamp;

/// What an operator instance keeps between its callbacks, which decides what a checkpoint
/// needs from it. Every operator declares it ([`Operator::STATE`],
/// [`BinaryOperator::STATE`]): there is no default, so a stateful operator cannot lose its
/// state at a restore by saying nothing (Flink's operators have the same choice between
/// checkpointed state and none, but can keep plain fields that a restore silently drops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorState {
    /// Nothing a restore would need: each callback's output depends only on its input
    /// (map, filter, a sink that hands records on).
    Stateless,
    /// Keeps state and checkpoints all of it: in [`Operator::snapshot`] and
    /// [`Operator::restore`], in tables registered with the shard's state
    /// ([`ShardContext::value_state`](crate::ShardContext::value_state),
    /// [`ShardContext::map_state`](crate::ShardContext::map_state)), or both.
    Checkpointed,
    /// Keeps state it does not checkpoint (a cache that can be rebuilt is [`Stateless`]
    /// for this purpose; this is state whose loss changes results). A job with
    /// checkpointing refuses to start with it
    /// ([`Error::OperatorBuild`](crate::Error::OperatorBuild)) instead of losing the state
    /// at a restore; without checkpointing it runs.
    ///
    /// [`Stateless`]: OperatorState::Stateless
    NotCheckpointed,
}

/// A one-input operator instance.
pub trait Operator<I> {
    /// Where the operator writes: an [`Output`](crate::Output), a pair, or `()` for a sink.
    type Out: Outputs;

    /// What the operator keeps between callbacks, and so whether it can run under
    /// checkpointing ([`OperatorState`]). Required: a stateful operator that says nothing
    /// does not compile, rather than lose its state at a restore.
    const STATE: OperatorState;

    /// Processes a batch. Records left in `batch` afterwards are discarded.
    fn on_batch(&mut self, batch: &mut Vec<I>, out: &mut Self::Out) -> OpResult;

    /// The input watermark advanced to `watermark`: fire what it completes. Once this
    /// returns, the runtime forwards the watermark on every output (held back by a hold the
    /// operator set, see [`Output::hold_watermark`](crate::Output::hold_watermark)). Does
    /// nothing by default.
    fn on_watermark(&mut self, _watermark: Timestamp, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }

    /// Processing time advanced to `now` (see [`crate::clock`]): fire due processing-time
    /// timers. The runtime forwards it once this returns. Does nothing by default.
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }

    /// The input ended (after the final watermark). Anything still held can be emitted;
    /// the runtime then releases every hold and ends the outputs' streams.
    fn on_end(&mut self, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }

    /// Checkpoint `checkpoint`'s barrier arrived, before [`Operator::snapshot`]: what the
    /// operator emits here goes downstream ahead of the barrier (Flink's
    /// `prepareSnapshotPreBarrier`). An operator that holds records back only to combine
    /// them (a pre-aggregation before an exchange) flushes them here and then has no state
    /// to write. Does nothing by default.
    fn on_barrier(&mut self, _checkpoint: u64, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }

    /// The input went idle (it does not hold the watermark back downstream any more), before
    /// the idleness is forwarded: an operator that holds records back only to combine them
    /// flushes them here, so that they are not overtaken by the watermark of the other
    /// shards. Does nothing by default.
    fn on_idle(&mut self, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }

    /// Checkpoint `checkpoint`'s barrier arrived: write the operator's state (keyed state
    /// per key, with [`StateWriter::put_keyed`]; anything else per split). The default
    /// writes nothing, which is right for a [`OperatorState::Stateless`] operator and for a
    /// [`OperatorState::Checkpointed`] one whose state is all in registered tables (the
    /// runtime writes those after this).
    fn snapshot(&mut self, _checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        Ok(())
    }

    /// Restores the state written by [`Operator::snapshot`]: on a restore onto a different
    /// shard count the entries come from several shards of the earlier run, each key's
    /// on the shard that now owns it.
    fn restore(&mut self, _state: &StateReader) -> OpResult {
        Ok(())
    }
}

/// A two-input operator instance (e.g. a join or a connected co-process function).
pub trait BinaryOperator<A, B> {
    /// Where the operator writes.
    type Out: Outputs;
    /// What the operator keeps between callbacks (see [`Operator::STATE`]).
    const STATE: OperatorState;
    /// Processes a batch from the first input.
    fn on_left(&mut self, batch: &mut Vec<A>, out: &mut Self::Out) -> OpResult;
    /// Processes a batch from the second input.
    fn on_right(&mut self, batch: &mut Vec<B>, out: &mut Self::Out) -> OpResult;
    /// The combined watermark (minimum of both active inputs) advanced; the runtime
    /// forwards it once this returns (see [`Operator::on_watermark`]).
    fn on_watermark(&mut self, _watermark: Timestamp, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }
    /// The combined processing time (minimum of the inputs not ended) advanced; the
    /// runtime forwards it once this returns.
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }
    /// Both inputs ended.
    fn on_end(&mut self, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }
    /// Writes the operator's state at a barrier (see [`Operator::snapshot`]).
    fn snapshot(&mut self, _checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        Ok(())
    }
    /// Restores it (see [`Operator::restore`]).
    fn restore(&mut self, _state: &StateReader) -> OpResult {
        Ok(())
    }
}

/// Where an operator hands its state at a barrier: its node, and the shard's checkpoint.
#[derive(Clone)]
pub(crate) struct Snapshots {
    pub node: usize,
    pub checkpoint: Rc<ShardCheckpoint>,
    /// The keyed-state tables the node's operator registered: written after its own state.
    pub tables: Rc<[(String, Rc<dyn Registered>)]>,
    /// The shard's time accounting: a snapshot's time is checkpoint work, not the
    /// operator's.
    pub profile: Rc<ShardProfile>,
}

impl Snapshots {
    /// True if barriers are aligned (exactly-once).
    pub(crate) fn aligned(&self) -> bool {
        self.checkpoint.aligned()
    }
}

/// Runs an operator's snapshot for barrier `checkpoint` and hands the state to the shard's
/// checkpoint.
pub(crate) fn take_snapshot(
    snapshots: Option<&Snapshots>,
    checkpoint: u64,
    snapshot: impl FnOnce(&mut StateWriter) -> OpResult,
) -> OpResult {
    let started = Stopwatch::start();
    let (copy, shard) = snapshots.map_or(((0, 1), (0, 1)), |s| {
        (s.checkpoint.copy_of(checkpoint), s.checkpoint.shard())
    });
    let mut state = StateWriter::for_checkpoint(copy, shard);
    snapshot(&mut state)?;
    for (section, table) in snapshots.iter().flat_map(|s| s.tables.iter()) {
        table.clone().snapshot(state.section(section, 1))?;
    }
    if let Some(s) = snapshots {
        let took = started.elapsed();
        s.profile.checkpoint_work(took.wall);
        s.checkpoint.submit(s.node, checkpoint, state, took);
    }
    Ok(())
}
