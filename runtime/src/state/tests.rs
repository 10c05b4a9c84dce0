//! Tests of keyed state tables: increments, chains, restores onto other shard counts, and
//! the handles a user gets.

use super::*;
use crate::checkpoint::{RestoredEntry, StateEntry, StateReader, StateWriter};
use crate::keys::{hash_key, key_group};

/// Reads `writers` back as one shard of `shards` would at a restore of the chain they
/// form (oldest first), entry by entry as `assign` hands them over.
pub(super) fn chain(writers: Vec<StateWriter>, shard: usize, shards: usize) -> StateReader {
    entries(
        writers.into_iter().map(|w| w.entries).collect(),
        shard,
        shards,
    )
}

pub(super) fn entries(writers: Vec<Vec<StateEntry>>, shard: usize, shards: usize) -> StateReader {
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
    let mut w = StateWriter::for_checkpoint(copy, (0, 1));
    table.snapshot(w.section("t", 1)).unwrap();
    w.finish().unwrap(); // what the shard's loop does in slices
    w
}

pub(super) fn sorted(table: &KeyedState<u64, String>) -> Vec<(u64, String)> {
    let mut all: Vec<_> = table.iter().map(|(k, v)| (*k, v.clone())).collect();
    all.sort();
    all
}

#[test]
fn an_increment_holds_only_changed_and_removed_keys() {
    let mut t: KeyedState<u64, String> = KeyedState::tracked();
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
    let mut t: KeyedState<u64, String> = KeyedState::tracked();
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
            let mut r: KeyedState<u64, String> = KeyedState::tracked();
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
    let mut t: KeyedState<u64, String> = KeyedState::tracked();
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
    let mut r: KeyedState<u64, String> = KeyedState::tracked();
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
    let mut r: KeyedState<u64, String> = KeyedState::tracked();
    r.restore(&entries(short, 0, 1)).unwrap();
    assert!(r.len() < t.len());
}

#[test]
fn without_tracking_nothing_is_remembered_and_snapshots_are_full() {
    let mut t: KeyedState<u64, String> = KeyedState::untracked();
    t.insert(1, "a".into());
    t.insert(2, "b".into());
    t.remove(&1);
    assert_eq!(t.changed(), 0);
    assert_eq!(t.slots(), 1, "no tombstone kept");
    let w = snapshot(&mut t, false);
    let all: Vec<(u64, Option<String>)> = chain(vec![w], 0, 1).changelog().unwrap();
    assert_eq!(all, [(2, Some("b".into()))]);
}

#[test]
fn update_each_marks_only_what_it_changed() {
    let mut t: KeyedState<u64, String> = KeyedState::tracked();
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
    let registry = Registry::new(Changes::Tracked);
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
    let registry = Registry::new(Changes::Tracked);
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
    let registry = Registry::new(Changes::Tracked);
    let _a: ValueState<u64, u64> = ValueState(registry.table("x"));
    let _b: ValueState<u64, u64> = ValueState(registry.table("x"));
}
