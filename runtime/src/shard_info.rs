//! What an operator instance knows about where it runs.
//!
//! Factories of sources, operators and sinks run on every shard and receive its
//! [`ShardInfo`].

/// Where an operator instance runs: its shard's index and the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    /// This shard, `0..shards`.
    pub index: usize,
    /// How many shards run the job.
    pub shards: usize,
}
