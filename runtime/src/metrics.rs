//! What a job reports: records per operator and shard, and per-channel exchange counters.

use std::fmt;
use std::time::Duration;

/// Records an operator handled on each shard: records in for operators and sinks,
/// records emitted for sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReport {
    /// The operator's name.
    pub name: String,
    /// One count per shard.
    pub records: Vec<u64>,
}

impl OperatorReport {
    /// The count over all shards.
    pub fn total(&self) -> u64 {
        self.records.iter().sum()
    }
}

/// Counters of one exchange channel (producer shard `from` to consumer shard `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReport {
    /// The exchange, e.g. `exchange(key-hash)`.
    pub exchange: String,
    /// Producing shard.
    pub from: usize,
    /// Consuming shard.
    pub to: usize,
    /// Batches sent.
    pub batches: u64,
    /// Records sent.
    pub records: u64,
    /// Serialized bytes sent.
    pub bytes: u64,
    /// Time the producer had data for this channel but no credit.
    pub backpressured: Duration,
}

/// The outcome of a finished job.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Wall time from start to the last shard finishing.
    pub elapsed: Duration,
    /// Per-operator counts, in the order operators were added to the dataflow.
    pub operators: Vec<OperatorReport>,
    /// Per-channel counters of every exchange.
    pub channels: Vec<ChannelReport>,
    /// Checkpoints taken and restored, when the job ran with checkpointing.
    pub checkpoints: Option<crate::checkpoint::CheckpointStats>,
}

impl JobReport {
    /// The first operator named `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorReport> {
        self.operators.iter().find(|o| o.name == name)
    }
}

impl fmt::Display for JobReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "job finished in {:.3?}", self.elapsed)?;
        writeln!(f, "{:<32} {:>14}  per shard", "operator", "records")?;
        for op in &self.operators {
            writeln!(f, "{:<32} {:>14}  {:?}", op.name, op.total(), op.records)?;
        }
        if !self.channels.is_empty() {
            writeln!(
                f,
                "{:<24} {:>4} {:>4} {:>10} {:>12} {:>14} {:>14}",
                "channel", "from", "to", "batches", "records", "bytes", "backpressured"
            )?;
            for c in &self.channels {
                writeln!(
                    f,
                    "{:<24} {:>4} {:>4} {:>10} {:>12} {:>14} {:>14.3?}",
                    c.exchange, c.from, c.to, c.batches, c.records, c.bytes, c.backpressured
                )?;
            }
        }
        Ok(())
    }
}
