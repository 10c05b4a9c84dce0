//! Sources: where records enter a dataflow. One instance runs on every shard and produces
//! that shard's part of the input.

use std::sync::Arc;

use crate::error::Failure;
use crate::push::Output;

/// What a source's poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// It emitted records or progress; poll again soon.
    Emitted,
    /// Nothing to emit right now; the shard may park briefly before polling again.
    Idle,
    /// The source is exhausted. The runtime then sends the final watermark and the end of
    /// the stream downstream.
    Done,
}

/// A source instance on one shard.
pub trait Source<T> {
    /// Emits at most `max` records to `out` (and any watermarks it generates).
    fn poll(&mut self, out: &mut Output<T>, max: usize) -> Result<SourceStatus, Failure>;
}

/// A source that drains an iterator.
pub struct IterSource<I>(pub I);

impl<T: Clone, I: Iterator<Item = T>> Source<T> for IterSource<I> {
    fn poll(&mut self, out: &mut Output<T>, max: usize) -> Result<SourceStatus, Failure> {
        for _ in 0..max {
            match self.0.next() {
                Some(r) => out.give(r),
                None => return Ok(SourceStatus::Done),
            }
        }
        Ok(SourceStatus::Emitted)
    }
}

/// Shard `shard` of `shards` takes every `shards`-th element of `data`, starting at
/// `shard`, so the shards together emit each element once.
pub(crate) fn strided<T: Clone>(
    data: Arc<Vec<T>>,
    shard: usize,
    shards: usize,
) -> impl Iterator<Item = T> {
    (shard..data.len())
        .step_by(shards)
        .map(move |i| data[i].clone())
}
