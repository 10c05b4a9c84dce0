//! [`KeyedState`]: a hash table from keys to their state that writes only what changed to
//! an incremental checkpoint.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};

mod copy_on_write;
#[cfg(test)]
mod copy_on_write_tests;

use copy_on_write::{Collecting, Collector, Take, Taken};

use crate::checkpoint::{StateReader, StateWriter};
use crate::data::StateData;
use crate::error::OpResult;
use crate::keys::{hash_key, key_group};

struct Slot<V> {
    /// `None`: removed since the last checkpoint (a tombstone to write).
    value: Option<V>,
    /// The epoch (see [`KeyedState`]'s `epoch`) in which the key was last listed in
    /// `changed`: it is listed now if this is the table's epoch.
    changed: u32,
    /// The epoch of the last checkpoint that took this key's record (so that a checkpoint
    /// being collected takes each key once: when it is collected or before it is written).
    taken: u32,
    /// The key's group (which part of the table a checkpoint copies whole).
    group: u32,
}

/// A table from keys to their state that writes only what changed to an incremental
/// checkpoint (see the [module docs](crate::state)).
///
/// The key must be the key the operator's input is partitioned by: its
/// [`hash_key`](crate::hash_key()) decides the key group, and so the shard a restore onto
/// another shard count puts it on.
///
/// ```
/// use rill_runtime::state::KeyedState;
///
/// let mut counts: KeyedState<String, u64> = KeyedState::tracked();
/// *counts.get_or_insert_with("a".to_string(), || 0) += 1;
/// *counts.get_or_insert_with("a".to_string(), || 0) += 1;
/// assert_eq!(counts.get(&"a".to_string()), Some(&2));
/// assert_eq!(counts.changed(), 1); // one key to write at the next checkpoint
/// counts.remove(&"a".to_string());
/// assert!(counts.is_empty());
/// ```
pub struct KeyedState<K, V> {
    /// The slots, in `PARTS` maps by key group (`group % PARTS`): a checkpoint that copies
    /// one part of the key groups whole visits only that part's map.
    maps: Vec<Map<K, V>>,
    /// The keys changed (or removed) in this epoch.
    changed: Vec<K>,
    live: usize,
    track: bool,
    group_of: fn(&K) -> u32,
    /// Counts checkpoints (from 1): a checkpoint takes the changes of the epoch that its
    /// barrier ends.
    epoch: u32,
    /// The checkpoint whose records are being collected after its barrier, if any: a
    /// write to a key it has yet to take takes the key's record first (copy-on-write).
    collecting: Option<Collecting<K, V>>,
}

/// A table shared by its operator and the checkpoint being collected from it after its
/// barrier (see [`KeyedState::snapshot_shared`]).
pub type SharedKeyedState<K, V> = Rc<RefCell<KeyedState<K, V>>>;

/// One part of a table's slots, by key: a hash table that a checkpoint can walk by bucket
/// index while the table is written (buckets move only when it grows).
type Map<K, V> = HashTable<(K, Slot<V>)>;

/// The hash of a key in its map.
#[inline]
fn hash<K: Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// How many maps a table's slots are spread over (by key group); a chain length that is a
/// multiple of it (the default, 8, is) lets a checkpoint visit one map only.
const PARTS: usize = 8;

/// The key group of a key: of its [`hash_key`](crate::hash_key()).
fn group_of_key<K: Hash>(key: &K) -> u32 {
    key_group(hash_key(key))
}

impl<K, V> std::fmt::Debug for KeyedState<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("keys", &self.live)
            .field("changed", &self.changed.len())
            .field("track", &self.track)
            .field("collecting", &self.collecting.is_some())
            .finish()
    }
}

/// Whether a table remembers which keys changed since the last checkpoint: tracked in a
/// job that takes checkpoints (they are then incremental), untracked otherwise (a
/// checkpoint of an untracked table can only be full: [`KeyedState::snapshot`] writes
/// everything). A shard says which its tables need
/// ([`ShardContext::state_changes`](crate::ShardContext::state_changes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changes {
    /// The table remembers the keys changed since the last checkpoint.
    Tracked,
    /// The table remembers nothing (no checkpoints).
    Untracked,
}

impl<K: Clone + Hash + Eq, V> Default for KeyedState<K, V> {
    fn default() -> Self {
        KeyedState::tracked()
    }
}

impl<K: Clone + Hash + Eq, V> KeyedState<K, V> {
    /// An empty table that tracks its changes, for incremental checkpoints.
    pub fn tracked() -> Self {
        Self::with_changes(Changes::Tracked)
    }

    /// An empty table that tracks nothing, for a job without checkpoints.
    pub fn untracked() -> Self {
        Self::with_changes(Changes::Untracked)
    }

    /// An empty table that tracks its changes or not, as `changes` says.
    pub fn with_changes(changes: Changes) -> Self {
        KeyedState {
            maps: (0..PARTS).map(|_| HashTable::new()).collect(),
            changed: Vec::new(),
            live: 0,
            track: changes == Changes::Tracked,
            group_of: group_of_key::<K>,
            epoch: 1,
            collecting: None,
        }
    }

    /// This table shared with the checkpoints taken of it (see
    /// [`KeyedState::snapshot_shared`]).
    pub fn into_shared(self) -> SharedKeyedState<K, V> {
        Rc::new(RefCell::new(self))
    }

    /// This empty table with its keys in the key group `group_of` says: for keys that
    /// hold the partitioning key and more (Flink's namespaces), e.g. `(auction, window)`
    /// with `|k| key_group(hash_key(&k.0))`, so that each entry is its own changelog
    /// record and still moves with its partitioning key on a restore onto other shards.
    ///
    /// ```
    /// use rill_runtime::keys::key_group;
    /// use rill_runtime::hash_key;
    /// use rill_runtime::state::KeyedState;
    ///
    /// // (auction, slice start) -> bids, placed by the auction alone.
    /// let mut slices: KeyedState<(u64, i64), u64> =
    ///     KeyedState::tracked().grouped_by(|k| key_group(hash_key(&k.0)));
    /// *slices.get_or_insert_with((7, 2000), || 0) += 1;
    /// assert_eq!(slices.get(&(7, 2000)), Some(&1));
    /// ```
    pub fn grouped_by(mut self, group_of: fn(&K) -> u32) -> Self {
        assert!(self.is_empty(), "grouped_by is for an empty table");
        self.group_of = group_of;
        self
    }

    /// Slots in the maps: keys with state and tombstones.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.maps.iter().map(|m| m.len()).sum()
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True if no key has state.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Keys changed (or removed) since the last checkpoint.
    pub fn changed(&self) -> usize {
        self.changed.len()
    }

    /// The state of `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.maps[self.part(key)]
            .find(hash(key), |(k, _)| k == key)
            .and_then(|(_, s)| s.value.as_ref())
    }

    /// The map `key`'s slot is in.
    #[inline]
    fn part(&self, key: &K) -> usize {
        (self.group_of)(key) as usize % PARTS
    }

    /// True if `key` has state.
    #[inline]
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Before `key`'s slot is written: a checkpoint being collected that has yet to take
    /// the key takes its record now (its value at the barrier); then the key counts as
    /// changed in this epoch. Without a checkpoint being collected, one flag test.
    #[inline]
    fn touch(
        (track, epoch, changed): (bool, u32, &mut Vec<K>),
        collecting: &Option<Collecting<K, V>>,
        key: &K,
        slot: &mut Slot<V>,
    ) {
        if let Some(c) = collecting {
            c.take_before_write(key, slot);
        }
        if track && slot.changed != epoch {
            slot.changed = epoch;
            changed.push(key.clone());
        }
    }

    /// The state of `key`, to change it (the key counts as changed).
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let part = self.part(key);
        let (key, slot) = self.maps[part].find_mut(hash(key), |(k, _)| k == key)?;
        slot.value.as_ref()?;
        let marks = (self.track, self.epoch, &mut self.changed);
        Self::touch(marks, &self.collecting, key, slot);
        slot.value.as_mut()
    }

    /// The state of `key`, created with `make` if it has none (the key counts as changed).
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let group = (self.group_of)(&key);
        self.get_or_insert_in_group(key, group, make)
    }

    /// [`KeyedState::get_or_insert_with`] for a caller that knows `key`'s group (what
    /// [`KeyedState::grouped_by`]'s function gives for it, checked in debug builds): one
    /// that touches a key in several tables finds its group once.
    ///
    /// ```
    /// use rill_runtime::keys::key_group;
    /// use rill_runtime::hash_key;
    /// use rill_runtime::state::KeyedState;
    ///
    /// let mut windows: KeyedState<(u64, i64), u64> =
    ///     KeyedState::tracked().grouped_by(|k| key_group(hash_key(&k.0)));
    /// let group = key_group(hash_key(&7u64));
    /// *windows.get_or_insert_in_group((7, 2000), group, || 0) += 1;
    /// assert_eq!(windows.get(&(7, 2000)), Some(&1));
    /// ```
    #[inline]
    pub fn get_or_insert_in_group(
        &mut self,
        key: K,
        group: u32,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        debug_assert_eq!(group, (self.group_of)(&key), "the key's group");
        let (track, epoch) = (self.track, self.epoch);
        let part = group as usize % PARTS;
        if self.collecting.is_some() {
            self.before_growing(part);
        }
        let entry = self.maps[part].entry(hash(&key), |(k, _)| *k == key, |(k, _)| hash(k));
        let slot = match entry {
            Entry::Occupied(o) => {
                let (key, slot) = o.into_mut();
                Self::touch(
                    (track, epoch, &mut self.changed),
                    &self.collecting,
                    key,
                    slot,
                );
                slot
            }
            Entry::Vacant(v) => {
                if track {
                    self.changed.push(key.clone());
                }
                let slot = Slot {
                    value: None,
                    changed: if track { epoch } else { 0 },
                    // A key created after the barrier has no record in its checkpoint.
                    taken: self.collecting.as_ref().map_or(0, |c| c.visit.epoch),
                    group,
                };
                &mut v.insert((key, slot)).into_mut().1
            }
        };
        if slot.value.is_none() {
            self.live += 1;
        }
        slot.value.get_or_insert_with(make)
    }

    /// Sets the state of `key`, returning the previous one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let mut value = Some(value);
        let slot = self.get_or_insert_with(key, || value.take().expect("taken once"));
        value.map(|v| std::mem::replace(slot, v))
    }

    /// Drops the state of `key`, returning it.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let part = self.part(key);
        let Ok(mut entry) = self.maps[part].find_entry(hash(key), |(k, _)| k == key) else {
            return None;
        };
        let (key, slot) = entry.get_mut();
        slot.value.as_ref()?;
        let marks = (self.track, self.epoch, &mut self.changed);
        Self::touch(marks, &self.collecting, key, slot);
        self.live -= 1;
        if !self.track {
            return entry.remove().0 .1.value;
        }
        entry.into_mut().1.value.take()
    }

    /// Every key and its state, to change them (every key counts as changed).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        let (track, epoch, changed) = (self.track, self.epoch, &mut self.changed);
        let collecting = &self.collecting;
        let slots = self.maps.iter_mut().flat_map(|m| m.iter_mut());
        slots.filter_map(move |(k, s)| {
            s.value.as_ref()?;
            Self::touch((track, epoch, &mut *changed), collecting, k, s);
            s.value.as_mut().map(|v| (&*k, v))
        })
    }

    /// Visits every key's state; `visit` says whether it left the state unchanged,
    /// changed it, or wants it removed. (Only changed and removed keys go into the next
    /// incremental checkpoint.) While a checkpoint is being collected, the keys it has yet
    /// to take are taken before they are visited: prefer
    /// [`KeyedState::update_each_where`] when most visits change nothing.
    pub fn update_each(&mut self, visit: impl FnMut(&K, &mut V) -> Update) {
        self.update_each_where(|_, _| true, visit);
    }

    /// [`KeyedState::update_each`] for the keys whose state `needs` a visit (it looks
    /// first; the others are left as they are): a checkpoint being collected takes only
    /// the visited keys' records before their visit.
    ///
    /// ```
    /// use rill_runtime::state::{KeyedState, Update};
    ///
    /// let mut t: KeyedState<u32, Vec<i64>> = KeyedState::tracked();
    /// t.insert(1, vec![5, 20]);
    /// t.insert(2, vec![30]);
    /// // Drop times before 10, and keys left without any.
    /// t.update_each_where(
    ///     |_, times| times.iter().any(|&t| t < 10),
    ///     |_, times| {
    ///         times.retain(|&t| t >= 10);
    ///         if times.is_empty() { Update::Remove } else { Update::Changed }
    ///     },
    /// );
    /// assert_eq!(t.get(&1), Some(&vec![20]));
    /// assert_eq!(t.changed(), 2); // both inserted since the last checkpoint
    /// ```
    pub fn update_each_where(
        &mut self,
        needs: impl Fn(&K, &V) -> bool,
        mut visit: impl FnMut(&K, &mut V) -> Update,
    ) {
        let (track, epoch, changed, live) =
            (self.track, self.epoch, &mut self.changed, &mut self.live);
        let collecting = &self.collecting;
        let mut retain = |k: &K, s: &mut Slot<V>| {
            match &s.value {
                Some(v) if needs(k, v) => {}
                // Tombstones are written at the next checkpoint.
                _ => return true,
            }
            if let Some(c) = collecting {
                // The visit may change the value: the checkpoint needs it as it is.
                c.take_before_write(k, s);
            }
            let Some(v) = s.value.as_mut() else {
                return true;
            };
            match visit(k, v) {
                Update::Keep => true,
                Update::Changed => {
                    Self::touch((track, epoch, &mut *changed), &None, k, s);
                    true
                }
                Update::Remove => {
                    *live -= 1;
                    if !track {
                        return false;
                    }
                    s.value = None;
                    Self::touch((track, epoch, &mut *changed), &None, k, s);
                    true
                }
            }
        };
        for map in &mut self.maps {
            map.retain(|(k, s)| retain(k, s));
        }
    }

    /// Every key and its state, taking the table, in no particular order: for an operator
    /// that drops a table whole and moves its values out instead of cloning them. While a
    /// checkpoint is still being collected from the table after its barrier
    /// ([`KeyedState::snapshot_shared`]) it gives the table back (`Err`): that checkpoint
    /// needs the records, and dropping the table hands them to it.
    ///
    /// ```
    /// use rill_runtime::state::KeyedState;
    ///
    /// let mut names: KeyedState<u64, String> = KeyedState::untracked();
    /// names.insert(1, "ada".to_string());
    /// names.remove(&1);
    /// names.insert(2, "grace".to_string());
    /// let taken: Vec<(u64, String)> = names.into_entries().unwrap().collect();
    /// assert_eq!(taken, [(2, "grace".to_string())]);
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn into_entries(mut self) -> Result<impl Iterator<Item = (K, V)>, Self> {
        if self.collecting.is_some() {
            return Err(self);
        }
        let maps = std::mem::take(&mut self.maps);
        Ok(maps
            .into_iter()
            .flat_map(|m| m.into_iter())
            .filter_map(|(k, s)| s.value.map(|v| (k, v))))
    }

    /// Every key and its state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.maps
            .iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, s)| s.value.as_ref().map(|v| (k, v)))
    }

    /// Writes the table to `state`'s current section: at a full checkpoint every key; at
    /// an incremental one the keys changed since the previous checkpoint (and tombstones of
    /// removed ones) and, whole, the part of the table whose key groups this checkpoint
    /// copies (see [`Checkpointing::chain_length`](crate::checkpoint::Checkpointing::chain_length)).
    /// Read back with [`KeyedState::restore`].
    ///
    /// This collects the records at the barrier; a table shared with the runtime
    /// ([`SharedKeyedState`]) can leave that to the slices after it with
    /// [`KeyedState::snapshot_shared`].
    pub fn snapshot(&mut self, state: &mut StateWriter) -> OpResult
    where
        K: StateData,
        V: StateData,
    {
        self.snapshot_as(state, |_, v| v.clone())
    }

    /// [`KeyedState::snapshot`] for state that is not itself serializable: `record` makes
    /// each written key's record. Read back with [`KeyedState::restore_as`].
    pub fn snapshot_as<R>(
        &mut self,
        state: &mut StateWriter,
        record: impl FnMut(&K, &V) -> R,
    ) -> OpResult
    where
        K: StateData,
        R: StateData,
    {
        let mut visit = self.begin(state.copy());
        let mut taken = Taken::new(record);
        self.collect(&mut visit, &mut taken, usize::MAX);
        state.put_changelog(taken.records)
    }

    /// [`KeyedState::snapshot`], copy-on-write: at the barrier the table only notes what
    /// the checkpoint writes (it swaps out its list of changed keys and lists the keys of
    /// the part it copies whole); the shard's loop collects the records in slices after
    /// the barrier, and until it is done a write to a key still to collect saves the key's
    /// record first. The checkpoint holds the table as it was at the barrier.
    ///
    /// ```
    /// use rill_runtime::checkpoint::StateWriter;
    /// use rill_runtime::state::{KeyedState, SharedKeyedState};
    ///
    /// let table: SharedKeyedState<u64, u64> = SharedKeyedState::default();
    /// table.borrow_mut().insert(1, 10);
    /// let mut state = StateWriter::incremental(0, 8);
    /// KeyedState::snapshot_shared(&table, state.section("counts", 1)).unwrap();
    /// table.borrow_mut().insert(1, 11); // the checkpoint keeps 10
    /// state.archive().unwrap(); // what the shard's loop does in slices
    /// ```
    pub fn snapshot_shared(table: &SharedKeyedState<K, V>, state: &mut StateWriter) -> OpResult
    where
        K: StateData,
        V: StateData,
    {
        Self::snapshot_shared_as(table, state, |_, v: &V| v.clone())
    }

    /// [`KeyedState::snapshot_as`], copy-on-write (see [`KeyedState::snapshot_shared`]).
    pub fn snapshot_shared_as<R>(
        table: &SharedKeyedState<K, V>,
        state: &mut StateWriter,
        record: impl FnMut(&K, &V) -> R + 'static,
    ) -> OpResult
    where
        K: StateData,
        V: 'static,
        R: StateData,
    {
        let taken = Rc::new(RefCell::new(Taken::new(record)));
        {
            let mut t = table.borrow_mut();
            let visit = t.begin(state.copy());
            let taker: Rc<RefCell<dyn Take<K, V>>> = taken.clone();
            t.collecting = Some(Collecting { visit, taker });
        }
        let collector = Collector {
            table: Rc::downgrade(table),
            taken,
        };
        state.put_changelog_from(Box::new(collector))
    }

    /// Restores what [`KeyedState::snapshot`] wrote to `state`'s entries (a section of
    /// the operator's state): a full table and the changes after it, in order.
    pub fn restore(&mut self, state: &StateReader) -> OpResult
    where
        K: StateData,
        V: StateData,
    {
        self.restore_as(state, |_, v| v)
    }

    /// Restores what [`KeyedState::snapshot_as`] wrote, making each key's state from its
    /// newest record with `state_of`.
    pub fn restore_as<R>(
        &mut self,
        state: &StateReader,
        mut state_of: impl FnMut(&K, R) -> V,
    ) -> OpResult
    where
        K: StateData,
        R: StateData,
    {
        self.finish_collecting();
        // Only the newest record of a key counts: fold the chain first.
        let mut newest: FxHashMap<K, Option<R>> = FxHashMap::default();
        for (k, r) in state.changelog::<(K, Option<R>)>()? {
            newest.insert(k, r);
        }
        for (k, r) in newest {
            match r {
                Some(r) => {
                    let v = state_of(&k, r);
                    let group = (self.group_of)(&k);
                    let slot = Slot {
                        value: Some(v),
                        changed: 0,
                        taken: 0,
                        group,
                    };
                    let map = &mut self.maps[group as usize % PARTS];
                    match map.entry(hash(&k), |(x, _)| *x == k, |(x, _)| hash(x)) {
                        Entry::Occupied(mut o) => o.get_mut().1 = slot,
                        Entry::Vacant(v) => {
                            v.insert((k, slot));
                            self.live += 1;
                        }
                    }
                }
                None => {
                    let part = self.part(&k);
                    if let Ok(o) = self.maps[part].find_entry(hash(&k), |(x, _)| *x == k) {
                        o.remove();
                        self.live -= 1;
                    }
                }
            }
        }
        // A table restored from a checkpoint is clean: the next increment builds on it.
        Ok(())
    }
}

/// What [`KeyedState::update_each`]'s visitor did to a key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Left it as it was.
    Keep,
    /// Changed it.
    Changed,
    /// Wants it removed.
    Remove,
}
