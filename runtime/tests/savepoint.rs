//! Stopping with a savepoint and resuming: the savepoint is complete and self-contained,
//! nothing after its barrier is processed, and a job resumed from it on 1, 2 or 3 shards,
//! also with a stateless operator inserted, gives what an uninterrupted run gives.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::copy_tree;
use rill_runtime::checkpoint::{find_latest, Checkpointing, SplitPosition};
use rill_runtime::state::ValueState;
use rill_runtime::{
    Collected, Config, Dataflow, Error, Failure, JobEnd, OpResult, Operator, OperatorState, Output,
    Partitioning, Runtime, Source, SourceOutput, SourceStatus,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The input: `0..END`, in `SPLITS` splits (split `s` emits `s, s + SPLITS, ...`).
const END: u64 = 24_000;
const SPLITS: u32 = 6;

/// Numbers below `allowed` may be emitted.
#[derive(Default)]
struct Gate {
    allowed: AtomicU64,
    emitted: AtomicU64,
}

/// The splits a shard owns (split `s` on shard `s % shards`), emitted in turn.
struct Numbers {
    splits: Vec<SplitPosition>,
    gate: Arc<Gate>,
}

impl Source<u64> for Numbers {
    fn poll(&mut self, out: &mut SourceOutput<u64>, max: usize) -> Result<SourceStatus, Failure> {
        let upto = self.gate.allowed.load(Ordering::SeqCst).min(END);
        let mut emitted = 0;
        for split in &mut self.splits {
            while emitted < max && split.position < upto {
                out.give(split.position);
                split.position += u64::from(SPLITS);
                emitted += 1;
            }
        }
        self.gate
            .emitted
            .fetch_add(emitted as u64, Ordering::SeqCst);
        Ok(if self.splits.iter().all(|s| s.position >= END) {
            SourceStatus::Done
        } else if emitted == 0 {
            SourceStatus::Idle
        } else {
            SourceStatus::Emitted
        })
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(self.splits.clone())
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        self.splits = splits;
        Ok(())
    }
}

/// Counts numbers per key (`n % 1000`) in keyed state; emits every count at the end.
struct Count {
    counts: ValueState<u64, u64>,
}

impl Operator<u64> for Count {
    type Out = Output<(u64, u64)>;
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<u64>, _out: &mut Self::Out) -> OpResult {
        for n in batch.drain(..) {
            self.counts.update(n % 1000, || 0, |c| *c += n);
        }
        Ok(())
    }
    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.counts.for_each(|k, c| out.give((*k, *c)));
        Ok(())
    }
}

fn job(gate: &Arc<Gate>, inserted: bool) -> (Dataflow, Collected<(u64, u64)>) {
    let mut df = Dataflow::new();
    let g = gate.clone();
    let mut numbers = df.source("numbers", move |ctx| {
        let info = ctx.info();
        let splits = (0..SPLITS)
            .filter(|s| *s as usize % info.shards == info.index)
            .map(|s| SplitPosition {
                split: s,
                of: SPLITS,
                position: u64::from(s),
            })
            .collect();
        Numbers {
            splits,
            gate: g.clone(),
        }
    });
    if inserted {
        numbers = numbers.unary("stateless", |_| Identity);
    }
    let out = numbers
        .exchange(Partitioning::by_key(|n: &u64| n % 1000))
        .unary("count", |ctx| Count {
            counts: ctx.value_state("counts"),
        })
        .collect("out");
    (df, out)
}

struct Identity;

/// Forwards records, sleeping 10 ms per batch when `.0`.
struct Slow(bool);

impl Operator<u64> for Slow {
    type Out = Output<u64>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> OpResult {
        if self.0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        out.give_vec(batch);
        Ok(())
    }
}

impl Operator<u64> for Identity {
    type Out = Output<u64>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> OpResult {
        out.give_vec(batch);
        Ok(())
    }
}

fn runtime(dir: &Path, shards: usize) -> Runtime {
    let checkpointing = Checkpointing::new(dir)
        .interval(Some(Duration::from_millis(20)))
        .chain_length(4);
    Runtime::new(
        Config::default()
            .shards(shards)
            .pin(false)
            .checkpointing(checkpointing),
    )
    .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rill-savepoint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Checks per-key sums against [`expected`], naming the first key that differs (the
/// maps are too long to print).
fn assert_sums(got: &BTreeMap<u64, u64>, what: &str) {
    let want = expected();
    assert_eq!(got.len(), want.len(), "{what}: keys");
    if let Some((k, v)) = want.iter().find(|(k, v)| got.get(k) != Some(v)) {
        panic!("{what}: key {k} sums to {:?}, not {v}", got.get(k));
    }
}

fn expected() -> BTreeMap<u64, u64> {
    let mut sums = BTreeMap::new();
    for n in 0..END {
        *sums.entry(n % 1000).or_insert(0) += n;
    }
    sums
}

/// Runs the first half on 2 shards with periodic (incremental) checkpoints and stops with
/// a savepoint; returns its id.
fn first_half(dir: &Path) -> u64 {
    let gate = Arc::new(Gate::default());
    gate.allowed.store(END / 2, Ordering::SeqCst);
    let (df, out) = job(&gate, false);
    let handle = runtime(dir, 2).spawn(df).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait for some periodic checkpoints, so the savepoint follows incremental ones.
    while gate.emitted.load(Ordering::SeqCst) < END / 2 || handle.latest_checkpoint() < Some(3) {
        assert!(
            Instant::now() < deadline,
            "the first half did not get there"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let report = handle.stop_with_savepoint().unwrap();
    let JobEnd::Savepoint(id) = report.end else {
        panic!("ended as {:?}", report.end);
    };
    assert!(
        out.take().is_empty(),
        "no end of stream: the counts were not emitted"
    );
    assert_eq!(report.checkpoints.unwrap().completed.last().unwrap().id, id);
    id
}

#[test]
fn a_savepoint_resumes_on_any_shard_count_with_identical_output() {
    let dir = scratch("resume");
    let id = first_half(&dir);
    // Self-contained: its manifest's chain starts at itself, and it restores with every
    // older checkpoint gone.
    let manifest = std::fs::read_to_string(dir.join(format!("chk-{id:06}/MANIFEST"))).unwrap();
    assert!(
        manifest.lines().any(|l| l == format!("base {id}")),
        "{manifest}"
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with("chk-") && name != format!("chk-{id:06}") {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
    let recovery = find_latest(&dir);
    assert_eq!(recovery.checkpoint(), Some(id));
    assert!(!recovery.finished());
    for (shards, inserted) in [(1, false), (2, false), (3, false), (3, true)] {
        let copy = scratch(&format!("resume-{shards}-{inserted}"));
        copy_tree(&dir, &copy);
        let gate = Arc::new(Gate::default());
        gate.allowed.store(END, Ordering::SeqCst);
        let (df, out) = job(&gate, inserted);
        let report = runtime(&copy, shards).run(df).unwrap();
        assert_eq!(report.end, JobEnd::Finished);
        assert_eq!(report.checkpoints.unwrap().restored_from, Some(id));
        // Only the second half was emitted again: nothing before the savepoint twice.
        assert_eq!(
            gate.emitted.load(Ordering::SeqCst),
            END / 2,
            "{shards} shards"
        );
        let got: BTreeMap<u64, u64> = out.take().into_iter().collect();
        assert_sums(&got, &format!("{shards} shards, inserted {inserted}"));
        let _ = std::fs::remove_dir_all(&copy);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_savepoint_needs_checkpointing() {
    let mut df = Dataflow::new();
    let (_, input) = df.input::<u64>("numbers");
    let handle = Runtime::new(Config::default().shards(1).pin(false))
        .unwrap()
        .spawn(df)
        .unwrap();
    let controller = handle.controller();
    assert!(matches!(
        controller.stop_with_savepoint(),
        Err(Error::NoCheckpointing)
    ));
    drop(input);
    assert_eq!(handle.join().unwrap().end, JobEnd::Finished);
}

/// An input handle's records sent before the savepoint are all processed before its
/// barrier; the resumed job takes new input from a new handle.
#[test]
fn a_savepoint_processes_what_the_input_took() {
    let dir = scratch("input");
    let run = |shards: usize, numbers: std::ops::Range<u64>, stop: bool| {
        let mut df = Dataflow::new();
        let (input, handle) = df.input::<u64>("numbers");
        // Slow in the first run, so that its input's queues are full at the savepoint.
        let out = input
            .unary("slow", move |_| Slow(stop))
            .exchange(Partitioning::by_key(|n: &u64| n % 1000))
            .unary("count", |ctx| Count {
                counts: ctx.value_state("counts"),
            })
            .collect("out");
        let job = runtime(&dir, shards).spawn(df).unwrap();
        // After a savepoint the input resumes exactly where the host stopped.
        assert_eq!(handle.resume_position(), Some(numbers.start));
        for n in numbers {
            handle.send(n).unwrap();
        }
        let report = if stop {
            assert!(!handle.is_closed());
            job.stop_with_savepoint().unwrap()
        } else {
            drop(handle);
            job.join().unwrap()
        };
        (report, out.take())
    };
    let (first, none) = run(2, 0..END / 2, true);
    assert!(matches!(first.end, JobEnd::Savepoint(_)));
    assert!(none.is_empty());
    let (second, counts) = run(3, END / 2..END, false);
    assert_eq!(second.end, JobEnd::Finished);
    let got: BTreeMap<u64, u64> = counts.into_iter().collect();
    assert_sums(&got, "after the savepoint");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host that logs its input resends it from `resume_position` after a crash: every
/// record counts exactly once, onto another shard count too, keyed or round robin.
#[test]
fn a_host_replaying_from_the_resume_position_counts_each_record_once() {
    for keyed in [true, false] {
        let dir = scratch(&format!("replay-{keyed}"));
        // The host's log: position i holds number i.
        let log: Vec<u64> = (0..END).collect();
        let job = |shards: usize| {
            let mut df = Dataflow::new();
            let (input, handle) = if keyed {
                df.keyed_input("numbers", |n: &u64| n % 1000)
            } else {
                df.input::<u64>("numbers")
            };
            let out = input
                .exchange(Partitioning::by_key(|n: &u64| n % 1000))
                .unary("count", |ctx| Count {
                    counts: ctx.value_state("counts"),
                })
                .collect("out");
            let checkpointing = Checkpointing::new(&dir).interval(None).chain_length(2);
            let config = Config::default()
                .shards(shards)
                .pin(false)
                .checkpointing(checkpointing);
            let job = Runtime::new(config).unwrap().spawn(df).unwrap();
            (job, handle, out)
        };
        // Two crashed runs: each resends from its resume position, takes checkpoints part
        // way, sends on, then dies (cancel: nothing after the last checkpoint is kept).
        for (shards, stop_at) in [(2, END / 3), (3, 2 * END / 3)] {
            let (job, input, _) = job(shards);
            let from = input.resume_position().unwrap();
            assert!(from < stop_at);
            for (i, &n) in log.iter().enumerate().skip(from as usize) {
                if i as u64 == (from + stop_at) / 2 {
                    let target = job.latest_checkpoint().unwrap() + 1;
                    job.checkpoint_now();
                    while job.latest_checkpoint().unwrap() < target {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                if i as u64 == stop_at {
                    break;
                }
                input.send(n).unwrap();
            }
            assert_eq!(job.cancel().unwrap().end, JobEnd::Cancelled);
        }
        // The last run resends from its resume position to the end.
        let (job, input, out) = job(1);
        let from = input.resume_position().unwrap();
        assert!(from > 0 && from < 2 * END / 3, "resume at {from}");
        assert_eq!(input.position(), from);
        for &n in &log[from as usize..] {
            input.send(n).unwrap();
        }
        drop(input);
        job.join().unwrap();
        let got: BTreeMap<u64, u64> = out.take().into_iter().collect();
        assert_sums(&got, &format!("keyed {keyed}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
