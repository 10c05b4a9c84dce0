//! Sinks: where records leave a dataflow. [`Collected`] gathers them for tests and
//! embedders; a discarding sink only counts them.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::checkpoint::{ShardCheckpoint, StateReader, StateWriter};
use crate::error::OpResult;
use crate::operator::{Operator, OperatorState};
use crate::time::Timestamp;

pub mod subscription;

/// A sink instance on one shard.
pub trait Sink<T> {
    /// Consumes a batch (records left in it are discarded).
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult;
    /// The watermark advanced.
    fn on_watermark(&mut self, _watermark: Timestamp) -> OpResult {
        Ok(())
    }
    /// The input ended: flush and close.
    fn on_end(&mut self) -> OpResult {
        Ok(())
    }
    /// Checkpoint `checkpoint`'s barrier arrived: a two-phase-commit sink *pre-commits*
    /// here (makes what it received since the previous barrier durable, uncommitted) and
    /// may write state. Default: nothing.
    fn snapshot(&mut self, _checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        Ok(())
    }
    /// Checkpoint `checkpoint` is complete (every shard's state is durable): *commit*
    /// everything pre-committed up to it. Runs on the sink's shard. Default: nothing.
    fn on_checkpoint_complete(&mut self, _checkpoint: u64) -> OpResult {
        Ok(())
    }
    /// The job restores from a checkpoint: the sink's state, and the checkpoint's id
    /// ([`StateReader::checkpoint`]).
    fn restore(&mut self, _state: &StateReader) -> OpResult {
        Ok(())
    }
}

/// Adapts a [`Sink`] to the operator interface. The sink is shared with the shard's
/// checkpoint-complete hook.
pub(crate) struct SinkOperator<S>(pub Rc<RefCell<S>>);

impl<S> SinkOperator<S> {
    pub(crate) fn new<T>(sink: S, checkpoint: Option<&ShardCheckpoint>) -> Self
    where
        S: Sink<T> + 'static,
    {
        let sink = Rc::new(RefCell::new(sink));
        if let Some(checkpoint) = checkpoint {
            let hook = sink.clone();
            checkpoint.on_complete(Box::new(move |id| {
                hook.borrow_mut().on_checkpoint_complete(id)
            }));
        }
        SinkOperator(sink)
    }
}

impl<T, S: Sink<T>> Operator<T> for SinkOperator<S> {
    type Out = ();
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<T>, _out: &mut ()) -> OpResult {
        self.0.borrow_mut().on_batch(batch)
    }
    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut ()) -> OpResult {
        self.0.borrow_mut().on_watermark(watermark)
    }
    fn on_end(&mut self, _out: &mut ()) -> OpResult {
        self.0.borrow_mut().on_end()
    }
    fn snapshot(&mut self, checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.0.borrow_mut().snapshot(checkpoint, state)
    }
    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.0.borrow_mut().restore(state)
    }
}

/// The records a collecting sink received, per shard, available once the job finished.
#[derive(Debug)]
pub struct Collected<T> {
    pub(crate) shards: Arc<Mutex<Vec<Vec<T>>>>,
}

impl<T> Clone for Collected<T> {
    fn clone(&self) -> Self {
        Collected {
            shards: self.shards.clone(),
        }
    }
}

impl<T> Collected<T> {
    pub(crate) fn new(shards: usize) -> Self {
        Collected {
            shards: Arc::new(Mutex::new((0..shards).map(|_| Vec::new()).collect())),
        }
    }

    /// Takes the records of every shard, shard 0 first, each in arrival order.
    pub fn take(&self) -> Vec<T> {
        self.take_per_shard().into_iter().flatten().collect()
    }

    /// Takes the records, one vector per shard.
    pub fn take_per_shard(&self) -> Vec<Vec<T>> {
        let mut guard = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        guard.iter_mut().map(std::mem::take).collect()
    }
}

/// Appends to its shard's vector of a [`Collected`].
pub(crate) struct CollectSink<T> {
    pub(crate) target: Collected<T>,
    pub(crate) shard: usize,
}

impl<T> Sink<T> for CollectSink<T> {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        let mut guard = self.target.shards.lock().unwrap_or_else(|e| e.into_inner());
        if guard.len() <= self.shard {
            guard.resize_with(self.shard + 1, Vec::new);
        }
        guard[self.shard].append(batch);
        Ok(())
    }
}

/// Drops every record (the runtime's per-operator counter counts them).
pub(crate) struct DiscardSink;

impl<T> Sink<T> for DiscardSink {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        batch.clear();
        Ok(())
    }
}
