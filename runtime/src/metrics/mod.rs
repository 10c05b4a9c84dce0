//! What a job reports: records in and out per operator and shard, where each shard's time
//! went, and per-channel exchange counters; the same numbers while the job runs
//! ([`JobHandle::metrics`](crate::JobHandle::metrics)), as a readable profile
//! ([`JobReport::profile`]) and in the Prometheus text format ([`prometheus`]), served over
//! HTTP by [`MetricsServer`]. One source feeds them all: the atomics the shards write
//! (`crate::instrument`), read by `live`.

pub(crate) mod endpoint;
pub(crate) mod live;
mod profile;
pub mod prometheus;

use std::fmt;
use std::time::Duration;

pub use endpoint::MetricsServer;
pub use profile::Profile;

/// Records an operator handled on each shard: records in for operators and sinks,
/// records emitted for sources; records out, records it dropped, its time busy and its
/// watermark lag. Each `Vec` has one entry per shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReport {
    /// The operator's name.
    pub name: String,
    /// Records in, one count per shard (for a source: the records it read, which are the
    /// records it emitted).
    pub records: Vec<u64>,
    /// Records emitted on all its outputs, one count per shard (zero for a sink).
    pub records_out: Vec<u64>,
    /// Time busy in the operator's callbacks on each shard, exclusive of the operators it
    /// called (chained operators run inside their upstream's callback; each is charged its
    /// own time). A source is charged its polls; an exchange its sending side (routing,
    /// serializing) on the producing shard and its receiving side (reading batches) on the
    /// consuming shard. Snapshots at barriers are the shard's checkpoint time instead.
    /// Zero with [`Config::profile`](crate::Config::profile) off.
    pub busy: Vec<Duration>,
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
    /// The event time due when the report was taken
    /// ([`Config::event_time_now`](crate::Config::event_time_now), by default the wall
    /// clock) minus the input watermark, in ms: how far behind event time the operator's
    /// input is. `None` before the first watermark and once the input ended (its watermark
    /// is [`MAX_WATERMARK`](crate::MAX_WATERMARK)). Negative when the watermark is ahead
    /// of the clock (a generator or replay running faster than its schedule).
    pub watermark_lag_ms: Vec<Option<i64>>,
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

/// Where one shard's time went: the turns of its loop, each counted once, so that busy,
/// idle, backpressured and checkpoint time add up to the loop's wall time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardReport {
    /// The shard.
    pub shard: usize,
    /// Turns that did work (operators' callbacks, sources' polls, exchanges' reading and
    /// sending, the runtime between them), less their checkpoint work.
    pub busy: Duration,
    /// Turns that found nothing to do, spinning or parked, with no chain head held back.
    pub idle: Duration,
    /// Turns that found nothing to do while a chain head (a source, an exchange's receiving
    /// side) was held back because a channel it feeds had no credit or a subscription had
    /// no room: the shard waited for its downstream.
    pub backpressured: Duration,
    /// Checkpoint work on the shard: operators' and sources' snapshots at barriers, and the
    /// checkpoint service between batches (archiving state in slices, handing files over,
    /// commit hooks).
    pub checkpoint: Duration,
    /// From the start of the shard's loop to its end (measured on its own); while it runs,
    /// to the end of its last completed turn (the turn under way is counted once it ends).
    pub wall: Duration,
}

impl ShardReport {
    /// Busy, idle, backpressured and checkpoint time together.
    pub fn accounted(&self) -> Duration {
        self.busy + self.idle + self.backpressured + self.checkpoint
    }
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
    /// Where each shard's time went, in shard order (zeros with
    /// [`Config::profile`](crate::Config::profile) off).
    pub shards: Vec<ShardReport>,
    /// Whether times were measured ([`Config::profile`](crate::Config::profile)).
    pub profiled: bool,
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

    /// A readable table of where the time went: per operator and shard its records in and
    /// out, busy time and watermark lag; per shard its busy, idle, backpressured and
    /// checkpoint time against its wall time.
    pub fn profile(&self) -> Profile<'_> {
        Profile(self)
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
