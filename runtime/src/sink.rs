//! Sinks: where records leave a dataflow. [`Collected`] gathers them for tests and
//! embedders; a discarding sink only counts them.

use std::sync::{Arc, Mutex};

use crate::error::OpResult;
use crate::operator::Operator;
use crate::time::Timestamp;

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
}

/// Adapts a [`Sink`] to the operator interface.
pub(crate) struct SinkOperator<S>(pub S);

impl<T, S: Sink<T>> Operator<T> for SinkOperator<S> {
    type Out = ();
    fn on_batch(&mut self, batch: &mut Vec<T>, _out: &mut ()) -> OpResult {
        self.0.on_batch(batch)
    }
    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut ()) -> OpResult {
        self.0.on_watermark(watermark)
    }
    fn on_end(&mut self, _out: &mut ()) -> OpResult {
        self.0.on_end()
    }
}

/// The records a collecting sink received, per shard, available once the job finished.
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
