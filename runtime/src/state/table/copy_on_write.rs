//! Copy-on-write checkpoints of a [`KeyedState`] table: the barrier only notes what the
//! checkpoint writes; its records are collected afterwards, in slices between batches.
//!
//! At a barrier the table swaps out its list of changed keys (and tombstones), notes which
//! of its maps (by key group) it copies whole this time, and starts a new epoch: no value
//! is cloned or serialized there, and no slot is visited. The checkpoint then *takes* the
//! record of each key it writes once: the shard's loop collects them in slices (reading
//! the values as they are then, see [`Collector`]): it walks the copied map bucket by
//! bucket, then looks up the changed keys. A write or removal of a key the checkpoint has
//! yet to take takes its record first (`Collecting::take_before_write`), so that the
//! checkpoint holds the table exactly as it was at the barrier. Keys created after the
//! barrier are marked taken as they are created: they are not in the checkpoint.
//!
//! A map being walked must not grow (growing moves every bucket): a key added to it when
//! it is full first lets the checkpoint take the rest of its records (growing is a pass
//! over the map anyway). A second barrier before the first checkpoint took everything
//! first finishes that one; so does a restore. A table dropped meanwhile hands its maps
//! to the checkpoint, which walks them in its slices as it would have (nothing writes them
//! any more).

use std::cell::RefCell;
use std::hash::Hash;
use std::rc::{Rc, Weak};

use super::{hash, KeyedState, Map, Slot, PARTS};
use crate::checkpoint::{archive_chunk, Archiving, Scratch};
use crate::data::StateData;
use crate::error::Failure;

/// What a checkpoint takes from a table: the maps and keys still to visit.
pub(super) struct Visit<K> {
    /// The epoch whose changes the checkpoint writes (see `Slot::changed`).
    pub epoch: u32,
    /// `(i, n)`: key groups `g` with `g % n == i` are written whole.
    pub copy: (u32, u32),
    /// The maps that hold the copied key groups, still to walk.
    pub walk: Vec<Walk>,
    /// The keys changed in `epoch` (a key may also be in a copied map; it is taken once).
    pub keys: Vec<K>,
}

/// A map a checkpoint walks by bucket index: from `next` on.
pub(super) struct Walk {
    pub map: usize,
    pub next: usize,
}

impl<K> Visit<K> {
    /// True if the checkpoint writes `slot`'s key and has not taken it yet.
    #[inline]
    pub fn wants<V>(&self, slot: &Slot<V>) -> bool {
        wanted(self.epoch, self.copy, slot)
    }

    /// True if map `map` is still being walked.
    pub fn walks(&self, map: usize) -> bool {
        self.walk.iter().any(|w| w.map == map)
    }
}

/// True if the checkpoint of `epoch` that copies the key groups `copy` writes `slot`'s key
/// and has not taken it yet.
#[inline]
fn wanted<V>(epoch: u32, (part, parts): (u32, u32), slot: &Slot<V>) -> bool {
    slot.taken != epoch && (slot.changed == epoch || slot.group % parts == part)
}

/// Where a checkpoint's records go as they are taken.
pub(super) trait Take<K, V> {
    /// Takes `key`'s record as it was at the barrier: of `value` (`None`: a tombstone).
    fn take(&mut self, key: &K, group: u32, value: Option<&V>);
    /// Every record was taken.
    fn finish(&mut self);
    /// The table was dropped before every record was taken: the rest are in `orphan`.
    fn adopt(&mut self, orphan: Orphan<K, V>);
}

/// The maps of a table dropped while a checkpoint was being collected from it, and what
/// the checkpoint wants of them: walked by bucket as the table would have been.
pub(super) struct Orphan<K, V> {
    maps: Vec<Map<K, V>>,
    epoch: u32,
    copy: (u32, u32),
    /// The map and bucket walked next.
    map: usize,
    next: usize,
}

/// A checkpoint's records taken so far, made with `record`.
pub(super) struct Taken<K, V, R, F> {
    record: F,
    pub records: Vec<(u32, (K, Option<R>))>,
    done: bool,
    orphan: Option<Orphan<K, V>>,
}

impl<K: Clone, V, R, F: FnMut(&K, &V) -> R> Taken<K, V, R, F> {
    pub fn new(record: F) -> Self {
        Taken {
            record,
            records: Vec::new(),
            done: false,
            orphan: None,
        }
    }

    /// Takes the wanted records in up to `max` buckets of a dropped table's maps. Done
    /// once they are all walked.
    fn collect_orphan(&mut self, max: usize) {
        let Some(mut o) = self.orphan.take() else {
            self.done = true;
            return;
        };
        let mut budget = max;
        while budget > 0 && o.map < o.maps.len() {
            let map = &o.maps[o.map];
            if o.next >= map.num_buckets() {
                (o.map, o.next) = (o.map + 1, 0);
                continue;
            }
            budget -= 1;
            o.next += 1;
            if let Some((key, slot)) = map.get_bucket(o.next - 1) {
                if wanted(o.epoch, o.copy, slot) {
                    self.take(key, slot.group, slot.value.as_ref());
                }
            }
        }
        if o.map < o.maps.len() {
            self.orphan = Some(o);
        } else {
            self.done = true;
        }
    }
}

impl<K: Clone, V, R, F: FnMut(&K, &V) -> R> Take<K, V> for Taken<K, V, R, F> {
    fn take(&mut self, key: &K, group: u32, value: Option<&V>) {
        let record = value.map(|v| (self.record)(key, v));
        self.records.push((group, (key.clone(), record)));
    }
    fn finish(&mut self) {
        self.done = true;
    }
    fn adopt(&mut self, orphan: Orphan<K, V>) {
        self.orphan = Some(orphan);
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
    /// track changes writes everything). Visits no slot and clones no value.
    pub(super) fn begin(&mut self, copy: (u32, u32)) -> Visit<K> {
        // A second barrier: the previous checkpoint takes the rest of its records first.
        self.finish_collecting();
        let (part, parts) = if self.track { copy } else { (0, 1) };
        // With a number of parts that is a multiple of the maps', the part lies in one map.
        let walk = if parts as usize % PARTS == 0 {
            vec![part as usize % PARTS]
        } else {
            (0..PARTS).collect()
        };
        let epoch = self.epoch;
        self.epoch += 1;
        Visit {
            epoch,
            copy: (part, parts),
            walk: walk.into_iter().map(|map| Walk { map, next: 0 }).collect(),
            keys: std::mem::take(&mut self.changed),
        }
    }

    /// Takes the records of the keys in up to `max` of `visit`'s buckets and keys, as they
    /// are now (the keys written since the barrier were taken before). True once it
    /// visited everything.
    pub(super) fn collect(
        &mut self,
        visit: &mut Visit<K>,
        take: &mut dyn Take<K, V>,
        max: usize,
    ) -> bool {
        let (epoch, copy, now) = (visit.epoch, visit.copy, self.epoch);
        let mut budget = max;
        while budget > 0 {
            if let Some(walk) = visit.walk.last_mut() {
                // No bucket moves while the map is walked (see `before_growing`).
                let map = &mut self.maps[walk.map];
                let end = map.num_buckets();
                while budget > 0 && walk.next < end {
                    budget -= 1;
                    walk.next += 1;
                    let Ok(mut entry) = map.get_bucket_entry(walk.next - 1) else {
                        continue;
                    };
                    let (key, slot) = entry.get_mut();
                    if !wanted(epoch, copy, slot) {
                        continue;
                    }
                    take.take(key, slot.group, slot.value.as_ref());
                    slot.taken = epoch;
                    if slot.value.is_none() && slot.changed != now {
                        entry.remove(); // the tombstone is written
                    }
                }
                if walk.next >= end {
                    visit.walk.pop();
                }
                continue;
            }
            let Some(key) = visit.keys.pop() else {
                break;
            };
            budget -= 1;
            let map = &mut self.maps[(self.group_of)(&key) as usize % PARTS];
            let Ok(mut entry) = map.find_entry(hash(&key), |(k, _)| *k == key) else {
                continue; // a tombstone already written, or removed untracked
            };
            let slot = &mut entry.get_mut().1;
            if !wanted(epoch, copy, slot) {
                continue;
            }
            take.take(&key, slot.group, slot.value.as_ref());
            slot.taken = epoch;
            if slot.value.is_none() && slot.changed != now {
                entry.remove(); // the tombstone is written
            }
        }
        visit.walk.is_empty() && visit.keys.is_empty()
    }

    /// Before a key is looked up to be added to map `part`: a map being walked must not
    /// grow, which moves every bucket; if it is full, the checkpoint being collected takes
    /// the rest of its records first.
    #[inline]
    pub(super) fn before_growing(&mut self, part: usize) {
        let map = &self.maps[part];
        if map.len() == map.capacity()
            && self
                .collecting
                .as_ref()
                .is_some_and(|c| c.visit.walks(part))
        {
            self.finish_collecting();
        }
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
    /// A table dropped while a checkpoint is collected from it hands it its maps.
    fn drop(&mut self) {
        let Some(c) = self.collecting.take() else {
            return;
        };
        c.taker.borrow_mut().adopt(Orphan {
            maps: std::mem::take(&mut self.maps),
            epoch: c.visit.epoch,
            copy: c.visit.copy,
            map: 0,
            next: 0,
        });
    }
}

/// Buckets or keys one [`Archiving::next_chunk`] call of a table visits at most, per
/// record it may archive.
const VISITS_PER_RECORD: usize = 8;

/// A table's changelog entry in a checkpoint: collects the records from the table in
/// slices (the shard's loop asks for up to `max` at a time) and archives them.
pub(super) struct Collector<K, V, R, F> {
    pub table: Weak<RefCell<KeyedState<K, V>>>,
    pub taken: Rc<RefCell<Taken<K, V, R, F>>>,
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
        scratch: &mut Scratch,
        max: usize,
    ) -> Option<Result<Vec<u8>, Failure>> {
        let max = max.max(1);
        // Buckets and keys visited in one call: a walk over buckets that the checkpoint
        // does not want (another part of a full copy, or already taken) stops here too,
        // so that one call's work stays about that of archiving `max` records.
        let mut visits = VISITS_PER_RECORD.saturating_mul(max);
        while visits > 0 {
            let (done, have) = {
                let taken = self.taken.borrow();
                (taken.done, taken.records.len())
            };
            if done || have >= max {
                break;
            }
            let round = (max - have).min(visits);
            visits -= round;
            let Some(table) = self.table.upgrade() else {
                // The table was dropped: it handed over its maps.
                self.taken.borrow_mut().collect_orphan(round);
                continue;
            };
            let Ok(mut table) = table.try_borrow_mut() else {
                return Some(Err(Failure::new(
                    "a keyed state table was borrowed while its checkpoint was being collected",
                )));
            };
            table.collect_some(round);
        }
        let mut taken = self.taken.borrow_mut();
        let chunk = archive_chunk(&mut taken.records, scratch, max);
        if chunk.is_none() && !taken.done {
            // Out of visits before any record was taken: an empty chunk, more to come.
            return Some(Ok(Vec::new()));
        }
        chunk
    }
}
