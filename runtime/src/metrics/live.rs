//! A job's numbers while it runs: the atomics its shards write (per operator instance, per
//! shard, per channel) and the checkpoint measurements, read into a [`JobReport`]. The
//! final report, [`JobHandle::metrics`](crate::JobHandle::metrics), the profile table and
//! the Prometheus endpoint all come from here, so they never disagree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ChannelReport, JobEnd, JobReport, OperatorReport, ShardReport};
use crate::checkpoint::CheckpointStats;
use crate::clock::EventTimeNow;
use crate::exchange::channel::ChannelMetrics;
use crate::instrument::{NodeStats, ShardStats};
use crate::time::{MAX_WATERMARK, MIN_WATERMARK};

/// One channel of an exchange, and its live counters.
#[derive(Debug)]
pub(crate) struct ChannelMeta {
    pub exchange: String,
    pub from: usize,
    pub to: usize,
    pub metrics: Arc<ChannelMetrics>,
}

/// Reads the checkpoint measurements so far.
pub(crate) type CheckpointReader = Box<dyn Fn() -> CheckpointStats + Send + Sync>;

/// Everything a job's numbers are read from, shared by its handle, its controllers and a
/// metrics endpoint.
pub(crate) struct LiveMetrics {
    pub node_names: Vec<String>,
    /// Per shard, per node.
    pub nodes: Vec<Vec<Arc<NodeStats>>>,
    /// Per shard.
    pub shards: Vec<Arc<ShardStats>>,
    pub channels: Vec<ChannelMeta>,
    pub started: Instant,
    pub checkpoints: Option<CheckpointReader>,
    pub event_time_now: EventTimeNow,
    pub profiled: bool,
    /// Set once the job's handle joined the shards (or was dropped): endpoints close.
    pub ended: AtomicBool,
}

impl std::fmt::Debug for LiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMetrics")
            .field("operators", &self.node_names)
            .field("shards", &self.shards.len())
            .field("ended", &self.ended)
            .finish()
    }
}

impl LiveMetrics {
    /// The job's numbers now, as a running job's report.
    pub(crate) fn snapshot(&self) -> JobReport {
        let checkpoints = self.checkpoints.as_ref().map(|read| read());
        self.report(checkpoints, JobEnd::Running)
    }

    /// A report of the numbers now, with `checkpoints` and `end`.
    pub(crate) fn report(&self, checkpoints: Option<CheckpointStats>, end: JobEnd) -> JobReport {
        JobReport {
            elapsed: self.started.elapsed(),
            operators: self.operators(),
            channels: self.channel_reports(),
            shards: self.shard_reports(),
            profiled: self.profiled,
            checkpoints,
            end,
        }
    }

    /// True once the job's handle joined its shards or was dropped.
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    pub(crate) fn channel_reports(&self) -> Vec<ChannelReport> {
        self.channels
            .iter()
            .map(|c| ChannelReport {
                exchange: c.exchange.clone(),
                from: c.from,
                to: c.to,
                batches: c.metrics.batches(),
                records: c.metrics.records(),
                bytes: c.metrics.bytes(),
                backpressured: c.metrics.backpressured(),
            })
            .collect()
    }

    /// Per operator: its numbers on every shard, now.
    fn operators(&self) -> Vec<OperatorReport> {
        let due = self.event_time_now.now();
        let each = |node: usize, f: &dyn Fn(&NodeStats) -> u64| -> Vec<u64> {
            self.nodes.iter().map(|s| f(&s[node])).collect()
        };
        (self.node_names.iter().enumerate())
            .map(|(node, name)| {
                let watermarks: Vec<_> = self.nodes.iter().map(|s| s[node].watermark()).collect();
                OperatorReport {
                    name: name.clone(),
                    records: each(node, &|s| s.records()),
                    records_out: each(node, &|s| s.records_out()),
                    busy: self.nodes.iter().map(|s| s[node].busy()).collect(),
                    dropped: each(node, &|s| s.dropped().get()),
                    watermark_lag_ms: watermarks
                        .iter()
                        .map(|&w| {
                            (w != MIN_WATERMARK && w != MAX_WATERMARK)
                                .then(|| due.saturating_sub(w))
                        })
                        .collect(),
                    watermarks,
                }
            })
            .collect()
    }

    fn shard_reports(&self) -> Vec<ShardReport> {
        let ns = |a: &std::sync::atomic::AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        (self.shards.iter().enumerate())
            .map(|(shard, s)| ShardReport {
                shard,
                busy: ns(&s.busy_ns),
                idle: ns(&s.idle_ns),
                backpressured: ns(&s.backpressured_ns),
                checkpoint: ns(&s.checkpoint_ns),
                wall: s.wall(),
            })
            .collect()
    }
}
