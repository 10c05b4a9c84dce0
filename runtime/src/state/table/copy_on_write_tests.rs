//! Tests of copy-on-write checkpoints: whatever the table does while a checkpoint is being
//! collected, the checkpoint holds the table as it was at its barrier (checked against an
//! oracle that computes the records from a model of the table, from scratch).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use proptest::prelude::*;

use super::super::tests::{chain, sorted};
use super::super::*;
use crate::checkpoint::{Scratch, StateWriter};
use crate::keys::{hash_key, key_group};

type Table = SharedKeyedState<u64, String>;
type Records = Vec<(u64, Option<String>)>;

fn table(track: bool) -> Table {
    Rc::new(std::cell::RefCell::new(KeyedState::with_changes(
        if track {
            Changes::Tracked
        } else {
            Changes::Untracked
        },
    )))
}

/// Takes a copy-on-write snapshot of `table` at a barrier copying the key groups `copy`.
fn barrier(table: &Table, copy: (u32, u32)) -> StateWriter {
    let mut w = StateWriter::for_checkpoint(copy, (0, 1));
    KeyedState::snapshot_shared(table, w.section("t", 1)).unwrap();
    w
}

/// Collects and archives up to `n` more records of `w`, as a slice of the shard's loop does.
/// True once all are.
fn slice(w: &mut StateWriter, n: usize) -> bool {
    let mut scratch = Scratch::default();
    let mut left = n;
    while left > 0 {
        let Some(d) = w.deferred.last_mut() else {
            return true;
        };
        match d.next_entry(&mut scratch, left.min(3)) {
            Some(entry) => {
                let entry = entry.unwrap();
                if !entry.bytes.is_empty() {
                    w.entries.push(entry);
                }
                left -= left.min(3);
            }
            None => {
                w.deferred.pop();
            }
        }
    }
    w.deferred.is_empty()
}

fn records(w: StateWriter) -> Records {
    let mut records: Records = chain(vec![w], 0, 1)
        .section("t", 1)
        .unwrap()
        .changelog()
        .unwrap();
    records.sort();
    records
}

/// What a checkpoint must hold, from scratch: the changed keys' values (`None` if removed)
/// and every key of the copied key groups.
fn oracle(
    model: &BTreeMap<u64, String>,
    changed: &BTreeSet<u64>,
    (part, parts): (u32, u32),
) -> Records {
    let mut want: BTreeMap<u64, Option<String>> = changed
        .iter()
        .map(|k| (*k, model.get(k).cloned()))
        .collect();
    for (k, v) in model {
        if key_group(hash_key(k)) % parts == part {
            want.insert(*k, Some(v.clone()));
        }
    }
    want.into_iter().collect()
}

#[test]
fn writes_during_collection_leave_the_checkpoint_as_at_the_barrier() {
    let t = table(true);
    for k in 0..200 {
        t.borrow_mut().insert(k, format!("v{k}"));
    }
    let full = barrier(&t, (0, 1));
    assert!(full.entries.is_empty(), "the barrier archives nothing");
    drop(full); // abandoned: the next barrier finishes taking its records
    let mut model: BTreeMap<u64, String> = (0..200).map(|k| (k, format!("v{k}"))).collect();
    // A checkpoint's worth of changes.
    let mut changed = BTreeSet::new();
    for k in [1, 2, 3, 4] {
        t.borrow_mut().get_mut(&k).unwrap().push('!');
        model.get_mut(&k).unwrap().push('!');
        changed.insert(k);
    }
    t.borrow_mut().remove(&5);
    model.remove(&5);
    changed.insert(5);
    let copy = (3, 8);
    let want = oracle(&model, &changed, copy);
    let at_barrier = model.clone();
    let mut w = barrier(&t, copy);
    assert_eq!(t.borrow().changed(), 0, "a new epoch");
    slice(&mut w, 2);
    // While the checkpoint is collected: change, remove and re-insert changed keys,
    // keys of the copied part and others, and insert new ones in and out of the part.
    let copied: Vec<u64> = (0..200)
        .filter(|k| key_group(hash_key(k)) % 8 == 3)
        .collect();
    let fresh: Vec<u64> = (1000..1100).collect();
    {
        let mut t = t.borrow_mut();
        t.get_mut(&1).unwrap().push('?');
        t.remove(&2);
        t.insert(5, "back".into());
        t.remove(&copied[0]);
        t.insert(copied[1], "over".into());
        t.get_or_insert_with(copied[2], String::new).push('+');
        t.get_mut(&100).unwrap().push('~');
        for k in &fresh {
            t.insert(*k, "new".into());
        }
        t.update_each(|k, v| match k % 50 {
            7 => Update::Remove,
            8 => {
                v.push('u');
                Update::Changed
            }
            _ => Update::Keep,
        });
    }
    slice(&mut w, 10);
    for (_, v) in t.borrow_mut().iter_mut() {
        v.push('*');
    }
    while !slice(&mut w, 7) {}
    assert_eq!(records(w), want);
    // Restored after the next increment, the chain gives the table as it is now.
    let mut next = barrier(&t, (u32::MAX - 1, u32::MAX));
    next.archive().unwrap();
    let mut base = KeyedState::tracked();
    for (k, v) in &at_barrier {
        base.insert(*k, v.clone());
    }
    let mut full = StateWriter::default();
    base.snapshot(full.section("t", 1)).unwrap();
    let mut r: KeyedState<u64, String> = KeyedState::tracked();
    r.restore(&chain(vec![full, next], 0, 1).section("t", 1).unwrap())
        .unwrap();
    assert_eq!(sorted(&r), sorted(&t.borrow()));
}

#[test]
fn two_barriers_back_to_back_each_hold_their_state() {
    let t = table(true);
    for k in 0..50 {
        t.borrow_mut().insert(k, format!("{k}"));
    }
    let mut first = barrier(&t, (0, 1));
    let at_first: Records = (0..50).map(|k| (k, Some(format!("{k}")))).collect();
    t.borrow_mut().insert(7, "seven".into());
    t.borrow_mut().remove(&8);
    // The second barrier comes before anything of the first was collected.
    let mut second = barrier(&t, (u32::MAX - 1, u32::MAX));
    t.borrow_mut().insert(7, "later".into());
    t.borrow_mut().insert(9, "later".into());
    while !slice(&mut second, 5) {}
    while !slice(&mut first, 5) {}
    assert_eq!(records(first), at_first);
    assert_eq!(records(second), [(7, Some("seven".to_string())), (8, None)]);
}

#[test]
fn a_map_that_grows_while_it_is_walked_gives_the_checkpoint_its_keys_first() {
    for track in [true, false] {
        let t = table(track);
        for k in 0..1000 {
            t.borrow_mut().insert(k, format!("{k}"));
        }
        let mut w = barrier(&t, (0, 1));
        slice(&mut w, 100);
        // Enough new keys to grow every map (which moves its buckets) during the walk.
        for k in 1000..5000 {
            t.borrow_mut().insert(k, "new".into());
        }
        while !slice(&mut w, 50) {}
        let want: Records = (0..1000).map(|k| (k, Some(format!("{k}")))).collect();
        assert_eq!(records(w), want, "tracking changes: {track}");
    }
}

#[test]
fn a_table_dropped_during_collection_hands_its_checkpoint_the_rest() {
    for track in [true, false] {
        let t = table(track);
        for k in 0..100 {
            t.borrow_mut().insert(k, format!("{k}"));
        }
        let mut w = barrier(&t, (0, 1));
        slice(&mut w, 4);
        t.borrow_mut().insert(3, "changed".into());
        t.borrow_mut().remove(&4);
        t.borrow_mut().insert(500, "new".into());
        drop(t);
        while !slice(&mut w, 5) {}
        let want: Records = (0..100).map(|k| (k, Some(format!("{k}")))).collect();
        assert_eq!(records(w), want, "tracking changes: {track}");
    }
}

#[test]
fn a_table_being_collected_is_not_taken_apart() {
    let t = table(true);
    for k in 0..100 {
        t.borrow_mut().insert(k, format!("{k}"));
    }
    let mut w = barrier(&t, (0, 1));
    slice(&mut w, 4);
    let t = Rc::try_unwrap(t).unwrap().into_inner();
    let Err(t) = t.into_entries() else {
        panic!("a table a checkpoint still collects from was taken apart");
    };
    drop(t);
    while !slice(&mut w, 5) {}
    let want: Records = (0..100).map(|k| (k, Some(format!("{k}")))).collect();
    assert_eq!(records(w), want);
    // Once collected, the table can be taken.
    let t = table(true);
    t.borrow_mut().insert(7, "seven".into());
    let mut w = barrier(&t, (0, 1));
    while !slice(&mut w, 5) {}
    let t = Rc::try_unwrap(t).unwrap().into_inner();
    let taken: Vec<_> = t.into_entries().ok().unwrap().collect();
    assert_eq!(taken, [(7, "seven".to_string())]);
}

/// What the table does between slices of collection.
#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u8),
    GetMut(u64),
    GetOrInsert(u64),
    Remove(u64),
    UpdateEach(u64),
    IterMut,
    /// A barrier copying this part of 8 (the first barrier copies everything).
    Barrier(u32),
    /// A slice of collection of this many records (of the oldest checkpoint not done).
    Slice(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..48u64;
    prop_oneof![
        4 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => key.clone().prop_map(Op::GetMut),
        2 => key.clone().prop_map(Op::GetOrInsert),
        3 => key.prop_map(Op::Remove),
        1 => (2..6u64).prop_map(Op::UpdateEach),
        1 => Just(Op::IterMut),
        2 => (0..8u32).prop_map(Op::Barrier),
        4 => (1..20usize).prop_map(Op::Slice),
    ]
}

/// A checkpoint under way: its writer and what it must hold.
struct Checkpoint {
    writer: StateWriter,
    want: Records,
    done: bool,
}

fn run(ops: Vec<Op>, track: bool) -> Result<(), TestCaseError> {
    let t = table(track);
    let mut model: BTreeMap<u64, String> = BTreeMap::new();
    let mut changed: BTreeSet<u64> = BTreeSet::new();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut last_state = BTreeMap::new();
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                t.borrow_mut().insert(k, format!("{v}"));
                model.insert(k, format!("{v}"));
                changed.insert(k);
            }
            Op::GetMut(k) => {
                if let Some(v) = t.borrow_mut().get_mut(&k) {
                    v.push('!');
                }
                if let Some(v) = model.get_mut(&k) {
                    v.push('!');
                    changed.insert(k);
                }
            }
            Op::GetOrInsert(k) => {
                t.borrow_mut().get_or_insert_with(k, String::new).push('+');
                model.entry(k).or_default().push('+');
                changed.insert(k);
            }
            Op::Remove(k) => {
                t.borrow_mut().remove(&k);
                if model.remove(&k).is_some() {
                    changed.insert(k);
                }
            }
            Op::UpdateEach(m) => {
                let visit = |k: &u64, v: &mut String| match k % m {
                    0 => Update::Remove,
                    1 => {
                        v.push('u');
                        Update::Changed
                    }
                    _ => Update::Keep,
                };
                // Keys with `k % m` above 2 are not visited (they would be kept).
                let needs = |k: &u64, _: &String| k % m <= 2;
                t.borrow_mut().update_each_where(needs, visit);
                model.retain(|k, v| match visit(k, v) {
                    Update::Remove => {
                        changed.insert(*k);
                        false
                    }
                    Update::Changed => {
                        changed.insert(*k);
                        true
                    }
                    Update::Keep => true,
                });
            }
            Op::IterMut => {
                for (_, v) in t.borrow_mut().iter_mut() {
                    v.push('*');
                }
                for (k, v) in model.iter_mut() {
                    v.push('*');
                    changed.insert(*k);
                }
            }
            Op::Barrier(part) => {
                let copy = if checkpoints.is_empty() || !track {
                    (0, 1)
                } else {
                    (part, 8)
                };
                // An untracked table writes no tombstones: it writes all of itself.
                let changes = if track {
                    changed.clone()
                } else {
                    BTreeSet::new()
                };
                let want = oracle(&model, &changes, copy);
                changed.clear();
                last_state = model.clone();
                let writer = barrier(&t, copy);
                prop_assert_eq!(t.borrow().changed(), 0);
                checkpoints.push(Checkpoint {
                    writer,
                    want,
                    done: false,
                });
            }
            Op::Slice(n) => {
                if let Some(c) = checkpoints.iter_mut().find(|c| !c.done) {
                    c.done = slice(&mut c.writer, n);
                }
            }
        }
        prop_assert_eq!(t.borrow().len(), model.len());
    }
    let mut writers = Vec::new();
    for mut c in checkpoints {
        while !slice(&mut c.writer, 16) {}
        let mut copy = StateWriter::default();
        copy.entries = c.writer.entries.clone();
        prop_assert_eq!(records(copy), c.want);
        writers.push(c.writer);
    }
    // The chain restores the table as it was at the last barrier (an untracked table's
    // newest checkpoint alone: each is whole, without tombstones).
    if !track && writers.len() > 1 {
        writers.drain(..writers.len() - 1);
    }
    if !writers.is_empty() {
        let mut r: KeyedState<u64, String> = KeyedState::tracked();
        r.restore(&chain(writers, 0, 1).section("t", 1).unwrap())
            .unwrap();
        let got: BTreeMap<u64, String> = r.iter().map(|(k, v)| (*k, v.clone())).collect();
        prop_assert_eq!(got, last_state);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_checkpoint_holds_the_table_as_at_its_barrier(ops in prop::collection::vec(op(), 0..120)) {
        run(ops, true)?;
    }

    #[test]
    fn an_untracked_table_writes_all_of_it_as_at_the_barrier(ops in prop::collection::vec(op(), 0..80)) {
        run(ops, false)?;
    }
}
