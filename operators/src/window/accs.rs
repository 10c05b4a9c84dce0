//! The accumulators of one slice (or one window) by key, in the form the job's
//! checkpoints need: a table that tracks its changes when the job takes snapshots, a plain
//! map otherwise.
//!
//! A tracked table ([`KeyedState`]) is keyed by (key, slice start or window end) and keeps
//! per entry what an incremental, copy-on-write checkpoint needs (the value as an
//! `Option`, change marks, the key group): 48 bytes for a `u64` key and count, in 8 maps by
//! key group. A plain map keeps the key and the value: 16 bytes. A window operator's
//! open slices are probed once per record and scanned whole at a window's close, so the
//! smaller entries keep them in the core's cache where the table's would not (the
//! library's q5 went from a third of the hand-written plan's speed to par:
//! docs/windows.md, "Library against hand-written"). A job whose tables track no changes
//! (no checkpoints, or at most once) never writes them incrementally; should it write
//! them at all (a savepoint), a plain map is written whole through a temporary table,
//! in the same section and format.

use std::hash::Hash;

use rill_runtime::checkpoint::StateWriter;
use rill_runtime::state::{Changes, Codec, SharedKeyedState};
use rill_runtime::{OpResult, Timestamp};
use rustc_hash::FxHashMap;

use super::slices::slice_table;

/// One slice's (or window's) values by key; `at` (its start or end) completes a tracked
/// table's key.
pub(crate) enum SliceAccs<K, V> {
    /// In a job that takes snapshots.
    Tracked(SharedKeyedState<(K, Timestamp), V>),
    /// In a job that takes none.
    Plain(FxHashMap<K, V>),
}

/// The most emptied maps an operator keeps.
const SPARE: usize = 8;

/// Emptied plain maps kept for the next slices (their buckets already grown).
pub(crate) type Spare<K, V> = Vec<FxHashMap<K, V>>;

impl<K: Clone + Hash + Eq, V> SliceAccs<K, V> {
    /// An empty slice for a job whose tables record `changes`; a plain one reuses a map of
    /// `spare` if there is one.
    pub(crate) fn new(changes: Changes, spare: &mut Spare<K, V>) -> Self {
        match changes {
            Changes::Tracked => SliceAccs::Tracked(slice_table(changes)),
            Changes::Untracked => SliceAccs::Plain(spare.pop().unwrap_or_default()),
        }
    }

    /// The keys with a value.
    pub(crate) fn len(&self) -> usize {
        match self {
            SliceAccs::Tracked(table) => table.borrow().len(),
            SliceAccs::Plain(map) => map.len(),
        }
    }

    /// Calls `visit` with each key and its value.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&K, &V)) {
        match self {
            SliceAccs::Tracked(table) => {
                table.borrow().iter().for_each(|((k, _), v)| visit(k, v));
            }
            SliceAccs::Plain(map) => map.iter().for_each(|(k, v)| visit(k, v)),
        }
    }

    /// Calls `update` with `key`'s value, made by `make` if it has none (then `update`'s
    /// second argument is true). `group` is the key's group if the caller has it (a
    /// tracked table places its entries by it; a plain map does not need it).
    #[inline]
    pub(crate) fn update<R>(
        &mut self,
        key: K,
        at: Timestamp,
        group: Option<u32>,
        make: impl FnOnce() -> V,
        update: impl FnOnce(&mut V, bool) -> R,
    ) -> R {
        let mut fresh = false;
        let make = || {
            fresh = true;
            make()
        };
        match self {
            SliceAccs::Tracked(table) => {
                let mut table = table.borrow_mut();
                let value = match group {
                    Some(group) => table.get_or_insert_in_group((key, at), group, make),
                    None => table.get_or_insert_with((key, at), make),
                };
                update(value, fresh)
            }
            SliceAccs::Plain(map) => {
                let value = map.entry(key).or_insert_with(make);
                update(value, fresh)
            }
        }
    }

    /// Sets `key`'s value (a restore).
    pub(crate) fn insert(&mut self, key: K, at: Timestamp, value: V) {
        match self {
            SliceAccs::Tracked(table) => {
                table.borrow_mut().insert((key, at), value);
            }
            SliceAccs::Plain(map) => {
                map.insert(key, value);
            }
        }
    }

    /// Writes the values (keyed by (key, `at`)) with `codec`.
    pub(crate) fn write(
        &self,
        at: Timestamp,
        codec: &Codec<(K, Timestamp), V>,
        state: &mut StateWriter,
    ) -> OpResult
    where
        V: Clone,
    {
        match self {
            SliceAccs::Tracked(table) => codec.write(table, state),
            SliceAccs::Plain(map) => {
                let table = slice_table(Changes::Untracked);
                {
                    let mut entries = table.borrow_mut();
                    for (key, value) in map {
                        entries.insert((key.clone(), at), value.clone());
                    }
                }
                codec.write(&table, state)
            }
        }
    }

    /// Done with the slice: a plain map goes, emptied, to `spare` (unless it holds
    /// [`SPARE`] already); a table is dropped (handed to a checkpoint still collecting
    /// from it, if one is).
    pub(crate) fn recycle(self, spare: &mut Spare<K, V>) {
        if let SliceAccs::Plain(mut map) = self {
            if spare.len() < SPARE {
                map.clear();
                spare.push(map);
            }
        }
    }
}
