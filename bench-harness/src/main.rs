//! `rill-bench`: rill's benchmark driver. With no arguments it runs the default
//! benchmark: NEXMark q0, q5 and q7 on every core, each unthrottled (maximum throughput)
//! and then open loop at 1M events/s (latency).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rill_bench::latency::fmt_ns;
use rill_bench::synthetic::{run_exchange, Workload};
use rill_runtime::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rill-bench",
    about = "Benchmarks for the rill streaming runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Synthetic 40-byte records through one key-hash exchange.
    Exchange(ExchangeArgs),
    /// Replays an event log through a keyed windowed aggregation on a simulated clock.
    Replay(rill_bench::replay::cli::ReplayArgs),
    /// Writes NEXMark events as CSV, one per line.
    Generate(rill_bench::nexmark::generate::GenerateArgs),
    /// Runs one NEXMark query, unthrottled or open loop at a target rate.
    Run(Box<rill_bench::nexmark::cli::RunArgs>),
    /// Round trips through a job embedded in a host program (input handle in, subscription
    /// out), against two plain channel hops, open loop.
    Embed(rill_bench::embed::EmbedArgs),
    /// Finds a NEXMark query's maximum sustainable rate and its latency at 25-100 % of it.
    Sweep(rill_bench::nexmark::cli::SweepArgs),
}

#[derive(clap::Args, Clone)]
struct ExchangeArgs {
    /// Shards (default: every core).
    #[arg(long)]
    shards: Option<usize>,
    /// Events for the throughput run.
    #[arg(long, default_value_t = 50_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Open-loop rate for the latency run, events/s over all shards (0: skip it).
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Run shards unpinned.
    #[arg(long)]
    no_pin: bool,
}

fn exchange(args: &ExchangeArgs) -> Result<(), rill_runtime::Error> {
    let mut config = Config::default().pin(!args.no_pin);
    if let Some(n) = args.shards {
        config = config.shards(n);
    }
    let shards = config.shard_count();
    println!(
        "key-hash exchange, 40-byte records, {} keys, {shards} shard(s){}",
        args.keys,
        if args.no_pin {
            ", unpinned"
        } else {
            ", pinned"
        }
    );
    let max = run_exchange(
        config.clone(),
        &Workload {
            events: args.events,
            keys: args.keys,
            rate: None,
        },
    )?;
    println!(
        "  throughput (unthrottled): {:>8.1} M events/s  ({} events in {:.3?})",
        max.throughput / 1e6,
        args.events,
        max.report.elapsed
    );
    let backpressured: std::time::Duration =
        max.report.channels.iter().map(|c| c.backpressured).sum();
    println!("  time producers waited for credit: {backpressured:.3?}");
    if args.rate > 0 {
        let events = args.rate * args.seconds;
        let run = run_exchange(
            config,
            &Workload {
                events,
                keys: args.keys,
                rate: Some(args.rate),
            },
        )?;
        let l = run.latency.expect("open-loop runs measure latency");
        println!(
            "  latency at {:.2} M events/s open loop ({} samples): p50 {}  p95 {}  p99 {}  p99.9 {}  max {}",
            args.rate as f64 / 1e6,
            l.count,
            fmt_ns(l.p50),
            fmt_ns(l.p95),
            fmt_ns(l.p99),
            fmt_ns(l.p999),
            fmt_ns(l.max)
        );
        println!(
            "  generator {} its schedule (ended {:.3?} late)",
            if run.behind.as_millis() > 10 {
                "fell behind"
            } else {
                "kept"
            },
            run.behind
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    // The library's logs (job start and end, restores, damaged checkpoints, failures;
    // checkpoints at debug) on stderr; RUST_LOG sets the level (default: warnings).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => return rill_bench::nexmark::cli::default_benchmark(),
        Some(Command::Run(args)) => return rill_bench::nexmark::cli::run_command(&args),
        Some(Command::Sweep(args)) => return rill_bench::nexmark::cli::sweep_command(&args),
        Some(Command::Embed(args)) => return rill_bench::embed::run(&args),
        Some(Command::Exchange(args)) => exchange(&args),
        Some(Command::Replay(args)) => return rill_bench::replay::cli::run(&args),
        Some(Command::Generate(args)) => return rill_bench::nexmark::generate::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
