//! What `run` and `sweep` report: the terminal table, the summary behind JSON and CSV, and
//! the line on checkpoints.

use std::collections::BTreeMap;
use std::time::Duration;

use rill_runtime::checkpoint::{CheckpointRecord, CheckpointStats};
use serde::Serialize;

use crate::latency::{fmt_ns, LatencySummary};
use crate::nexmark::run::RunOutcome;
use crate::nexmark::sweep::Verdict;

/// Latency percentiles in µs.
#[derive(Serialize, Clone, Copy, Debug)]
pub struct PartSummary {
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl From<LatencySummary> for PartSummary {
    fn from(l: LatencySummary) -> Self {
        PartSummary {
            p50_us: us(l.p50),
            p95_us: us(l.p95),
            p99_us: us(l.p99),
            p999_us: us(l.p999),
            max_us: us(l.max),
        }
    }
}

/// One run, as reported in JSON and CSV.
#[derive(Serialize, Clone, Debug)]
pub struct RunSummary {
    /// Query name.
    pub query: String,
    /// Shards (in JSON `shard_count`: `shards` is the per-shard array below).
    #[serde(rename = "shard_count")]
    pub shards: usize,
    /// Events processed.
    pub events: u64,
    /// Open-loop rate (events/s), or null when unthrottled.
    pub rate: Option<u64>,
    /// Seconds from the first event to the end of the job.
    pub elapsed_s: f64,
    /// Events per second.
    pub throughput: f64,
    /// Result rows.
    pub rows: u64,
    /// Records dropped, per operator that dropped any (a window's late records, or those
    /// for a closed window; a join's records behind the watermark). JSON only.
    pub dropped: BTreeMap<String, u64>,
    /// `event` (sink time minus the event's intended time) or `window` (minus the moment
    /// the window could ideally close); null when unthrottled.
    pub latency_kind: Option<&'static str>,
    /// Latency percentiles in µs (open loop only).
    pub p50_us: Option<f64>,
    /// 95th percentile.
    pub p95_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Largest.
    pub max_us: Option<f64>,
    /// A latency run from Kafka (from intended times): rill's part of the same rows'
    /// latency, from the poll of their input to the sink. JSON only.
    pub rill_part: Option<PartSummary>,
    /// How late the slowest source emitted its last event, in ms.
    pub end_lag_ms: f64,
    /// Whether the generator kept its schedule and latency did not grow (open loop).
    pub sustainable: Option<bool>,
    /// Why (open loop).
    pub verdict: Option<String>,
    /// Checkpoints completed (with --checkpoint-dir).
    pub checkpoints: Option<usize>,
    /// Median checkpoint duration (request to manifest), ms.
    pub checkpoint_p50_ms: Option<f64>,
    /// Longest checkpoint duration, ms.
    pub checkpoint_max_ms: Option<f64>,
    /// Average checkpoint size, bytes.
    pub checkpoint_bytes: Option<f64>,
    /// Longest alignment (an input held back waiting for barriers), ms.
    pub alignment_max_ms: Option<f64>,
    /// Most time a shard spent on a checkpoint's state on its record path, in all
    /// (operators' snapshots at the barrier, archiving their changes in slices), ms.
    pub snapshot_max_ms: Option<f64>,
    /// Longest single piece of that work (records waited this long at a time), ms.
    pub stall_max_ms: Option<f64>,
    /// How much of that longest piece the shard's thread ran (the rest it was
    /// descheduled), ms.
    pub stall_cpu_ms: Option<f64>,
    /// What that longest piece was (`barrier <operator>` or `archive <operator>`).
    pub stall_in: Option<String>,
    /// The median over checkpoints of their longest piece, ms.
    pub stall_p50_ms: Option<f64>,
    /// Median checkpoint size, bytes (the first checkpoint of a run is full, later ones
    /// incremental).
    pub checkpoint_bytes_p50: Option<f64>,
    /// The checkpoint the run restored from.
    pub restored_from: Option<u64>,
    /// Time to read and validate it, ms.
    pub restore_load_ms: Option<f64>,
    /// Where the time went, per operator instance (operator x shard). JSON only.
    pub operators: Vec<OperatorTimes>,
    /// Where the time went, per shard: JSON `shards`, an array of objects with `shard`,
    /// `busy_ms`, `idle_ms`, `backpressured_ms`, `checkpoint_ms` and `wall_ms`. JSON only.
    #[serde(rename = "shards")]
    pub shard_times: Vec<ShardTimes>,
}

/// One operator instance's records and time (`rill_runtime::OperatorReport`, one shard).
#[derive(Serialize, Clone, Debug)]
pub struct OperatorTimes {
    /// The operator's name.
    pub name: String,
    /// The shard.
    pub shard: usize,
    /// Records in (a source: the records it read).
    pub records_in: u64,
    /// Records emitted on all its outputs.
    pub records_out: u64,
    /// Records dropped.
    pub dropped: u64,
    /// Time busy in its callbacks, exclusive of the operators it called, ms.
    pub busy_ms: f64,
    /// Event time due minus its input watermark, ms, as last sampled while the run lasted
    /// (every 200 ms); null if it never had a watermark (docs/metrics.md, "Watermark lag").
    pub watermark_lag_ms: Option<i64>,
}

/// One shard's time: busy + idle + backpressured + checkpoint = wall.
#[derive(Serialize, Clone, Debug)]
pub struct ShardTimes {
    /// The shard.
    pub shard: usize,
    /// Turns of its loop that did work, less checkpoint work, ms.
    pub busy_ms: f64,
    /// Turns that found nothing to do, ms.
    pub idle_ms: f64,
    /// Turns that found nothing to do while a chain head waited for credit or room, ms.
    pub backpressured_ms: f64,
    /// Checkpoint work on the shard, ms.
    pub checkpoint_ms: f64,
    /// The shard loop's wall time, ms.
    pub wall_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn operator_times(o: &RunOutcome) -> Vec<OperatorTimes> {
    let mut rows = Vec::new();
    for op in &o.report.operators {
        for shard in 0..op.records.len() {
            rows.push(OperatorTimes {
                name: op.name.clone(),
                shard,
                records_in: op.records[shard],
                records_out: op.records_out.get(shard).copied().unwrap_or(0),
                dropped: op.dropped.get(shard).copied().unwrap_or(0),
                busy_ms: op.busy.get(shard).copied().map_or(0.0, ms),
                watermark_lag_ms: op.watermark_lag_ms.get(shard).copied().flatten(),
            });
        }
    }
    rows
}

fn shard_times(o: &RunOutcome) -> Vec<ShardTimes> {
    (o.report.shards.iter())
        .map(|s| ShardTimes {
            shard: s.shard,
            busy_ms: ms(s.busy),
            idle_ms: ms(s.idle),
            backpressured_ms: ms(s.backpressured),
            checkpoint_ms: ms(s.checkpoint),
            wall_ms: ms(s.wall),
        })
        .collect()
}

/// The operators of the run that dropped records, with their counts.
fn dropped(o: &RunOutcome) -> BTreeMap<String, u64> {
    let ops = o.report.operators.iter();
    ops.filter(|op| op.dropped_total() > 0)
        .map(|op| (op.name.clone(), op.dropped_total()))
        .collect()
}

/// A line naming the operators that dropped records, if any did.
pub(super) fn dropped_line(o: &RunOutcome) -> Option<String> {
    let dropped = dropped(o);
    let each = dropped.iter().map(|(name, n)| format!("{name}: {n}"));
    (!dropped.is_empty())
        .then(|| format!("dropped records: {}", each.collect::<Vec<_>>().join(", ")))
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

impl RunSummary {
    pub(super) fn of(o: &RunOutcome, verdict: Option<&Verdict>) -> Self {
        let l = o.latency();
        RunSummary {
            query: o.query.to_string(),
            shards: o.shards,
            events: o.events,
            rate: o.rate,
            elapsed_s: o.elapsed.as_secs_f64(),
            throughput: o.throughput,
            rows: o.rows,
            dropped: dropped(o),
            latency_kind: o.rate.map(|_| {
                if o.query.is_windowed() {
                    "window"
                } else {
                    "event"
                }
            }),
            p50_us: l.map(|l| us(l.p50)),
            p95_us: l.map(|l| us(l.p95)),
            p99_us: l.map(|l| us(l.p99)),
            p999_us: l.map(|l| us(l.p999)),
            max_us: l.map(|l| us(l.max)),
            rill_part: o.rill_part().map(PartSummary::from),
            end_lag_ms: o.end_lag.as_secs_f64() * 1e3,
            sustainable: verdict.map(|v| v.sustainable),
            verdict: verdict.map(|v| v.reason.clone()),
            checkpoints: None,
            checkpoint_p50_ms: None,
            checkpoint_max_ms: None,
            checkpoint_bytes: None,
            alignment_max_ms: None,
            snapshot_max_ms: None,
            stall_max_ms: None,
            stall_cpu_ms: None,
            stall_in: None,
            stall_p50_ms: None,
            checkpoint_bytes_p50: None,
            restored_from: None,
            restore_load_ms: None,
            operators: operator_times(o),
            shard_times: shard_times(o),
        }
        .with_checkpoints(o.report.checkpoints.as_ref())
    }

    fn with_checkpoints(mut self, c: Option<&CheckpointStats>) -> Self {
        let Some(c) = c else {
            return self;
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut durations: Vec<Duration> = c.completed.iter().map(|r| r.duration).collect();
        durations.sort_unstable();
        let n = durations.len();
        self.checkpoints = Some(n);
        if n > 0 {
            self.checkpoint_p50_ms = Some(ms(durations[n / 2]));
            self.checkpoint_max_ms = Some(ms(durations[n - 1]));
            self.checkpoint_bytes =
                Some(c.completed.iter().map(|r| r.bytes as f64).sum::<f64>() / n as f64);
            self.alignment_max_ms = c.completed.iter().map(|r| ms(r.alignment)).reduce(f64::max);
            self.snapshot_max_ms = c.completed.iter().map(|r| ms(r.snapshot)).reduce(f64::max);
            let stall = c.completed.iter().max_by_key(|r| r.stall);
            self.stall_max_ms = stall.map(|r| ms(r.stall));
            self.stall_cpu_ms = stall.map(|r| ms(r.stall_cpu));
            self.stall_in = stall.map(|r| r.stall_in.clone());
            let mut stalls: Vec<Duration> = c.completed.iter().map(|r| r.stall).collect();
            stalls.sort_unstable();
            self.stall_p50_ms = Some(ms(stalls[n / 2]));
            let mut sizes: Vec<u64> = c.completed.iter().map(|r| r.bytes).collect();
            sizes.sort_unstable();
            self.checkpoint_bytes_p50 = sizes.get(sizes.len() / 2).map(|&b| b as f64);
        }
        self.restored_from = c.restored_from;
        self.restore_load_ms = c.restored_from.map(|_| ms(c.restore_load));
        self
    }

    /// The columns of [`csv_fields`](RunSummary::csv_fields).
    pub(super) const CSV_HEADER: [&'static str; 15] = [
        "query",
        "shards",
        "events",
        "rate",
        "elapsed_s",
        "throughput",
        "rows",
        "latency_kind",
        "p50_us",
        "p95_us",
        "p99_us",
        "p999_us",
        "max_us",
        "end_lag_ms",
        "sustainable",
    ];

    /// The summary as CSV fields, in the order of [`CSV_HEADER`](RunSummary::CSV_HEADER).
    pub(super) fn csv_fields(&self) -> [String; 15] {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(T::to_string).unwrap_or_default()
        }
        [
            self.query.clone(),
            self.shards.to_string(),
            self.events.to_string(),
            opt(&self.rate),
            format!("{:.3}", self.elapsed_s),
            format!("{:.0}", self.throughput),
            self.rows.to_string(),
            opt(&self.latency_kind),
            opt(&self.p50_us),
            opt(&self.p95_us),
            opt(&self.p99_us),
            opt(&self.p999_us),
            opt(&self.max_us),
            format!("{:.3}", self.end_lag_ms),
            opt(&self.sustainable),
        ]
    }
}

pub(super) fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn opt_ns(l: Option<LatencySummary>, f: impl Fn(LatencySummary) -> u64) -> String {
    l.map_or("-".to_string(), |l| fmt_ns(f(l)))
}

/// The terminal table's header.
pub(super) const TABLE_HEADER: &str = "query shards      mode   events/s       rows  latency      p50      p95      p99    p99.9      max   end lag";

pub(super) fn table_row(o: &RunOutcome) -> String {
    let l = o.latency();
    let mode = o.rate.map_or("max".to_string(), |r| fmt_rate(r as f64));
    let kind = match (o.rate, o.query.is_windowed()) {
        (None, _) => "-",
        (Some(_), true) => "window",
        (Some(_), false) => "event",
    };
    format!(
        "{:<5} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        o.query.to_string(),
        o.shards,
        mode,
        fmt_rate(o.throughput),
        o.rows,
        kind,
        opt_ns(l, |l| l.p50),
        opt_ns(l, |l| l.p95),
        opt_ns(l, |l| l.p99),
        opt_ns(l, |l| l.p999),
        opt_ns(l, |l| l.max),
        if o.rate.is_some() {
            format!("{:.1?}", o.end_lag)
        } else {
            "-".to_string()
        }
    )
}

/// A line on rill's part of the latency (a latency run from Kafka from intended times).
pub(super) fn rill_part_line(o: &RunOutcome) -> Option<String> {
    let l = o.rill_part()?;
    Some(format!(
        "rill's part (record polled to sink): p50 {}  p95 {}  p99 {}  p99.9 {}  max {}",
        fmt_ns(l.p50),
        fmt_ns(l.p95),
        fmt_ns(l.p99),
        fmt_ns(l.p999),
        fmt_ns(l.max)
    ))
}

/// A line on the checkpoints of a run.
pub(super) fn checkpoint_line(c: &CheckpointStats) -> String {
    let mut line = String::new();
    for (dir, reason) in &c.skipped {
        line.push_str(&format!(
            "skipped unusable checkpoint {}: {reason}\n",
            dir.display()
        ));
    }
    if let Some(id) = c.restored_from {
        line.push_str(&format!(
            "restored from checkpoint {id} (read and validated in {})\n",
            fmt_ns(c.restore_load.as_nanos() as u64)
        ));
    }
    let n = c.completed.len();
    if n == 0 {
        line.push_str("checkpoints: none completed");
        return line;
    }
    let mut durations: Vec<u64> = c
        .completed
        .iter()
        .map(|r| r.duration.as_nanos() as u64)
        .collect();
    durations.sort_unstable();
    let bytes: u64 = c.completed.iter().map(|r| r.bytes).sum();
    let worst = c.completed.iter().max_by_key(|r| r.stall);
    let longest = |of: fn(&CheckpointRecord) -> Duration| {
        let d = c.completed.iter().map(of).max().unwrap_or_default();
        fmt_ns(d.as_nanos() as u64)
    };
    line.push_str(&format!(
        "checkpoints: {n} completed, duration p50 {} max {}, {:.1} MiB average, alignment max \
         {}, snapshot max {}, stall max {} ({} on the CPU, {})",
        fmt_ns(durations[n / 2]),
        fmt_ns(durations[n - 1]),
        bytes as f64 / n as f64 / (1 << 20) as f64,
        longest(|r| r.alignment),
        longest(|r| r.snapshot),
        longest(|r| r.stall),
        fmt_ns(worst.map_or(0, |r| r.stall_cpu.as_nanos() as u64)),
        worst.map_or("", |r| r.stall_in.as_str()),
    ));
    line
}

/// What a sweep found, for JSON.
#[derive(Serialize)]
pub(super) struct SweepReport {
    pub(super) query: String,
    pub(super) shards: usize,
    pub(super) seconds_per_trial: f64,
    pub(super) max_sustainable_rate: u64,
    pub(super) trials: Vec<RunSummary>,
    pub(super) levels: Vec<Level>,
}

/// A run at a percentage of the maximum sustainable rate.
#[derive(Serialize)]
pub(super) struct Level {
    pub(super) percent: u32,
    pub(super) run: RunSummary,
}
