//! [`StateWriter`]: where an operator writes its state at a barrier, and the archiving of
//! keyed tables' changelogs in slices after it.

use super::scope::EntryScope;
use super::store::StateEntry;
use crate::data::ExchangeData;
use crate::error::Failure;
use crate::keys::key_group;

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
    /// (read back with [`StateReader::section`](super::StateReader::section)).
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
        scope: EntryScope,
        records: &[T],
    ) -> Result<(), Failure> {
        let bytes = T::write_batch(
            records,
            crate::data::BatchBytes::new(),
            self.scratch.arena.acquire(),
        )
        .map_err(crate::data::corrupt)?;
        self.entries.push(StateEntry::new(
            self.section.0.clone(),
            self.section.1,
            scope,
            false,
            bytes.to_vec(),
        ));
        Ok(())
    }

    fn put<T: ExchangeData>(&mut self, scope: EntryScope, value: T) -> Result<(), Failure> {
        self.push_entry(scope, &[value])
    }

    /// Writes `value`, state of the key whose hash is `key_hash` (as
    /// [`hash_key`](crate::hash_key) computes it): on a restore it goes to the shard that
    /// owns the key's group.
    pub fn put_keyed<T: ExchangeData>(&mut self, key_hash: u64, value: T) -> Result<(), Failure> {
        self.put(EntryScope::KeyGroup(key_group(key_hash)), value)
    }

    /// Writes many keyed values at once, `(key hash, value)`, as one archive in which each value
    /// carries its key group: one pass and one serialization however large the state. On a restore
    /// every shard reads the archive and keeps the values of the key groups it owns. Read them back
    /// with [`StateReader::keyed_values`](super::StateReader::keyed_values).
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
        self.push_entry(EntryScope::KeyGroups, &records)
    }

    /// Writes `value` as part of split `split` (non-keyed state): on a restore onto `M`
    /// shards it goes to shard `split % M`.
    pub fn put_split<T: ExchangeData>(&mut self, split: u32, value: T) -> Result<(), Failure> {
        self.put(EntryScope::Split(split), value)
    }

    /// Writes `value` as this shard's own state: a restore onto as many shards gives it back to
    /// this shard ([`StateReader::own`](super::StateReader::own)); on another shard count it is not
    /// given back (write what every shard needs then with [`StateWriter::put_shared`] as well). For
    /// what differs between shards and has no key: the watermark an operator without an exchange in
    /// front, or one under unaligned barriers, saw at its barrier.
    pub fn put_own<T>(&mut self, value: T) -> Result<(), Failure>
    where
        (u32, T): ExchangeData,
    {
        let (shard, shards) = self.shard;
        self.put(EntryScope::Split(shard), (shards, value))
    }

    /// Writes `value` as state that every shard receives on a restore, whatever the shard count:
    /// each shard writes its own, and a restored operator combines them (an operator's watermark,
    /// say, as the minimum). Read back with [`StateReader::values`](super::StateReader::values) of
    /// the section it was written in.
    pub fn put_shared<T: ExchangeData>(&mut self, value: T) -> Result<(), Failure> {
        self.put(EntryScope::Shared, value)
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
        Some(bytes.map(|bytes| {
            let (name, version) = (self.name.clone(), self.version);
            StateEntry::new(name, version, EntryScope::KeyGroups, true, bytes)
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
