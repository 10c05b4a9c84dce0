//! What the shards and the checkpoint coordinator share: the checkpoint requested and
//! completed, each shard's acknowledgement, the files handed over for writing, and the
//! job's checkpoint measurements. The coordinator thread itself is `crate::job_checkpoints`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::stall::{Piece, Stall};
use super::store::{self, Manifest, ShardFile};
use super::Guarantee;
use crate::error::Error;
use crate::fs::write_atomic;

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
    /// The most time any shard spent on this checkpoint's state on its record path, in
    /// all: its operators' snapshots at the barrier and archiving their changelogs in
    /// slices after it (framing, checksumming and writing the shard file are the
    /// coordinator thread's).
    pub snapshot: Duration,
    /// The longest single piece of that work on any shard (one operator's snapshot at the
    /// barrier, or one slice): the longest records waited for it at a time.
    pub stall: Duration,
    /// How much of `stall` the shard's thread ran; the rest it was descheduled (another
    /// thread or process had its core).
    pub stall_cpu: Duration,
    /// What the longest piece was: `barrier <operator>` (its snapshot at the barrier) or
    /// `archive <operator>` (a slice archiving its changes after the barrier); empty if
    /// no shard did any work.
    pub stall_in: String,
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
    /// The job's operator ids, by node: what state is found by in checkpoint files.
    pub operator_ids: Vec<String>,
    /// The first checkpoint this run takes (always a full one).
    pub first: u64,
    /// The longest chain of incremental checkpoints recovery reads.
    pub chain: u64,
    /// A full checkpoint is taken once this many were taken since the previous full one
    /// (0: only the run's first and those requested with [`Coordinator::request_full`]).
    pub full_every: u64,
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
    /// Per shard: time spent on its latest checkpoint's state, in ns.
    pub snapshot_ns: Vec<AtomicU64>,
    /// Per shard: the longest single piece of that time, and what it was.
    pub stalls: Mutex<Vec<Stall>>,
    /// Shards whose inputs all ended.
    pub done_shards: AtomicUsize,
    /// Set when no further checkpoint will start: shards that are done may exit.
    pub stopped: AtomicBool,
    pub on_demand: AtomicBool,
    /// Which of this run's checkpoints are full, and whether the next one must be.
    fulls: Mutex<Fulls>,
    pub stats: Mutex<CheckpointStats>,
    pub failure: Mutex<Option<Error>>,
    /// Shard files waiting to be written by the coordinator thread.
    writes: Mutex<Vec<ShardWrite>>,
    /// Per shard: buffers of its entries, written and handed back for reuse.
    spare: Vec<Mutex<Vec<Vec<u8>>>>,
}

/// The full (self-contained) checkpoints of a run: decided by the coordinator thread as it
/// starts each checkpoint, read by the shards at the barrier.
#[derive(Debug, Default)]
struct Fulls {
    /// [`Coordinator::request_full`] was called: the next checkpoint to start is full.
    requested: bool,
    /// This run's full checkpoints, ascending, from the newest one at or below the latest
    /// completed checkpoint (no checkpoint still to be written or completed can need an
    /// older one: a chain never reaches past a full checkpoint).
    ids: Vec<u64>,
}

/// What a shard keeps of its written entries' buffers at most, in bytes of capacity.
const SPARE_BYTES: usize = 64 << 20;
/// Smaller buffers are not worth handing back.
const SPARE_MIN: usize = 4 << 10;

/// The coordinator thread's buffers, reused from one shard file to the next.
#[derive(Default)]
pub(crate) struct WriteBuffers {
    encoder: store::Encoder,
    file: Vec<u8>,
}

/// A shard file for the coordinator thread to encode and write.
struct ShardWrite {
    id: u64,
    shard: usize,
    file: ShardFile,
}

impl Coordinator {
    pub(crate) fn new(
        shards: usize,
        guarantee: Guarantee,
        dir: PathBuf,
        operator_ids: Vec<String>,
        base: u64,
        chain: usize,
        full_every: usize,
    ) -> Self {
        Coordinator {
            first: base + 1,
            chain: chain.max(1) as u64,
            full_every: full_every as u64,
            shards,
            guarantee,
            dir,
            operator_ids,
            requested: AtomicU64::new(base),
            completed: AtomicU64::new(base),
            acked: (0..shards).map(|_| AtomicU64::new(base)).collect(),
            files: Mutex::new(vec![None; shards]),
            alignment_ns: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            snapshot_ns: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            stalls: Mutex::new(vec![Stall::default(); shards]),
            done_shards: AtomicUsize::new(0),
            stopped: AtomicBool::new(guarantee == Guarantee::AtMostOnce),
            on_demand: AtomicBool::new(false),
            fulls: Mutex::new(Fulls::default()),
            stats: Mutex::new(CheckpointStats::default()),
            failure: Mutex::new(None),
            writes: Mutex::new(Vec::new()),
            spare: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// The longest piece of checkpoint work on any shard in their latest checkpoints.
    pub(crate) fn longest_stall(&self) -> Stall {
        let stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        stalls
            .iter()
            .copied()
            .max_by_key(|s| s.work.wall)
            .unwrap_or_default()
    }

    /// A piece of checkpoint work in words, with the operator's id.
    pub(crate) fn piece_name(&self, piece: Piece) -> String {
        match piece {
            Piece::Nothing => String::new(),
            Piece::Barrier(node) => format!("barrier {}", self.operator_ids[node]),
            Piece::Archive(node) => format!("archive {}", self.operator_ids[node]),
        }
    }

    /// Marks the next checkpoint to start as full (self-contained: its keyed tables copy
    /// every key group whole and its chain is itself alone, so no older file is needed to
    /// restore it; a savepoint). A checkpoint in flight is not changed: the next one after
    /// it is full. Returns the id of that checkpoint (it is complete once
    /// `completed` reaches it, unless the job stops first).
    pub(crate) fn request_full(&self) -> u64 {
        let mut fulls = self.fulls.lock().unwrap_or_else(|e| e.into_inner());
        fulls.requested = true;
        // Under the lock `start_next` holds while it picks and publishes an id.
        self.requested.load(Ordering::SeqCst) + 1
    }

    /// Starts the next checkpoint and returns its id: decides whether it is full (the
    /// run's first, one requested with [`Coordinator::request_full`], or `full_every`
    /// after the previous full one) and records that *before* publishing the id in
    /// `requested`, since shards read [`Coordinator::copy_of`] as soon as they see it.
    pub(crate) fn start_next(&self) -> u64 {
        let mut fulls = self.fulls.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.requested.load(Ordering::SeqCst) + 1;
        let previous = fulls.ids.last().copied().unwrap_or(self.first);
        let requested = std::mem::take(&mut fulls.requested);
        let periodic = self.full_every > 0 && id - previous >= self.full_every;
        if id <= self.first || self.chain == 1 || requested || periodic {
            let completed = self.completed.load(Ordering::SeqCst);
            let needed = fulls.ids.iter().rposition(|&f| f <= completed);
            fulls.ids.drain(..needed.unwrap_or(0));
            fulls.ids.push(id);
        }
        self.requested.store(id, Ordering::SeqCst);
        id
    }

    /// The newest full checkpoint at or before `id` (the run's first at the latest).
    fn newest_full(&self, id: u64) -> u64 {
        let fulls = self.fulls.lock().unwrap_or_else(|e| e.into_inner());
        let recorded = fulls.ids.iter().rev().find(|&&f| f <= id);
        recorded.copied().unwrap_or(self.first).max(self.first)
    }

    /// The oldest checkpoint checkpoint `id` needs: the newest full checkpoint at or
    /// before it (the run's first at the latest), or the `chain - 1`-th before it (by then
    /// every key group was copied whole once), whichever is newer. `id` itself if it is
    /// full.
    pub(crate) fn chain_base(&self, id: u64) -> u64 {
        self.newest_full(id)
            .max((id + 1).saturating_sub(self.chain))
    }

    /// Which key groups checkpoint `id`'s keyed tables copy whole: `(i, n)`, the groups
    /// `g % n == i`, in turn; `(0, 1)` (all of them) for a full checkpoint.
    pub(crate) fn copy_of(&self, id: u64) -> (u32, u32) {
        if id <= self.first || self.chain == 1 || self.newest_full(id) == id {
            (0, 1)
        } else {
            (((id - self.first) % self.chain) as u32, self.chain as u32)
        }
    }

    /// Hands shard `shard`'s file of checkpoint `id` to the coordinator thread.
    pub(crate) fn submit_file(&self, id: u64, shard: usize, file: ShardFile) {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ShardWrite { id, shard, file });
    }

    /// Writes and syncs the shard files handed over so far, and acks them; hands the
    /// shards back their entries' buffers to reuse.
    pub(crate) fn write_files(&self, buffers: &mut WriteBuffers) -> Result<(), Error> {
        let writes = std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()));
        for w in writes {
            let name = store::shard_file_name(w.shard);
            let path = store::checkpoint_dir(&self.dir, w.id).join(&name);
            let bytes = &mut buffers.file;
            store::encode_into(&w.file, &mut buffers.encoder, bytes).map_err(|e| {
                Error::CheckpointIo {
                    action: "encode",
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            write_atomic(&path, bytes).map_err(|source| Error::CheckpointIo {
                action: "write",
                path,
                source,
            })?;
            let entry = (name, bytes.len() as u64, crc32fast::hash(bytes));
            self.files.lock().unwrap_or_else(|e| e.into_inner())[w.shard] = Some(entry);
            self.acked[w.shard].store(w.id, Ordering::SeqCst);
            self.give_back(w.shard, w.file);
        }
        Ok(())
    }

    /// Hands shard `shard` the buffers of its written file's entries, up to
    /// [`SPARE_BYTES`] in all.
    fn give_back(&self, shard: usize, file: ShardFile) {
        let mut spare = self.spare[shard].lock().unwrap_or_else(|e| e.into_inner());
        let mut held: usize = spare.iter().map(Vec::capacity).sum();
        for entry in file.nodes.into_iter().flat_map(|n| n.entries) {
            let buffer = entry.bytes;
            if buffer.capacity() < SPARE_MIN || held + buffer.capacity() > SPARE_BYTES {
                continue;
            }
            held += buffer.capacity();
            spare.push(buffer);
        }
    }

    /// Buffers the coordinator thread handed back to shard `shard`, for it to reuse.
    pub(crate) fn take_spare(&self, shard: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.spare[shard].lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn fail(&self, error: Error) {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
    }

    /// Writes the manifest that marks the job finished (after every shard ended cleanly):
    /// checkpoint `completed + 1`, holding no state.
    pub(crate) fn finish(&self) -> Result<u64, Error> {
        let id = self.completed.load(Ordering::SeqCst) + 1;
        let m = Manifest {
            id,
            shards: self.shards,
            guarantee: self.guarantee,
            finished: true,
            base: id,
            nodes: self.operator_ids.clone(),
            files: Vec::new(),
        };
        self.write_manifest(&m)?;
        store::prune(&self.dir, id, 1);
        Ok(id)
    }

    /// Writes checkpoint `m.id`'s manifest, making it complete.
    pub(crate) fn write_manifest(&self, m: &Manifest) -> Result<(), Error> {
        store::write_manifest(&self.dir, m).map_err(|source| Error::CheckpointIo {
            action: "write the manifest in",
            path: store::checkpoint_dir(&self.dir, m.id),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::{NodeState, StateEntry};

    fn entry(capacity: usize) -> StateEntry {
        StateEntry {
            name: String::new(),
            version: 1,
            split: false,
            scope: 0,
            changelog: true,
            bytes: Vec::with_capacity(capacity),
        }
    }

    #[test]
    fn written_entries_go_back_to_their_shard_within_a_bound() {
        let dir = std::env::temp_dir().join("rill-spare-test");
        let coord = Coordinator::new(2, Guarantee::ExactlyOnce, dir, vec!["op".into()], 0, 1, 0);
        let file = |sizes: &[usize]| ShardFile {
            checkpoint: 1,
            shard: 1,
            shards: 2,
            nodes: vec![NodeState {
                operator: "op".into(),
                entries: sizes.iter().map(|&c| entry(c)).collect(),
            }],
        };
        coord.give_back(1, file(&[100, SPARE_MIN, 2 * SPARE_MIN]));
        let spare = coord.take_spare(1);
        // Small buffers are dropped.
        let mut capacities: Vec<usize> = spare.iter().map(Vec::capacity).collect();
        capacities.sort();
        assert_eq!(capacities.len(), 2);
        assert!(capacities[0] >= SPARE_MIN, "{capacities:?}");
        assert!(coord.take_spare(0).is_empty());
        assert!(coord.take_spare(1).is_empty(), "taken once");
        // No more than the bound is held.
        let big = SPARE_BYTES / 4;
        coord.give_back(1, file(&[big; 8]));
        let held: usize = coord.take_spare(1).iter().map(Vec::capacity).sum();
        assert!((SPARE_BYTES / 2..=SPARE_BYTES).contains(&held), "{held}");
    }
}
