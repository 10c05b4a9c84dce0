//! The flags of `rill-bench run` and `sweep`, and the parsers for their values (rates,
//! durations in the [shared grammar](crate::duration), queries, guarantees).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rill_runtime::checkpoint::{Checkpointing, Guarantee};
use rill_runtime::Config;

use crate::duration::{parse_millis, DurationError};
use crate::nexmark::kafka::KafkaInput;
use crate::nexmark::queries::Query;
use crate::nexmark::run::RunSpec;
use crate::nexmark::GeneratorConfig;

/// A flag value that is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagError {
    /// Not a number with an optional `k`, `M` or `G`.
    #[error("'{0}' is not a rate (e.g. 500000, 500k, 2.5M)")]
    NotARate(String),
    /// A rate outside 1..=10^12 events/s.
    #[error("rate '{0}' must be between 1 and 10^12 events/s")]
    RateOutOfRange(String),
    /// A duration below 1 ms where one is needed.
    #[error("duration '{0}' must be at least 1 ms")]
    DurationTooShort(String),
    /// A duration above 10^12 ms.
    #[error("duration '{0}' must be at most 10^12 ms")]
    DurationTooLong(String),
    /// Not a duration at all.
    #[error(transparent)]
    Duration(#[from] DurationError),
}

/// Parses a rate: `250000`, `250k`, `1.5M`, `2G` (events/s).
pub fn parse_rate(s: &str) -> Result<u64, FlagError> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| FlagError::NotARate(s.to_string()))?;
    let rate = v * mult;
    if !(1.0..=1e12).contains(&rate) {
        return Err(FlagError::RateOutOfRange(s.to_string()));
    }
    Ok(rate.round() as u64)
}

/// The longest duration a flag takes, in ms (about 31 years).
const MAX_FLAG_MS: i64 = 1_000_000_000_000;

/// Parses a duration flag in ms, in the [shared grammar](crate::duration) (`200ms`, `10s`,
/// `1.5s`, `2m`, `1h 30m`, or a plain number of ms): at least 1 ms.
pub fn parse_ms(s: &str) -> Result<i64, FlagError> {
    match parse_millis(s)? {
        0 => Err(FlagError::DurationTooShort(s.to_string())),
        ms if ms > MAX_FLAG_MS => Err(FlagError::DurationTooLong(s.to_string())),
        ms => Ok(ms),
    }
}

/// [`parse_ms`], or zero (no warm-up).
fn parse_warmup(s: &str) -> Result<i64, FlagError> {
    match parse_millis(s) {
        Ok(0) => Ok(0),
        _ => parse_ms(s),
    }
}

fn parse_query(s: &str) -> Result<Query, String> {
    s.parse()
}

/// Flags shared by `run` and `sweep`.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The query: q0-q8, q11 or q12.
    #[arg(long, value_parser = parse_query)]
    pub query: Query,
    /// Generator seed.
    #[arg(long, default_value_t = GeneratorConfig::default().seed)]
    pub seed: u64,
    /// Shuffle events within groups of this many (1: in order).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub out_of_order: u64,
    /// Shards (default: every core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shards: Option<u64>,
    /// Do not pin shards to cores (needed for more shards than cores).
    #[arg(long)]
    pub no_pin: bool,
    /// Window size (q5, q7, q8, q12) and session gap (q11), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_ms)]
    pub window_size: i64,
    /// Slide of q5's windows, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = parse_ms)]
    pub window_slide: i64,
    /// Leave rows due in the first DURATION of an open-loop run out of the latency figures
    /// (e.g. 10s: q5's first windows build their state), and run that much longer.
    #[arg(long, default_value = "0s", value_parser = parse_warmup)]
    pub warmup: i64,
    /// Print the result as JSON instead of a table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print the result as CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
    /// Write charts (SVG and PNG) into this directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Take checkpoints into this directory, and resume from the latest complete one in it.
    /// (q12's results depend on the wall clock, so a resumed q12 differs from an
    /// uninterrupted run even exactly-once.)
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints, e.g. 200ms or 1s.
    #[arg(long, default_value = "1s", value_parser = parse_ms)]
    pub checkpoint_interval: i64,
    /// exactly-once, at-least-once or at-most-once (with --checkpoint-dir).
    #[arg(long, default_value = "exactly-once", value_parser = parse_guarantee)]
    pub guarantee: Guarantee,
    /// Do not measure where the time goes (busy, idle and backpressured time per operator
    /// and shard: `Config::profile(false)`); records and watermarks are still counted.
    #[arg(long)]
    pub no_profile: bool,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

fn parse_guarantee(s: &str) -> Result<Guarantee, String> {
    s.parse()
        .map_err(|e: rill_runtime::checkpoint::UnknownGuarantee| e.to_string())
}

impl Common {
    pub(super) fn config(&self) -> Config {
        let mut config = Config::default()
            .pin(!self.no_pin)
            .profile(!self.no_profile);
        if let Some(n) = self.shards {
            config = config.shards(n as usize);
        }
        config
    }

    /// Checks the checkpoint flags.
    pub(super) fn check_checkpoints(&self, explicit_guarantee: bool) -> Result<(), String> {
        if self.checkpoint_dir.is_none() && explicit_guarantee {
            return Err("--guarantee needs --checkpoint-dir".into());
        }
        Ok(())
    }

    pub(super) fn checkpointing(&self) -> Option<Checkpointing> {
        self.checkpoint_dir.as_ref().map(|dir| {
            Checkpointing::new(dir.clone())
                .interval(Some(Duration::from_millis(self.checkpoint_interval as u64)))
                .guarantee(self.guarantee)
        })
    }

    pub(super) fn spec(&self, events: u64, rate: Option<u64>, output: Option<PathBuf>) -> RunSpec {
        RunSpec {
            checkpointing: self.checkpointing(),
            output_dir: None,
            fresh_checkpoints: false,
            stop_on_signal: false,
            query: self.query,
            events,
            generator: GeneratorConfig {
                seed: self.seed,
                out_of_order_group: self.out_of_order,
                ..GeneratorConfig::default()
            },
            rate,
            output,
            window_ms: self.window_size,
            slide_ms: self.window_slide,
            warmup: Duration::from_millis(self.warmup as u64),
            config: self.config(),
            kafka: None,
            kafka_sink: None,
            metrics_addr: None,
        }
    }
}

/// `rill-bench run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub(super) common: Common,
    /// Events to process (default: rate x seconds open loop, 10 million unthrottled).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) events: Option<u64>,
    /// Open loop at this many events/s over all shards (e.g. 2M); default: unthrottled.
    #[arg(long, value_parser = parse_rate)]
    pub(super) rate: Option<u64>,
    /// Length of an open-loop run when --events is not given [default: 10]. With --kafka
    /// (not --until-end): measure latency for this long, then stop, as --kafka-latency.
    #[arg(long)]
    pub(super) seconds: Option<f64>,
    /// Write the result rows as CSV (with a header) into this file.
    #[arg(long)]
    pub(super) output: Option<PathBuf>,
    /// Write the result rows through the transactional file sink into this directory:
    /// part-<epoch>-<shard>.csv files, each with the header, committed per checkpoint.
    #[arg(long)]
    pub(super) output_dir: Option<PathBuf>,
    /// Read the events from Kafka at these brokers (`host:port,...`) instead of generating
    /// them (written there by `generate --kafka`); needs --topic.
    #[arg(long, requires = "topic", conflicts_with_all = ["events", "rate"])]
    pub(super) kafka: Option<String>,
    /// The topic --kafka reads.
    #[arg(long, requires = "kafka")]
    pub(super) topic: Option<String>,
    /// Join this consumer group: processes with the same group share the topic's
    /// partitions (docs/scale-out.md).
    #[arg(long, requires = "kafka")]
    pub(super) group: Option<String>,
    /// Read the topic up to its end offsets seen at the start, then finish.
    #[arg(long, requires = "kafka")]
    pub(super) until_end: bool,
    /// Measure latency open loop for --seconds (after --warmup), then stop: from each
    /// record's Kafka timestamp, its intended send time as `generate --kafka --rate`
    /// writes it (start the run first), to the sink. (`--kafka B --topic T --seconds S`
    /// does the same.)
    #[arg(long, requires = "kafka", conflicts_with = "until_end")]
    pub(super) kafka_latency: bool,
    /// With --kafka-latency (or --kafka and --seconds): measure from when the source
    /// polled each record instead of its intended time, i.e. the part of the latency rill
    /// adds (windows: from when the source polled the first record at or past the
    /// window's end).
    #[arg(long, requires = "kafka")]
    pub(super) from_poll: bool,
    /// Write the result rows (CSV lines, no header) to this topic on the brokers of
    /// --kafka (created with 4 partitions if missing): exactly once through Kafka
    /// transactions with `--guarantee exactly-once` and --checkpoint-dir (for
    /// read_committed readers), else at least once.
    #[arg(long, requires = "kafka", conflicts_with_all = ["output", "output_dir"])]
    pub(super) kafka_sink: Option<String>,
    /// A librdkafka consumer property for the Kafka source, KEY=VALUE (repeatable), e.g.
    /// fetch.wait.max.ms=10.
    #[arg(long = "kafka-property", requires = "kafka", value_parser = parse_property)]
    pub(super) kafka_properties: Vec<(String, String)>,
    /// Fail once the Kafka brokers have been unreachable for this long (e.g. 30s).
    #[arg(long, default_value = "60s", value_parser = parse_ms, requires = "kafka")]
    pub(super) kafka_timeout: i64,
    /// Print where the time went: per operator and shard its records in and out, busy time
    /// and watermark lag; per shard its busy, idle, backpressured and checkpoint time
    /// (`--json` always has them, as `operators` and `shards`).
    #[arg(long, conflicts_with = "no_profile")]
    pub(super) profile: bool,
    /// Serve live metrics in the Prometheus text format at http://HOST:PORT/metrics while
    /// the job runs (docs/metrics.md), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "HOST:PORT")]
    pub(super) metrics_addr: Option<String>,
}

impl RunArgs {
    /// How long an open-loop run (or a latency run from Kafka) lasts, in seconds.
    pub(super) fn seconds(&self) -> f64 {
        self.seconds.unwrap_or(10.0)
    }

    /// Whether the run measures latency from Kafka: --kafka-latency, or --seconds with
    /// --kafka (an unbounded read; with --until-end, --seconds means nothing).
    fn kafka_latency(&self) -> bool {
        self.kafka_latency || (self.seconds.is_some() && !self.until_end)
    }

    /// The Kafka input the flags ask for.
    pub(super) fn kafka_input(&self) -> Option<KafkaInput> {
        Some(KafkaInput {
            brokers: self.kafka.clone()?,
            topic: self.topic.clone()?,
            group: self.group.clone(),
            until_end: self.until_end,
            broker_timeout: Duration::from_millis(self.kafka_timeout as u64),
            properties: self.kafka_properties.clone(),
            latency_for: self
                .kafka_latency()
                .then(|| Duration::from_secs_f64(self.seconds())),
            latency_from_poll: self.from_poll,
        })
    }
}

/// `rill-bench sweep`.
#[derive(Args, Clone, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub(super) common: Common,
    /// Seconds per trial.
    #[arg(long, default_value_t = 10.0)]
    pub(super) seconds: f64,
    /// First rate tried (events/s).
    #[arg(long, default_value = "500k", value_parser = parse_rate)]
    pub(super) start_rate: u64,
    /// Highest rate tried (events/s).
    #[arg(long, default_value = "256M", value_parser = parse_rate)]
    pub(super) max_rate: u64,
    /// Bisection steps after doubling.
    #[arg(long, default_value_t = 4)]
    pub(super) bisections: u32,
}
