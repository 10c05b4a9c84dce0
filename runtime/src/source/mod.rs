//! Sources: where records enter a dataflow. One instance runs on every shard and produces
//! that shard's part of the input.

pub mod input;
mod source_head;

use std::sync::Arc;

use crate::checkpoint::{SplitPosition, AT_MOST_ONCE_LEASE};
use crate::error::Failure;
use crate::push::SourceOutput;
use crate::shard_info::ShardInfo;

pub(crate) use source_head::{SourceHead, SourceShard};

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
///
/// A *replayable* source (one a job with checkpoints can use) reports the positions of its
/// splits with [`Source::checkpoint`] and can be rewound to them with [`Source::restore`].
/// A split is a part of the input with its own position (a generator's stride, a file's
/// byte range); on a restore onto a different shard count, split `s` goes to shard
/// `s % shards`, so one instance may receive several splits, or none (then it ends).
pub trait Source<T> {
    /// Emits at most `max` records to `out` (and any watermarks it generates).
    fn poll(&mut self, out: &mut SourceOutput<T>, max: usize) -> Result<SourceStatus, Failure>;

    /// The position of every split this instance reads, or `None` if the source cannot be
    /// replayed (the default).
    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        None
    }

    /// Rewinds the source to `splits` (the splits this shard now owns) before it is
    /// first polled.
    fn restore(&mut self, _splits: Vec<SplitPosition>) -> Result<(), Failure> {
        Err(Failure::new("this source is not replayable"))
    }

    /// Checkpoint `checkpoint` is complete (every shard's state is durable); `splits` are
    /// the positions this instance reported for it. A source that mirrors its positions
    /// elsewhere (a Kafka consumer group's committed offsets) does so here. Runs on the
    /// source's shard, from its next poll after the completion, and only while the source
    /// has not ended. Default: nothing.
    fn on_checkpoint_complete(
        &mut self,
        _checkpoint: u64,
        _splits: &[SplitPosition],
    ) -> Result<(), Failure> {
        Ok(())
    }

    /// The job is stopping ([`JobHandle::stop`](crate::JobHandle::stop), or stopping with
    /// a savepoint): take no new input. Return `true` if the source then ends by itself
    /// once it emitted what it already holds (the runtime polls it until it returns
    /// [`SourceStatus::Done`]: an input handle's queue drains this way); `false` (the
    /// default) ends it at once.
    fn close(&mut self) -> bool {
        false
    }

    /// At-most-once: how far ahead of its position (in its own units) the source leases.
    /// At least twice what one poll can advance a split; what a crash skips at most.
    fn lease_ahead(&self) -> u64 {
        AT_MOST_ONCE_LEASE
    }
}

/// A source that drains an iterator. It is replayable as long as the iterator yields the
/// same records each run: its position is the number of records taken, and a restore
/// skips that many (onto the same shard count only).
#[derive(Debug)]
pub struct IterSource<I> {
    iter: I,
    taken: u64,
    shard: ShardInfo,
}

impl<I> IterSource<I> {
    /// Drains `iter` as shard `shard`'s part of the input.
    pub fn new(iter: I, shard: ShardInfo) -> Self {
        IterSource {
            iter,
            taken: 0,
            shard,
        }
    }
}

impl<T: Clone, I: Iterator<Item = T>> Source<T> for IterSource<I> {
    fn poll(&mut self, out: &mut SourceOutput<T>, max: usize) -> Result<SourceStatus, Failure> {
        for _ in 0..max {
            match self.iter.next() {
                Some(r) => {
                    self.taken += 1;
                    out.give(r)
                }
                None => return Ok(SourceStatus::Done),
            }
        }
        Ok(SourceStatus::Emitted)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(vec![SplitPosition {
            split: self.shard.index as u32,
            of: self.shard.shards as u32,
            position: self.taken,
        }])
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        match splits.as_slice() {
            [] => {
                // This shard owns no split of the earlier run: it emits nothing.
                self.iter.by_ref().for_each(drop);
                Ok(())
            }
            [p] if p.split as usize == self.shard.index && p.of as usize == self.shard.shards => {
                for _ in 0..p.position {
                    if self.iter.next().is_none() {
                        return Err(Failure::new(format!(
                            "the checkpoint says split {} had taken {} records, but its \
                             iterator ends earlier: the input changed",
                            p.split, p.position
                        )));
                    }
                }
                self.taken = p.position;
                Ok(())
            }
            _ => Err(Failure::new(
                "an iterator source restores only onto the shard count it was checkpointed \
                 with",
            )),
        }
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
