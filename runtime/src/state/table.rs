//! [`KeyedState`]: a hash table from keys to their state that writes only what changed to
//! an incremental checkpoint.

use std::hash::Hash;

use rustc_hash::FxHashMap;

use crate::checkpoint::{StateReader, StateWriter};
use crate::data::StateData;
use crate::error::OpResult;
use crate::keys::{hash_key, key_group};

pub(super) struct Slot<V> {
    /// `None`: removed since the last checkpoint (a tombstone to write).
    value: Option<V>,
    /// Changed since the last checkpoint (the key is in `changed`).
    dirty: bool,
    /// The key's group (which part of the table a checkpoint copies whole).
    group: u32,
}

/// A table from keys to their state that writes only what changed to an incremental
/// checkpoint (see the [module docs](self)).
///
/// The key must be the key the operator's input is partitioned by: its
/// [`hash_key`](crate::hash_key()) decides the key group, and so the shard a restore onto
/// another shard count puts it on.
///
/// ```
/// use rill_runtime::state::KeyedState;
///
/// let mut counts: KeyedState<String, u64> = KeyedState::new(true);
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
    pub(super) maps: Vec<FxHashMap<K, Slot<V>>>,
    changed: Vec<K>,
    live: usize,
    track: bool,
    group_of: fn(&K) -> u32,
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
            .finish()
    }
}

impl<K: Clone + Hash + Eq, V> Default for KeyedState<K, V> {
    fn default() -> Self {
        KeyedState::new(true)
    }
}

impl<K: Clone + Hash + Eq, V> KeyedState<K, V> {
    /// An empty table; `track_changes` false when the job takes no checkpoints (then a
    /// checkpoint can only be full: [`KeyedState::snapshot`] writes everything).
    pub fn new(track_changes: bool) -> Self {
        Self::grouped_by(track_changes, group_of_key::<K>)
    }

    /// An empty table whose keys are in the key group `group_of` says: for keys that hold
    /// the partitioning key and more (Flink's namespaces), e.g. `(auction, window)` with
    /// `|k| key_group(hash_key(&k.0))`, so that each entry is its own changelog record
    /// and still moves with its partitioning key on a restore onto other shards.
    ///
    /// ```
    /// use rill_runtime::keys::key_group;
    /// use rill_runtime::hash_key;
    /// use rill_runtime::state::KeyedState;
    ///
    /// // (auction, slice start) -> bids, placed by the auction alone.
    /// let mut slices: KeyedState<(u64, i64), u64> =
    ///     KeyedState::grouped_by(true, |k| key_group(hash_key(&k.0)));
    /// *slices.get_or_insert_with((7, 2000), || 0) += 1;
    /// assert_eq!(slices.get(&(7, 2000)), Some(&1));
    /// ```
    pub fn grouped_by(track_changes: bool, group_of: fn(&K) -> u32) -> Self {
        KeyedState {
            maps: (0..PARTS).map(|_| FxHashMap::default()).collect(),
            changed: Vec::new(),
            live: 0,
            track: track_changes,
            group_of,
        }
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
            .get(key)
            .and_then(|s| s.value.as_ref())
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

    #[inline]
    fn touch(track: bool, changed: &mut Vec<K>, key: &K, slot: &mut Slot<V>) {
        if track && !slot.dirty {
            slot.dirty = true;
            changed.push(key.clone());
        }
    }

    /// The state of `key`, to change it (the key counts as changed).
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let part = self.part(key);
        let slot = self.maps[part].get_mut(key)?;
        slot.value.as_ref()?;
        Self::touch(self.track, &mut self.changed, key, slot);
        slot.value.as_mut()
    }

    /// The state of `key`, created with `make` if it has none (the key counts as changed).
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        use std::collections::hash_map::Entry;
        let (track, changed, live) = (self.track, &mut self.changed, &mut self.live);
        let group = (self.group_of)(&key);
        let slot = match self.maps[group as usize % PARTS].entry(key) {
            Entry::Occupied(o) => {
                if track && !o.get().dirty {
                    changed.push(o.key().clone());
                }
                let slot = o.into_mut();
                slot.dirty |= track;
                slot
            }
            Entry::Vacant(v) => {
                if track {
                    changed.push(v.key().clone());
                }
                v.insert(Slot {
                    value: None,
                    dirty: track,
                    group,
                })
            }
        };
        if slot.value.is_none() {
            *live += 1;
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
        if !self.track {
            let old = self.maps[part].remove(key)?.value;
            self.live -= old.is_some() as usize;
            return old;
        }
        let slot = self.maps[part].get_mut(key)?;
        let old = slot.value.take()?;
        self.live -= 1;
        Self::touch(self.track, &mut self.changed, key, slot);
        Some(old)
    }

    /// Every key and its state, to change them (every key counts as changed).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        let (track, changed) = (self.track, &mut self.changed);
        self.maps.iter_mut().flatten().filter_map(move |(k, s)| {
            s.value.as_ref()?;
            Self::touch(track, changed, k, s);
            s.value.as_mut().map(|v| (k, v))
        })
    }

    /// Visits every key's state; `visit` says whether it left the state unchanged,
    /// changed it, or wants it removed. (Only changed and removed keys go into the next
    /// incremental checkpoint.)
    pub fn update_each(&mut self, mut visit: impl FnMut(&K, &mut V) -> Update) {
        let (track, changed, live) = (self.track, &mut self.changed, &mut self.live);
        let mut retain = |k: &K, s: &mut Slot<V>| {
            let Some(v) = s.value.as_mut() else {
                return true; // a tombstone, written at the next checkpoint
            };
            match visit(k, v) {
                Update::Keep => true,
                Update::Changed => {
                    Self::touch(track, changed, k, s);
                    true
                }
                Update::Remove => {
                    *live -= 1;
                    if !track {
                        return false;
                    }
                    s.value = None;
                    Self::touch(track, changed, k, s);
                    true
                }
            }
        };
        for map in &mut self.maps {
            map.retain(|k, s| retain(k, s));
        }
    }

    /// Every key and its state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.maps
            .iter()
            .flatten()
            .filter_map(|(k, s)| s.value.as_ref().map(|v| (k, v)))
    }

    /// Writes the table to `state`'s current section: at a full checkpoint every key; at
    /// an incremental one the keys changed since the previous checkpoint (and tombstones of
    /// removed ones) and, whole, the part of the table whose key groups this checkpoint
    /// copies (see [`Checkpointing::chain_length`](crate::checkpoint::Checkpointing::chain_length)).
    /// Read back with [`KeyedState::restore`].
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
        mut record: impl FnMut(&K, &V) -> R,
    ) -> OpResult
    where
        K: StateData,
        R: StateData,
    {
        let (part, parts) = if self.track { state.copy() } else { (0, 1) };
        let mut records: Vec<(u32, (K, Option<R>))> = Vec::new();
        // The copied part first: a key it writes needs no record among the changes. With
        // a number of parts that is a multiple of the maps', the part lies in one map.
        let maps = if parts as usize % PARTS == 0 {
            let i = part as usize % PARTS;
            &mut self.maps[i..=i]
        } else {
            &mut self.maps[..]
        };
        for (k, slot) in maps.iter_mut().flatten() {
            if slot.group % parts == part {
                if let Some(v) = &slot.value {
                    records.push((slot.group, (k.clone(), Some(record(k, v)))));
                    slot.dirty = false;
                }
            }
        }
        let group_of = self.group_of;
        for k in self.changed.drain(..) {
            let map = &mut self.maps[group_of(&k) as usize % PARTS];
            let Some(slot) = map.get_mut(&k) else {
                continue;
            };
            if !slot.dirty {
                continue; // written with the copied part
            }
            slot.dirty = false;
            let group = slot.group;
            let value = slot.value.as_ref().map(|v| record(&k, v));
            if value.is_none() {
                map.remove(&k);
            }
            records.push((group, (k, value)));
        }
        state.put_changelog(records)
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
                        dirty: false,
                        group,
                    };
                    if self.maps[group as usize % PARTS].insert(k, slot).is_none() {
                        self.live += 1;
                    }
                }
                None => {
                    let part = self.part(&k);
                    if self.maps[part].remove(&k).is_some() {
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
