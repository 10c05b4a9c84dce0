//! In-band control: watermarks stay in order with the data across exchanges, bounded
//! inputs end with the final watermark, and failures end the job with a clear error.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{map, runtime, Rec};
use rill_runtime::{
    shard_of_key, Config, Dataflow, Error, Failure, OpResult, Operator, OperatorState, Output,
    Partitioning, Runtime, Source, SourceOutput, SourceStatus, Timestamp, MAX_WATERMARK,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Emits records with ascending event times (`seq` doubles as the time) and, after every
/// batch, a watermark one past the last time emitted.
struct Ascending {
    shard: u32,
    next: u64,
    end: u64,
}

impl Source<Rec> for Ascending {
    fn poll(&mut self, out: &mut SourceOutput<Rec>, max: usize) -> Result<SourceStatus, Failure> {
        if self.next == self.end {
            return Ok(SourceStatus::Done);
        }
        let stop = (self.next + max.min(37) as u64).min(self.end);
        for seq in self.next..stop {
            out.give(Rec {
                src: self.shard,
                seq,
                key: seq % 13,
            });
        }
        self.next = stop;
        out.watermark(stop as Timestamp)?;
        Ok(SourceStatus::Emitted)
    }
}

/// Checks every record against the current input watermark and counts what it saw.
struct WatermarkCheck {
    watermark: Timestamp,
    violations: Arc<AtomicU64>,
    final_seen: Arc<AtomicU64>,
    ended: Arc<AtomicU64>,
}

impl Operator<Rec> for WatermarkCheck {
    type Out = Output<Rec>;
    const STATE: OperatorState = OperatorState::NotCheckpointed;
    fn on_batch(&mut self, batch: &mut Vec<Rec>, out: &mut Output<Rec>) -> OpResult {
        for r in batch.drain(..) {
            if (r.seq as Timestamp) < self.watermark {
                self.violations.fetch_add(1, Ordering::Relaxed);
            }
            out.give(r);
        }
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<Rec>) -> OpResult {
        assert!(watermark > self.watermark, "watermarks only move forward");
        self.watermark = watermark;
        if watermark == MAX_WATERMARK {
            self.final_seen.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
    fn on_end(&mut self, _out: &mut Output<Rec>) -> OpResult {
        assert_eq!(
            self.watermark, MAX_WATERMARK,
            "end comes after the final watermark"
        );
        self.ended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn watermarks_travel_in_order_with_the_data() {
    for shards in [1, 2, 4] {
        let violations = Arc::new(AtomicU64::new(0));
        let final_seen = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicU64::new(0));
        let mut df = Dataflow::new();
        let (v, f, e) = (violations.clone(), final_seen.clone(), ended.clone());
        let out = df
            .source("ascending", |s| Ascending {
                shard: s.index as u32,
                next: 0,
                end: 3_000 + s.index as u64 * 500,
            })
            .exchange(Partitioning::by_key(|r: &Rec| r.key))
            .unary("check", move |_| WatermarkCheck {
                watermark: Timestamp::MIN,
                violations: v.clone(),
                final_seen: f.clone(),
                ended: e.clone(),
            })
            .exchange(Partitioning::Rebalance)
            .collect("out");
        runtime(shards).run(df).expect("job succeeds");
        assert_eq!(violations.load(Ordering::Relaxed), 0);
        assert_eq!(final_seen.load(Ordering::Relaxed), shards as u64);
        assert_eq!(ended.load(Ordering::Relaxed), shards as u64);
        let expect: usize = (0..shards).map(|s| 3_000 + s * 500).sum();
        assert_eq!(out.take().len(), expect);
    }
}

#[test]
fn a_panicking_user_function_names_its_operator_and_shard() {
    let mut df = Dataflow::new();
    let s = df
        .vec_source("numbers", (0u64..10_000).collect())
        .exchange(Partitioning::by_key(|n: &u64| *n));
    map(&s, "explode", |n: u64| {
        assert!(n != 777, "record 777 is cursed");
        n
    })
    .discard("sink");
    let err = runtime(2).run(df).expect_err("the job fails");
    match err {
        Error::OperatorPanicked {
            operator,
            shard,
            message,
        } => {
            assert_eq!(operator, "explode");
            assert_eq!(shard, shard_of_key(&777u64, 2));
            assert!(message.contains("cursed"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn a_factory_that_panics_on_one_shard_fails_the_job_with_checkpoints_on() {
    let dir = std::env::temp_dir().join(format!("rill-factory-panic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut df = Dataflow::new();
    df.vec_source("numbers", (0u64..1_000).collect())
        .unary("picky", |ctx| {
            assert!(ctx.index != 1, "shard 1 is not welcome");
            Fallible
        })
        .discard("sink");
    let config = Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(rill_runtime::checkpoint::Checkpointing::new(&dir));
    let err = Runtime::new(config).unwrap().run(df).expect_err("fails");
    match err {
        Error::OperatorPanicked {
            operator,
            shard,
            message,
        } => {
            assert_eq!((operator.as_str(), shard), ("picky", 1));
            assert!(message.contains("not welcome"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

struct Fallible;
impl Operator<u64> for Fallible {
    type Out = Output<u64>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Output<u64>) -> OpResult {
        for n in batch.drain(..) {
            if n == 4_242 {
                return Err(Failure::new(format!("cannot handle {n}")));
            }
            out.give(n);
        }
        Ok(())
    }
}

#[test]
fn an_error_from_a_user_function_ends_the_job() {
    let mut df = Dataflow::new();
    df.vec_source("numbers", (0u64..100_000).collect())
        .exchange(Partitioning::Rebalance)
        .unary("validate", |_| Fallible)
        .exchange(Partitioning::by_key(|n: &u64| *n))
        .discard("sink");
    let err = runtime(4).run(df).expect_err("the job fails");
    match err {
        Error::OperatorFailed {
            operator, message, ..
        } => {
            assert_eq!(operator, "validate");
            assert_eq!(message, "cannot handle 4242");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn a_failing_source_ends_the_job() {
    struct Broken;
    impl Source<u64> for Broken {
        fn poll(&mut self, _: &mut SourceOutput<u64>, _: usize) -> Result<SourceStatus, Failure> {
            Err(Failure::new("disk on fire"))
        }
    }
    let mut df = Dataflow::new();
    df.source("broken", |_| Broken)
        .exchange(Partitioning::Broadcast)
        .discard("sink");
    let err = runtime(2).run(df).expect_err("the job fails");
    assert!(
        matches!(&err, Error::OperatorFailed { operator, .. } if operator == "broken"),
        "{err:?}"
    );
    assert!(err.to_string().contains("disk on fire"));
}

#[test]
fn bad_configuration_is_rejected_with_a_clear_error() {
    let cores = rill_runtime::available_cores();
    let err = Runtime::new(Config::default().shards(cores + 1)).expect_err("too many");
    assert!(
        matches!(err, Error::TooManyShards { requested, available } if requested == cores + 1 && available == cores)
    );
    assert!(err.to_string().contains("pin(false)"));
    // Without pinning, more shards than cores are fine.
    Runtime::new(Config::default().shards(cores + 1).pin(false)).expect("unpinned");
    for (config, field) in [
        (Config::default().shards(0), "shards"),
        (Config::default().credits(0), "credits"),
        (Config::default().batch_bytes(0), "batch_bytes"),
        (Config::default().batch_records(0), "batch_records"),
    ] {
        let err = Runtime::new(config).expect_err("invalid");
        assert!(
            matches!(err, Error::Config { field: f, .. } if f == field),
            "{err}"
        );
    }
    let err = runtime(1).run(Dataflow::new()).expect_err("empty dataflow");
    assert!(matches!(err, Error::Graph { .. }));
}

#[test]
fn pinned_shards_run() {
    let shards = rill_runtime::available_cores().min(2);
    let masks = Arc::new(std::sync::Mutex::new(vec![Vec::new(); shards]));
    let seen = masks.clone();
    let mut df = Dataflow::new();
    let out = df
        .iter_source("numbers", move |shard| {
            // The factory runs on the shard's own thread: read its CPU mask there.
            seen.lock().unwrap()[shard.index] = allowed_cpus();
            (0u64..1_000).filter(move |n| *n as usize % shard.shards == shard.index)
        })
        .exchange(Partitioning::by_key(|n: &u64| *n))
        .collect("out");
    Runtime::new(Config::default().shards(shards))
        .expect("pinned runtime")
        .run(df)
        .expect("job succeeds");
    assert_eq!(out.take().len(), 1_000);
    let masks = masks.lock().unwrap().clone();
    for (shard, mask) in masks.iter().enumerate() {
        assert_eq!(mask.len(), 1, "shard {shard} may run on CPUs {mask:?}");
    }
    let distinct: std::collections::BTreeSet<usize> = masks.iter().map(|m| m[0]).collect();
    assert_eq!(distinct.len(), shards, "shards share a CPU: {masks:?}");
}

/// The CPUs the calling thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data for which all-zero bytes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is the calling
    // thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity failed");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the capacity of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

#[test]
fn no_hang_when_a_consumer_dies_while_producers_are_blocked() {
    // Shard of key 0 dies while the others keep sending to it with little credit.
    let stop = Arc::new(AtomicBool::new(false));
    let mut df = Dataflow::new();
    let s = df
        .iter_source("gen", |_| 0u64..200_000)
        .exchange(Partitioning::by_key(|n: &u64| n % 4));
    let st = stop.clone();
    map(&s, "dies", move |n: u64| {
        if n == 150_000 {
            st.store(true, Ordering::Relaxed);
            panic!("gone");
        }
        n
    })
    .discard("sink");
    let rt = Runtime::new(Config::default().shards(4).pin(false).credits(1)).unwrap();
    let err = rt.run(df).expect_err("the job fails");
    assert!(matches!(err, Error::OperatorPanicked { .. }), "{err:?}");
    assert!(stop.load(Ordering::Relaxed));
}

/// Sums what it sees in a field it does not checkpoint, and says so.
struct Unsaved(u64);
impl Operator<u64> for Unsaved {
    type Out = Output<u64>;
    const STATE: OperatorState = OperatorState::NotCheckpointed;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Output<u64>) -> OpResult {
        for n in batch.drain(..) {
            self.0 += n;
            out.give(self.0);
        }
        Ok(())
    }
}

fn running_sums() -> Dataflow {
    let mut df = Dataflow::new();
    df.vec_source("numbers", (0u64..1_000).collect())
        .unary("running sum", |_| Unsaved(0))
        .discard("sink");
    df
}

#[test]
fn an_operator_with_state_it_does_not_checkpoint_refuses_a_checkpointed_job_and_runs_without() {
    let dir = std::env::temp_dir().join(format!("rill-unsaved-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(rill_runtime::checkpoint::Checkpointing::new(&dir));
    let err = Runtime::new(config)
        .unwrap()
        .run(running_sums())
        .expect_err("refused at start");
    match err {
        Error::OperatorBuild {
            operator, message, ..
        } => {
            assert_eq!(operator, "running sum");
            assert!(message.contains("does not checkpoint"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    let report = runtime(2)
        .run(running_sums())
        .expect("runs without checkpoints");
    let sums: u64 = report
        .operators
        .iter()
        .filter(|o| o.name == "running sum")
        .flat_map(|o| o.records.iter())
        .sum();
    assert_eq!(sums, 1_000);
}
