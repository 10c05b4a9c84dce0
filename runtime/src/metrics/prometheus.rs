//! A job's numbers in the Prometheus text format (or OpenMetrics), for a scrape endpoint.
//!
//! [`encode`] writes one [`JobReport`] (the same numbers as
//! [`JobHandle::metrics`](crate::JobHandle::metrics)) with the `prometheus-client` crate's
//! encoders: counters of records per operator and shard, busy, idle and backpressured
//! seconds, watermark lag gauges, per-channel counters, and checkpoint duration and size
//! histograms, each labelled with `job` (and `operator`, `shard`, `exchange`, `from`, `to`
//! as they apply). `docs/metrics.md` lists every metric. An embedding service can serve
//! the text from its own HTTP stack ([`JobController::prometheus_text`](crate::JobController::prometheus_text))
//! or let rill serve it ([`JobController::serve_metrics`](crate::JobController::serve_metrics)).
//!
//! ```
//! use rill_runtime::{prometheus, Config, Dataflow, Runtime};
//!
//! let mut df = Dataflow::new();
//! df.vec_source("numbers", (0u64..100).collect()).discard("sink");
//! let report = Runtime::new(Config::default().shards(1).pin(false)).unwrap().run(df).unwrap();
//! let text = prometheus::encode(&report, "example", prometheus::Format::Prometheus);
//! assert!(text.contains(r#"rill_operator_records_in_total{job="example",operator="sink",shard="0"} 100"#));
//! ```

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::JobReport;
use crate::time::{MAX_WATERMARK, MIN_WATERMARK};

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (what every Prometheus server reads).
    Prometheus,
    /// OpenMetrics 1.0 text (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a scraper asks for with its `Accept` header: OpenMetrics if it names
    /// `application/openmetrics-text`, else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }
}

/// Upper bounds of the checkpoint duration histogram, in seconds.
pub const CHECKPOINT_DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the checkpoint size histogram, in bytes (64 KiB to 16 GiB, by 4).
pub const CHECKPOINT_SIZE_BUCKETS: [f64; 10] = [
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
    17179869184.0,
];

/// Writes `report` in `format`, every series labelled `job="<job>"`.
pub fn encode(report: &JobReport, job: &str, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ReportCollector {
        report: report.clone(),
        job: job.to_string(),
    }));
    let mut text = String::new();
    let written = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry),
    };
    // Writing into a `String` cannot fail; the encoders fail only on a writer's error.
    debug_assert!(written.is_ok(), "encoding into a String failed");
    text
}

/// Encodes a report's numbers at scrape time (a collector: nothing is registered up front).
#[derive(Debug)]
struct ReportCollector {
    report: JobReport,
    job: String,
}

type Labels = Vec<(&'static str, String)>;
/// Which per-shard counts of an operator a metric reads.
type OperatorCount = fn(&super::OperatorReport) -> &[u64];
/// Which time of a shard a metric reads.
type ShardTime = fn(&super::ShardReport) -> Duration;
/// Which count of a channel a metric reads.
type ChannelCount = fn(&super::ChannelReport) -> u64;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One metric family: its descriptor, then one sample per label set.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    unit: Option<&'a Unit>,
    kind: MetricType,
) -> Result<MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, unit, kind)
}

fn counter_u64(m: &mut MetricEncoder, labels: &Labels, v: u64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn counter_f64(m: &mut MetricEncoder, labels: &Labels, v: f64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, f64>(&v, None)
}

fn gauge_f64(m: &mut MetricEncoder, labels: &Labels, v: f64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?.encode_gauge(&v)
}

/// Per-bucket counts (not cumulative: the encoder sums them) of `values` over `bounds`.
fn buckets(values: &[f64], bounds: &[f64]) -> Vec<(f64, u64)> {
    let mut counts = vec![0u64; bounds.len()];
    for v in values {
        if let Some(i) = bounds.iter().position(|b| v <= b) {
            counts[i] += 1;
        }
    }
    bounds.iter().copied().zip(counts).collect()
}

impl ReportCollector {
    fn job(&self) -> Labels {
        vec![("job", self.job.clone())]
    }

    fn operator_shard(&self, operator: &str, shard: usize) -> Labels {
        vec![
            ("job", self.job.clone()),
            ("operator", operator.to_string()),
            ("shard", shard.to_string()),
        ]
    }

    fn shard(&self, shard: usize) -> Labels {
        vec![("job", self.job.clone()), ("shard", shard.to_string())]
    }

    /// A counter per operator and shard.
    fn per_operator(
        &self,
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        value: impl Fn(&super::OperatorReport, usize) -> Option<f64>,
        kind: MetricType,
    ) -> Result<(), std::fmt::Error> {
        let mut m = family(e, name, help, unit, kind)?;
        for op in &self.report.operators {
            for shard in 0..op.records.len() {
                let Some(v) = value(op, shard) else {
                    continue;
                };
                let labels = self.operator_shard(&op.name, shard);
                match kind {
                    MetricType::Counter => counter_f64(&mut m, &labels, v)?,
                    _ => gauge_f64(&mut m, &labels, v)?,
                }
            }
        }
        Ok(())
    }

    fn operators(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let count = |v: &[u64], shard: usize| v.get(shard).map(|&n| n as f64);
        let ops: [(&str, &str, OperatorCount); 3] = [
            (
                "rill_operator_records_in",
                "Records into the operator instance (for a source: records it read)",
                |o| &o.records,
            ),
            (
                "rill_operator_records_out",
                "Records the operator instance emitted on all its outputs",
                |o| &o.records_out,
            ),
            (
                "rill_operator_records_dropped",
                "Records the operator instance dropped (late records, a closed window's)",
                |o| &o.dropped,
            ),
        ];
        for (name, help, field) in ops {
            let mut m = family(e, name, help, None, MetricType::Counter)?;
            for op in &self.report.operators {
                for shard in 0..op.records.len() {
                    if let Some(v) = count(field(op), shard) {
                        counter_u64(&mut m, &self.operator_shard(&op.name, shard), v as u64)?;
                    }
                }
            }
        }
        self.per_operator(
            e,
            "rill_operator_busy",
            "Time busy in the operator instance's callbacks, exclusive of the operators it called",
            Some(&Unit::Seconds),
            |o, s| o.busy.get(s).map(|d| secs(*d)),
            MetricType::Counter,
        )?;
        self.per_operator(
            e,
            "rill_operator_watermark_lag",
            "Event time due now minus the operator instance's input watermark (absent before the first watermark and after the end)",
            Some(&Unit::Seconds),
            |o, s| o.watermark_lag_ms.get(s).copied().flatten().map(|ms| ms as f64 / 1e3),
            MetricType::Gauge,
        )?;
        self.per_operator(
            e,
            "rill_operator_input_watermark",
            "The operator instance's input watermark, as event time in seconds since the Unix epoch",
            Some(&Unit::Seconds),
            |o, s| {
                o.watermarks
                    .get(s)
                    .filter(|&&w| w != MIN_WATERMARK && w != MAX_WATERMARK)
                    .map(|&w| w as f64 / 1e3)
            },
            MetricType::Gauge,
        )
    }

    fn shards(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let parts: [(&str, &str, ShardTime); 5] = [
            (
                "rill_shard_busy",
                "Time the shard's loop did work (operators, sources, exchanges, the runtime between them), less checkpoint work",
                |s| s.busy,
            ),
            (
                "rill_shard_idle",
                "Time the shard's loop found nothing to do (spinning or parked)",
                |s| s.idle,
            ),
            (
                "rill_shard_backpressured",
                "Time the shard's loop found nothing to do while a chain head was held back for lack of credit or room in a subscription",
                |s| s.backpressured,
            ),
            (
                "rill_shard_checkpoint",
                "Time the shard spent on checkpoint work (snapshots at barriers, archiving state, the checkpoint service)",
                |s| s.checkpoint,
            ),
            (
                "rill_shard_wall",
                "Time since the shard's loop started (busy + idle + backpressured + checkpoint)",
                |s| s.wall,
            ),
        ];
        for (name, help, field) in parts {
            let mut m = family(e, name, help, Some(&Unit::Seconds), MetricType::Counter)?;
            for s in &self.report.shards {
                counter_f64(&mut m, &self.shard(s.shard), secs(field(s)))?;
            }
        }
        Ok(())
    }

    fn channels(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = |c: &super::ChannelReport| -> Labels {
            vec![
                ("job", self.job.clone()),
                ("exchange", c.exchange.clone()),
                ("from", c.from.to_string()),
                ("to", c.to.to_string()),
            ]
        };
        let counts: [(&str, &str, Option<Unit>, ChannelCount); 3] = [
            (
                "rill_channel_batches",
                "Batches sent on an exchange channel",
                None,
                |c| c.batches,
            ),
            (
                "rill_channel_records",
                "Records sent on an exchange channel",
                None,
                |c| c.records,
            ),
            (
                "rill_channel_sent",
                "Serialized bytes sent on an exchange channel",
                Some(Unit::Bytes),
                |c| c.bytes,
            ),
        ];
        for (name, help, unit, field) in &counts {
            let mut m = family(e, name, help, unit.as_ref(), MetricType::Counter)?;
            for c in &self.report.channels {
                counter_u64(&mut m, &labels(c), field(c))?;
            }
        }
        let mut m = family(
            e,
            "rill_channel_backpressured",
            "Time the producer of an exchange channel had data for it but no credit",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for c in &self.report.channels {
            counter_f64(&mut m, &labels(c), secs(c.backpressured))?;
        }
        Ok(())
    }

    fn checkpoints(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(c) = &self.report.checkpoints else {
            return Ok(());
        };
        let job = self.job();
        let mut m = family(
            e,
            "rill_checkpoints_completed",
            "Checkpoints completed",
            None,
            MetricType::Counter,
        )?;
        counter_u64(&mut m, &job, c.completed.len() as u64)?;
        let durations: Vec<f64> = c.completed.iter().map(|r| secs(r.duration)).collect();
        let mut m = family(
            e,
            "rill_checkpoint_duration",
            "Checkpoint duration, from its request to its manifest written",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_family(&job)?.encode_histogram::<NoLabelSet>(
            durations.iter().sum(),
            durations.len() as u64,
            &buckets(&durations, &CHECKPOINT_DURATION_BUCKETS),
            None,
        )?;
        let sizes: Vec<f64> = c.completed.iter().map(|r| r.bytes as f64).collect();
        let mut m = family(
            e,
            "rill_checkpoint_size",
            "Checkpoint size: the bytes of its shard files",
            Some(&Unit::Bytes),
            MetricType::Histogram,
        )?;
        m.encode_family(&job)?.encode_histogram::<NoLabelSet>(
            sizes.iter().sum(),
            sizes.len() as u64,
            &buckets(&sizes, &CHECKPOINT_SIZE_BUCKETS),
            None,
        )?;
        Ok(())
    }
}

impl Collector for ReportCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = family(
            &mut e,
            "rill_job_elapsed",
            "Time since the job started",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        gauge_f64(&mut m, &self.job(), secs(self.report.elapsed))?;
        self.operators(&mut e)?;
        self.shards(&mut e)?;
        self.channels(&mut e)?;
        self.checkpoints(&mut e)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{encode, Format};
    use crate::checkpoint::{CheckpointRecord, CheckpointStats};
    use crate::metrics::{JobEnd, JobReport, OperatorReport, ShardReport};

    fn checkpoint(id: u64, ms: u64, bytes: u64) -> CheckpointRecord {
        CheckpointRecord {
            id,
            duration: Duration::from_millis(ms),
            bytes,
            alignment: Duration::ZERO,
            snapshot: Duration::ZERO,
            stall: Duration::ZERO,
            stall_cpu: Duration::ZERO,
            stall_in: String::new(),
        }
    }

    fn report() -> JobReport {
        JobReport {
            elapsed: Duration::from_secs(3),
            operators: vec![OperatorReport {
                name: "a \"quoted\" op".into(),
                records: vec![5],
                records_out: vec![4],
                busy: vec![Duration::from_millis(1500)],
                dropped: vec![1],
                watermarks: vec![2_000],
                watermark_lag_ms: vec![Some(-250)],
            }],
            channels: Vec::new(),
            shards: vec![ShardReport {
                shard: 0,
                busy: Duration::from_millis(2500),
                idle: Duration::from_millis(500),
                backpressured: Duration::ZERO,
                checkpoint: Duration::from_millis(20),
                wall: Duration::from_millis(3020),
            }],
            profiled: true,
            checkpoints: Some(CheckpointStats {
                completed: vec![
                    checkpoint(1, 7, 100_000),
                    checkpoint(2, 40, 2_000_000),
                    checkpoint(3, 45_000, 1 << 40),
                ],
                ..CheckpointStats::default()
            }),
            end: JobEnd::Running,
        }
    }

    #[test]
    fn writes_counters_gauges_and_cumulative_histograms() {
        let text = encode(&report(), "j", Format::Prometheus);
        let op = r#"job="j",operator="a \"quoted\" op",shard="0""#;
        for line in [
            format!("rill_operator_records_in_total{{{op}}} 5"),
            format!("rill_operator_records_out_total{{{op}}} 4"),
            format!("rill_operator_records_dropped_total{{{op}}} 1"),
            format!("rill_operator_busy_seconds_total{{{op}}} 1.5"),
            format!("rill_operator_watermark_lag_seconds{{{op}}} -0.25"),
            format!("rill_operator_input_watermark_seconds{{{op}}} 2.0"),
            r#"rill_shard_idle_seconds_total{job="j",shard="0"} 0.5"#.to_string(),
            r#"rill_checkpoints_completed_total{job="j"} 3"#.to_string(),
            // 7 ms falls in le=0.01; 40 ms in le=0.05; 45 s only in +Inf: cumulative.
            r#"rill_checkpoint_duration_seconds_bucket{job="j",le="0.005"} 0"#.to_string(),
            r#"rill_checkpoint_duration_seconds_bucket{job="j",le="0.01"} 1"#.to_string(),
            r#"rill_checkpoint_duration_seconds_bucket{job="j",le="0.05"} 2"#.to_string(),
            r#"rill_checkpoint_duration_seconds_bucket{job="j",le="30"} 2"#.to_string(),
            r#"rill_checkpoint_duration_seconds_bucket{job="j",le="+Inf"} 3"#.to_string(),
            r#"rill_checkpoint_duration_seconds_count{job="j"} 3"#.to_string(),
            r#"rill_checkpoint_size_bytes_bucket{job="j",le="262144"} 1"#.to_string(),
            r#"rill_checkpoint_size_bytes_bucket{job="j",le="4.194304e+06"} 2"#.to_string(),
            r#"rill_checkpoint_size_bytes_count{job="j"} 3"#.to_string(),
            "# TYPE rill_checkpoint_size_bytes histogram".to_string(),
            "# TYPE rill_operator_watermark_lag_seconds gauge".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        assert!(encode(&report(), "j", Format::OpenMetrics).ends_with("# EOF\n"));
    }
}
