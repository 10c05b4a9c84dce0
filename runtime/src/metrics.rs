//! What a job reports: records per operator and shard, and per-channel exchange counters.

use std::fmt;
use std::time::Duration;

/// Records an operator handled on each shard: records in for operators and sinks,
/// records emitted for sources; and records it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReport {
    /// The operator's name.
    pub name: String,
    /// One count per shard.
    pub records: Vec<u64>,
    /// Records dropped, one count per shard: e.g. a window operator's records that came
    /// after their windows were garbage-collected or closed, or a join's records behind
    /// the watermark (what the operator counted in its
    /// [`DroppedRecords`](crate::DroppedRecords)). A window operator counts its late
    /// records here even when it also hands them to a late side output.
    pub dropped: Vec<u64>,
    /// The operator's input watermark on each shard (the minimum over its inputs; for a
    /// source, the watermark it emitted): how far event time got there.
    /// [`MIN_WATERMARK`](crate::MIN_WATERMARK) before any.
    pub watermarks: Vec<crate::Timestamp>,
}

impl OperatorReport {
    /// The count over all shards.
    pub fn total(&self) -> u64 {
        self.records.iter().sum()
    }

    /// The records dropped over all shards.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Counters of one exchange channel (producer shard `from` to consumer shard `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReport {
    /// The exchange: the name given to
    /// [`Stream::exchange_named`](crate::Stream::exchange_named), else its partitioning and
    /// the operators it feeds, e.g. `key-hash -> count`.
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
    /// How the job ended.
    pub end: JobEnd,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Every source ended (or the job was stopped, which ends them) and everything in
    /// flight was processed.
    Finished,
    /// Cancelled: the shards returned at once, records in flight were not processed.
    Cancelled,
    /// Stopped at savepoint `id`: a complete, self-contained checkpoint that a later run
    /// resumes from; nothing after its barrier was processed.
    Savepoint(u64),
    /// Not ended: a live snapshot ([`JobHandle::metrics`](crate::JobHandle::metrics)).
    Running,
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
        let names = self.operators.iter().map(|o| o.name.len());
        let w = names.max().unwrap_or(0).max(32);
        writeln!(f, "{:<w$} {:>14}  per shard", "operator", "records")?;
        for op in &self.operators {
            writeln!(f, "{:<w$} {:>14}  {:?}", op.name, op.total(), op.records)?;
        }
        let dropping = self.operators.iter().filter(|o| o.dropped_total() > 0);
        for (i, op) in dropping.enumerate() {
            if i == 0 {
                writeln!(f, "{:<w$} {:>14}  per shard", "operator", "dropped")?;
            }
            let (total, shards) = (op.dropped_total(), &op.dropped);
            writeln!(f, "{:<w$} {total:>14}  {shards:?}", op.name)?;
        }
        if !self.channels.is_empty() {
            let names = self.channels.iter().map(|c| c.exchange.len());
            let w = names.max().unwrap_or(0).max(24);
            writeln!(
                f,
                "{:<w$} {:>4} {:>4} {:>10} {:>12} {:>14} {:>14}",
                "channel", "from", "to", "batches", "records", "bytes", "backpressured"
            )?;
            for c in &self.channels {
                writeln!(
                    f,
                    "{:<w$} {:>4} {:>4} {:>10} {:>12} {:>14} {:>14.3?}",
                    c.exchange, c.from, c.to, c.batches, c.records, c.bytes, c.backpressured
                )?;
            }
        }
        Ok(())
    }
}
