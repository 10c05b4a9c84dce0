//! The checkpoint coordinator: a thread that starts checkpoints, waits until every shard
//! wrote its part, and completes them with a manifest.
//!
//! At most one checkpoint is in flight: checkpoint `n + 1` starts only after `n` completed,
//! so a barrier never overtakes another.
//!
//! Shards serialize their state at the barrier and hand the bytes over; this thread
//! writes and syncs the files, so a shard never waits for the disk. (glommio's file I/O
//! was tried first: its completions are reaped only when the shard's loop yields to the
//! executor, and a shard that parked with a write in flight was seen never to wake.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::{self, Manifest};
use super::Guarantee;
use crate::park::ShardWaker;

/// One completed checkpoint, as measured by the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    /// Its id.
    pub id: u64,
    /// From the request to the manifest written (the checkpoint is complete).
    pub duration: Duration,
    /// Total bytes of its shard files.
    pub bytes: u64,
    /// The longest time any shard held an input back waiting for the other inputs'
    /// barriers (exactly-once alignment; zero otherwise).
    pub alignment: Duration,
}

/// Checkpoint measurements of a job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointStats {
    /// Every checkpoint completed, in order.
    pub completed: Vec<CheckpointRecord>,
    /// The checkpoint the job restored from, if any.
    pub restored_from: Option<u64>,
    /// Time to find, read and validate the checkpoint restored from.
    pub restore_load: Duration,
    /// Checkpoints skipped at recovery because they were corrupt: `(directory, reason)`.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The state shards and the coordinator share.
pub(crate) struct Coordinator {
    pub shards: usize,
    pub guarantee: Guarantee,
    pub dir: PathBuf,
    pub node_names: Vec<String>,
    /// The latest checkpoint requested (0: none yet in this run's numbering base).
    pub requested: AtomicU64,
    /// The latest checkpoint completed.
    pub completed: AtomicU64,
    /// Per shard: the latest checkpoint whose file it wrote.
    pub acked: Vec<AtomicU64>,
    /// Per shard: the file it wrote for its latest acked checkpoint (name, length, CRC).
    pub files: Mutex<Vec<Option<(String, u64, u32)>>>,
    /// Per shard: alignment time of its latest checkpoint, in ns.
    pub alignment_ns: Vec<AtomicU64>,
    /// Shards whose inputs all ended.
    pub done_shards: AtomicUsize,
    /// Set when no further checkpoint will start: shards that are done may exit.
    pub stopped: AtomicBool,
    pub on_demand: AtomicBool,
    pub stats: Mutex<CheckpointStats>,
    pub failure: Mutex<Option<String>>,
    /// Shard files waiting to be written by the coordinator thread.
    writes: Mutex<Vec<ShardWrite>>,
}

/// A serialized shard file for the coordinator thread to write.
struct ShardWrite {
    id: u64,
    shard: usize,
    bytes: Vec<u8>,
}

impl Coordinator {
    pub(crate) fn new(
        shards: usize,
        guarantee: Guarantee,
        dir: PathBuf,
        node_names: Vec<String>,
        base: u64,
    ) -> Self {
        Coordinator {
            shards,
            guarantee,
            dir,
            node_names,
            requested: AtomicU64::new(base),
            completed: AtomicU64::new(base),
            acked: (0..shards).map(|_| AtomicU64::new(base)).collect(),
            files: Mutex::new(vec![None; shards]),
            alignment_ns: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            done_shards: AtomicUsize::new(0),
            stopped: AtomicBool::new(guarantee == Guarantee::AtMostOnce),
            on_demand: AtomicBool::new(false),
            stats: Mutex::new(CheckpointStats::default()),
            failure: Mutex::new(None),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// Hands shard `shard`'s file of checkpoint `id` to the coordinator thread.
    pub(crate) fn submit_file(&self, id: u64, shard: usize, bytes: Vec<u8>) {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ShardWrite { id, shard, bytes });
    }

    /// Writes and syncs the shard files handed over so far, and acks them.
    fn write_files(&self) -> Result<(), String> {
        let writes = std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()));
        for w in writes {
            let dir = store::checkpoint_dir(&self.dir, w.id);
            let name = store::shard_file_name(w.shard);
            let path = dir.join(&name);
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(&dir)?;
                let mut f = std::fs::File::create(&path)?;
                std::io::Write::write_all(&mut f, &w.bytes)?;
                f.sync_data()
            };
            write().map_err(|e| format!("could not write {}: {e}", path.display()))?;
            let entry = (name, w.bytes.len() as u64, crc32fast::hash(&w.bytes));
            self.files.lock().unwrap_or_else(|e| e.into_inner())[w.shard] = Some(entry);
            self.acked[w.shard].store(w.id, Ordering::SeqCst);
        }
        Ok(())
    }

    fn fail(&self, message: String) {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(message);
    }

    /// Writes the manifest that marks the job finished (after every shard ended cleanly):
    /// checkpoint `completed + 1`, holding no state.
    pub(crate) fn finish(&self) -> std::io::Result<u64> {
        let id = self.completed.load(Ordering::SeqCst) + 1;
        let m = Manifest {
            id,
            shards: self.shards,
            guarantee: self.guarantee,
            finished: true,
            nodes: self.node_names.clone(),
            files: Vec::new(),
        };
        store::write_manifest(&self.dir, &m)?;
        store::prune(&self.dir, id, 1);
        Ok(id)
    }
}

/// The running coordinator thread.
pub(crate) struct CoordinatorThread {
    pub coord: Arc<Coordinator>,
    handle: Option<JoinHandle<()>>,
}

impl CoordinatorThread {
    /// A coordinator that starts no checkpoints (the job has nothing left to run).
    pub(crate) fn idle(coord: Arc<Coordinator>) -> Self {
        coord.stopped.store(true, Ordering::SeqCst);
        CoordinatorThread {
            coord,
            handle: None,
        }
    }

    pub(crate) fn start(
        coord: Arc<Coordinator>,
        wakers: Vec<Arc<ShardWaker>>,
        abort: Arc<AtomicBool>,
        interval: Option<Duration>,
        retain: usize,
    ) -> std::io::Result<Self> {
        let handle = if coord.guarantee == Guarantee::AtMostOnce {
            None
        } else {
            let c = coord.clone();
            Some(
                std::thread::Builder::new()
                    .name("rill-checkpoints".into())
                    .spawn(move || run(&c, &wakers, &abort, interval, retain))?,
            )
        };
        Ok(CoordinatorThread { coord, handle })
    }

    /// Stops starting checkpoints and waits for the thread.
    pub(crate) fn stop(mut self) {
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
) {
    let mut next_at = interval.map(|i| Instant::now() + i);
    loop {
        if abort.load(Ordering::Relaxed) || coord.stopped.load(Ordering::SeqCst) {
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
        let due =
            next_at.is_some_and(|t| now >= t) || coord.on_demand.swap(false, Ordering::SeqCst);
        if !due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let started = Instant::now();
        let id = coord.requested.load(Ordering::SeqCst) + 1;
        coord.requested.store(id, Ordering::SeqCst);
        wake_all(wakers);
        // Write every shard's file as it comes in.
        loop {
            if abort.load(Ordering::Relaxed) {
                coord.stopped.store(true, Ordering::SeqCst);
                return;
            }
            if let Err(e) = coord.write_files() {
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
            nodes: coord.node_names.clone(),
            files: files.clone(),
        };
        if let Err(e) = store::write_manifest(&coord.dir, &m) {
            coord.fail(format!(
                "could not write the manifest of checkpoint {id} in {}: {e}",
                coord.dir.display()
            ));
            abort.store(true, Ordering::SeqCst);
            wake_all(wakers);
            return;
        }
        coord.completed.store(id, Ordering::SeqCst);
        wake_all(wakers);
        let record = CheckpointRecord {
            id,
            duration: started.elapsed(),
            bytes: files.iter().map(|f| f.1).sum(),
            alignment: Duration::from_nanos(
                coord
                    .alignment_ns
                    .iter()
                    .map(|a| a.load(Ordering::SeqCst))
                    .max()
                    .unwrap_or(0),
            ),
        };
        coord
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .completed
            .push(record);
        store::prune(&coord.dir, id, retain);
        next_at = interval.map(|i| (started + i).max(Instant::now()));
    }
}
