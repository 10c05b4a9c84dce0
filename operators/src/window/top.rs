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
//! other window operators count them. A fired window's table is dropped on the next
//! batch, not in the callback that fired it.

use std::collections::BTreeMap;
use std::hash::Hash;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::keys::key_group;
use rill_runtime::state::{Changes, Codec, OperatorClock, SharedKeyedState, TimeDomain};
use rill_runtime::{hash_key, OpResult, Output, Timestamp};

use super::aggregate::Aggregate;
use super::pane::{Pane, Timing, Window};
use super::slices::{slice_table, Slicing};
use super::state::{Element, Section, WindowBase, WindowKey, Windowing, TOP_WINDOWS};

/// A window's accumulators by (key, window end), placed by the key.
type Table<K, A> = SharedKeyedState<(K, Timestamp), A>;

/// How the windows' accumulators are written to checkpoints.
pub(crate) type TopCodec<K, A> = Codec<(K, Timestamp), A>;

/// A shard's top of one window: the window and its keys at the largest value.
pub(crate) type ShardTop<K, V> = Pane<(), Vec<(K, V)>>;

/// One open window: its accumulators, its largest value and the keys at it.
struct WindowTop<K, A, V> {
    table: Table<K, A>,
    best: Option<V>,
    top: Vec<K>,
    /// A key at the top saw its value shrink: the close finds the top by a scan.
    stale: bool,
}

impl<K: Clone + Hash + Eq, A, V: Ord> WindowTop<K, A, V> {
    fn new(changes: Changes) -> Self {
        WindowTop {
            table: slice_table(changes),
            best: None,
            top: Vec::new(),
            stale: false,
        }
    }

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
    /// The key group of the record's key (and of its entries in every window's table).
    group: u32,
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
        let (before, after) = {
            let mut table = w.table.borrow_mut();
            let mut fresh = false;
            let acc = table.get_or_insert_in_group((key.clone(), end), self.group, || {
                fresh = true;
                agg.create()
            });
            let before = (!fresh).then(|| agg.result(key, &window, acc));
            agg.add(acc, self.record);
            *self.created += u64::from(fresh);
            (before, agg.result(key, &window, acc))
        };
        w.update(key, before, after);
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
    /// Tables of fired windows, dropped at the next batch (after the close's callback).
    retired: Vec<Table<K, G::Acc>>,
    /// Scratch: the ends of a record's windows the operator does not have yet.
    missing: Vec<Timestamp>,
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
            missing: Vec::new(),
        }
    }

    /// Adds each record to every window it falls in that has not fired, and moves those
    /// windows' tops.
    fn add(&mut self, batch: &mut Vec<T>) {
        self.retired.clear();
        let dt = self.base.domain_time();
        let (size, period) = (self.slicing.size(), self.slicing.period());
        let mut created = 0;
        let mut missing = std::mem::take(&mut self.missing);
        for record in batch.drain(..) {
            let t = (self.base.spec.timestamp)(&record);
            // The end of the last window holding `t` (window bounds lie on the slice grid,
            // so `t`'s is its slice's: one division where `slice_of` would take two).
            let Some(last) = self.slicing.last_end(t) else {
                self.base.spec.metrics.add_closed(1);
                continue;
            };
            if last <= dt {
                self.base.spec.metrics.add_late(1);
                continue;
            }
            // The record's windows not fired yet end at `first`, `first + period`, ...,
            // `last`.
            let mut first = last;
            while first.saturating_sub(period) > t.max(dt) {
                first -= period;
            }
            let key = (self.base.key)(&record);
            let mut add = Add {
                group: key_group(hash_key(&key)),
                key: &key,
                record: &record,
                agg: &self.base.agg,
                size,
                created: &mut created,
            };
            // The windows the operator has, in one walk of the map; the others after it.
            // (The next end to find; `None` past the end of time.)
            let mut expected = Some(first);
            for (&end, w) in self.windows.range_mut(first..=last) {
                while let Some(e) = expected.filter(|e| *e < end) {
                    missing.push(e);
                    expected = e.checked_add(period);
                }
                add.to(end, w);
                expected = end.checked_add(period);
            }
            while let Some(e) = expected.filter(|e| *e <= last) {
                missing.push(e);
                expected = e.checked_add(period);
            }
            let changes = self.base.changes;
            for end in missing.drain(..) {
                let w = self
                    .windows
                    .entry(end)
                    .or_insert_with(|| WindowTop::new(changes));
                add.to(end, w);
            }
        }
        self.missing = missing;
        self.base.spec.metrics.windows_created(created);
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
            if w.stale {
                self.rescan(window, &mut w);
            }
            let keys = w.table.borrow().len() as u64;
            self.base.spec.metrics.windows_removed(keys);
            if let Some(best) = w.best.take() {
                let value = w.top.drain(..).map(|k| (k, best.clone())).collect();
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
            self.retired.push(w.table);
        }
        self.released = self.released.max(up_to);
    }

    /// Finds window `window`'s top by a scan of its keys (after a value at the top
    /// shrank, or after a restore).
    fn rescan(&self, window: Window, w: &mut WindowTop<K, G::Acc, G::Out>) {
        w.best = None;
        w.top.clear();
        w.stale = false;
        let table = w.table.clone();
        for ((key, _), acc) in table.borrow().iter() {
            w.update(key, None, self.base.agg.result(key, &window, acc));
        }
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
        for w in self.windows.values() {
            self.codec.write(&w.table, state)?;
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
        let changes = self.base.changes;
        for ((key, end), acc) in all.iter() {
            if *end > self.released {
                self.base.spec.metrics.window_created();
                self.windows
                    .entry(*end)
                    .or_insert_with(|| WindowTop::new(changes))
                    .table
                    .borrow_mut()
                    .insert((key.clone(), *end), acc.clone());
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
