//! The commands themselves: `run`, `sweep` and the default benchmark, each a short
//! sequence of steps that print what they found and fail with a message on stderr.

use std::process::ExitCode;
use std::time::Duration;

use rill_runtime::checkpoint::Guarantee;
use rill_runtime::JobEnd;

use super::flags::{Common, RunArgs, SweepArgs};
use super::plots::{plot_run, plot_sweep};
use super::progress::run_with_progress;
use super::report::TABLE_HEADER;
use super::report::{
    checkpoint_line, dropped_line, fmt_rate, rill_part_line, table_row, Level, RunSummary,
    SweepReport,
};
use crate::csv_format::record_line;
use crate::nexmark::queries::Query;
use crate::nexmark::run::{RunError, RunOutcome};
use crate::nexmark::sweep::{judge, search, SweepPlan, Verdict};
use crate::nexmark::GeneratorConfig;

/// Prints `e` as the command's error; the exit code to return.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("rill-bench: {e}");
    ExitCode::FAILURE
}

/// Whether `--guarantee` was given on the command line (its default is not enough to ask
/// for checkpoints).
fn explicit_guarantee() -> bool {
    std::env::args().any(|a| a.starts_with("--guarantee"))
}

fn check_seconds(seconds: f64) -> Result<(), ExitCode> {
    match seconds > 0.0 && seconds.is_finite() {
        true => Ok(()),
        false => Err(fail("--seconds must be positive")),
    }
}

/// `rill-bench run`: one query, unthrottled or open loop.
pub fn run_command(args: &RunArgs) -> ExitCode {
    match run_once(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn run_once(args: &RunArgs) -> Result<(), ExitCode> {
    check_seconds(args.seconds())?;
    let c = &args.common;
    let input = args.kafka_input();
    if args.from_poll && !input.as_ref().is_some_and(|k| k.latency_for.is_some()) {
        return Err(fail(
            "--from-poll needs --kafka-latency or --seconds (a latency run from Kafka)",
        ));
    }
    c.check_checkpoints(explicit_guarantee()).map_err(fail)?;
    let events = args.events.unwrap_or_else(|| match args.rate {
        Some(rate) => {
            let seconds = args.seconds() + c.warmup as f64 / 1e3;
            ((rate as f64 * seconds) as u64).max(1)
        }
        None => 10_000_000,
    });
    let mut spec = c.spec(events, args.rate, args.output.clone());
    spec.output_dir = args.output_dir.clone();
    spec.kafka = input;
    spec.kafka_sink = args.kafka_sink.clone();
    spec.metrics_addr = args.metrics_addr.clone();
    spec.stop_on_signal = true;
    let outcome = run_with_progress(&spec, c.quiet, &c.query.to_string()).map_err(fail)?;
    match outcome.report.end {
        JobEnd::Finished | JobEnd::Running => {}
        JobEnd::Savepoint(id) => {
            eprintln!("rill-bench: stopped at savepoint {id}; the same command resumes from it")
        }
        JobEnd::Cancelled => {
            eprintln!("rill-bench: cancelled; its output is incomplete");
            return Err(ExitCode::from(130));
        }
    }
    if outcome.bad_records > 0 {
        eprintln!(
            "rill-bench: {} Kafka records were not NEXMark events (skipped)",
            outcome.bad_records
        );
    }
    let scheduled = args
        .rate
        .map(|r| Duration::from_secs_f64(events as f64 / r as f64));
    let verdict = scheduled.map(|s| judge(&outcome, s));
    print_run(c, &outcome, verdict.as_ref())?;
    if args.profile && !c.json && !c.csv {
        print!("{}", outcome.report.profile());
    }
    if let Some(dir) = &c.plot {
        plot_run(dir, &outcome).map_err(fail)?;
    }
    Ok(())
}

/// One run's result as JSON, CSV or a table with the checkpoint and verdict lines.
fn print_run(c: &Common, outcome: &RunOutcome, verdict: Option<&Verdict>) -> Result<(), ExitCode> {
    let summary = RunSummary::of(outcome, verdict);
    if c.json {
        println!("{}", serde_json::to_string_pretty(&summary).map_err(fail)?);
    } else if c.csv {
        println!("{}", record_line(RunSummary::CSV_HEADER));
        println!("{}", record_line(summary.csv_fields()));
    } else {
        println!("{TABLE_HEADER}");
        println!("{}", table_row(outcome));
        if let Some(line) = rill_part_line(outcome) {
            println!("{line}");
        }
        if let Some(line) = dropped_line(outcome) {
            println!("{line}");
        }
        if let Some(c) = &outcome.report.checkpoints {
            println!("{}", checkpoint_line(c));
        }
        if let Some(v) = verdict {
            let judged = if v.sustainable {
                "sustainable"
            } else {
                "NOT sustainable"
            };
            println!("{judged}: {}", v.reason);
        }
    }
    Ok(())
}

/// What a sweep measured: the rates tried while searching, the maximum sustainable rate
/// found (0 if none), and the runs at 25-100 % of it.
struct SweepFound {
    max: u64,
    trials: Vec<(RunOutcome, Verdict)>,
    levels: Vec<(u32, RunOutcome, Verdict)>,
}

/// `rill-bench sweep`: the maximum sustainable rate and latency at 25-100 % of it.
pub fn sweep_command(args: &SweepArgs) -> ExitCode {
    match sweep(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn sweep(args: &SweepArgs) -> Result<(), ExitCode> {
    check_sweep_flags(args)?;
    let text = !args.common.json && !args.common.csv;
    let (max, trials) = search_max_rate(args, text).map_err(fail)?;
    let levels = measure_levels(args, max, text).map_err(fail)?;
    let found = SweepFound {
        max,
        trials,
        levels,
    };
    print_sweep(args, &found)?;
    if let Some(dir) = &args.common.plot {
        let query = args.common.query.to_string();
        plot_sweep(dir, &query, &found.trials, &found.levels).map_err(fail)?;
    }
    Ok(())
}

fn check_sweep_flags(args: &SweepArgs) -> Result<(), ExitCode> {
    check_seconds(args.seconds)?;
    if args.start_rate > args.max_rate {
        return Err(fail("--start-rate is above --max-rate"));
    }
    args.common
        .check_checkpoints(explicit_guarantee())
        .map_err(fail)
}

/// One open-loop trial of `args.seconds` (plus the warm-up) at `rate`, judged.
fn trial(args: &SweepArgs, rate: u64, label: &str) -> Result<(RunOutcome, Verdict), RunError> {
    let c = &args.common;
    let seconds = args.seconds + c.warmup as f64 / 1e3;
    let events = ((rate as f64 * seconds) as u64).max(1);
    let mut spec = c.spec(events, Some(rate), None);
    // Every trial starts from scratch, not from the previous trial's checkpoints.
    spec.fresh_checkpoints = true;
    let o = run_with_progress(&spec, c.quiet, label)?;
    let v = judge(&o, Duration::from_secs_f64(seconds));
    Ok((o, v))
}

/// Doubling from `--start-rate`, then bisecting: the maximum sustainable rate and every
/// trial on the way (printed as they finish, in text mode).
fn search_max_rate(
    args: &SweepArgs,
    text: bool,
) -> Result<(u64, Vec<(RunOutcome, Verdict)>), RunError> {
    let c = &args.common;
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
    search(&plan, |rate| {
        let label = format!("{} @ {}", c.query, fmt_rate(rate as f64));
        let (o, v) = trial(args, rate, &label)?;
        if text {
            println!("{}  {}", table_row(&o), v.reason);
        }
        Ok::<_, RunError>((v.sustainable, (o, v)))
    })
}

/// Trials at 25, 50, 75 and 100 % of `max` (none if no rate was sustainable).
fn measure_levels(
    args: &SweepArgs,
    max: u64,
    text: bool,
) -> Result<Vec<(u32, RunOutcome, Verdict)>, RunError> {
    let c = &args.common;
    if max == 0 {
        if text {
            println!(
                "no sustainable rate at or above {} events/s",
                fmt_rate(args.start_rate as f64)
            );
        }
        return Ok(Vec::new());
    }
    if text {
        println!(
            "maximum sustainable rate: {} events/s",
            fmt_rate(max as f64)
        );
        println!("latency at 25/50/75/100 % of it:");
        println!("{TABLE_HEADER}  verdict");
    }
    let mut levels = Vec::new();
    for pct in [25u32, 50, 75, 100] {
        let rate = (max as u128 * pct as u128 / 100).max(1) as u64;
        let (o, v) = trial(args, rate, &format!("{} @ {pct}%", c.query))?;
        if text {
            println!("{}  {}", table_row(&o), v.reason);
        }
        levels.push((pct, o, v));
    }
    Ok(levels)
}

/// The sweep as JSON or CSV (text mode printed as it went).
fn print_sweep(args: &SweepArgs, found: &SweepFound) -> Result<(), ExitCode> {
    let c = &args.common;
    let summary = |o, v| RunSummary::of(o, Some(v));
    if c.json {
        let report = SweepReport {
            query: c.query.to_string(),
            shards: found.trials.first().map_or(0, |(o, _)| o.shards),
            seconds_per_trial: args.seconds,
            max_sustainable_rate: found.max,
            trials: found.trials.iter().map(|(o, v)| summary(o, v)).collect(),
            levels: found
                .levels
                .iter()
                .map(|(p, o, v)| Level {
                    percent: *p,
                    run: summary(o, v),
                })
                .collect(),
        };
        println!("{}", serde_json::to_string_pretty(&report).map_err(fail)?);
    } else if c.csv {
        let header = ["phase", "percent"]
            .into_iter()
            .chain(RunSummary::CSV_HEADER);
        println!("{}", record_line(header));
        for (o, v) in &found.trials {
            let phase = [String::from("search"), String::new()];
            println!(
                "{}",
                record_line(phase.into_iter().chain(summary(o, v).csv_fields()))
            );
        }
        for (p, o, v) in &found.levels {
            let phase = [String::from("level"), p.to_string()];
            println!(
                "{}",
                record_line(phase.into_iter().chain(summary(o, v).csv_fields()))
            );
        }
    }
    Ok(())
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
            no_profile: false,
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
