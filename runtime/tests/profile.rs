//! Where the time goes: an operator that spins a known time per record is charged that
//! time (and its upstream, which calls it, is not), a job held back by a slow sink shows
//! backpressure on the shard upstream of it, and each shard's busy, idle, backpressured
//! and checkpoint time add up to its wall time.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{map, runtime, runtime_with};
use rill_runtime::{
    shard_of_key, Config, Dataflow, JobReport, OpResult, Operator, OperatorState, Output,
    Partitioning, Sink,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Busy-waits `per_record` for each record, then passes it on; adds the time it spun to
/// `spun` (on a shared machine the thread may be descheduled mid-spin, so the time a spin
/// takes is measured, not assumed).
struct Spin {
    per_record: Duration,
    spun: Arc<Mutex<Duration>>,
}

impl Spin {
    fn new(per_record: Duration) -> Self {
        Spin {
            per_record,
            spun: Arc::default(),
        }
    }
}

impl Operator<u64> for Spin {
    type Out = Output<u64>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Output<u64>) -> OpResult {
        let mut spun = Duration::ZERO;
        for r in batch.drain(..) {
            let start = Instant::now();
            while start.elapsed() < self.per_record {
                std::hint::spin_loop();
            }
            spun += start.elapsed();
            out.give(r);
        }
        *self.spun.lock().unwrap() += spun;
        Ok(())
    }
}

/// Every shard's busy + idle + backpressured + checkpoint time is its wall time, within
/// `tolerance`.
fn assert_shards_add_up(report: &JobReport, tolerance: f64) {
    assert!(report.profiled);
    assert!(!report.shards.is_empty());
    for s in &report.shards {
        let (wall, sum) = (s.wall.as_secs_f64(), s.accounted().as_secs_f64());
        assert!(wall > 0.0, "shard {} has no wall time: {s:?}", s.shard);
        assert!(
            (sum - wall).abs() <= tolerance * wall,
            "shard {}: busy + idle + backpressured + checkpoint = {sum:.6} s, wall {wall:.6} s: {s:?}",
            s.shard
        );
    }
}

fn busy(report: &JobReport, operator: &str) -> Duration {
    report.operator(operator).unwrap().busy.iter().sum()
}

#[test]
fn an_operator_that_spins_shows_that_busy_time_and_only_it() {
    const RECORDS: u64 = 2_000;
    const PER_RECORD: Duration = Duration::from_micros(50);
    let mut df = Dataflow::new();
    let numbers = df.vec_source("numbers", (0..RECORDS).collect());
    let spun = Arc::new(Mutex::new(Duration::ZERO));
    let s = spun.clone();
    let spinning = numbers.unary("spin", move |_| Spin {
        spun: s.clone(),
        ..Spin::new(PER_RECORD)
    });
    map(&spinning, "double", |n: u64| n * 2).discard("sink");
    let report = runtime(1).run(df).unwrap();
    println!("{}", report.profile());

    let spin = busy(&report, "spin");
    let expected = PER_RECORD * RECORDS as u32;
    let measured = *spun.lock().unwrap();
    assert!(measured >= expected);
    // The time it spun, plus its own bookkeeping and handing records on (a few µs per
    // batch): within 5 % and 2 ms.
    assert!(
        spin >= measured,
        "spin busy {spin:?} < the {measured:?} it spun"
    );
    assert!(
        spin <= measured + measured / 20 + Duration::from_millis(2),
        "spin busy {spin:?} >> the {measured:?} it spun"
    );
    // The source calls `spin` and `spin` calls `double` in one chain of calls: each is
    // charged its own time only (on a quiet machine well under 1 ms here; busy time is
    // wall-clock time, so a callback descheduled on a loaded machine is charged more, but
    // never the spin's: without the subtraction `numbers` is charged all of it).
    for other in ["numbers", "double", "sink"] {
        let t = busy(&report, other);
        assert!(
            t < measured / 3,
            "{other} charged {t:?}, spin's time leaked into it"
        );
    }
    let spin_op = report.operator("spin").unwrap();
    assert_eq!(spin_op.records, vec![RECORDS]);
    assert_eq!(spin_op.records_out, vec![RECORDS]);
    assert_eq!(
        report.operator("numbers").unwrap().records_out,
        vec![RECORDS]
    );
    assert_eq!(report.operator("sink").unwrap().records_out, vec![0]);
    // The spinning is the shard's busy time too.
    assert!(report.shards[0].busy >= expected);
    assert_shards_add_up(&report, 0.03);
}

/// Sleeps per batch on one shard: the slow sink.
struct SlowSink {
    slow: bool,
}

impl Sink<u64> for SlowSink {
    fn on_batch(&mut self, batch: &mut Vec<u64>) -> OpResult {
        if self.slow && !batch.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
        batch.clear();
        Ok(())
    }
}

#[test]
fn a_slow_sink_shows_backpressure_on_the_shard_upstream() {
    const RECORDS: u64 = 60_000;
    // Every record goes to shard 1, whose sink is slow; only shard 0 has a source.
    let key = (0u64..).find(|k| shard_of_key(k, 2) == 1).unwrap();
    let mut df = Dataflow::new();
    df.iter_source("numbers", |s| {
        let n = if s.index == 0 { RECORDS } else { 0 };
        0..n
    })
    .exchange(Partitioning::by_key(move |_: &u64| key))
    .sink("slow", |ctx| SlowSink {
        slow: ctx.index == 1,
    });
    let config = Config::default().shards(2).pin(false).credits(2);
    let report = runtime_with(config).run(df).unwrap();
    println!("{}", report.profile());

    let (upstream, downstream) = (&report.shards[0], &report.shards[1]);
    // Shard 0's source spent much of the run held back by the exchange's credit (most of
    // it on a quiet machine: 115 of 124 ms; less when other processes take the cores).
    assert!(
        upstream.backpressured.as_secs_f64() > 0.3 * upstream.wall.as_secs_f64(),
        "shard 0 backpressured only {:?} of {:?}",
        upstream.backpressured,
        upstream.wall
    );
    // Shard 1 spent its time in the slow sink, and was not itself held back.
    let sink = report.operator("slow").unwrap();
    assert!(sink.busy[1] > sink.busy[0] * 10);
    assert!(sink.busy[1].as_secs_f64() > 0.3 * downstream.wall.as_secs_f64());
    assert!(downstream.backpressured < downstream.wall / 10);
    // The channel into shard 1 saw the same.
    let into_1: Duration = (report.channels.iter())
        .filter(|c| c.from == 0 && c.to == 1)
        .map(|c| c.backpressured)
        .sum();
    assert!(
        into_1 > upstream.wall / 4,
        "channel 0 -> 1 backpressured {into_1:?}"
    );
    assert_eq!(sink.total(), RECORDS);
    assert_shards_add_up(&report, 0.03);
}

#[test]
fn exchanges_are_charged_their_sending_and_receiving_side() {
    let mut df = Dataflow::new();
    df.iter_source("numbers", |_| 0u64..200_000)
        .exchange_named("spread", Partitioning::by_key(|n: &u64| *n))
        .discard("sink");
    let report = runtime(2).run(df).unwrap();
    println!("{}", report.profile());
    let spread = report.operator("spread").unwrap();
    assert!(spread.busy.iter().all(|b| !b.is_zero()), "{spread:?}");
    assert_eq!(spread.total(), 400_000);
    assert_eq!(spread.records_out.iter().sum::<u64>(), 400_000);
    assert_shards_add_up(&report, 0.03);
}

#[test]
fn a_live_snapshot_adds_up_too() {
    let mut df = Dataflow::new();
    let (numbers, input) = df.input::<u64>("numbers");
    let spinning = numbers.unary("spin", |_| Spin::new(Duration::from_micros(20)));
    spinning.discard("sink");
    let job = runtime(1).spawn(df).unwrap();
    for n in 0..2_000 {
        input.send(n).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while job.metrics().operator("sink").unwrap().total() < 2_000 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    // A live snapshot counts the turns completed so far; its wall time is theirs.
    let live = job.metrics();
    assert_shards_add_up(&live, 0.01);
    std::thread::sleep(Duration::from_millis(20));
    let later = job.metrics();
    assert!(later.shards[0].wall > live.shards[0].wall);
    assert!(later.shards[0].idle > live.shards[0].idle);
    assert!(busy(&live, "spin") >= Duration::from_micros(20) * 1_000);
    drop(input);
    let report = job.join().unwrap();
    assert_shards_add_up(&report, 0.03);
}

#[test]
fn profiling_can_be_switched_off() {
    let mut df = Dataflow::new();
    let numbers = df.vec_source("numbers", (0..1_000u64).collect());
    numbers
        .unary("spin", |_| Spin::new(Duration::from_micros(10)))
        .discard("sink");
    let config = Config::default().shards(1).pin(false).profile(false);
    let report = runtime_with(config).run(df).unwrap();
    assert!(!report.profiled);
    assert!(report
        .operators
        .iter()
        .all(|o| o.busy.iter().all(|b| b.is_zero())));
    assert!(report.shards.iter().all(|s| s.accounted().is_zero()));
    // Counting goes on.
    assert_eq!(report.operator("spin").unwrap().records_out, vec![1_000]);
}

#[test]
fn watermark_lag_is_measured_from_the_given_clock() {
    let mut df = Dataflow::new();
    let (numbers, input) = df.input::<u64>("numbers");
    numbers.discard("sink");
    // Event time due now: always 10 s; the input's watermark goes to 7 s.
    let config = Config::default()
        .shards(1)
        .pin(false)
        .event_time_now(|| 10_000);
    let job = runtime_with(config).spawn(df).unwrap();
    assert_eq!(
        job.metrics().operator("sink").unwrap().watermark_lag_ms,
        vec![None]
    );
    input.advance_watermark(7_000).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lag = job.metrics().operator("sink").unwrap().watermark_lag_ms[0];
        if lag == Some(3_000) {
            break;
        }
        assert!(Instant::now() < deadline, "lag {lag:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(input);
    let report = job.join().unwrap();
    // The input ended: its watermark is the final one, and there is no lag to speak of.
    assert_eq!(
        report.operator("sink").unwrap().watermark_lag_ms,
        vec![None]
    );
}

#[test]
fn polling_with_nothing_to_do_is_idle_time() {
    let mut df = Dataflow::new();
    let (numbers, input) = df.input::<u64>("numbers");
    numbers
        .exchange(Partitioning::by_key(|n: &u64| *n))
        .discard("sink");
    // Shards that never park: they poll their heads all the time.
    let config = Config::default()
        .shards(2)
        .pin(false)
        .spin_before_park(Duration::from_secs(3600));
    let job = runtime_with(config).spawn(df).unwrap();
    // Both shards' loops ran 200 ms (a shard's executor may take a while to start on a
    // loaded machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let live = job.metrics();
        if live
            .shards
            .iter()
            .all(|s| s.wall >= Duration::from_millis(200))
        {
            break live;
        }
        assert!(Instant::now() < deadline, "{:?}", live.shards);
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(input);
    job.join().unwrap();
    // Waiting, not busy (a shard may wait for credit while the other one is descheduled
    // on a loaded machine: its processing-time stamps fill the channel).
    for s in &live.shards {
        assert!(s.idle + s.backpressured > s.wall * 8 / 10, "{s:?}");
        assert!(s.busy < s.wall / 10, "{s:?}");
    }
    // The source had nothing due at every poll (it was charged 10 ms in 300 ms when its
    // idle polls count, 0 when they do not); the others handle only the processing time
    // the source stamps every millisecond.
    let source: Duration = live.operator("numbers").unwrap().busy.iter().sum();
    assert!(
        source < Duration::from_micros(500),
        "the idle source busy {source:?}"
    );
    for op in &live.operators {
        let busy: Duration = op.busy.iter().sum();
        assert!(
            busy < Duration::from_millis(30),
            "{} busy {busy:?} doing nothing",
            op.name
        );
    }
}

/// Counts records per key in keyed state, so that checkpoints have state to write.
struct CountPerKey {
    counts: rill_runtime::state::ValueState<u64, u64>,
}

impl Operator<u64> for CountPerKey {
    type Out = Output<u64>;
    // Its table is registered with the shard's state registry, which checkpoints it.
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Output<u64>) -> OpResult {
        for n in batch.drain(..) {
            let key = n % 50_000;
            let c = self.counts.get(&key).unwrap_or(0) + 1;
            self.counts.set(key, c);
            out.give(c);
        }
        Ok(())
    }
}

#[test]
fn checkpoint_work_is_the_shards_checkpoint_time() {
    let dir = std::env::temp_dir().join(format!("rill-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut df = Dataflow::new();
    df.iter_source("numbers", |_| 0u64..400_000)
        .exchange(Partitioning::by_key(|n: &u64| n % 50_000))
        .unary("count", |ctx| CountPerKey {
            counts: ctx.value_state("counts"),
        })
        .discard("sink");
    let checkpointing = rill_runtime::checkpoint::Checkpointing::new(&dir)
        .interval(Some(Duration::from_millis(20)));
    let config = Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(checkpointing);
    let report = runtime_with(config).run(df).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", report.profile());
    let completed = report.checkpoints.as_ref().unwrap().completed.len();
    assert!(completed > 0);
    assert!(
        report.shards.iter().all(|s| !s.checkpoint.is_zero()),
        "{:?}",
        report.shards
    );
    assert_shards_add_up(&report, 0.03);
    let text = rill_runtime::prometheus::encode(
        &report,
        "j",
        rill_runtime::prometheus::Format::Prometheus,
    );
    let line = format!(r#"rill_checkpoint_duration_seconds_count{{job="j"}} {completed}"#);
    assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
}
