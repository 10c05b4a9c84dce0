//! Checkpoint coordination for a job: before the shards start, reading the checkpoint
//! directory (what to restore, after validating it); while the job runs, a thread that
//! starts checkpoints, writes the files the shards hand over and completes each with a
//! manifest; after the end, the final manifest and the job hooks.
//!
//! At most one checkpoint is in flight: checkpoint `n + 1` starts only after `n` completed,
//! so a barrier never overtakes another.
//!
//! Shards archive their operators' state at the barrier and hand the entries over; this
//! thread frames, checksums, writes and syncs the files, so a shard never waits for the
//! disk. (glommio's file I/O
//! was tried first: its completions are reaped only when the shard's loop yields to the
//! executor, and a shard that parked with a write in flight was seen never to wake.)

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use crate::checkpoint::{
    archived, assign, find_latest, merge_leases, prune, remove_after, set_aside, store_leases,
    CheckpointRecord, CheckpointStats, Checkpointing, Coordinator, Guarantee, JobHook, Manifest,
    ShardCheckpoint, WriteBuffers, FORMAT_VERSION,
};
use crate::control::JobControl;
use crate::error::{Error, Result};
use crate::park::ShardWaker;

/// What the checkpoint directory gives a starting job: the shared coordination state, and
/// what each shard restores.
pub(crate) struct Start {
    coord: Arc<Coordinator>,
    /// The checkpoint (or, at-most-once, the previous run) to restore, with its files.
    restore: Option<(u64, Arc<Vec<AlignedVec<16>>>)>,
    first_epoch: u64,
    /// The job had already completed (its directory holds the final manifest).
    already_finished: Option<u64>,
    hooks: Vec<Arc<dyn JobHook>>,
}

/// What a shard needs to install its part of the job's checkpointing.
#[derive(Clone)]
pub(crate) struct ShardStart {
    coord: Arc<Coordinator>,
    first_epoch: u64,
    restore: Option<(u64, Arc<Vec<AlignedVec<16>>>)>,
}

impl ShardStart {
    /// The shard's checkpoint state, with the entries of the restored checkpoint that this
    /// shard owns. Call on the shard's thread.
    pub(crate) fn open(self, info: crate::shard_info::ShardInfo) -> Rc<ShardCheckpoint> {
        let ids = &self.coord.operator_ids;
        let restore = self
            .restore
            .map(|(id, files)| assign(&files, id, info.index, info.shards, ids));
        ShardCheckpoint::new(
            info.index,
            info.shards,
            self.coord,
            self.first_epoch,
            restore,
        )
    }
}

impl Start {
    /// Reads the checkpoint directory: the checkpoint (or, at-most-once, the leases) to
    /// restore, after validating it; runs the job hooks' `before_start`.
    pub(crate) fn prepare(
        c: &Checkpointing,
        shards: usize,
        operator_ids: &[String],
        hooks: Vec<Arc<dyn JobHook>>,
    ) -> Result<Start> {
        std::fs::create_dir_all(&c.dir).map_err(|source| Error::CheckpointIo {
            action: "create",
            path: c.dir.clone(),
            source,
        })?;
        let t0 = Instant::now();
        let mut stats = CheckpointStats::default();
        let found = if c.guarantee == Guarantee::AtMostOnce {
            previous_run(&c.dir)?
        } else {
            let found = latest_checkpoint(c, operator_ids)?;
            stats.skipped = found.skipped.clone();
            found
        };
        stats.restored_from = found.restore.as_ref().map(|(id, _)| *id);
        stats.restore_load = t0.elapsed();
        for (dir, reason) in &stats.skipped {
            tracing::warn!(checkpoint = %dir.display(), reason, "skipped a damaged checkpoint");
        }
        if let Some(id) = stats.restored_from {
            tracing::info!(checkpoint = id, read = ?stats.restore_load, "restoring");
        }
        for hook in &hooks {
            hook.before_start(stats.restored_from, c.guarantee)
                .map_err(|e| Error::JobHook {
                    stage: "before_start",
                    source: Arc::from(e),
                })?;
        }
        let coord = Coordinator::new(
            shards,
            c.guarantee,
            c.dir.clone(),
            operator_ids.to_vec(),
            found.base,
            c.chain,
            c.fulls(),
        );
        *coord.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        Ok(Start {
            coord: Arc::new(coord),
            restore: found.restore,
            first_epoch: found.first_epoch,
            already_finished: found.finished,
            hooks,
        })
    }

    /// True if the job had already completed: nothing is left to run.
    pub(crate) fn already_finished(&self) -> bool {
        self.already_finished.is_some()
    }

    /// What each shard installs.
    pub(crate) fn for_shard(&self) -> ShardStart {
        ShardStart {
            coord: self.coord.clone(),
            first_epoch: self.first_epoch,
            restore: self.restore.clone(),
        }
    }

    /// Starts the coordinator thread (none at-most-once, or when the job had already
    /// finished: then no checkpoint starts).
    pub(crate) fn run(
        self,
        wakers: Vec<Arc<ShardWaker>>,
        abort: Arc<AtomicBool>,
        interval: Option<Duration>,
        retain: usize,
        control: Arc<JobControl>,
    ) -> Result<JobCheckpoints> {
        let thread = if self.already_finished.is_some() {
            CoordinatorThread::idle(self.coord)
        } else {
            CoordinatorThread::start(self.coord, wakers, abort, interval, retain, control)
                .map_err(|source| Error::CoordinatorStart { source })?
        };
        Ok(JobCheckpoints {
            thread,
            hooks: self.hooks,
            already_finished: self.already_finished,
        })
    }
}

/// What the checkpoint directory holds for a starting job.
struct Found {
    /// The numbering base: the checkpoint restored (or the previous run).
    base: u64,
    first_epoch: u64,
    restore: Option<(u64, Arc<Vec<AlignedVec<16>>>)>,
    finished: Option<u64>,
    skipped: Vec<(std::path::PathBuf, String)>,
}

/// At-most-once: the previous run's leases, merged.
fn previous_run(dir: &std::path::Path) -> Result<Found> {
    let (run, files) = store_leases(dir)?;
    let restore = if files.is_empty() {
        None
    } else {
        Some((run, Arc::new(vec![merge_leases(dir, &files, run)?])))
    };
    Ok(Found {
        base: run + 1,
        first_epoch: run + 1,
        restore,
        finished: None,
        skipped: Vec::new(),
    })
}

/// The newest usable checkpoint, after checking that this job has an operator for all of
/// its state (unless the job may drop state).
fn latest_checkpoint(c: &Checkpointing, operator_ids: &[String]) -> Result<Found> {
    let dir = c.dir.as_path();
    let recovery = find_latest(dir);
    if let Some((path, found)) = recovery.other_version {
        return Err(Error::CheckpointFormat {
            dir: path,
            found,
            supported: FORMAT_VERSION,
        });
    }
    let Some(loaded) = recovery.loaded else {
        if !recovery.skipped.is_empty() {
            return Err(Error::NoUsableCheckpoint {
                dir: dir.to_path_buf(),
                skipped: recovery.skipped,
            });
        }
        return Ok(Found {
            base: 0,
            first_epoch: 1,
            restore: None,
            finished: None,
            skipped: Vec::new(),
        });
    };
    let id = loaded.manifest.id;
    let unmatched = unmatched_state(&loaded.files, operator_ids);
    if !unmatched.is_empty() && !c.allow_non_restored_state {
        return Err(Error::UnmatchedState {
            checkpoint: id,
            dir: dir.to_path_buf(),
            operators: unmatched,
        });
    }
    let finished = loaded.manifest.finished.then_some(id);
    // Skipped checkpoints are newer than this one: kept aside as evidence, not deleted.
    let skipped = set_aside(dir, &recovery.skipped);
    remove_after(dir, id);
    Ok(Found {
        base: id,
        first_epoch: id + 1,
        restore: Some((id, Arc::new(loaded.files))),
        finished,
        skipped,
    })
}

/// The operator ids that hold state in `files` and are none of `operator_ids`, sorted.
fn unmatched_state(files: &[AlignedVec<16>], operator_ids: &[String]) -> Vec<String> {
    let known: std::collections::HashSet<&str> = operator_ids.iter().map(String::as_str).collect();
    let mut unmatched = std::collections::BTreeSet::new();
    for payload in files {
        for node in archived(payload).nodes.iter() {
            if !node.entries.is_empty() && !known.contains(node.operator.as_str()) {
                unmatched.insert(node.operator.to_string());
            }
        }
    }
    unmatched.into_iter().collect()
}

/// A job's checkpointing while it runs.
pub(crate) struct JobCheckpoints {
    thread: CoordinatorThread,
    hooks: Vec<Arc<dyn JobHook>>,
    /// The job had already completed (its directory holds the final manifest): nothing ran.
    already_finished: Option<u64>,
}

impl JobCheckpoints {
    /// Asks for a checkpoint now.
    pub(crate) fn request_now(&self) {
        self.thread.coord.on_demand.store(true, Ordering::SeqCst);
    }

    /// Asks for a full (self-contained) checkpoint now: the next checkpoint to start (after
    /// the one in flight, if any) copies all keyed state whole and needs no older file, as a
    /// savepoint does. Returns its id: it is complete once [`JobCheckpoints::latest`]
    /// reaches it (unless the job ends first). Nothing happens at-most-once, which takes no
    /// checkpoints.
    pub(crate) fn request_full_now(&self) -> u64 {
        let id = self.thread.coord.request_full();
        self.request_now();
        id
    }

    /// Reads the checkpoint measurements from any thread, for as long as the reader lives
    /// (the job's live metrics).
    pub(crate) fn stats_reader(&self) -> crate::metrics::live::CheckpointReader {
        let coord = self.thread.coord.clone();
        Box::new(move || {
            coord
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// The latest completed checkpoint (0: none yet).
    pub(crate) fn latest(&self) -> u64 {
        self.thread.coord.completed.load(Ordering::SeqCst)
    }

    /// Stops the coordinator; after a clean end writes the final manifest and runs the
    /// hooks' `after_finish`.
    pub(crate) fn finish(self, clean: bool) -> Result<CheckpointStats> {
        let coord = self.thread.coord.clone();
        self.thread.stop();
        if let Some(error) = coord
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(error);
        }
        let stats = coord
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !clean {
            return Ok(stats);
        }
        let last = match self.already_finished {
            Some(id) => id,
            None if coord.guarantee == Guarantee::AtMostOnce => {
                coord.completed.load(Ordering::SeqCst)
            }
            None => coord.finish()?,
        };
        for hook in &self.hooks {
            hook.after_finish(last).map_err(|e| Error::JobHook {
                stage: "after_finish",
                source: Arc::from(e),
            })?;
        }
        Ok(stats)
    }
}

/// The running coordinator thread.
struct CoordinatorThread {
    coord: Arc<Coordinator>,
    handle: Option<JoinHandle<()>>,
}

impl CoordinatorThread {
    /// A coordinator that starts no checkpoints (the job has nothing left to run).
    fn idle(coord: Arc<Coordinator>) -> Self {
        coord.stopped.store(true, Ordering::SeqCst);
        CoordinatorThread {
            coord,
            handle: None,
        }
    }

    fn start(
        coord: Arc<Coordinator>,
        wakers: Vec<Arc<ShardWaker>>,
        abort: Arc<AtomicBool>,
        interval: Option<Duration>,
        retain: usize,
        control: Arc<JobControl>,
    ) -> std::io::Result<Self> {
        let handle = if coord.guarantee == Guarantee::AtMostOnce {
            None
        } else {
            let c = coord.clone();
            let span = tracing::Span::current();
            Some(
                std::thread::Builder::new()
                    .name("rill-checkpoints".into())
                    .spawn(move || {
                        let _span = span.entered();
                        run(&c, &wakers, &abort, interval, retain, &control)
                    })?,
            )
        };
        Ok(CoordinatorThread { coord, handle })
    }

    /// Stops starting checkpoints and waits for the thread.
    fn stop(mut self) {
        self.coord.stopped.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn wake_all(wakers: &[Arc<ShardWaker>]) {
    for w in wakers {
        w.wake();
    }
}

fn run(
    coord: &Coordinator,
    wakers: &[Arc<ShardWaker>],
    abort: &AtomicBool,
    interval: Option<Duration>,
    retain: usize,
    control: &JobControl,
) {
    let mut next_at = interval.map(|i| Instant::now() + i);
    let mut buffers = WriteBuffers::default();
    loop {
        let savepoint = control.stopping_at();
        let past_savepoint = savepoint > 0 && coord.completed.load(Ordering::SeqCst) >= savepoint;
        if abort.load(Ordering::Relaxed) || coord.stopped.load(Ordering::SeqCst) || past_savepoint {
            coord.stopped.store(true, Ordering::SeqCst);
            wake_all(wakers);
            return;
        }
        if coord.done_shards.load(Ordering::SeqCst) == coord.shards {
            coord.stopped.store(true, Ordering::SeqCst);
            wake_all(wakers);
            return;
        }
        let now = Instant::now();
        let savepoint = control.savepoint_requested();
        let due = savepoint
            || next_at.is_some_and(|t| now >= t)
            || coord.on_demand.swap(false, Ordering::SeqCst);
        if !due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let started = Instant::now();
        if savepoint {
            // A savepoint holds all of its state itself (no incremental chain). Sources
            // read the stop after the request: they never inject the savepoint's barrier
            // without stopping behind it.
            let id = coord.request_full();
            tracing::info!(checkpoint = id, "stopping with a savepoint");
            control.stop_at(id);
        }
        let id = coord.start_next();
        wake_all(wakers);
        // Write every shard's file as it comes in.
        loop {
            // Stopped: the job was cancelled (its shards no longer ack) or ended.
            if abort.load(Ordering::Relaxed) || coord.stopped.load(Ordering::SeqCst) {
                coord.stopped.store(true, Ordering::SeqCst);
                return;
            }
            if let Err(e) = coord.write_files(&mut buffers) {
                tracing::error!(error = %e, "writing a checkpoint failed");
                coord.fail(e);
                abort.store(true, Ordering::SeqCst);
                wake_all(wakers);
                return;
            }
            if coord.acked.iter().all(|a| a.load(Ordering::SeqCst) >= id) {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let files: Vec<(String, u64, u32)> = {
            let files = coord.files.lock().unwrap_or_else(|e| e.into_inner());
            files.iter().flatten().cloned().collect()
        };
        let m = Manifest {
            id,
            shards: coord.shards,
            guarantee: coord.guarantee,
            finished: false,
            base: coord.chain_base(id),
            nodes: coord.operator_ids.clone(),
            files: files.clone(),
        };
        if let Err(e) = coord.write_manifest(&m) {
            tracing::error!(error = %e, "writing a checkpoint's manifest failed");
            coord.fail(e);
            abort.store(true, Ordering::SeqCst);
            wake_all(wakers);
            return;
        }
        coord.completed.store(id, Ordering::SeqCst);
        wake_all(wakers);
        tracing::debug!(
            checkpoint = id,
            duration = ?started.elapsed(),
            bytes = files.iter().map(|f| f.1).sum::<u64>(),
            full = m.base == id,
            "checkpoint complete"
        );
        let stall = coord.longest_stall();
        let record = CheckpointRecord {
            id,
            duration: started.elapsed(),
            bytes: files.iter().map(|f| f.1).sum(),
            alignment: longest(&coord.alignment_ns),
            snapshot: longest(&coord.snapshot_ns),
            stall: stall.work.wall,
            stall_cpu: stall.work.cpu,
            stall_in: coord.piece_name(stall.piece),
        };
        coord
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .completed
            .push(record);
        prune(&coord.dir, id, retain);
        next_at = interval.map(|i| (started + i).max(Instant::now()));
    }
}

/// The largest of per-shard durations in ns.
fn longest(per_shard: &[std::sync::atomic::AtomicU64]) -> Duration {
    Duration::from_nanos(
        per_shard
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::ShardFile;

    /// Waits (up to 10 s) until `done` holds.
    fn wait(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A one-shard job's checkpointing with nothing but the coordinator thread: the test
    /// plays the shard.
    fn job(dir: &std::path::Path, c: Checkpointing) -> JobCheckpoints {
        let _ = std::fs::remove_dir_all(dir);
        let start = Start::prepare(&c, 1, &["op".to_string()], Vec::new()).unwrap();
        let abort = Arc::new(AtomicBool::new(false));
        start
            .run(Vec::new(), abort, None, c.retain, Arc::default())
            .unwrap()
    }

    /// As the shard: writes checkpoint `id` once it is requested (after checking whether
    /// its tables would copy every key group whole), and waits for it to complete.
    fn take(jc: &JobCheckpoints, id: u64) -> bool {
        let coord = &jc.thread.coord;
        wait("the request", || {
            coord.requested.load(Ordering::SeqCst) >= id
        });
        let full = coord.copy_of(id) == (0, 1);
        let file = ShardFile {
            checkpoint: id,
            shard: 0,
            shards: 1,
            nodes: Vec::new(),
        };
        coord.submit_file(id, 0, file);
        wait("completion", || jc.latest() >= id);
        full
    }

    /// The `base` its manifest gives checkpoint `id`.
    fn base(dir: &std::path::Path, id: u64) -> u64 {
        let text = std::fs::read_to_string(dir.join(format!("chk-{id:06}/MANIFEST"))).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("base ")).unwrap();
        line.parse().unwrap()
    }

    #[test]
    fn a_requested_full_checkpoint_needs_no_older_file() {
        let dir = std::env::temp_dir().join(format!("rill-full-now-{}", std::process::id()));
        let c = Checkpointing::new(&dir)
            .interval(None)
            .chain_length(4)
            .full_every(0)
            .retain(10);
        let jc = job(&dir, c);
        let mut fulls = Vec::new();
        for id in 1..=5 {
            jc.request_now();
            if take(&jc, id) {
                fulls.push(id);
            }
        }
        assert_eq!(fulls, [1], "only the run's first");
        assert_eq!(base(&dir, 5), 2, "chains of 4");
        // Requested while checkpoint 6 is in flight: the next one is full.
        jc.request_now();
        wait("6 to start", || {
            jc.thread.coord.requested.load(Ordering::SeqCst) == 6
        });
        assert_eq!(jc.request_full_now(), 7);
        assert!(!take(&jc, 6), "the checkpoint in flight is left as it is");
        assert!(take(&jc, 7), "the requested one copies everything");
        assert_eq!(base(&dir, 7), 7);
        jc.request_now();
        assert!(!take(&jc, 8));
        assert_eq!(
            base(&dir, 8),
            7,
            "a chain never reaches past a full checkpoint"
        );
        jc.finish(false).unwrap();
        // Every checkpoint before it damaged: 7 restores from its own file alone, and 8
        // from 7's and its own.
        for id in 1..=6 {
            let file = dir.join(format!("chk-{id:06}/shard-000.bin"));
            std::fs::write(file, b"damaged").unwrap();
        }
        let found = find_latest(&dir);
        assert_eq!(found.checkpoint(), Some(8), "{:?}", found.skipped);
        assert_eq!(found.loaded.unwrap().files.len(), 2);
        std::fs::remove_dir_all(dir.join("chk-000008")).unwrap();
        let found = find_latest(&dir);
        assert_eq!(found.checkpoint(), Some(7));
        assert_eq!(found.loaded.unwrap().files.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_checkpoints_come_periodically_and_a_requested_one_restarts_the_count() {
        let dir = std::env::temp_dir().join(format!("rill-full-every-{}", std::process::id()));
        let c = Checkpointing::new(&dir)
            .interval(None)
            .chain_length(4)
            .full_every(3)
            .retain(20);
        let jc = job(&dir, c);
        let mut fulls = Vec::new();
        for id in 1..=14 {
            if id == 9 {
                jc.request_full_now();
            } else {
                jc.request_now();
            }
            if take(&jc, id) {
                fulls.push(id);
            }
        }
        jc.finish(false).unwrap();
        assert_eq!(fulls, [1, 4, 7, 9, 12]);
        let bases: Vec<u64> = (1..=14).map(|id| base(&dir, id)).collect();
        assert_eq!(bases, [1, 1, 1, 4, 4, 4, 7, 7, 9, 9, 9, 12, 12, 12]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn by_default_a_full_checkpoint_comes_every_two_chain_lengths() {
        let dir = std::env::temp_dir().join(format!("rill-full-default-{}", std::process::id()));
        let c = Checkpointing::new(&dir).interval(None).chain_length(3);
        let jc = job(&dir, c);
        let fulls: Vec<u64> = (1..=13)
            .filter(|&id| {
                jc.request_now();
                take(&jc, id)
            })
            .collect();
        jc.finish(false).unwrap();
        assert_eq!(fulls, [1, 7, 13]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
