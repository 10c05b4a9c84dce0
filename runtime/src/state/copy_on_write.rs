//! Copy-on-write checkpoints of a [`KeyedState`] table: the barrier only notes what the
//! checkpoint writes; its records are collected afterwards, in slices between batches.
//!
//! At a barrier the table swaps out its list of changed keys (and tombstones), lists the
//! keys of the part it copies whole this time, and starts a new epoch: no value is cloned
//! or serialized there. The checkpoint then *takes* each listed key's record once: the
//! shard's loop collects them in slices (reading the values as they are then, see
//! [`Collector`]), and a write or removal of a key the checkpoint has yet to take takes
//! its record first (`Collecting::take_before_write`), so that the checkpoint holds the
//! table exactly as it was at the barrier. Keys created after the barrier are marked taken
//! as they are created: they are not in the checkpoint. A second barrier before the first
//! checkpoint took everything first finishes that one; so does dropping the table.

use std::cell::RefCell;
use std::hash::Hash;
use std::rc::{Rc, Weak};

use super::table::{Slot, PARTS};
use super::KeyedState;
use crate::checkpoint::{archive_chunk, Archiving};
use crate::data::StateData;
use crate::error::Failure;

/// What a checkpoint takes from a table: the keys still to visit.
pub(super) struct Visit<K> {
    /// The epoch whose changes the checkpoint writes (see `Slot::changed`).
    pub epoch: u32,
    /// `(i, n)`: key groups `g` with `g % n == i` are written whole.
    pub copy: (u32, u32),
    /// Keys to visit: those changed in `epoch` and those of the copied part at the barrier
    /// (a key may be listed twice; it is taken once).
    pub keys: Vec<K>,
}

impl<K> Visit<K> {
    /// True if the checkpoint writes `slot`'s key and has not taken it yet.
    #[inline]
    pub fn wants<V>(&self, slot: &Slot<V>) -> bool {
        slot.taken != self.epoch
            && (slot.changed == self.epoch || slot.group % self.copy.1 == self.copy.0)
    }
}

/// Where a checkpoint's records go as they are taken.
pub(super) trait Take<K, V> {
    /// Takes `key`'s record as it was at the barrier: of `value` (`None`: a tombstone).
    fn take(&mut self, key: &K, group: u32, value: Option<&V>);
    /// Every record was taken.
    fn finish(&mut self);
}

/// A checkpoint's records taken so far, made with `record`.
pub(super) struct Taken<K, R, F> {
    record: F,
    pub records: Vec<(u32, (K, Option<R>))>,
    done: bool,
}

impl<K, R, F> Taken<K, R, F> {
    pub fn new(record: F) -> Self {
        Taken {
            record,
            records: Vec::new(),
            done: false,
        }
    }
}

impl<K: Clone, V, R, F: FnMut(&K, &V) -> R> Take<K, V> for Taken<K, R, F> {
    fn take(&mut self, key: &K, group: u32, value: Option<&V>) {
        let record = value.map(|v| (self.record)(key, v));
        self.records.push((group, (key.clone(), record)));
    }
    fn finish(&mut self) {
        self.done = true;
    }
}

/// A checkpoint being collected from a table after its barrier.
pub(super) struct Collecting<K, V> {
    pub visit: Visit<K>,
    pub taker: Rc<RefCell<dyn Take<K, V>>>,
}

impl<K, V> Collecting<K, V> {
    /// Takes `key`'s record before its slot is written, if the checkpoint has yet to.
    #[inline]
    pub fn take_before_write(&self, key: &K, slot: &mut Slot<V>) {
        if self.visit.wants(slot) {
            self.taker
                .borrow_mut()
                .take(key, slot.group, slot.value.as_ref());
            slot.taken = self.visit.epoch;
        }
    }
}

impl<K: Clone + Hash + Eq, V> KeyedState<K, V> {
    /// At a barrier: ends the epoch and says what its checkpoint takes (`copy` as
    /// [`StateWriter::copy`](crate::checkpoint::StateWriter) says; a table that does not
    /// track changes writes everything). Clones no value; lists the copied part's keys.
    pub(super) fn begin(&mut self, copy: (u32, u32)) -> Visit<K> {
        // A second barrier: the previous checkpoint takes the rest of its records first.
        self.finish_collecting();
        let (part, parts) = if self.track { copy } else { (0, 1) };
        let mut keys = std::mem::take(&mut self.changed);
        // With a number of parts that is a multiple of the maps', the part lies in one map.
        let maps = if parts as usize % PARTS == 0 {
            let i = part as usize % PARTS;
            &self.maps[i..=i]
        } else {
            &self.maps[..]
        };
        for (k, slot) in maps.iter().flatten() {
            if slot.group % parts == part && slot.value.is_some() {
                keys.push(k.clone());
            }
        }
        let epoch = self.epoch;
        self.epoch += 1;
        Visit {
            epoch,
            copy: (part, parts),
            keys,
        }
    }

    /// Takes the records of up to `max` of `visit`'s keys, as they are now (the keys
    /// written since the barrier were taken before). True once every key was visited.
    pub(super) fn collect(
        &mut self,
        visit: &mut Visit<K>,
        take: &mut dyn Take<K, V>,
        max: usize,
    ) -> bool {
        for _ in 0..max {
            let Some(key) = visit.keys.pop() else {
                break;
            };
            let map = &mut self.maps[(self.group_of)(&key) as usize % PARTS];
            let Some(slot) = map.get_mut(&key) else {
                continue; // a tombstone already written, or removed untracked
            };
            if !visit.wants(slot) {
                continue;
            }
            take.take(&key, slot.group, slot.value.as_ref());
            slot.taken = visit.epoch;
            if slot.value.is_none() && slot.changed != self.epoch {
                map.remove(&key); // the tombstone is written
            }
        }
        visit.keys.is_empty()
    }

    /// Collects up to `max` keys' records of the checkpoint being collected. True once it
    /// took everything (or none is being collected).
    pub(super) fn collect_some(&mut self, max: usize) -> bool {
        let Some(mut c) = self.collecting.take() else {
            return true;
        };
        let done = self.collect(&mut c.visit, &mut *c.taker.borrow_mut(), max);
        if done {
            c.taker.borrow_mut().finish();
        } else {
            self.collecting = Some(c);
        }
        done
    }

    /// Takes every record the checkpoint being collected (if any) has yet to take.
    pub(super) fn finish_collecting(&mut self) {
        self.collect_some(usize::MAX);
    }
}

impl<K, V> Drop for KeyedState<K, V> {
    /// A table dropped while a checkpoint is collected from it gives it the rest first.
    fn drop(&mut self) {
        let Some(c) = self.collecting.take() else {
            return;
        };
        let mut taker = c.taker.borrow_mut();
        for (key, slot) in self.maps.iter().flatten() {
            if c.visit.wants(slot) {
                taker.take(key, slot.group, slot.value.as_ref());
            }
        }
        taker.finish();
    }
}

/// A table's changelog entry in a checkpoint: collects the records from the table in
/// slices (the shard's loop asks for up to `max` at a time) and archives them.
pub(super) struct Collector<K, V, R, F> {
    pub table: Weak<RefCell<KeyedState<K, V>>>,
    pub taken: Rc<RefCell<Taken<K, R, F>>>,
}

impl<K, V, R, F> Archiving for Collector<K, V, R, F>
where
    K: StateData + Hash + Eq,
    V: 'static,
    R: StateData,
    F: FnMut(&K, &V) -> R + 'static,
{
    fn next_chunk(
        &mut self,
        arena: &mut rkyv::ser::allocator::Arena,
        max: usize,
    ) -> Option<Result<Vec<u8>, Failure>> {
        let max = max.max(1);
        loop {
            let (done, have) = {
                let taken = self.taken.borrow();
                (taken.done, taken.records.len())
            };
            if done || have >= max {
                break;
            }
            // A dropped table gave its checkpoint the rest of its records as it went.
            let Some(table) = self.table.upgrade() else {
                break;
            };
            let Ok(mut table) = table.try_borrow_mut() else {
                return Some(Err(Failure::new(
                    "a keyed state table was borrowed while its checkpoint was being collected",
                )));
            };
            table.collect_some(max - have);
        }
        archive_chunk(&mut self.taken.borrow_mut().records, arena, max)
    }
}
