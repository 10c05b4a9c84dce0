//! `rill-bench embed`: round trips through a job embedded in a host program, against the
//! floor of two plain channel hops, in one run.
//!
//! One host thread sends requests open loop (request `i` is due at `t0 + i / rate`; its
//! latency counts from that intended time, so a stall delays every request behind it and
//! nothing hides coordinated omission) through an [`InputHandle`] into a keyed job: the
//! input places each request on the shard that owns its key, an operator adds the
//! request's value to its key's total (keyed state) and answers with it, and another host
//! thread receives the answers from a [`Subscription`](rill_runtime::Subscription).
//!
//! The floor: the same requests from the same kind of sender through a
//! `crossbeam-channel` to a worker thread that does the same per-key update and answers
//! through a second channel to a receiving thread; worker and receiver block in `recv`.
//! That is what any host program pays for two cross-thread hops on this machine.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rill_runtime::state::ValueState;
use rill_runtime::{
    Config, Dataflow, InputHandle, OpResult, Operator, OperatorState, Output, Runtime,
};
use serde::Serialize;

use crate::latency::{fmt_ns, new_histogram, LatencySummary};

/// `rill-bench embed` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct EmbedArgs {
    /// Requests per second, open loop.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Seconds of measured traffic (each of the two runs).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Traffic before the measurement, left out of the figures.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Shards of the embedded job.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Run the shards unpinned.
    #[arg(long)]
    pub no_pin: bool,
    /// How long an idle shard spins before it parks (default: the runtime's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub spin: Option<Duration>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A request: add `value` to `key`'s total. `due` is its intended send time, in ns after
/// the run's start.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The key.
    pub key: u64,
    /// What to add.
    pub value: u64,
    /// Intended send time, ns after the start.
    pub due: u64,
}

/// The answer: the key's new total.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// The key.
    pub key: u64,
    /// Its total after the request.
    pub total: u64,
    /// The request's intended send time.
    pub due: u64,
}

/// What one side of the comparison measured.
#[derive(Debug, Clone)]
pub struct RoundTrips {
    /// Round-trip latency from the intended send time to the answer's receipt.
    pub latency: LatencySummary,
    /// Answers received per second during the measurement.
    pub throughput: f64,
    /// Requests sent (warm-up included) and answers received.
    pub sent: u64,
    /// Answers received.
    pub answered: u64,
    /// How far behind its schedule the sender was at its last request.
    pub sender_behind: Duration,
    /// The sum of every answer's total (both sides must agree: the same work was done).
    pub checksum: u64,
}

/// The whole run's figures, as `--json` prints them.
#[derive(Debug, Serialize)]
pub struct EmbedReport {
    /// Requests per second asked for.
    pub rate: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Shards of the embedded job.
    pub shards: usize,
    /// Answers per second through rill.
    pub throughput: f64,
    /// Round trip through rill, µs.
    pub p50_us: f64,
    /// 95th percentile, µs.
    pub p95_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest, µs.
    pub max_us: f64,
    /// Answers per second through the floor.
    pub floor_throughput: f64,
    /// The floor's round trip, µs.
    pub floor_p50_us: f64,
    /// 95th percentile, µs.
    pub floor_p95_us: f64,
    /// 99th percentile, µs.
    pub floor_p99_us: f64,
    /// 99.9th percentile, µs.
    pub floor_p999_us: f64,
    /// Largest, µs.
    pub floor_max_us: f64,
    /// rill's sender's lag behind schedule at its end, ms.
    pub sender_behind_ms: f64,
    /// The floor's sender's lag, ms.
    pub floor_sender_behind_ms: f64,
}

/// The requests of a run, in order.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    rate: u64,
    keys: u64,
    /// Requests before the measurement.
    warmup: u64,
    total: u64,
}

impl Schedule {
    fn of(args: &EmbedArgs) -> Schedule {
        let warmup = (args.rate as f64 * args.warmup.as_secs_f64()) as u64;
        let measured = (args.rate as f64 * args.seconds).max(1.0) as u64;
        Schedule {
            rate: args.rate.max(1),
            keys: args.keys.max(1),
            warmup,
            total: warmup + measured,
        }
    }

    fn request(&self, i: u64) -> Request {
        Request {
            key: i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % self.keys,
            value: i % 100,
            due: (i as u128 * 1_000_000_000 / self.rate as u128) as u64,
        }
    }

    /// Sends every request at its time through `send`; returns how late the last one was.
    fn drive(&self, t0: Instant, mut send: impl FnMut(Request)) -> Duration {
        lower_timer_slack();
        let mut behind = Duration::ZERO;
        for i in 0..self.total {
            let r = self.request(i);
            let due = Duration::from_nanos(r.due);
            let now = t0.elapsed();
            if now < due {
                // Sleep, never spin: on a small machine a spinning sender would take a
                // core from the threads it measures.
                std::thread::sleep(due - now);
            }
            send(r);
            behind = t0.elapsed().saturating_sub(due);
        }
        behind
    }
}

/// Sleeps of the sending thread end within a few µs of their time (Linux's default timer
/// slack is 50 µs).
fn lower_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer and changes only this thread's
    // timer slack; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Receives answers, recording each one's latency once the warm-up is over.
struct Receipts {
    histogram: Histogram<u64>,
    answered: u64,
    checksum: u64,
    first_measured: Option<Instant>,
    last: Option<Instant>,
    warmup_until: u64,
}

impl Receipts {
    fn new(schedule: &Schedule) -> Receipts {
        Receipts {
            histogram: new_histogram(),
            answered: 0,
            checksum: 0,
            first_measured: None,
            last: None,
            warmup_until: schedule.request(schedule.warmup).due,
        }
    }

    #[inline]
    fn take(&mut self, t0: Instant, a: Answer) {
        let now = Instant::now();
        self.checksum = self.checksum.wrapping_add(a.total);
        if a.due < self.warmup_until {
            return;
        }
        let latency = (now - t0).as_nanos() as u64;
        self.histogram
            .saturating_record(latency.saturating_sub(a.due).max(1));
        self.answered += 1;
        self.first_measured.get_or_insert(now);
        self.last = Some(now);
    }

    fn finish(self, sent: u64, sender_behind: Duration, schedule: &Schedule) -> RoundTrips {
        // Throughput over the measured span: from the first measured request's due time.
        let span = match (self.first_measured, self.last) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let measured = schedule.total - schedule.warmup;
        let throughput = if span > 0.0 {
            self.answered as f64 / span.max(measured as f64 / schedule.rate as f64)
        } else {
            0.0
        };
        RoundTrips {
            latency: LatencySummary::from_histogram(&self.histogram),
            throughput,
            sent,
            answered: self.answered,
            sender_behind,
            checksum: self.checksum,
        }
    }
}

/// Answers each request with its key's new total, from keyed state.
struct Totals {
    totals: ValueState<u64, u64>,
}

impl Operator<Request> for Totals {
    type Out = Output<Answer>;
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<Request>, out: &mut Output<Answer>) -> OpResult {
        for r in batch.drain(..) {
            let total = self.totals.update(
                r.key,
                || 0,
                |t| {
                    *t += r.value;
                    *t
                },
            );
            out.give(Answer {
                key: r.key,
                total,
                due: r.due,
            });
        }
        Ok(())
    }
}

/// Round trips through an embedded rill job.
pub fn through_rill(args: &EmbedArgs) -> Result<RoundTrips, rill_runtime::Error> {
    let schedule = Schedule::of(args);
    let mut config = Config::default().shards(args.shards).pin(!args.no_pin);
    if let Some(spin) = args.spin {
        config = config.spin_before_park(spin);
    }
    let mut df = Dataflow::new();
    let (requests, input): (_, InputHandle<Request>) =
        df.keyed_input("requests", |r: &Request| r.key);
    let mut answers = requests
        .unary("totals", |ctx| Totals {
            totals: ctx.value_state("totals"),
        })
        .subscribe("answers", 64 * 1024);
    let job = Runtime::new(config)?.spawn(df)?;
    let t0 = Instant::now();
    let receiver = std::thread::spawn(move || {
        let mut receipts = Receipts::new(&schedule);
        while let Some(a) = answers.recv() {
            receipts.take(t0, a);
        }
        receipts
    });
    let mut sent = 0u64;
    let behind = schedule.drive(t0, |r| {
        if input.send(r).is_ok() {
            sent += 1;
        }
    });
    drop(input);
    let receipts = receiver.join().expect("the receiving thread");
    job.join()?;
    Ok(receipts.finish(sent, behind, &schedule))
}

/// Round trips through two `crossbeam-channel` hops and a worker thread.
pub fn through_channels(args: &EmbedArgs) -> RoundTrips {
    let schedule = Schedule::of(args);
    let (to_worker, requests) = crossbeam_channel::bounded::<Request>(64 * 1024);
    let (to_host, answers) = crossbeam_channel::bounded::<Answer>(64 * 1024);
    let worker = std::thread::spawn(move || {
        let mut totals: HashMap<u64, u64> = HashMap::new();
        while let Ok(r) = requests.recv() {
            let t = totals.entry(r.key).or_insert(0);
            *t += r.value;
            let answer = Answer {
                key: r.key,
                total: *t,
                due: r.due,
            };
            if to_host.send(answer).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    let receiver = std::thread::spawn(move || {
        let mut receipts = Receipts::new(&schedule);
        while let Ok(a) = answers.recv() {
            receipts.take(t0, a);
        }
        receipts
    });
    let mut sent = 0u64;
    let behind = schedule.drive(t0, |r| {
        if to_worker.send(r).is_ok() {
            sent += 1;
        }
    });
    drop(to_worker);
    worker.join().expect("the worker thread");
    let receipts = receiver.join().expect("the receiving thread");
    receipts.finish(sent, behind, &schedule)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// Both sides' figures as the JSON report.
pub fn report(args: &EmbedArgs, rill: &RoundTrips, floor: &RoundTrips) -> EmbedReport {
    EmbedReport {
        rate: args.rate,
        seconds: args.seconds,
        shards: args.shards,
        throughput: rill.throughput,
        p50_us: us(rill.latency.p50),
        p95_us: us(rill.latency.p95),
        p99_us: us(rill.latency.p99),
        p999_us: us(rill.latency.p999),
        max_us: us(rill.latency.max),
        floor_throughput: floor.throughput,
        floor_p50_us: us(floor.latency.p50),
        floor_p95_us: us(floor.latency.p95),
        floor_p99_us: us(floor.latency.p99),
        floor_p999_us: us(floor.latency.p999),
        floor_max_us: us(floor.latency.max),
        sender_behind_ms: rill.sender_behind.as_secs_f64() * 1e3,
        floor_sender_behind_ms: floor.sender_behind.as_secs_f64() * 1e3,
    }
}

/// `rill-bench embed`.
pub fn run(args: &EmbedArgs) -> ExitCode {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) || args.rate == 0 || args.shards == 0 {
        eprintln!("rill-bench: --seconds, --rate and --shards must be positive");
        return ExitCode::FAILURE;
    }
    let rill = match through_rill(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rill-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let floor = through_channels(args);
    if rill.checksum != floor.checksum || rill.answered != floor.answered {
        eprintln!(
            "rill-bench: the two runs disagree: rill answered {} (checksum {}), the floor {} \
             (checksum {})",
            rill.answered, rill.checksum, floor.answered, floor.checksum
        );
        return ExitCode::FAILURE;
    }
    let r = report(args, &rill, &floor);
    if args.json {
        match serde_json::to_string_pretty(&r) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("rill-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!(
            "embedded round trips, {} requests/s open loop for {} s, {} shard(s), {} keys",
            args.rate, args.seconds, args.shards, args.keys
        );
        for (name, t) in [("rill", &rill), ("floor", &floor)] {
            let l = &t.latency;
            println!(
                "  {name:<5} {:>9.0} answers/s  p50 {}  p95 {}  p99 {}  p99.9 {}  max {}  \
                 (sender {:.1?} behind at the end)",
                t.throughput,
                fmt_ns(l.p50),
                fmt_ns(l.p95),
                fmt_ns(l.p99),
                fmt_ns(l.p999),
                fmt_ns(l.max),
                t.sender_behind
            );
        }
        println!(
            "  rill / floor: p50 {:.2}x  p99 {:.2}x",
            rill.latency.p50 as f64 / floor.latency.p50.max(1) as f64,
            rill.latency.p99 as f64 / floor.latency.p99.max(1) as f64
        );
    }
    ExitCode::SUCCESS
}
