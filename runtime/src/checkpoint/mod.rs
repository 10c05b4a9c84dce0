//! Fault tolerance: checkpoint barriers, snapshots of operator state and source positions,
//! recovery, and the hooks two-phase-commit sinks need.
//!
//! **Barriers.** A coordinator thread asks every source for checkpoint `n` at a fixed
//! interval (or on demand, [`JobHandle::checkpoint_now`](crate::JobHandle::checkpoint_now)).
//! Each source records its position and sends [`Progress::Barrier(n)`](crate::Progress)
//! down its chain, in band with the data. An operator snapshots its state once the barrier
//! arrived on all of its inputs and then forwards it. With [`Guarantee::ExactlyOnce`] the
//! barriers are *aligned*: an input that delivered barrier `n` is held back (an exchange
//! stops reading that channel; a two-input operator or a union buffers it) until every
//! other input delivered it too, so the snapshot holds exactly the effect of the records
//! before the barrier (asynchronous barrier snapshots, as in Flink). With
//! [`Guarantee::AtLeastOnce`] inputs are not held back, so a snapshot may include records
//! after the barrier, which are replayed (and counted twice) after a recovery.
//! [`Guarantee::AtMostOnce`] takes no snapshots: sources record *leases* (positions a bit
//! ahead of what they emitted) and a restarted job resumes after them, with fresh state.
//!
//! **Files.** At the barrier each operator writes its state as rkyv archives (a
//! [`StateWriter`]); the shard hands its operators' entries to the coordinator thread
//! (`crate::job_checkpoints`), which frames and checksums them into
//! `DIR/chk-<n>/shard-<i>.bin` and writes that while the shard keeps processing. When every
//! shard's file is written the coordinator writes `DIR/chk-<n>/MANIFEST`: only then is
//! checkpoint `n` complete. Every one of these files is written with
//! [`crate::fs::write_atomic`] (temporary file, fsync, rename, fsync of the directory).
//!
//! **Incremental checkpoints.** Keyed state kept in [`KeyedState`](crate::state::KeyedState)
//! tables writes only its keys changed since the previous checkpoint, plus a whole copy of
//! one part of its key groups in turn ([`Checkpointing::chain_length`]); the manifest names
//! the oldest checkpoint its chain needs (`base`). Recovery reads the chain in order; a
//! damaged or missing link makes the checkpoint unusable and an older one is tried. The
//! run's first checkpoint, one every [`Checkpointing::full_every`] and one requested (a
//! savepoint) are *full*: they copy every key group and need no older checkpoint, and no
//! chain reaches past them. The last [`Checkpointing::retain`] complete checkpoints are
//! kept, with every checkpoint their chains need, and the *fallback*: the newest full
//! checkpoint older than the newest chain's base, which shares no file with that chain.
//!
//! This module is a shard's side of checkpoints (state written at barriers, the file
//! format, recovery's reading of it); starting checkpoints and completing them is
//! `crate::job_checkpoints`'s.
//!
//! **Rescaling.** Keyed state is written per key group ([`StateWriter::put_keyed`]); on a
//! restore onto `M` shards each shard takes the key groups it owns under `M`. Non-keyed
//! state and source positions are written per *split* ([`StateWriter::put_split`]), and
//! split `s` goes to shard `s % M`.
//!
//! **Recovery.** Starting a job with a checkpoint directory restores the latest complete
//! checkpoint. Every file of its chain is validated (checksum, then rkyv validation); a
//! corrupt or truncated checkpoint is reported in [`Recovery::skipped`] and the previous
//! complete one is used, down to the fallback: one damaged file never leaves nothing to
//! restore. The checkpoints skipped are moved to `DIR/damaged` (a restored run reuses
//! their ids). A job refuses to start only if no checkpoint is usable.

mod coordinator;
mod local;
mod store;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rkyv::util::AlignedVec;

use crate::data::ExchangeData;
use crate::error::{Error, Failure};
use crate::keys::{key_group, shard_of_key_group};

pub use coordinator::{CheckpointRecord, CheckpointStats};
pub(crate) use coordinator::{Coordinator, WriteBuffers};
pub(crate) use local::{Restore, ShardCheckpoint, Stopwatch};
pub(crate) use store::{
    archived, load_leases as store_leases, prune, remove_after, set_aside, Manifest, ShardFile,
    StateEntry, FORMAT_VERSION,
};
pub use store::{find_latest, Recovery};

/// The result guarantee a job runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guarantee {
    /// Aligned barriers and replayable sources: after a failure, every record affects the
    /// state exactly once.
    ExactlyOnce,
    /// Snapshots without barrier alignment: after a failure nothing is lost, but records
    /// may be counted twice.
    AtLeastOnce,
    /// No snapshots and no replay: after a failure the job resumes after the input it had
    /// already read, with empty state; records may be lost, never duplicated.
    AtMostOnce,
}

impl Guarantee {
    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::AtMostOnce => "at-most-once",
        }
    }

    /// True if barriers are aligned.
    pub fn aligned(self) -> bool {
        self == Guarantee::ExactlyOnce
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Guarantee {
    type Err = UnknownGuarantee;
    fn from_str(s: &str) -> Result<Self, UnknownGuarantee> {
        match s {
            "exactly-once" => Ok(Guarantee::ExactlyOnce),
            "at-least-once" => Ok(Guarantee::AtLeastOnce),
            "at-most-once" => Ok(Guarantee::AtMostOnce),
            _ => Err(UnknownGuarantee(s.to_string())),
        }
    }
}

/// A guarantee name that is none of `exactly-once`, `at-least-once`, `at-most-once`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown guarantee '{0}': use exactly-once, at-least-once or at-most-once")]
pub struct UnknownGuarantee(pub String);

/// How a job takes checkpoints. Give it to [`Config::checkpointing`](crate::Config::checkpointing).
#[derive(Debug, Clone)]
pub struct Checkpointing {
    pub(crate) dir: PathBuf,
    pub(crate) interval: Option<Duration>,
    pub(crate) guarantee: Guarantee,
    pub(crate) retain: usize,
    pub(crate) allow_non_restored_state: bool,
    pub(crate) chain: usize,
    /// Set by [`Checkpointing::full_every`]; `None`: twice the chain length.
    pub(crate) full_every: Option<usize>,
}

impl Checkpointing {
    /// Checkpoints in `dir` (created if missing), exactly-once, every second, keeping 3.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Checkpointing {
            dir: dir.into(),
            interval: Some(Duration::from_secs(1)),
            guarantee: Guarantee::ExactlyOnce,
            retain: 3,
            allow_non_restored_state: false,
            chain: 8,
            full_every: None,
        }
    }

    /// Incremental checkpoints, in chains of at most `n`: recovery reads the newest
    /// complete checkpoint and the `n - 1` before it (or back to the newest full one, if
    /// that is newer). The first checkpoint of a run is full; every later one but the full
    /// ones ([`Checkpointing::full_every`]) writes the keyed state changed since the
    /// previous checkpoint plus a whole copy of one `n`-th of the key groups, in turn, so
    /// that the last `n` checkpoints hold every key's newest state, and no increment writes
    /// everything at once. (This is keyed state kept in
    /// [`KeyedState`](crate::state::KeyedState) tables, which the built-in operators use;
    /// other state is written whole every time.) Retention keeps every checkpoint a
    /// retained one needs. `1` makes every checkpoint full. Default 8.
    pub fn chain_length(mut self, n: usize) -> Self {
        self.chain = n.max(1);
        self
    }

    /// A full (self-contained) checkpoint once `n` checkpoints were taken since the
    /// previous full one; `0`: only the run's first checkpoint is full. Default: twice the
    /// chain length ([`Checkpointing::chain_length`]), 16.
    ///
    /// A chain never reaches past a full checkpoint, and retention keeps the newest full
    /// checkpoint older than the newest chain's base as the *fallback*: it shares no file
    /// with the newest chain, so one damaged file never leaves nothing to restore. The
    /// cost, for keyed state of size `S` with chains of length `L` and a full checkpoint
    /// every `n`: each checkpoint writes its changes plus `S / L`, and every `n`-th writes
    /// `S` instead, so `S (1 + (n - 1) / L) / n` per checkpoint on average, about 1.44 times
    /// `S / L` with the defaults; the disk holds the fallback (`S`) besides the retained
    /// chains; and a restore from the fallback replays the input since it, up to
    /// `n + L - 1` checkpoint intervals.
    pub fn full_every(mut self, n: usize) -> Self {
        self.full_every = Some(n);
        self
    }

    /// After how many checkpoints a full one is taken (0: never but the run's first).
    pub(crate) fn fulls(&self) -> usize {
        self.full_every.unwrap_or(2 * self.chain)
    }

    /// Lets the job start from a checkpoint that holds state for an operator the job no
    /// longer has (that state is dropped; Flink's `allowNonRestoredState`). Off by default:
    /// then such a checkpoint is refused with [`Error::UnmatchedState`](crate::Error).
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    /// Time between the start of one checkpoint and the next (`None`: only on demand).
    pub fn interval(mut self, interval: Option<Duration>) -> Self {
        self.interval = interval;
        self
    }

    /// The result guarantee.
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// How many complete checkpoints to keep (at least 1; default 3), besides the
    /// checkpoints their chains need and the fallback ([`Checkpointing::full_every`]).
    pub fn retain(mut self, retain: usize) -> Self {
        self.retain = retain;
        self
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The guarantee.
    pub fn guarantee_of(&self) -> Guarantee {
        self.guarantee
    }
}

/// The position of one split of a replayable source: `position` is the source's own unit
/// (an event number, a byte offset) of the next record the split will emit.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct SplitPosition {
    /// The split's id, unique in the source (split `s` is restored onto shard `s % M`).
    pub split: u32,
    /// How many splits the source had when it started (e.g. the shard count of the first
    /// run, for a generator that strides over shards).
    pub of: u32,
    /// The next position the split emits.
    pub position: u64,
}

/// The scope of an entry written by [`StateWriter::put_keyed_all`]: its values carry
/// their key groups.
pub(crate) const MIXED: u32 = u32::MAX;

/// The scope of an entry written by [`StateWriter::put_shared`]: every shard restores it.
pub(crate) const SHARED: u32 = u32::MAX;

/// The named state a source's split positions are written in (and leases).
pub(crate) const SPLITS: &str = "splits";

/// How far ahead of its position an at-most-once source leases (in the source's units):
/// after a crash it resumes there, skipping at most this much input per split.
pub const AT_MOST_ONCE_LEASE: u64 = 1 << 22;

/// Where an operator writes its state at a barrier.
///
/// State is written in named, versioned sections ([`StateWriter::section`]), so that a
/// later build can tell what it reads and refuse a version it does not know; what is written
/// before any section is named belongs to the unnamed section, version 1.
pub struct StateWriter {
    pub(crate) entries: Vec<StateEntry>,
    /// Changelog records still to archive: the shard's loop serializes them in slices
    /// after the barrier (see [`Deferred`]).
    pub(crate) deferred: Vec<Deferred>,
    defer: bool,
    scratch: Scratch,
    section: (String, u32),
    /// `(i, n)`: keyed tables copy the key groups `g` with `g % n == i` whole (`n == 1`:
    /// a full checkpoint).
    copy: (u32, u32),
    /// The writing shard's index and the job's shard count (see [`StateWriter::put_own`]).
    shard: (u32, u32),
}

impl std::fmt::Debug for StateWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWriter")
            .field("entries", &self.entries.len())
            .field(
                "bytes",
                &self.entries.iter().map(|e| e.bytes.len()).sum::<usize>(),
            )
            .finish()
    }
}

impl Default for StateWriter {
    fn default() -> Self {
        StateWriter {
            entries: Vec::new(),
            deferred: Vec::new(),
            defer: false,
            scratch: Scratch::default(),
            section: (String::new(), 1),
            copy: (0, 1),
            shard: (0, 1),
        }
    }
}

impl StateWriter {
    /// Writes what follows into the operator's named state `name` at format `version`
    /// (read back with [`StateReader::section`]).
    ///
    /// ```
    /// use rill_runtime::checkpoint::StateWriter;
    ///
    /// let mut state = StateWriter::default();
    /// state.section("counts", 1).put_keyed(42, (7u64, 3u64)).unwrap();
    /// assert_eq!(state.len(), 1);
    /// ```
    pub fn section(&mut self, name: &str, version: u32) -> &mut Self {
        self.section = (name.to_string(), version);
        self
    }

    /// A writer for a checkpoint whose keyed tables copy the key groups `g % n == i`
    /// whole, `(i, n)` (`(0, 1)`: a full checkpoint), on shard `shard.0` of `shard.1`.
    pub(crate) fn for_checkpoint(copy: (u32, u32), shard: (usize, usize)) -> Self {
        StateWriter {
            copy,
            shard: (shard.0 as u32, shard.1 as u32),
            defer: true,
            ..StateWriter::default()
        }
    }

    /// A writer like the one an incremental checkpoint hands an operator: its keyed tables
    /// write their changes and, whole, the key groups `g % parts == part`; their records
    /// are archived later ([`StateWriter::archive`]), as the shard's loop does in slices.
    /// For tests and benchmarks of an operator's snapshot.
    pub fn incremental(part: u32, parts: u32) -> Self {
        Self::for_checkpoint((part % parts.max(1), parts.max(1)), (0, 1))
    }

    /// Archives the records still deferred (what the shard's loop does in slices after the
    /// barrier).
    pub fn archive(&mut self) -> Result<(), Failure> {
        self.finish()
    }

    /// Archives what was deferred now (a writer used outside a shard's checkpoint).
    pub(crate) fn finish(&mut self) -> Result<(), Failure> {
        for mut d in std::mem::take(&mut self.deferred) {
            // One call collects everything (its work is unbounded).
            while let Some(entry) = d.next_entry(&mut self.scratch, usize::MAX) {
                self.entries.push(entry?);
            }
        }
        Ok(())
    }

    /// True if this checkpoint is full: a [`KeyedState`](crate::state::KeyedState) table
    /// writes all of its entries, not only those changed since the previous checkpoint.
    /// (State written with the other methods is always written whole.)
    pub fn is_full(&self) -> bool {
        self.copy.1 == 1
    }

    /// `(i, n)`: besides its changes, a keyed table writes the key groups `g` with
    /// `g % n == i` whole.
    pub(crate) fn copy(&self) -> (u32, u32) {
        self.copy
    }

    /// Archives `records` (each with its key group) as one changelog entry of the current
    /// section: recovery applies the changelog entries of every checkpoint of a chain in
    /// order.
    ///
    /// In a shard's checkpoint the records are archived later, in slices between batches
    /// (the shard's loop), so that the barrier only costs making them.
    pub(crate) fn put_changelog<T>(&mut self, records: Vec<(u32, T)>) -> Result<(), Failure>
    where
        (u32, T): ExchangeData,
    {
        self.put_changelog_from(Box::new(Pending(records)))
    }

    /// A changelog entry of the current section whose records `records` makes as the
    /// entry is archived (a table's copy-on-write checkpoint collects them then); archived
    /// at once outside a shard's checkpoint, as [`StateWriter::put_changelog`] is.
    pub(crate) fn put_changelog_from(
        &mut self,
        records: Box<dyn Archiving>,
    ) -> Result<(), Failure> {
        self.deferred.push(Deferred {
            name: self.section.0.clone(),
            version: self.section.1,
            records,
        });
        if !self.defer {
            self.finish()?;
        }
        Ok(())
    }

    /// Archives `records` as one entry.
    fn push_entry<T: ExchangeData>(
        &mut self,
        split: bool,
        scope: u32,
        records: &[T],
    ) -> Result<(), Failure> {
        let bytes = T::write_batch(
            records,
            crate::data::BatchBytes::new(),
            self.scratch.arena.acquire(),
        )
        .map_err(crate::data::corrupt)?;
        self.entries.push(StateEntry {
            name: self.section.0.clone(),
            version: self.section.1,
            split,
            scope,
            changelog: false,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    fn put<T: ExchangeData>(&mut self, split: bool, scope: u32, value: T) -> Result<(), Failure> {
        self.push_entry(split, scope, &[value])
    }

    /// Writes `value`, state of the key whose hash is `key_hash` (as
    /// [`hash_key`](crate::hash_key) computes it): on a restore it goes to the shard that
    /// owns the key's group.
    pub fn put_keyed<T: ExchangeData>(&mut self, key_hash: u64, value: T) -> Result<(), Failure> {
        self.put(false, key_group(key_hash), value)
    }

    /// Writes many keyed values at once, `(key hash, value)`, as one archive in which
    /// each value carries its key group: one pass and one serialization however large the
    /// state. On a restore every shard reads the archive and keeps the values of the key
    /// groups it owns. Read them back with [`StateReader::keyed_values`].
    pub fn put_keyed_all<T>(
        &mut self,
        values: impl IntoIterator<Item = (u64, T)>,
    ) -> Result<(), Failure>
    where
        (u32, T): ExchangeData,
    {
        let records: Vec<(u32, T)> = values
            .into_iter()
            .map(|(hash, value)| (key_group(hash), value))
            .collect();
        self.push_entry(false, MIXED, &records)
    }

    /// Writes `value` as part of split `split` (non-keyed state): on a restore onto `M`
    /// shards it goes to shard `split % M`.
    pub fn put_split<T: ExchangeData>(&mut self, split: u32, value: T) -> Result<(), Failure> {
        self.put(true, split, value)
    }

    /// Writes `value` as this shard's own state: a restore onto as many shards gives it back
    /// to this shard ([`StateReader::own`]); on another shard count it is not given back
    /// (write what every shard needs then with [`StateWriter::put_shared`] as well). For
    /// what differs between shards and has no key: the watermark an operator without an
    /// exchange in front, or one under unaligned barriers, saw at its barrier.
    pub fn put_own<T>(&mut self, value: T) -> Result<(), Failure>
    where
        (u32, T): ExchangeData,
    {
        let (shard, shards) = self.shard;
        self.put(true, shard, (shards, value))
    }

    /// Writes `value` as state that every shard receives on a restore, whatever the shard
    /// count: each shard writes its own, and a restored operator combines them (an
    /// operator's watermark, say, as the minimum). Read back with [`StateReader::values`]
    /// of the section it was written in.
    pub fn put_shared<T: ExchangeData>(&mut self, value: T) -> Result<(), Failure> {
        self.put(true, SHARED, value)
    }

    /// Entries written so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Changelog records of one table still to archive, in entries of a bounded number of
/// records each.
pub(crate) struct Deferred {
    name: String,
    version: u32,
    records: Box<dyn Archiving>,
}

impl Deferred {
    /// Archives up to `max` more records as one changelog entry; `None` once all are.
    pub(crate) fn next_entry(
        &mut self,
        scratch: &mut Scratch,
        max: usize,
    ) -> Option<Result<StateEntry, Failure>> {
        let bytes = self.records.next_chunk(scratch, max)?;
        Some(bytes.map(|bytes| StateEntry {
            name: self.name.clone(),
            version: self.version,
            split: false,
            scope: MIXED,
            changelog: true,
            bytes,
        }))
    }
}

/// A table's changelog records, archived a chunk at a time.
pub(crate) trait Archiving {
    /// Archives up to `max` more records; `None` once all are. A chunk may be empty (no
    /// records found within the call's share of work, more to come).
    fn next_chunk(&mut self, scratch: &mut Scratch, max: usize)
        -> Option<Result<Vec<u8>, Failure>>;
}

/// Memory a shard reuses while it archives checkpoints, so that archiving touches no
/// fresh memory once the shard has taken a checkpoint or two: a first touch of a page
/// is a page fault, which costs 1-5 ms per 150 KB on some virtual machines (measured in
/// docs/checkpoints.md), time the shard's records would wait.
#[derive(Default)]
pub(crate) struct Scratch {
    arena: rkyv::ser::allocator::Arena,
    /// What a chunk is serialized into before it is copied out at its length.
    bytes: crate::data::BatchBytes,
    /// Buffers of entries the coordinator thread wrote and handed back.
    pub(crate) spare: Vec<Vec<u8>>,
}

impl Scratch {
    /// A buffer holding a copy of `bytes`, reusing a spare one if there is one.
    fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = self.spare.pop().unwrap_or_default();
        out.clear();
        out.extend_from_slice(bytes);
        out
    }
}

struct Pending<T>(Vec<T>);

impl<T: ExchangeData> Archiving for Pending<T> {
    fn next_chunk(
        &mut self,
        scratch: &mut Scratch,
        max: usize,
    ) -> Option<Result<Vec<u8>, Failure>> {
        archive_chunk(&mut self.0, scratch, max)
    }
}

/// Archives up to `max` of `records` (taken off the end); `None` if there are none.
pub(crate) fn archive_chunk<T: ExchangeData>(
    records: &mut Vec<T>,
    scratch: &mut Scratch,
    max: usize,
) -> Option<Result<Vec<u8>, Failure>> {
    if records.is_empty() {
        return None;
    }
    // The records are written from the back, in place (each table's records hold
    // distinct keys, so order is free).
    let at = records.len().saturating_sub(max.max(1));
    let mut bytes = std::mem::take(&mut scratch.bytes);
    bytes.clear();
    let written = T::write_batch(&records[at..], bytes, scratch.arena.acquire());
    records.truncate(at);
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => return Some(Err(crate::data::corrupt(e))),
    };
    let out = scratch.copy_of(&bytes);
    scratch.bytes = bytes;
    Some(Ok(out))
}

/// The state a restored operator receives: every entry of its node that belongs to this
/// shard, over all the checkpoint's shard files.
#[derive(Debug)]
pub struct StateReader {
    pub(crate) checkpoint: u64,
    pub(crate) shard: usize,
    pub(crate) shards: usize,
    pub(crate) entries: Vec<RestoredEntry>,
}

/// One entry of a restored operator's state.
#[derive(Debug, Clone)]
pub(crate) struct RestoredEntry {
    pub name: String,
    pub version: u32,
    /// Written by `put_keyed_all` or `put_changelog` (values carry their key groups).
    pub mixed: bool,
    /// A keyed table's changes (`put_changelog`); in chain order among the node's entries.
    pub changelog: bool,
    pub bytes: AlignedVec<16>,
}

impl StateReader {
    /// The checkpoint restored from.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries of the operator's named state `name`, which this build reads at format
    /// `version`; an entry written at another version is a clear error (not misread).
    ///
    /// ```
    /// # use rill_runtime::checkpoint::StateReader;
    /// fn restore(state: &StateReader) -> rill_runtime::OpResult {
    ///     let counts: Vec<(u64, u64)> = state.section("counts", 1)?.values()?;
    ///     # let _ = counts;
    ///     Ok(())
    /// }
    /// ```
    pub fn section(&self, name: &str, version: u32) -> Result<StateReader, Failure> {
        let mut entries = Vec::new();
        for e in self.entries.iter().filter(|e| e.name == name) {
            if e.version != version {
                return Err(Failure::corrupt(format!(
                    "state '{name}' was written at version {}, this build reads version \
                     {version}",
                    e.version
                )));
            }
            entries.push(e.clone());
        }
        Ok(StateReader {
            checkpoint: self.checkpoint,
            shard: self.shard,
            shards: self.shards,
            entries,
        })
    }

    /// Validates and reads every entry written by [`StateWriter::put_keyed`] or
    /// [`StateWriter::put_split`] as a `T` (the type the operator wrote).
    pub fn values<T: ExchangeData>(&self) -> Result<Vec<T>, Failure> {
        let mut out = Vec::with_capacity(self.entries.len());
        for e in self.entries.iter().filter(|e| !e.mixed) {
            T::read_batch(&e.bytes, &mut out).map_err(mismatch)?;
        }
        Ok(out)
    }

    /// The value this shard wrote with [`StateWriter::put_own`] in this section, if the
    /// checkpoint was taken on as many shards as the job runs on now (else `None`).
    pub fn own<T>(&self) -> Result<Option<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        let shards = self.shards as u32;
        let mut own = self
            .values::<(u32, T)>()?
            .into_iter()
            .filter(|(written_on, _)| *written_on == shards);
        match (own.next(), own.next()) {
            (Some((_, value)), None) => Ok(Some(value)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(Failure::corrupt(
                "two values of one shard's own state (StateWriter::put_own)".to_string(),
            )),
        }
    }

    /// Validates and reads the values written by [`StateWriter::put_keyed_all`] whose key
    /// groups this shard owns.
    pub fn keyed_values<T>(&self) -> Result<Vec<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        self.grouped(false)
    }

    /// The changelog records (written with `put_changelog`) of the key groups this shard
    /// owns, oldest checkpoint of the chain first.
    pub(crate) fn changelog<T>(&self) -> Result<Vec<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        self.grouped(true)
    }

    fn grouped<T>(&self, changelog: bool) -> Result<Vec<T>, Failure>
    where
        (u32, T): ExchangeData,
    {
        let mut out = Vec::new();
        let mut all: Vec<(u32, T)> = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.mixed && e.changelog == changelog)
        {
            all.clear();
            <(u32, T)>::read_batch(&e.bytes, &mut all).map_err(mismatch)?;
            out.extend(all.drain(..).filter_map(|(group, value)| {
                (shard_of_key_group(group, self.shards) == self.shard).then_some(value)
            }));
        }
        Ok(out)
    }
}

fn mismatch(e: rkyv::rancor::Error) -> Failure {
    Failure::corrupt(format!("state entry does not match its operator: {e}"))
}

/// What a shard's operators can learn about checkpointing while they are built (from
/// [`ShardContext::checkpoint`](crate::ShardContext::checkpoint)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointContext {
    /// The guarantee the job runs with.
    pub guarantee: Guarantee,
    /// The first epoch this run writes: one past the checkpoint it restored (exactly- and
    /// at-least-once), or one past the previous run (at-most-once). Epoch `e` holds the
    /// output between barriers `e - 1` and `e`.
    pub first_epoch: u64,
}

/// At-most-once: writes the lease of `node`'s source on `shard` (atomically and durably,
/// see [`crate::fs::write_atomic`]).
pub(crate) fn write_lease(
    coord: &Coordinator,
    shard: usize,
    node: usize,
    lease: &[SplitPosition],
) -> Result<(), Failure> {
    let mut state = StateWriter::default();
    for p in lease {
        state.section(SPLITS, 1).put_split(p.split, *p)?;
    }
    let file = ShardFile {
        checkpoint: coord.completed.load(std::sync::atomic::Ordering::Relaxed),
        shard: shard as u32,
        shards: coord.shards as u32,
        nodes: vec![store::NodeState {
            operator: coord.operator_ids[node].clone(),
            entries: state.entries,
        }],
    };
    let path = store::lease_path(&coord.dir, shard, node);
    let bytes = store::encode(&file)
        .map_err(|e| Failure::caused_by(format!("could not encode lease {}", path.display()), e))?;
    crate::fs::write_atomic(&path, &bytes)
        .map_err(|e| Failure::caused_by(format!("could not write lease {}", path.display()), e))
}

/// Picks, from the shard files of a checkpoint, the entries shard `shard` of `shards`
/// restores: keyed entries of the key groups it owns, split entries `s` with
/// `s % shards == shard`; each operator's under the node that now has its id (`ids`, by
/// node). State of an id no node has is left out (the job was allowed to drop it).
pub(crate) fn assign(
    files: &[AlignedVec<16>],
    checkpoint: u64,
    shard: usize,
    shards: usize,
    ids: &[String],
) -> Restore {
    let node_of: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut nodes: std::collections::HashMap<usize, Vec<RestoredEntry>> = Default::default();
    for payload in files {
        let file = store::archived(payload);
        // An earlier checkpoint of the chain contributes only its keyed changelogs.
        let top = file.checkpoint.to_native() == checkpoint;
        for node in file.nodes.iter() {
            let Some(&index) = node_of.get(node.operator.as_str()) else {
                continue;
            };
            for e in node.entries.iter().filter(|e| top || e.changelog) {
                let scope = e.scope.to_native();
                let mixed = !e.split && scope == MIXED;
                let mine = if e.split {
                    scope == SHARED || scope as usize % shards == shard
                } else {
                    mixed || shard_of_key_group(scope, shards) == shard
                };
                if mine {
                    let mut bytes = AlignedVec::<16>::with_capacity(e.bytes.len());
                    bytes.extend_from_slice(&e.bytes);
                    nodes.entry(index).or_default().push(RestoredEntry {
                        name: e.name.to_string(),
                        version: e.version.to_native(),
                        mixed,
                        changelog: e.changelog,
                        bytes,
                    });
                }
            }
        }
    }
    Restore {
        checkpoint,
        shard,
        shards,
        nodes,
    }
}

/// At-most-once: merges lease files (the furthest position of each split wins, so a
/// lease left behind by a run with another shard count does no harm) into one payload.
pub(crate) fn merge_leases(
    root: &Path,
    files: &[AlignedVec<16>],
    run: u64,
) -> Result<AlignedVec<16>, Error> {
    let corrupt = |problem: String| Error::CheckpointCorrupt {
        path: root.join("leases"),
        problem,
    };
    let mut splits: std::collections::BTreeMap<(String, u32), SplitPosition> = Default::default();
    for payload in files {
        for node in store::archived(payload).nodes.iter() {
            for e in node.entries.iter() {
                let mut bytes = AlignedVec::<16>::with_capacity(e.bytes.len());
                bytes.extend_from_slice(&e.bytes);
                let mut values: Vec<SplitPosition> = Vec::new();
                SplitPosition::read_batch(&bytes, &mut values)
                    .map_err(|err| corrupt(format!("lease entry: {err}")))?;
                for p in values {
                    let slot = splits
                        .entry((node.operator.to_string(), p.split))
                        .or_insert(p);
                    if p.position > slot.position {
                        *slot = p;
                    }
                }
            }
        }
    }
    let mut nodes: std::collections::BTreeMap<String, StateWriter> = Default::default();
    for ((node, split), p) in splits {
        nodes
            .entry(node)
            .or_default()
            .section(SPLITS, 1)
            .put_split(split, p)
            .map_err(|e| corrupt(e.message))?;
    }
    let file = ShardFile {
        checkpoint: run,
        shard: 0,
        shards: 1,
        nodes: nodes
            .into_iter()
            .map(|(operator, w)| store::NodeState {
                operator,
                entries: w.entries,
            })
            .collect(),
    };
    let bytes = store::encode(&file).map_err(|e| corrupt(e.to_string()))?;
    store::decode(&bytes).map_err(corrupt)
}

/// Job-level hooks of a checkpointed dataflow, run on the thread that starts and joins the
/// job: where a two-phase-commit sink resolves its transactions. Add with
/// [`Dataflow::on_job`](crate::Dataflow::on_job).
pub trait JobHook: Send + Sync {
    /// Before any shard starts. `restored`: the checkpoint the job restores from (at-most-
    /// once: the previous run's number); `None` for a fresh start. Commit what was
    /// pre-committed up to it; abort (delete) what came after.
    fn before_start(&self, restored: Option<u64>, guarantee: Guarantee) -> Result<(), HookError>;
    /// After every shard ended cleanly and the final manifest, checkpoint `last`, was
    /// written: commit everything up to it.
    fn after_finish(&self, last: u64) -> Result<(), HookError>;
}

/// What a [`JobHook`] returns when it fails: any error (a `String` converts with `?` or
/// `.into()`).
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    /// What `assign` would hand a one-shard restore of `state`.
    fn restored(state: StateWriter) -> StateReader {
        let entries = state
            .entries
            .into_iter()
            .map(|e| {
                let mut bytes = AlignedVec::<16>::with_capacity(e.bytes.len());
                bytes.extend_from_slice(&e.bytes);
                RestoredEntry {
                    mixed: !e.split && e.scope == MIXED,
                    changelog: e.changelog,
                    name: e.name,
                    version: e.version,
                    bytes,
                }
            })
            .collect();
        StateReader {
            checkpoint: 1,
            shard: 0,
            shards: 1,
            entries,
        }
    }

    #[test]
    fn named_sections_read_back_apart_and_refuse_other_versions() {
        let mut state = StateWriter::default();
        state.section("counts", 1).put_keyed(7, 10u64).unwrap();
        state
            .section("timers", 2)
            .put_keyed_all([(7, 100i64), (8, 200)])
            .unwrap();
        let reader = restored(state);
        assert_eq!(
            reader
                .section("counts", 1)
                .unwrap()
                .values::<u64>()
                .unwrap(),
            [10]
        );
        let mut timers = reader
            .section("timers", 2)
            .unwrap()
            .keyed_values::<i64>()
            .unwrap();
        timers.sort();
        assert_eq!(timers, [100, 200]);
        assert!(reader.section("absent", 1).unwrap().is_empty());
        let err = reader.section("timers", 1).unwrap_err();
        assert!(
            err.message
                .contains("written at version 2, this build reads version 1"),
            "{err}"
        );
    }

    #[test]
    fn chunks_are_archived_from_the_back_into_spare_buffers_and_read_back() {
        let mut records: Vec<(u32, String)> = (0..10).map(|i| (i, format!("r{i}"))).collect();
        let mut scratch = Scratch::default();
        let spare = Vec::with_capacity(1 << 16);
        let at = spare.as_ptr();
        scratch.spare.push(spare);
        let first = archive_chunk(&mut records, &mut scratch, 4)
            .unwrap()
            .unwrap();
        // The spare buffer holds the chunk: no new allocation.
        assert_eq!(first.as_ptr(), at);
        assert!(scratch.spare.is_empty());
        let mut chunks = vec![first];
        while let Some(chunk) = archive_chunk(&mut records, &mut scratch, 4) {
            chunks.push(chunk.unwrap());
        }
        assert_eq!(chunks.len(), 3);
        let mut back = Vec::new();
        for chunk in chunks {
            let mut aligned = AlignedVec::<16>::new();
            aligned.extend_from_slice(&chunk);
            <(u32, String)>::read_batch(&aligned, &mut back).unwrap();
        }
        back.sort();
        let expected: Vec<(u32, String)> = (0..10).map(|i| (i, format!("r{i}"))).collect();
        assert_eq!(back, expected);
    }
}
