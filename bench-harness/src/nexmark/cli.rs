//! `rill-bench run`, `rill-bench sweep` and the default benchmark: flags, progress bar and
//! reports (terminal table, JSON, CSV, charts).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rill_runtime::checkpoint::{CheckpointStats, Checkpointing, Guarantee};
use rill_runtime::Config;
use serde::Serialize;

use super::queries::Query;
use super::run::{run, Live, RunError, RunOutcome, RunSpec};
use super::sweep::{judge, search, SweepPlan, Verdict};
use super::GeneratorConfig;
use crate::csv_format::record_line;
use crate::duration::parse_millis;
use crate::latency::{fmt_ns, new_histogram, LatencySummary};
use crate::plot::{self, RatePoint};

/// Parses a rate: `250000`, `250k`, `1.5M`, `2G` (events/s).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a rate (e.g. 500000, 500k, 2.5M)"))?;
    let rate = v * mult;
    if !(1.0..=1e12).contains(&rate) {
        return Err(format!("rate '{s}' must be between 1 and 10^12 events/s"));
    }
    Ok(rate.round() as u64)
}

/// The longest duration a flag takes, in ms (about 31 years).
const MAX_FLAG_MS: i64 = 1_000_000_000_000;

/// Parses a duration flag in ms, in the [shared grammar](crate::duration) (`200ms`, `10s`,
/// `1.5s`, `2m`, `1h 30m`, or a plain number of ms): at least 1 ms.
pub fn parse_ms(s: &str) -> Result<i64, String> {
    match parse_millis(s) {
        Ok(0) => Err(format!("duration '{s}' must be at least 1 ms")),
        Ok(ms) if ms > MAX_FLAG_MS => Err(format!("duration '{s}' must be at most 10^12 ms")),
        Ok(ms) => Ok(ms),
        Err(e) => Err(e.to_string()),
    }
}

/// [`parse_ms`], or zero (no warm-up).
fn parse_warmup(s: &str) -> Result<i64, String> {
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
}

fn parse_guarantee(s: &str) -> Result<Guarantee, String> {
    s.parse()
}

impl Common {
    fn config(&self) -> Config {
        let mut config = Config::default().pin(!self.no_pin);
        if let Some(n) = self.shards {
            config = config.shards(n as usize);
        }
        config
    }

    /// Checks the checkpoint flags.
    fn check_checkpoints(&self, explicit_guarantee: bool) -> Result<(), String> {
        if self.checkpoint_dir.is_none() && explicit_guarantee {
            return Err("--guarantee needs --checkpoint-dir".into());
        }
        Ok(())
    }

    fn checkpointing(&self) -> Option<Checkpointing> {
        self.checkpoint_dir.as_ref().map(|dir| {
            Checkpointing::new(dir.clone())
                .interval(Some(Duration::from_millis(self.checkpoint_interval as u64)))
                .guarantee(self.guarantee)
        })
    }

    fn spec(&self, events: u64, rate: Option<u64>, output: Option<PathBuf>) -> RunSpec {
        RunSpec {
            checkpointing: self.checkpointing(),
            output_dir: None,
            fresh_checkpoints: false,
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
        }
    }
}

/// `rill-bench run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Events to process (default: rate x seconds open loop, 10 million unthrottled).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    events: Option<u64>,
    /// Open loop at this many events/s over all shards (e.g. 2M); default: unthrottled.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// Length of an open-loop run when --events is not given.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Write the result rows as CSV (with a header) into this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write the result rows through the transactional file sink into this directory:
    /// part-<epoch>-<shard>.csv files, each with the header, committed per checkpoint.
    #[arg(long)]
    output_dir: Option<PathBuf>,
}

/// `rill-bench sweep`.
#[derive(Args, Clone, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    common: Common,
    /// Seconds per trial.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// First rate tried (events/s).
    #[arg(long, default_value = "500k", value_parser = parse_rate)]
    start_rate: u64,
    /// Highest rate tried (events/s).
    #[arg(long, default_value = "256M", value_parser = parse_rate)]
    max_rate: u64,
    /// Bisection steps after doubling.
    #[arg(long, default_value_t = 4)]
    bisections: u32,
}

/// One run, as reported in JSON and CSV.
#[derive(Serialize, Clone, Debug)]
pub struct RunSummary {
    /// Query name.
    pub query: String,
    /// Shards.
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
    /// The checkpoint the run restored from.
    pub restored_from: Option<u64>,
    /// Time to read and validate it, ms.
    pub restore_load_ms: Option<f64>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

impl RunSummary {
    fn of(o: &RunOutcome, verdict: Option<&Verdict>) -> Self {
        let l = o.latency();
        RunSummary {
            query: o.query.to_string(),
            shards: o.shards,
            events: o.events,
            rate: o.rate,
            elapsed_s: o.elapsed.as_secs_f64(),
            throughput: o.throughput,
            rows: o.rows,
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
            end_lag_ms: o.end_lag.as_secs_f64() * 1e3,
            sustainable: verdict.map(|v| v.sustainable),
            verdict: verdict.map(|v| v.reason.clone()),
            checkpoints: None,
            checkpoint_p50_ms: None,
            checkpoint_max_ms: None,
            checkpoint_bytes: None,
            alignment_max_ms: None,
            restored_from: None,
            restore_load_ms: None,
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
        }
        self.restored_from = c.restored_from;
        self.restore_load_ms = c.restored_from.map(|_| ms(c.restore_load));
        self
    }

    /// The columns of [`csv_fields`](RunSummary::csv_fields).
    const CSV_HEADER: [&'static str; 15] = [
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
    fn csv_fields(&self) -> [String; 15] {
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

fn fmt_rate(r: f64) -> String {
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
const TABLE_HEADER: &str = "query shards      mode   events/s       rows  latency      p50      p95      p99    p99.9      max   end lag";

fn table_row(o: &RunOutcome) -> String {
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

/// Runs one spec with a progress bar on long interactive runs.
fn run_with_progress(spec: &RunSpec, quiet: bool, label: &str) -> Result<RunOutcome, RunError> {
    let live = Live::default();
    let expected = spec
        .rate
        .map(|r| spec.events as f64 / r as f64)
        .unwrap_or(spec.events as f64 / 5e6);
    let show = !quiet && std::io::stderr().is_terminal() && expected >= 2.0;
    let bar = if show {
        let bar = ProgressBar::new(spec.events);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut last = (started, 0u64);
    let outcome = run(spec, &live, || {
        let Some(bar) = &bar else { return };
        let emitted = live.sources.emitted.load(Ordering::Relaxed);
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64();
        if dt < 0.25 {
            return;
        }
        let rate = (emitted - last.1) as f64 / dt;
        last = (now, emitted);
        let p95 = live
            .latency
            .lock()
            .ok()
            .and_then(|h| {
                let h = h.as_ref()?;
                let mut all = new_histogram();
                for p in h.iter() {
                    all.add(p).ok()?;
                }
                (!all.is_empty()).then(|| all.value_at_quantile(0.95))
            })
            .map_or(String::new(), |p| format!(", p95 {}", fmt_ns(p)));
        bar.set_position(emitted);
        bar.set_message(format!("{} events/s{p95}", fmt_rate(rate)));
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("rill-bench: {e}");
    ExitCode::FAILURE
}

fn write_plots(
    dir: &PathBuf,
    stem: &str,
    series: &[(String, &hdrhistogram::Histogram<u64>)],
    points: &[RatePoint],
    title: &str,
) -> Result<Vec<PathBuf>, plot::PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| plot::PlotError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    if !series.is_empty() {
        files.extend(plot::latency_cdf(
            series,
            &format!("{title}: latency distribution"),
            dir,
            &format!("{stem}-cdf"),
        )?);
    }
    if !points.is_empty() {
        files.extend(plot::latency_vs_rate(
            points,
            &format!("{title}: latency against rate"),
            dir,
            &format!("{stem}-rate"),
        )?);
    }
    Ok(files)
}

/// A line on the checkpoints of a run.
fn checkpoint_line(c: &CheckpointStats) -> String {
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
    let align = c
        .completed
        .iter()
        .map(|r| r.alignment)
        .max()
        .unwrap_or_default();
    line.push_str(&format!(
        "checkpoints: {n} completed, duration p50 {} max {}, {:.1} MiB average, alignment max {}",
        fmt_ns(durations[n / 2]),
        fmt_ns(durations[n - 1]),
        bytes as f64 / n as f64 / (1 << 20) as f64,
        fmt_ns(align.as_nanos() as u64)
    ));
    line
}

/// `rill-bench run`: one query, unthrottled or open loop.
pub fn run_command(args: &RunArgs) -> ExitCode {
    if args.common.shards.is_none() && args.output.is_some() {
        // Fine: results do not depend on the shard count.
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        return fail("--seconds must be positive");
    }
    let events = args.events.unwrap_or_else(|| match args.rate {
        Some(rate) => {
            let seconds = args.seconds + args.common.warmup as f64 / 1e3;
            ((rate as f64 * seconds) as u64).max(1)
        }
        None => 10_000_000,
    });
    let explicit_guarantee = std::env::args().any(|a| a.starts_with("--guarantee"));
    if let Err(e) = args.common.check_checkpoints(explicit_guarantee) {
        return fail(e);
    }
    let mut spec = args.common.spec(events, args.rate, args.output.clone());
    spec.output_dir = args.output_dir.clone();
    let outcome = match run_with_progress(&spec, args.common.quiet, &args.common.query.to_string())
    {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let scheduled = args
        .rate
        .map(|r| Duration::from_secs_f64(events as f64 / r as f64));
    let verdict = scheduled.map(|s| judge(&outcome, s));
    let summary = RunSummary::of(&outcome, verdict.as_ref());
    if args.common.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(e),
        }
    } else if args.common.csv {
        println!("{}", record_line(RunSummary::CSV_HEADER));
        println!("{}", record_line(summary.csv_fields()));
    } else {
        println!("{TABLE_HEADER}");
        println!("{}", table_row(&outcome));
        if let Some(c) = &outcome.report.checkpoints {
            println!("{}", checkpoint_line(c));
        }
        if let Some(v) = &verdict {
            println!(
                "{}: {}",
                if v.sustainable {
                    "sustainable"
                } else {
                    "NOT sustainable"
                },
                v.reason
            );
        }
    }
    if let Some(dir) = &args.common.plot {
        let h = outcome.latency_histogram();
        let series: Vec<(String, &hdrhistogram::Histogram<u64>)> = h
            .iter()
            .filter(|h| !h.is_empty())
            .map(|h| (fmt_rate(outcome.rate.unwrap_or(0) as f64) + " events/s", h))
            .collect();
        if series.is_empty() {
            eprintln!("rill-bench: no latency samples to plot (use --rate for an open-loop run)");
        } else {
            match write_plots(
                dir,
                &args.common.query.to_string(),
                &series,
                &[],
                &args.common.query.to_string(),
            ) {
                Ok(files) => files
                    .iter()
                    .for_each(|f| eprintln!("wrote {}", f.display())),
                Err(e) => return fail(e),
            }
        }
    }
    ExitCode::SUCCESS
}

/// What a sweep found, for JSON.
#[derive(Serialize)]
struct SweepReport {
    query: String,
    shards: usize,
    seconds_per_trial: f64,
    max_sustainable_rate: u64,
    trials: Vec<RunSummary>,
    levels: Vec<Level>,
}

#[derive(Serialize)]
struct Level {
    percent: u32,
    run: RunSummary,
}

/// `rill-bench sweep`: the maximum sustainable rate and latency at 25-100 % of it.
pub fn sweep_command(args: &SweepArgs) -> ExitCode {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        return fail("--seconds must be positive");
    }
    if args.start_rate > args.max_rate {
        return fail("--start-rate is above --max-rate");
    }
    let c = &args.common;
    let explicit_guarantee = std::env::args().any(|a| a.starts_with("--guarantee"));
    if let Err(e) = c.check_checkpoints(explicit_guarantee) {
        return fail(e);
    }
    let text = !c.json && !c.csv;
    let trial = |rate: u64, label: &str| -> Result<(RunOutcome, Verdict), RunError> {
        let seconds = args.seconds + c.warmup as f64 / 1e3;
        let events = ((rate as f64 * seconds) as u64).max(1);
        let mut spec = c.spec(events, Some(rate), None);
        // Every trial starts from scratch, not from the previous trial's checkpoints.
        spec.fresh_checkpoints = true;
        let o = run_with_progress(&spec, c.quiet, label)?;
        let v = judge(&o, Duration::from_secs_f64(seconds));
        Ok((o, v))
    };
    if text {
        println!(
            "sweep {} ({} s per trial): doubling from {}, then {} bisections",
            c.query,
            args.seconds,
            fmt_rate(args.start_rate as f64),
            args.bisections
        );
        println!("{TABLE_HEADER}  verdict");
    }
    let plan = SweepPlan {
        start_rate: args.start_rate,
        max_rate: args.max_rate,
        bisections: args.bisections,
    };
    let searched = search(&plan, |rate| {
        let (o, v) = trial(rate, &format!("{} @ {}", c.query, fmt_rate(rate as f64)))?;
        if text {
            println!("{}  {}", table_row(&o), v.reason);
        }
        Ok::<_, RunError>((v.sustainable, (o, v)))
    });
    let (max, trials) = match searched {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut levels = Vec::new();
    if max > 0 {
        if text {
            println!(
                "maximum sustainable rate: {} events/s",
                fmt_rate(max as f64)
            );
            println!("latency at 25/50/75/100 % of it:");
            println!("{TABLE_HEADER}  verdict");
        }
        for pct in [25u32, 50, 75, 100] {
            let rate = (max as u128 * pct as u128 / 100).max(1) as u64;
            match trial(rate, &format!("{} @ {pct}%", c.query)) {
                Ok((o, v)) => {
                    if text {
                        println!("{}  {}", table_row(&o), v.reason);
                    }
                    levels.push((pct, o, v));
                }
                Err(e) => return fail(e),
            }
        }
    } else if text {
        println!(
            "no sustainable rate at or above {} events/s",
            fmt_rate(args.start_rate as f64)
        );
    }
    let shards = trials
        .first()
        .map_or(0, |(o, _): &(RunOutcome, Verdict)| o.shards);
    if c.json {
        let report = SweepReport {
            query: c.query.to_string(),
            shards,
            seconds_per_trial: args.seconds,
            max_sustainable_rate: max,
            trials: trials
                .iter()
                .map(|(o, v)| RunSummary::of(o, Some(v)))
                .collect(),
            levels: levels
                .iter()
                .map(|(p, o, v)| Level {
                    percent: *p,
                    run: RunSummary::of(o, Some(v)),
                })
                .collect(),
        };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(e),
        }
    } else if c.csv {
        let header = ["phase", "percent"]
            .into_iter()
            .chain(RunSummary::CSV_HEADER);
        println!("{}", record_line(header));
        for (o, v) in &trials {
            let fields = RunSummary::of(o, Some(v)).csv_fields();
            println!(
                "{}",
                record_line(["search", ""].map(String::from).into_iter().chain(fields))
            );
        }
        for (p, o, v) in &levels {
            let fields = RunSummary::of(o, Some(v)).csv_fields();
            println!(
                "{}",
                record_line(
                    [String::from("level"), p.to_string()]
                        .into_iter()
                        .chain(fields)
                )
            );
        }
    }
    if let Some(dir) = &c.plot {
        let mut points: Vec<RatePoint> = trials
            .iter()
            .map(|(o, v)| (o, v))
            .chain(levels.iter().map(|(_, o, v)| (o, v)))
            .filter_map(|(o, v)| {
                let l = o.latency()?;
                Some(RatePoint {
                    rate: o.rate? as f64,
                    p50_ns: l.p50,
                    p95_ns: l.p95,
                    p99_ns: l.p99,
                    p999_ns: l.p999,
                    sustainable: v.sustainable,
                })
            })
            .collect();
        points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let hists: Vec<(u32, hdrhistogram::Histogram<u64>)> = levels
            .iter()
            .filter_map(|(p, o, _)| Some((*p, o.latency_histogram().filter(|h| !h.is_empty())?)))
            .collect();
        let series: Vec<(String, &hdrhistogram::Histogram<u64>)> = hists
            .iter()
            .map(|(p, h)| (format!("{p} % of max"), h))
            .collect();
        match write_plots(
            dir,
            &c.query.to_string(),
            &series,
            &points,
            &c.query.to_string(),
        ) {
            Ok(files) => files
                .iter()
                .for_each(|f| eprintln!("wrote {}", f.display())),
            Err(e) => return fail(e),
        }
    }
    ExitCode::SUCCESS
}

/// The default benchmark (no arguments): q0, q5 and q7, each unthrottled for throughput
/// and then open loop at 1M events/s for latency, on every core. The open-loop runs last
/// long enough for windows to close: q5's slide is 2 s, q7's windows 10 s.
pub fn default_benchmark() -> ExitCode {
    // (query, events unthrottled, seconds open loop)
    let plan: [(Query, u64, u64); 3] = [
        (Query::Q0, 20_000_000, 3),
        (Query::Q5, 10_000_000, 6),
        (Query::Q7, 10_000_000, 11),
    ];
    let rate = 1_000_000;
    println!(
        "NEXMark q0, q5 and q7 on every core: unthrottled (mode max), then open loop at {} events/s",
        fmt_rate(rate as f64)
    );
    println!("(latency: event = sink time - the event's intended time; window = sink time - the moment the window could close)");
    println!("{TABLE_HEADER}");
    for (query, events, seconds) in plan {
        let common = Common {
            query,
            seed: GeneratorConfig::default().seed,
            out_of_order: 1,
            shards: None,
            no_pin: false,
            window_size: 10_000,
            window_slide: 2_000,
            warmup: 0,
            json: false,
            csv: false,
            plot: None,
            quiet: false,
            checkpoint_dir: None,
            checkpoint_interval: 1000,
            guarantee: Guarantee::ExactlyOnce,
        };
        for (events, rate) in [(events, None), (rate * seconds, Some(rate))] {
            let spec = common.spec(events, rate, None);
            match run_with_progress(&spec, false, &query.to_string()) {
                Ok(o) => println!("{}", table_row(&o)),
                Err(e) => return fail(e),
            }
        }
    }
    ExitCode::SUCCESS
}
