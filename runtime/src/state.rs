//! Keyed state that takes part in checkpoints by itself, and incrementally.
//!
//! [`KeyedState`] is a hash table from a key to its state that remembers which keys
//! changed since the last checkpoint. At a barrier it writes, as changelog records of its
//! section, those keys' new values and the keys removed (tombstones), plus a whole copy of
//! one part of its key groups, in turn (see
//! [`Checkpointing::chain_length`](crate::checkpoint::Checkpointing::chain_length)); the
//! first checkpoint of a run writes the whole table. Recovery applies the records of a
//! checkpoint's chain oldest first, keeping the key groups the shard owns (so state
//! rescales as other keyed state does). The built-in stateful operators keep their per-key
//! state in such tables.
//!
//! A user's operator gets tables from its [`ShardContext`](crate::ShardContext) that the
//! runtime checkpoints and restores with no code of the operator's own:
//! [`ValueState`] (a value per key), [`MapState`] (a map per key), [`ListState`] (a list
//! per key) and [`Timers`] (event- or processing-time timers per key), Flink's
//! `ValueState`, `MapState`, `ListState` and timer service.
//!
//! The cost on the record path: one flag test per write, and the first write to a key
//! after a checkpoint clones the key into the list of changed keys. Without checkpoints
//! nothing is tracked.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::rc::Rc;

use rustc_hash::FxHashMap;

use crate::checkpoint::{StateReader, StateWriter};
use crate::data::StateData;
use crate::error::OpResult;
use crate::keys::{hash_key, key_group};
use crate::time::Timestamp;

struct Slot<V> {
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
    maps: Vec<FxHashMap<K, Slot<V>>>,
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

/// A table the runtime checkpoints and restores for the operator that registered it.
pub(crate) trait Registered {
    fn snapshot(&self, state: &mut StateWriter) -> OpResult;
    fn restore(&self, state: &StateReader) -> OpResult;
}

impl<K: StateData + Hash + Eq, V: StateData> Registered for RefCell<KeyedState<K, V>> {
    fn snapshot(&self, state: &mut StateWriter) -> OpResult {
        self.borrow_mut().snapshot(state)
    }
    fn restore(&self, state: &StateReader) -> OpResult {
        self.borrow_mut().restore(state)
    }
}

/// The tables a shard's operators registered, by node (built on the shard while its nodes
/// are built).
#[derive(Default)]
pub(crate) struct Registry {
    node: Cell<usize>,
    track: bool,
    tables: RefCell<Vec<RegisteredTable>>,
}

/// A registered table: its node, its section name, the table.
pub(crate) struct RegisteredTable {
    pub node: usize,
    pub section: String,
    pub table: Rc<dyn Registered>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("node", &self.node.get())
            .field("tables", &self.tables.borrow().len())
            .finish()
    }
}

impl Registry {
    /// A registry whose tables track changes (the job takes checkpoints) or not.
    pub(crate) fn new(track: bool) -> Self {
        Registry {
            track,
            ..Registry::default()
        }
    }

    /// The node being built: tables registered from now on are its.
    pub(crate) fn enter(&self, node: usize) {
        self.node.set(node);
    }

    /// The node being built.
    pub(crate) fn node(&self) -> usize {
        self.node.get()
    }

    /// `node`'s tables.
    pub(crate) fn of(&self, node: usize) -> Vec<(String, Rc<dyn Registered>)> {
        self.tables
            .borrow()
            .iter()
            .filter(|t| t.node == node)
            .map(|t| (t.section.clone(), t.table.clone()))
            .collect()
    }

    fn register<T: Registered + 'static>(&self, name: &str, table: T) -> Rc<T> {
        let node = self.node.get();
        let section = format!("state {name}");
        let mut tables = self.tables.borrow_mut();
        assert!(
            !tables
                .iter()
                .any(|t| t.node == node && t.section == section),
            "an operator registered two states named '{name}': give each its own name"
        );
        let table = Rc::new(table);
        tables.push(RegisteredTable {
            node,
            section,
            table: table.clone(),
        });
        table
    }

    pub(crate) fn table<K, V>(&self, name: &str) -> Rc<RefCell<KeyedState<K, V>>>
    where
        K: StateData + Hash + Eq,
        V: StateData,
    {
        self.register(name, RefCell::new(KeyedState::new(self.track)))
    }

    pub(crate) fn timers<K: StateData + Hash + Eq>(&self, name: &str) -> Rc<TimerTable<K>> {
        self.register(
            name,
            TimerTable {
                times: RefCell::new(KeyedState::new(self.track)),
                queue: RefCell::new(BTreeMap::new()),
            },
        )
    }
}

/// A value per key, checkpointed by the runtime (from
/// [`ShardContext::value_state`](crate::ShardContext::value_state)).
pub struct ValueState<K, V>(pub(crate) Rc<RefCell<KeyedState<K, V>>>);

/// A map per key, checkpointed by the runtime (from
/// [`ShardContext::map_state`](crate::ShardContext::map_state)). A key's map is kept
/// sorted by user key and is one entry of the incremental changelog (a change to one entry
/// writes the key's whole map).
pub struct MapState<K, UK, UV>(pub(crate) Shared<K, Vec<(UK, UV)>>);

/// A table shared by a handle and the runtime's registry.
pub(crate) type Shared<K, V> = Rc<RefCell<KeyedState<K, V>>>;

/// A list per key, checkpointed by the runtime (from
/// [`ShardContext::list_state`](crate::ShardContext::list_state)).
pub struct ListState<K, V>(pub(crate) Rc<RefCell<KeyedState<K, Vec<V>>>>);

macro_rules! debug_handle {
    ($($t:ident<$($p:ident),*>),*) => {$(
        impl<$($p),*> std::fmt::Debug for $t<$($p),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($t)).field(&self.0.borrow()).finish()
            }
        }
    )*};
}
debug_handle!(ValueState<K, V>, MapState<K, UK, UV>, ListState<K, V>);

impl<K: Clone + Hash + Eq, V: Clone> ValueState<K, V> {
    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.0.borrow().get(key).cloned()
    }
    /// Sets the value of `key`.
    pub fn set(&self, key: K, value: V) {
        self.0.borrow_mut().insert(key, value);
    }
    /// Changes the value of `key` in place (created with `make` if it has none).
    pub fn update<R>(&self, key: K, make: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> R {
        f(self.0.borrow_mut().get_or_insert_with(key, make))
    }
    /// Drops the value of `key`.
    pub fn clear(&self, key: &K) -> Option<V> {
        self.0.borrow_mut().remove(key)
    }
    /// Calls `f` with every key and its value, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        self.0.borrow().iter().for_each(|(k, v)| f(k, v));
    }
    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
    /// True if no key has a value.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl<K: Clone + Hash + Eq, UK: Ord + Clone, UV: Clone> MapState<K, UK, UV> {
    /// The value under `user_key` in `key`'s map.
    pub fn get(&self, key: &K, user_key: &UK) -> Option<UV> {
        let table = self.0.borrow();
        let map = table.get(key)?;
        let i = map.binary_search_by(|(k, _)| k.cmp(user_key)).ok()?;
        Some(map[i].1.clone())
    }
    /// Puts `value` under `user_key` in `key`'s map, returning the previous value.
    pub fn put(&self, key: K, user_key: UK, value: UV) -> Option<UV> {
        let mut table = self.0.borrow_mut();
        let map = table.get_or_insert_with(key, Vec::new);
        match map.binary_search_by(|(k, _)| k.cmp(&user_key)) {
            Ok(i) => Some(std::mem::replace(&mut map[i].1, value)),
            Err(i) => {
                map.insert(i, (user_key, value));
                None
            }
        }
    }
    /// Removes `user_key` from `key`'s map (and the map once it is empty).
    pub fn remove(&self, key: &K, user_key: &UK) -> Option<UV> {
        let mut table = self.0.borrow_mut();
        let map = table.get_mut(key)?;
        let i = map.binary_search_by(|(k, _)| k.cmp(user_key)).ok()?;
        let (_, old) = map.remove(i);
        if map.is_empty() {
            table.remove(key);
        }
        Some(old)
    }
    /// `key`'s map, in user-key order.
    pub fn entries(&self, key: &K) -> Vec<(UK, UV)> {
        self.0.borrow().get(key).cloned().unwrap_or_default()
    }
    /// Drops `key`'s map.
    pub fn clear(&self, key: &K) {
        self.0.borrow_mut().remove(key);
    }
}

impl<K: Clone + Hash + Eq, V: Clone> ListState<K, V> {
    /// Appends `value` to `key`'s list.
    pub fn add(&self, key: K, value: V) {
        self.0
            .borrow_mut()
            .get_or_insert_with(key, Vec::new)
            .push(value);
    }
    /// `key`'s list, in the order added.
    pub fn get(&self, key: &K) -> Vec<V> {
        self.0.borrow().get(key).cloned().unwrap_or_default()
    }
    /// Replaces `key`'s list (an empty one drops it).
    pub fn set(&self, key: K, values: Vec<V>) {
        let mut table = self.0.borrow_mut();
        if values.is_empty() {
            table.remove(&key);
        } else {
            table.insert(key, values);
        }
    }
    /// Calls `f` with every key and its list, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&K, &[V])) {
        self.0.borrow().iter().for_each(|(k, v)| f(k, v));
    }
    /// Drops `key`'s list, returning it.
    pub fn clear(&self, key: &K) -> Vec<V> {
        self.0.borrow_mut().remove(key).unwrap_or_default()
    }
}

/// Timers per key, checkpointed by the runtime (from
/// [`ShardContext::timers`](crate::ShardContext::timers)): a key has at most one timer per
/// time. The operator decides their time domain, firing them from its watermark
/// (event time) or processing-time callback with [`Timers::pop_due`].
pub struct Timers<K>(pub(crate) Rc<TimerTable<K>>);

pub(crate) struct TimerTable<K> {
    /// Every key's timers: what checkpoints hold.
    times: RefCell<KeyedState<K, BTreeSet<Timestamp>>>,
    /// The same timers by time (rebuilt on restore; may hold deleted ones, skipped).
    queue: RefCell<BTreeMap<Timestamp, Vec<K>>>,
}

impl<K> std::fmt::Debug for Timers<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Timers")
            .field(&self.0.times.borrow())
            .finish()
    }
}

impl<K: StateData + Hash + Eq> Registered for TimerTable<K> {
    fn snapshot(&self, state: &mut StateWriter) -> OpResult {
        self.times.borrow_mut().snapshot(state)
    }
    fn restore(&self, state: &StateReader) -> OpResult {
        let mut times = self.times.borrow_mut();
        times.restore(state)?;
        let mut queue = self.queue.borrow_mut();
        for (key, set) in times.iter() {
            for &t in set {
                queue.entry(t).or_default().push(key.clone());
            }
        }
        Ok(())
    }
}

impl<K: Clone + Hash + Eq> Timers<K> {
    /// Sets a timer for `key` at `time` (no effect if it is already set).
    pub fn set(&self, key: K, time: Timestamp) {
        let mut times = self.0.times.borrow_mut();
        if times
            .get_or_insert_with(key.clone(), BTreeSet::new)
            .insert(time)
        {
            self.0.queue.borrow_mut().entry(time).or_default().push(key);
        }
    }

    /// Deletes `key`'s timer at `time`; true if it was set.
    pub fn delete(&self, key: &K, time: Timestamp) -> bool {
        let mut times = self.0.times.borrow_mut();
        let Some(set) = times.get_mut(key) else {
            return false;
        };
        let removed = set.remove(&time);
        if set.is_empty() {
            times.remove(key);
        }
        removed
    }

    /// Removes and returns the earliest timer at or before `upto`, with its key.
    pub fn pop_due(&self, upto: Timestamp) -> Option<(Timestamp, K)> {
        let mut queue = self.0.queue.borrow_mut();
        loop {
            let mut entry = queue.first_entry()?;
            let time = *entry.key();
            if time > upto {
                return None;
            }
            let Some(key) = entry.get_mut().pop() else {
                entry.remove();
                continue;
            };
            if entry.get().is_empty() {
                entry.remove();
            }
            // Deleted timers stay in the queue; only a timer still set fires.
            if self.delete(&key, time) {
                return Some((time, key));
            }
        }
    }

    /// The earliest timer set, if any.
    pub fn next(&self) -> Option<Timestamp> {
        let times = self.0.times.borrow();
        self.0
            .queue
            .borrow()
            .iter()
            .flat_map(|(&t, keys)| keys.iter().map(move |k| (t, k)))
            .find(|(t, k)| times.get(k).is_some_and(|s| s.contains(t)))
            .map(|(t, _)| t)
    }

    /// Number of keys with a timer.
    pub fn keys(&self) -> usize {
        self.0.times.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{RestoredEntry, StateEntry};

    /// Reads `writers` back as one shard of `shards` would at a restore of the chain they
    /// form (oldest first), entry by entry as `assign` hands them over.
    fn chain(writers: Vec<StateWriter>, shard: usize, shards: usize) -> StateReader {
        entries(
            writers.into_iter().map(|w| w.entries).collect(),
            shard,
            shards,
        )
    }

    fn entries(writers: Vec<Vec<StateEntry>>, shard: usize, shards: usize) -> StateReader {
        let entries = writers
            .into_iter()
            .flatten()
            .map(|e| {
                let mut bytes = rkyv::util::AlignedVec::<16>::with_capacity(e.bytes.len());
                bytes.extend_from_slice(&e.bytes);
                RestoredEntry {
                    name: e.name,
                    version: e.version,
                    mixed: true,
                    changelog: e.changelog,
                    bytes,
                }
            })
            .collect();
        StateReader {
            checkpoint: 1,
            shard,
            shards,
            entries,
        }
    }

    /// A full checkpoint, or an increment that copies no key group whole.
    fn snapshot(table: &mut KeyedState<u64, String>, full: bool) -> StateWriter {
        let copy = if full {
            (0, 1)
        } else {
            (u32::MAX - 1, u32::MAX)
        };
        snapshot_copying(table, copy)
    }

    fn snapshot_copying(table: &mut KeyedState<u64, String>, copy: (u32, u32)) -> StateWriter {
        let mut w = StateWriter::for_checkpoint(copy);
        table.snapshot(w.section("t", 1)).unwrap();
        w.finish().unwrap(); // what the shard's loop does in slices
        w
    }

    fn sorted(table: &KeyedState<u64, String>) -> Vec<(u64, String)> {
        let mut all: Vec<_> = table.iter().map(|(k, v)| (*k, v.clone())).collect();
        all.sort();
        all
    }

    #[test]
    fn an_increment_holds_only_changed_and_removed_keys() {
        let mut t: KeyedState<u64, String> = KeyedState::new(true);
        for k in 0..100 {
            t.insert(k, format!("v{k}"));
        }
        snapshot(&mut t, true);
        assert_eq!(t.changed(), 0);
        // Reads do not count as changes; writes and removals do, once per key.
        assert_eq!(t.get(&5).map(String::as_str), Some("v5"));
        t.get_mut(&7).unwrap().push('!');
        t.get_mut(&7).unwrap().push('!');
        t.remove(&8);
        t.insert(200, "new".into());
        t.insert(201, "gone".into());
        t.remove(&201);
        assert_eq!(t.changed(), 4, "7, 8, 200, 201");
        assert_eq!(t.len(), 100);
        let inc = snapshot(&mut t, false);
        let records: Vec<(u64, Option<String>)> = chain(vec![inc], 0, 1)
            .section("t", 1)
            .unwrap()
            .changelog()
            .unwrap();
        let mut records = records;
        records.sort();
        assert_eq!(
            records,
            [
                (7, Some("v7!!".to_string())),
                (8, None),
                (200, Some("new".into())),
                (201, None)
            ]
        );
        // A second increment with nothing changed is empty.
        let empty = snapshot(&mut t, false);
        let nothing: Vec<(u64, Option<String>)> = chain(vec![empty], 0, 1).changelog().unwrap();
        assert!(nothing.is_empty());
    }

    #[test]
    fn a_chain_restores_the_table_onto_any_shard_count() {
        let mut t: KeyedState<u64, String> = KeyedState::new(true);
        let mut writers = Vec::new();
        for step in 0..5u64 {
            for k in 0..50 {
                if (k + step) % 3 == 0 {
                    t.insert(k, format!("{k}@{step}"));
                } else if (k + step) % 7 == 0 {
                    t.remove(&k);
                }
            }
            writers.push(snapshot(&mut t, step == 0));
        }
        let want = sorted(&t);
        for shards in [1, 2, 3] {
            let mut got = Vec::new();
            for shard in 0..shards {
                let clone = writers.iter().map(|w| w.entries.clone()).collect();
                let reader = entries(clone, shard, shards);
                let mut r: KeyedState<u64, String> = KeyedState::new(true);
                r.restore(&reader.section("t", 1).unwrap()).unwrap();
                assert_eq!(r.changed(), 0, "a restored table is clean");
                for (k, _) in r.iter() {
                    assert_eq!(
                        crate::keys::shard_of_key_group(key_group(hash_key(k)), shards),
                        shard
                    );
                }
                got.extend(sorted(&r));
            }
            got.sort();
            assert_eq!(got, want, "{shards} shards");
        }
    }

    #[test]
    fn the_last_n_checkpoints_hold_every_key_once_each_part_was_copied() {
        let n = 4;
        let mut t: KeyedState<u64, String> = KeyedState::new(true);
        for k in 0..200 {
            t.insert(k, format!("{k}"));
        }
        let mut writers = vec![snapshot_copying(&mut t, (0, 1))];
        for id in 1..=9u32 {
            // A few changes per checkpoint; most keys never change again.
            t.insert(u64::from(id), format!("changed at {id}"));
            t.remove(&(100 + u64::from(id)));
            writers.push(snapshot_copying(&mut t, (id % n, n)));
        }
        // Without the first (full) checkpoint: the newest n are enough.
        let newest: Vec<Vec<StateEntry>> = writers[writers.len() - n as usize..]
            .iter()
            .map(|w| w.entries.clone())
            .collect();
        let mut r: KeyedState<u64, String> = KeyedState::new(true);
        r.restore(&entries(newest, 0, 1)).unwrap();
        assert_eq!(sorted(&r), sorted(&t));
        // An increment writes its changes and about a quarter of the table, not all of it.
        let last: Vec<(u64, Option<String>)> =
            entries(vec![writers.last().unwrap().entries.clone()], 0, 1)
                .changelog()
                .unwrap();
        assert!(last.len() < 100, "{} records", last.len());
        // Fewer than n checkpoints miss part of the table.
        let short: Vec<Vec<StateEntry>> = writers[writers.len() - 2..]
            .iter()
            .map(|w| w.entries.clone())
            .collect();
        let mut r: KeyedState<u64, String> = KeyedState::new(true);
        r.restore(&entries(short, 0, 1)).unwrap();
        assert!(r.len() < t.len());
    }

    #[test]
    fn without_tracking_nothing_is_remembered_and_snapshots_are_full() {
        let mut t: KeyedState<u64, String> = KeyedState::new(false);
        t.insert(1, "a".into());
        t.insert(2, "b".into());
        t.remove(&1);
        assert_eq!(t.changed(), 0);
        assert_eq!(
            t.maps.iter().map(|m| m.len()).sum::<usize>(),
            1,
            "no tombstone kept"
        );
        let w = snapshot(&mut t, false);
        let all: Vec<(u64, Option<String>)> = chain(vec![w], 0, 1).changelog().unwrap();
        assert_eq!(all, [(2, Some("b".into()))]);
    }

    #[test]
    fn update_each_marks_only_what_it_changed() {
        let mut t: KeyedState<u64, String> = KeyedState::new(true);
        for k in 0..10 {
            t.insert(k, "x".repeat(k as usize));
        }
        snapshot(&mut t, true);
        t.update_each(|k, v| match k % 3 {
            0 => Update::Keep,
            1 => {
                v.push('y');
                Update::Changed
            }
            _ => Update::Remove,
        });
        assert_eq!(t.len(), 4 + 3);
        assert_eq!(t.changed(), 6);
        assert_eq!(t.get(&1).map(String::as_str), Some("xy"));
        assert!(t.get(&2).is_none());
    }

    #[test]
    fn timers_fire_in_time_order_once_and_survive_deletion() {
        let registry = Registry::new(true);
        let timers: Timers<u64> = Timers(registry.timers("t"));
        timers.set(1, 30);
        timers.set(2, 10);
        timers.set(1, 30); // already set
        timers.set(3, 20);
        assert!(timers.delete(&3, 20));
        assert_eq!(timers.next(), Some(10));
        assert_eq!(timers.pop_due(25), Some((10, 2)));
        assert_eq!(timers.pop_due(25), None, "20 was deleted, 30 is not due");
        assert_eq!(timers.pop_due(30), Some((30, 1)));
        assert_eq!(timers.pop_due(i64::MAX), None);
        assert_eq!(timers.keys(), 0);
    }

    #[test]
    fn map_and_list_state_keep_their_entries_per_key() {
        let registry = Registry::new(true);
        let map: MapState<u64, String, u32> = MapState(registry.table("m"));
        map.put(1, "b".into(), 2);
        map.put(1, "a".into(), 1);
        assert_eq!(map.put(1, "a".into(), 10), Some(1));
        assert_eq!(map.entries(&1), [("a".into(), 10), ("b".into(), 2)]);
        assert_eq!(map.remove(&1, &"a".into()), Some(10));
        assert_eq!(map.remove(&1, &"b".into()), Some(2));
        assert!(map.entries(&1).is_empty());
        let list: ListState<u64, u32> = ListState(registry.table("l"));
        list.add(5, 1);
        list.add(5, 2);
        assert_eq!(list.get(&5), [1, 2]);
        assert_eq!(list.clear(&5), [1, 2]);
        assert!(list.get(&5).is_empty());
    }

    #[test]
    #[should_panic(expected = "two states named 'x'")]
    fn two_states_of_one_name_are_refused() {
        let registry = Registry::new(true);
        let _a: ValueState<u64, u64> = ValueState(registry.table("x"));
        let _b: ValueState<u64, u64> = ValueState(registry.table("x"));
    }
}
