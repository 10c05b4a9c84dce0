//! Recovery from a damaged checkpoint chain: a job with keyed state in the runtime's
//! tables, incremental checkpoints taken on demand, a crash, then one damaged file in the
//! newest chain. The restart falls back to the full checkpoint retention keeps outside that
//! chain and still produces the right output; it refuses only when that one is damaged
//! too.

mod common;

use common::copy_tree;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_runtime::checkpoint::{Checkpointing, SplitPosition};
use rill_runtime::state::ValueState;
use rill_runtime::{
    Config, Dataflow, Error, Failure, OpResult, Operator, OperatorState, Output, Partitioning,
    Runtime, Source, SourceOutput, SourceStatus,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Numbers emitted between two checkpoints of the first run.
const ROUND: u64 = 600;
/// Checkpoints the first run takes before it crashes.
const CHECKPOINTS: u64 = 14;
/// The input: `0..END`.
const END: u64 = 20 * ROUND;

/// What the test controls and observes of a running job.
#[derive(Default)]
struct Gate {
    /// Sources emit the numbers below this.
    allowed: AtomicU64,
    /// Numbers the sources emitted (all shards).
    emitted: AtomicU64,
    /// The counting operator fails at its next batch.
    crash: AtomicBool,
}

/// Numbers `0..END`, split `s` of `of` emitting `s, s + of, ...`, up to the gate.
struct Numbers {
    split: SplitPosition,
    gate: Arc<Gate>,
}

impl Source<u64> for Numbers {
    fn poll(&mut self, out: &mut SourceOutput<u64>, max: usize) -> Result<SourceStatus, Failure> {
        let upto = self.gate.allowed.load(Ordering::SeqCst).min(END);
        let mut emitted = 0;
        while emitted < max && self.split.position < upto {
            out.give(self.split.position);
            self.split.position += u64::from(self.split.of);
            emitted += 1;
        }
        self.gate
            .emitted
            .fetch_add(emitted as u64, Ordering::SeqCst);
        Ok(if self.split.position >= END {
            SourceStatus::Done
        } else if emitted == 0 {
            SourceStatus::Idle
        } else {
            SourceStatus::Emitted
        })
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(vec![self.split])
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        match splits[..] {
            [split] => {
                self.split = split;
                Ok(())
            }
            _ => Err(Failure::new("one split per shard")),
        }
    }
}

/// The key of number `n`: three numbers per key, so each round brings new keys and leaves
/// the older ones alone (their state is only in older checkpoints or the rotating copies).
fn key(n: u64) -> u64 {
    n / 3
}

/// Counts numbers per key in the runtime's keyed state; emits every count at the end.
struct Count {
    counts: ValueState<u64, u64>,
    gate: Arc<Gate>,
}

impl Operator<u64> for Count {
    type Out = Output<(u64, u64)>;
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<u64>, _out: &mut Self::Out) -> OpResult {
        if self.gate.crash.load(Ordering::SeqCst) {
            return Err(Failure::new("injected crash"));
        }
        for n in batch.drain(..) {
            self.counts.update(key(n), || 0, |c| *c += 1);
        }
        Ok(())
    }
    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.counts.for_each(|k, c| out.give((*k, *c)));
        Ok(())
    }
}

fn config(dir: &Path) -> Config {
    // Chains of 4, a full checkpoint every 8 (1 and 9), the newest checkpoint retained.
    let checkpointing = Checkpointing::new(dir)
        .interval(None)
        .chain_length(4)
        .full_every(8)
        .retain(1);
    Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(checkpointing)
}

fn dataflow(gate: &Arc<Gate>) -> (Dataflow, rill_runtime::Collected<(u64, u64)>) {
    let mut df = Dataflow::new();
    let (g1, g2) = (gate.clone(), gate.clone());
    let out = df
        .source("numbers", move |s| Numbers {
            split: SplitPosition {
                split: s.index as u32,
                of: s.shards as u32,
                position: s.index as u64,
            },
            gate: g1.clone(),
        })
        .exchange(Partitioning::by_key(|n: &u64| key(*n)))
        .unary("count", move |ctx| Count {
            counts: ctx.value_state("counts"),
            gate: g2.clone(),
        })
        .collect("out");
    (df, out)
}

fn wait(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs the job to checkpoint `CHECKPOINTS`, one round of input before each, and crashes
/// it.
fn crash_after_checkpoints(dir: &Path) {
    let gate = Arc::new(Gate::default());
    let (df, _) = dataflow(&gate);
    let job = Runtime::new(config(dir)).unwrap().spawn(df).unwrap();
    for id in 1..=CHECKPOINTS {
        gate.allowed.store(id * ROUND, Ordering::SeqCst);
        wait("the round", || {
            gate.emitted.load(Ordering::SeqCst) == id * ROUND
        });
        job.checkpoint_now();
        wait("the checkpoint", || job.latest_checkpoint() == Some(id));
    }
    gate.crash.store(true, Ordering::SeqCst);
    gate.allowed.store(END, Ordering::SeqCst);
    let err = job.join().expect_err("crashes");
    assert!(err.to_string().contains("injected crash"), "{err}");
}

/// The checkpoint a restart restored, and the checkpoints it skipped with the reasons.
type Restored = (Option<u64>, Vec<(PathBuf, String)>);

/// Restarts the job from `dir` and runs it to the end; checks its output.
fn restart(dir: &Path) -> rill_runtime::Result<Restored> {
    let gate = Arc::new(Gate::default());
    gate.allowed.store(u64::MAX, Ordering::SeqCst);
    let (df, out) = dataflow(&gate);
    let report = Runtime::new(config(dir))?.run(df)?;
    let mut got = out.take();
    got.sort();
    let want: Vec<(u64, u64)> = (0..END / 3).map(|k| (k, 3)).collect();
    assert!(
        got == want,
        "wrong counts after a restore ({} keys)",
        got.len()
    );
    let stats = report.checkpoints.expect("checkpointing on");
    Ok((stats.restored_from, stats.skipped))
}

fn chk(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("chk-{id:06}"))
}

/// The ids of the complete checkpoints under `dir`, and whether each is full (its manifest
/// names itself as its chain's base).
fn complete(dir: &Path) -> Vec<(u64, bool)> {
    let mut found = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let Ok(text) = fs::read_to_string(e.path().join("MANIFEST")) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            let line = text.lines().find_map(|l| l.strip_prefix(name)).unwrap();
            line.trim().parse().unwrap()
        };
        found.push((field("id "), field("base ") == field("id ")));
    }
    found.sort();
    found
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    BitFlip,
    Truncated,
    Deleted,
}

/// Damages one shard's file of checkpoint `id`.
fn damage(dir: &Path, id: u64, how: Damage) {
    let file = chk(dir, id).join(format!("shard-{:03}.bin", id % 2));
    match how {
        Damage::BitFlip => {
            let mut bytes = fs::read(&file).unwrap();
            let at = bytes.len() * 2 / 3;
            bytes[at] ^= 0x04;
            fs::write(&file, bytes).unwrap();
        }
        Damage::Truncated => {
            let bytes = fs::read(&file).unwrap();
            fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
        }
        Damage::Deleted => fs::remove_file(&file).unwrap(),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rill-fallback-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_damaged_file_in_the_newest_chain_falls_back_to_the_full_checkpoint_before_it() {
    let root = scratch("chain");
    let pristine = root.join("pristine");
    crash_after_checkpoints(&pristine);
    // Retention kept the newest chain (11..=14: 14 and the three before it) and the full
    // checkpoint before it, 9; the full checkpoint 1 and the increment 10 are gone.
    assert_eq!(
        complete(&pristine),
        [
            (9, true),
            (11, false),
            (12, false),
            (13, false),
            (14, false)
        ]
    );
    // Undamaged, the newest is restored.
    let work = root.join("work");
    copy_tree(&pristine, &work);
    assert_eq!(restart(&work).unwrap(), (Some(14), Vec::new()));
    // One damaged file in any link: every newer checkpoint is skipped, set aside with the
    // reason, and the job restores 9 and finishes with the right counts.
    for link in 11..=14 {
        for how in [Damage::BitFlip, Damage::Truncated, Damage::Deleted] {
            copy_tree(&pristine, &work);
            damage(&work, link, how);
            let (restored, skipped) = restart(&work).unwrap();
            assert_eq!(restored, Some(9), "chk {link} {how:?}: {skipped:?}");
            let ids: Vec<String> = skipped
                .iter()
                .map(|(d, _)| d.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                ids,
                ["chk-000014", "chk-000013", "chk-000012", "chk-000011"],
                "{link} {how:?}"
            );
            for (moved, reason) in &skipped {
                assert_eq!(moved.parent().unwrap(), work.join("damaged"));
                let said = fs::read_to_string(moved.join("SKIPPED")).unwrap();
                assert_eq!(said.trim(), reason);
            }
        }
    }
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_restart_refuses_only_when_the_fallback_is_damaged_too() {
    let root = scratch("all");
    let pristine = root.join("pristine");
    crash_after_checkpoints(&pristine);
    let work = root.join("work");
    // The fallback alone damaged: the newest chain is intact and restored.
    copy_tree(&pristine, &work);
    damage(&work, 9, Damage::BitFlip);
    assert_eq!(restart(&work).unwrap(), (Some(14), Vec::new()));
    // The newest chain and the fallback damaged: refused, and nothing is moved or deleted.
    copy_tree(&pristine, &work);
    damage(&work, 12, Damage::Truncated);
    damage(&work, 9, Damage::Deleted);
    match restart(&work) {
        Err(Error::NoUsableCheckpoint { skipped, .. }) => {
            let dirs: Vec<PathBuf> = skipped.into_iter().map(|(d, _)| d).collect();
            let all: Vec<PathBuf> = [14, 13, 12, 11, 9].map(|id| chk(&work, id)).to_vec();
            assert_eq!(dirs, all);
        }
        other => panic!("expected NoUsableCheckpoint, got {other:?}"),
    }
    assert_eq!(complete(&work), complete(&pristine));
    assert!(!work.join("damaged").exists());
    fs::remove_dir_all(&root).unwrap();
}
