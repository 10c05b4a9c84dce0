//! Window Top-N for values that only grow: the keys with the largest value per window,
//! kept up to date as records arrive, so that a window's close costs its top keys, not
//! its keys (Flink's Window Top-N with its fast path for a ranking key that only grows).
//!
//! A keyed aggregation followed by a maximum over its panes (NEXMark q5: bids per auction
//! per sliding window, then the auctions with the most) emits one pane per key and window
//! at the close, all of which the maximum needs: the close is O(keys). Here each window
//! keeps, per key, its accumulator *and* the window's largest value so far with the keys
//! at it. When a record raises a key's value, the key joins the top (a tie) or replaces it
//! (a new maximum); values that only grow (a count, a sum of non-negative values, a
//! maximum) never leave the top without a scan being needed. So a close emits the top
//! keys it already holds. (Should a value shrink — an aggregate that does not only grow —
//! while at the top, the window is marked and its close scans it: still correct, not
//! fast.)
//!
//! Per record, every window it falls in is updated (`size / period` windows: 5 for q5),
//! as the hand-written q5 did; slices would make the record one update but a window's
//! value of a key the merge of its slices, on every record. Records cross the key
//! exchange as they are (no pre-aggregation, whose last slice's partials come in a burst
//! at the close).
//!
//! This is the first phase, on the key's shard: per window, the shard's top keys, as
//! one `Pane<(), Vec<(K, V)>>` at the window's end; `WindowedStream::top_by` merges the
//! shards' tops in `window_all` (one shard) into the final top per window.
//!
//! Windows fire once (tumbling or sliding in event time, a trigger that waits for the
//! end, no allowed lateness): a record whose windows all fired is dropped and counted
//! late, one in no window (gaps between sliding windows) as for a closed window, as the
//! other window operators count them. A fired window's table is dropped (or, a plain
//! map, emptied for a later window) on the next batch, not in the callback that fired it.
//!
//! In a job that takes no snapshots a window's accumulators are a plain map by key,
//! otherwise a table that tracks its changes (`accs.rs`); and a run of records in one
//! slice looks its windows up once. Both together took the library's q5 from a third of
//! the hand-written plan's speed to par (docs/windows.md, "Library against hand-written").

use std::collections::BTreeMap;
use std::hash::Hash;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::keys::key_group;
use rill_runtime::state::{Changes, Codec, OperatorClock, TimeDomain};
use rill_runtime::{hash_key, OpResult, Output, Timestamp};

use super::accs::{SliceAccs, Spare};
use super::aggregate::Aggregate;
use super::pane::{Pane, Timing, Window};
use super::slices::{slice_table, SliceRuns, Slicing};
use super::state::{Element, Section, WindowBase, WindowKey, Windowing, TOP_WINDOWS};

/// How the windows' accumulators are written to checkpoints.
pub(crate) type TopCodec<K, A> = Codec<(K, Timestamp), A>;

/// A shard's top of one window: the window and its keys at the largest value.
pub(crate) type ShardTop<K, V> = Pane<(), Vec<(K, V)>>;

/// One open window: its accumulators and its top.
struct WindowTop<K, A, V> {
    accs: SliceAccs<K, A>,
    rank: Rank<K, V>,
}

/// A window's largest value and the keys at it.
struct Rank<K, V> {
    best: Option<V>,
    top: Vec<K>,
    /// A key at the top saw its value shrink: the close finds the top by a scan.
    stale: bool,
}

impl<K: Clone + Hash + Eq, A, V: Ord> WindowTop<K, A, V> {
    /// A window with no keys.
    fn new(changes: Changes, spare: &mut Spare<K, A>) -> Self {
        WindowTop {
            accs: SliceAccs::new(changes, spare),
            rank: Rank {
                best: None,
                top: Vec::new(),
                stale: false,
            },
        }
    }
}

impl<K: Clone, V: Ord> Rank<K, V> {
    /// Moves the top after `key`'s value went from `before` (`None` for a new key) to
    /// `after`.
    #[inline]
    fn update(&mut self, key: &K, before: Option<V>, after: V) {
        let Some(best) = &self.best else {
            self.best = Some(after);
            self.top.push(key.clone());
            return;
        };
        match after.cmp(best) {
            std::cmp::Ordering::Greater => {
                self.best = Some(after);
                self.top.clear();
                self.top.push(key.clone());
            }
            std::cmp::Ordering::Equal => {
                if before.as_ref() != Some(best) {
                    self.top.push(key.clone());
                }
            }
            std::cmp::Ordering::Less => {
                if before.as_ref() == Some(best) {
                    self.stale = true;
                }
            }
        }
    }
}

/// One record's update of its windows (see [`TopWindowOperator::add`]).
struct Add<'a, T, K, G> {
    key: &'a K,
    /// The key group of the record's key (and of its entries in every window's table),
    /// for tracked tables.
    group: Option<u32>,
    record: &'a T,
    agg: &'a G,
    size: i64,
    /// (key, window) accumulators created.
    created: &'a mut u64,
}

impl<T, K: Clone + Hash + Eq, G: Aggregate<T, K>> Add<'_, T, K, G>
where
    G::Out: Ord,
{
    /// Adds the record to the key's accumulator in window `w` (ending at `end`) and moves
    /// the window's top.
    #[inline]
    fn to(&mut self, end: Timestamp, w: &mut WindowTop<K, G::Acc, G::Out>) {
        let (agg, key) = (self.agg, self.key);
        let window = Window::new(end - self.size, end);
        let group = self.group;
        let (before, after) = w.accs.update(key.clone(), end, group, || agg.create(), {
            let record = self.record;
            move |acc, fresh| Self::apply(agg, key, &window, acc, record, fresh)
        });
        let fresh = before.is_none();
        *self.created += u64::from(fresh);
        w.rank.update(key, before, after);
    }

    /// Adds `record` to `acc` (just created if `fresh`): the key's value before (`None`
    /// for a new key) and after.
    #[inline]
    fn apply(
        agg: &G,
        key: &K,
        window: &Window,
        acc: &mut G::Acc,
        record: &T,
        fresh: bool,
    ) -> (Option<G::Out>, G::Out) {
        let before = (!fresh).then(|| agg.result(key, window, acc));
        agg.add(acc, record);
        (before, agg.result(key, window, acc))
    }
}

pub(crate) struct TopWindowOperator<T, K, G: Aggregate<T, K>> {
    base: WindowBase<T, K, G>,
    slicing: Slicing,
    /// Open windows by end.
    windows: BTreeMap<Timestamp, WindowTop<K, G::Acc, G::Out>>,
    /// Windows ending at or before this time have fired.
    released: Timestamp,
    codec: TopCodec<K, G::Acc>,
    /// Accumulators of fired windows, dropped at the next batch (after the close's
    /// callback).
    retired: Vec<SliceAccs<K, G::Acc>>,
    /// Plain maps of fired windows, emptied, for the next windows.
    spare: Spare<K, G::Acc>,
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> TopWindowOperator<T, K, G>
where
    G::Out: Ord,
{
    pub(crate) fn new(
        base: WindowBase<T, K, G>,
        slicing: Slicing,
        codec: TopCodec<K, G::Acc>,
    ) -> Self {
        TopWindowOperator {
            windows: BTreeMap::new(),
            released: Timestamp::MIN,
            base,
            slicing,
            codec,
            retired: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Adds each record to every window it falls in that has not fired, and moves those
    /// windows' tops.
    ///
    /// Records of one slice belong to the same windows, and a batch's records mostly
    /// share their slice (time moves slowly against a batch): the windows are looked up
    /// once per run of records in one slice, not once per record.
    fn add(&mut self, batch: &mut Vec<T>) {
        for accs in self.retired.drain(..) {
            accs.recycle(&mut self.spare);
        }
        let dt = self.base.domain_time();
        let tracked = self.base.changes == Changes::Tracked;
        let size = self.slicing.size();
        let mut created = 0;
        let base = &self.base;
        let mut runs = SliceRuns::new(batch.drain(..), &self.slicing, |r| (base.spec.timestamp)(r));
        while let Some((s, first)) = runs.next_run() {
            let Some(ends) = self.open_windows(s, dt) else {
                // Late or in no window: so is every record of its slice.
                let mut dropped = 1;
                while runs.next_in_run().is_some() {
                    dropped += 1;
                }
                if self.slicing.last_end(s).is_some() {
                    base.spec.metrics.add_late(dropped);
                } else {
                    base.spec.metrics.add_closed(dropped);
                }
                continue;
            };
            let (changes, spare) = (base.changes, &mut self.spare);
            let period = self.slicing.period();
            let mut end = Some(*ends.start());
            while let Some(e) = end.filter(|e| e <= ends.end()) {
                self.windows
                    .entry(e)
                    .or_insert_with(|| WindowTop::new(changes, spare));
                end = e.checked_add(period);
            }
            let mut windows: Vec<_> = self.windows.range_mut(ends).collect();
            let mut record = Some(first);
            while let Some(r) = record {
                let key = (base.key)(&r);
                let mut add = Add {
                    // Only a tracked table places its entries by key group.
                    group: tracked.then(|| key_group(hash_key(&key))),
                    key: &key,
                    record: &r,
                    agg: &base.agg,
                    size,
                    created: &mut created,
                };
                for (end, w) in windows.iter_mut() {
                    add.to(**end, w);
                }
                record = runs.next_in_run();
            }
        }
        self.base.spec.metrics.windows_created(created);
    }

    /// The ends of the first and last window holding slice `s` that have not fired
    /// (domain time `dt`); `None` if the slice is in no window or all of its windows
    /// fired.
    fn open_windows(
        &self,
        s: Timestamp,
        dt: Timestamp,
    ) -> Option<std::ops::RangeInclusive<Timestamp>> {
        let last = self.slicing.last_end(s)?;
        if last <= dt {
            return None;
        }
        let period = self.slicing.period();
        let mut first = last;
        while first.saturating_sub(period) > s.max(dt) {
            first -= period;
        }
        Some(first..=last)
    }

    /// Fires every window ending at or before `up_to`, in end order: its top, as one
    /// pane.
    fn release(&mut self, up_to: Timestamp, out: &mut Output<ShardTop<K, G::Out>>) {
        let size = self.slicing.size();
        while let Some(entry) = self.windows.first_entry() {
            let end = *entry.key();
            if end > up_to {
                break;
            }
            let mut w = entry.remove();
            let window = Window::new(end - size, end);
            if w.rank.stale {
                self.rescan(window, &mut w);
            }
            self.base.spec.metrics.windows_removed(w.accs.len() as u64);
            if let Some(best) = w.rank.best.take() {
                let value = w.rank.top.drain(..).map(|k| (k, best.clone())).collect();
                out.give(Pane {
                    key: (),
                    window,
                    value,
                    timing: Timing::OnTime,
                    index: 0,
                    is_last: true,
                    retraction: false,
                    emit_time: self.base.clock.now,
                });
                self.base.spec.metrics.add_panes(1);
            }
            self.retired.push(w.accs);
        }
        self.released = self.released.max(up_to);
    }

    /// Finds window `window`'s top by a scan of its keys (after a value at the top
    /// shrank, or after a restore).
    fn rescan(&self, window: Window, w: &mut WindowTop<K, G::Acc, G::Out>) {
        let rank = &mut w.rank;
        rank.best = None;
        rank.top.clear();
        rank.stale = false;
        w.accs.for_each(|key, acc| {
            rank.update(key, None, self.base.agg.result(key, &window, acc));
        });
    }
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> Windowing<T> for TopWindowOperator<T, K, G>
where
    G::Out: Ord,
{
    type Outs = Output<ShardTop<K, G::Out>>;

    const SECTION: Section = TOP_WINDOWS;

    fn clock(&mut self) -> &mut OperatorClock {
        &mut self.base.clock
    }

    fn domain(&self) -> TimeDomain {
        self.base.spec.domain
    }

    fn add_batch(&mut self, batch: &mut Vec<T>, _out: &mut Self::Outs) -> OpResult {
        self.add(batch);
        Ok(())
    }

    fn advance(&mut self, out: &mut Self::Outs) {
        let dt = self.base.domain_time();
        if dt > self.released {
            self.release(dt, out);
        }
    }

    /// The open windows' accumulators (the tops are found again by a scan at a restore).
    fn write_tables(&mut self, state: &mut StateWriter) -> OpResult {
        for (&end, w) in &self.windows {
            w.accs.write(end, &self.codec, state)?;
        }
        Ok(())
    }

    /// Restores the windows still open (checkpoints may still hold windows fired since)
    /// and finds their tops.
    fn read_tables(&mut self, state: &StateReader) -> OpResult {
        self.released = self.base.domain_time();
        let all = slice_table::<K, _>(Changes::Untracked);
        self.codec.read(&mut all.borrow_mut(), state)?;
        let all = all.borrow();
        let (changes, spare) = (self.base.changes, &mut self.spare);
        for ((key, end), acc) in all.iter() {
            if *end > self.released {
                self.base.spec.metrics.window_created();
                let w = self
                    .windows
                    .entry(*end)
                    .or_insert_with(|| WindowTop::new(changes, spare));
                w.accs.insert(key.clone(), *end, acc.clone());
            }
        }
        let size = self.slicing.size();
        let mut windows = std::mem::take(&mut self.windows);
        for (&end, w) in windows.iter_mut() {
            self.rescan(Window::new(end - size, end), w);
        }
        self.windows = windows;
        Ok(())
    }
}

/// The second phase's aggregate: merges the shards' tops of one window (their keys are
/// disjoint: a key is on one shard) into the keys at the largest value, all of them when
/// several shards tie.
pub(crate) struct MergeTops<K, V>(std::marker::PhantomData<fn() -> (K, V)>);

impl<K, V> MergeTops<K, V> {
    pub(crate) fn new() -> Self {
        MergeTops(std::marker::PhantomData)
    }
}

impl<K, V> Clone for MergeTops<K, V> {
    fn clone(&self) -> Self {
        MergeTops::new()
    }
}

/// A window and its top keys with their (equal) values.
pub(crate) type WindowTopKeys<K, V> = Option<(Window, Vec<(K, V)>)>;

impl<K, V> Aggregate<ShardTop<K, V>, ()> for MergeTops<K, V>
where
    K: Clone + 'static,
    V: Ord + Clone + 'static,
{
    type Acc = WindowTopKeys<K, V>;
    type Out = WindowTopKeys<K, V>;
    const PRE_AGGREGATE: bool = true;

    fn create(&self) -> Self::Acc {
        None
    }

    fn add(&self, acc: &mut Self::Acc, top: &ShardTop<K, V>) {
        self.merge(acc, Some((top.window, top.value.clone())));
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        let Some((window, mut keys)) = other else {
            return;
        };
        let Some((_, first)) = keys.first() else {
            return;
        };
        match acc {
            Some((_, mine)) if mine.first().is_some_and(|(_, best)| best == first) => {
                mine.append(&mut keys)
            }
            Some((_, mine)) if mine.first().is_some_and(|(_, best)| best > first) => {}
            _ => *acc = Some((window, keys)),
        }
    }

    fn result(&self, _: &(), _: &Window, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
}
