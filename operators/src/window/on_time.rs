//! Tumbling and sliding windows that fire once, when the watermark passes their end: the
//! common case (the default trigger with no allowed lateness), on slices kept per slice.
//!
//! With a trigger that ignores elements and never fires before the end of a window, and
//! no allowed lateness, every window with records emits exactly one pane: when the
//! watermark (or processing time) passes its end, on time, numbered 0, marked last, with
//! the aggregate of all its records; it is garbage-collected at the same moment, so later
//! records for it are dropped as late. (In every accumulation mode: there is no earlier
//! pane to discard or retract.) Nothing per window needs to be remembered, so this
//! operator keeps only the slices: one table per slice start, from key to accumulator
//! (q5's hand-written operator did the same). Records come mostly in time order, so a
//! record's update is one probe of the newest slice's table, which stays small enough to
//! live in the cache; a window's panes come from a scan of its slices' tables. A slice no
//! window still open covers is dropped whole. (In a job that takes no snapshots a slice's
//! table is a plain map, emptied and reused by a later slice: `accs.rs`.)
//!
//! The panes and the late side output are those of the per-window operator (see the
//! oracle test `operators/tests/sliced_windows.rs`); panes of one window come in no
//! particular key order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::rc::Rc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{Changes, Codec, KeyRecord, OperatorClock, TimeDomain};
use rill_runtime::{OpResult, Output, Timestamp};
use rustc_hash::FxHashMap;

use super::accs::{SliceAccs, Spare};
use super::aggregate::Aggregate;
use super::pane::{Pane, Timing, Window};
use super::slices::{slice_table, SliceRuns, Slicing};
use super::state::{Element, Section, WindowBase, WindowKey, Windowing, SLICE_ACCUMULATORS};

/// A slice's accumulator of one key.
#[derive(Debug, Clone)]
pub(crate) struct SliceAcc<A>(A);

/// One key's accumulator in one slice, in the section "slice accumulators", version 1.
impl<A: Clone> KeyRecord for SliceAcc<A> {
    type Record = A;

    fn record(&self) -> A {
        self.0.clone()
    }

    fn from_record(acc: A) -> Self {
        SliceAcc(acc)
    }
}

/// What becomes of the records of one slice in a batch: added to its accumulators, or
/// dropped.
enum Run<'a, K, A> {
    Open(&'a mut SliceAccs<K, SliceAcc<A>>),
    Late,
    Closed,
}

/// How the slices are written to checkpoints.
pub(crate) type OnTimeCodec<K, A> = Codec<(K, Timestamp), SliceAcc<A>>;

pub(crate) struct OnTimeWindowOperator<T, K, G: Aggregate<T, K>> {
    base: WindowBase<T, K, G>,
    slicing: Slicing,
    /// Per slice start, its keys' accumulators.
    slices: BTreeMap<Timestamp, SliceAccs<K, SliceAcc<G::Acc>>>,
    /// Plain maps of dropped slices, emptied, for the next slices.
    spare: Spare<K, SliceAcc<G::Acc>>,
    /// Windows ending at or before this time have fired.
    released: Timestamp,
    codec: OnTimeCodec<K, G::Acc>,
    /// A sliding window's accumulators per key: those of the window `ahead` names, merged
    /// ahead of its firing from its slices that start before the time it gives (see
    /// [`OnTimeWindowOperator::prepare`]), or scratch for the window firing.
    merged: FxHashMap<K, G::Acc>,
    /// The window `merged` is prepared for, and the start of its first slice not merged
    /// yet (every slice of the window before it is in `merged`).
    ahead: Option<(Window, Timestamp)>,
    /// The records an input stands for, as dropped records are counted: 1 for a record,
    /// the records in it for a partial accumulator (see `pre_aggregate.rs`).
    records: fn(&T) -> u64,
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> OnTimeWindowOperator<T, K, G> {
    /// The operator for `base`'s spec, whose windows are tumbling or sliding (`slicing`)
    /// and fire once; `records` counts the records an input stands for.
    pub(crate) fn new(
        base: WindowBase<T, K, G>,
        slicing: Slicing,
        codec: OnTimeCodec<K, G::Acc>,
        records: fn(&T) -> u64,
    ) -> Self {
        OnTimeWindowOperator {
            base,
            slices: BTreeMap::new(),
            spare: Spare::new(),
            released: Timestamp::MIN,
            slicing,
            codec,
            merged: FxHashMap::default(),
            ahead: None,
            records,
        }
    }

    /// Adds a batch: a run of records in one slice looks the slice's table up once.
    /// Prepares the next sliding window's panes by one slice first.
    fn add(&mut self, batch: &mut Vec<T>, late: &mut Output<T>) {
        self.prepare();
        let dt = self.base.domain_time();
        // (key, slice) accumulators created, counted once for the batch.
        let mut created = 0;
        let base = &self.base;
        let mut runs = SliceRuns::new(batch.drain(..), &self.slicing, |r| base.element_time(r));
        while let Some((s, first)) = runs.next_run() {
            let mut run = match self.slicing.last_end(s) {
                // No window holds the slice (a gap between sliding windows): counted as
                // dropped for a closed window.
                None => Run::Closed,
                // Every window of the slice fired.
                Some(end) if end <= dt => Run::Late,
                Some(_) => {
                    // A record in a slice merged ahead: that merge is stale.
                    if self.ahead.is_some_and(|(w, to)| w.start <= s && s < to) {
                        self.ahead = None;
                    }
                    let (changes, spare) = (base.changes, &mut self.spare);
                    Run::Open(
                        self.slices
                            .entry(s)
                            .or_insert_with(|| SliceAccs::new(changes, spare)),
                    )
                }
            };
            let mut record = Some(first);
            while let Some(r) = record {
                match &mut run {
                    Run::Open(accs) => {
                        let key = (base.key)(&r);
                        let agg = &base.agg;
                        let make = || SliceAcc(agg.create());
                        accs.update(key, s, None, make, |acc, fresh| {
                            created += u64::from(fresh);
                            agg.add(&mut acc.0, &r);
                        });
                    }
                    Run::Late => {
                        base.spec.metrics.add_late((self.records)(&r));
                        late.give(r);
                    }
                    Run::Closed => base.spec.metrics.add_closed((self.records)(&r)),
                }
                record = runs.next_in_run();
            }
        }
        self.base.spec.metrics.windows_created(created);
    }

    /// Merges one more slice of the next sliding window to fire into `merged`, ahead of
    /// its firing: a slice the domain time has passed, so that, unless a record still
    /// comes for it (which makes `add` drop what was merged ahead), the window's firing
    /// merges only its slices that were open until then. A window's firing is the
    /// latency of its panes; between firings the shard has time to spare.
    ///
    /// The accumulators merge in the same order as in `fire` (slice by slice, in slice
    /// order), so the panes are the same.
    fn prepare(&mut self) {
        let (size, len) = (self.slicing.size(), self.slicing.slice_len());
        if size == len || self.released == Timestamp::MIN || self.slices.is_empty() {
            return;
        }
        let start = self.slicing.first_start_from(self.released);
        let w = Window::new(start, start.saturating_add(size));
        let to = match self.ahead {
            Some((a, to)) if a == w => to,
            _ => {
                self.merged.clear();
                w.start
            }
        };
        self.ahead = Some((w, to));
        let Some((&s, table)) = self.slices.range(to..w.end).next() else {
            return;
        };
        if s.saturating_add(len) > self.released {
            return;
        }
        merge_into(&mut self.merged, &self.base.agg, table);
        self.ahead = Some((w, s + len));
    }

    /// Fires every window whose end is in `(released, up_to]` and holds a slice, in end
    /// order; then drops the slices no open window covers.
    fn release(&mut self, up_to: Timestamp, out: &mut Output<Pane<K, G::Out>>) {
        let size = self.slicing.size();
        let mut next = match self.slices.keys().next() {
            Some(&first) => {
                let mut start = self.slicing.first_start_from(first);
                if self.released != Timestamp::MIN {
                    start = start.max(self.slicing.first_start_from(self.released));
                }
                Some(start)
            }
            None => None,
        };
        while let Some(start) = next {
            let end = start.saturating_add(size);
            if end > up_to {
                break;
            }
            self.fire(Window::new(start, end), out);
            // The next window that holds a slice.
            let after = start.saturating_add(self.slicing.period());
            next = self.slices.range(after..).next().map(|(&s, _)| {
                if s < after.saturating_add(size) {
                    after
                } else {
                    self.slicing.first_start_from(s)
                }
            });
        }
        self.released = self.released.max(up_to);
        // Slices in start order end their last window in that order too: the ones done
        // with are the first ones.
        while let Some(first) = self.slices.first_entry() {
            if self.slicing.open_after(*first.key(), self.released) {
                break;
            }
            let accs = first.remove();
            self.base.spec.metrics.windows_removed(accs.len() as u64);
            accs.recycle(&mut self.spare);
        }
    }

    /// Emits window `w`'s panes: one per key with records in its slices.
    fn fire(&mut self, w: Window, out: &mut Output<Pane<K, G::Out>>) {
        let now = self.base.clock.now;
        let pane = |key: K, value| Pane {
            key,
            window: w,
            value,
            timing: Timing::OnTime,
            index: 0,
            is_last: true,
            retraction: false,
            emit_time: now,
        };
        let mut panes = 0;
        let agg = &self.base.agg;
        if w.end - w.start == self.slicing.slice_len() {
            // One slice per window (tumbling): its accumulators are the values, and this
            // firing is the slice's last use (`release` would drop it next), so it is
            // dropped here and its accumulators are moved into the panes; unless a
            // checkpoint is still collected from it (then they are cloned, and dropping
            // the table hands it to that checkpoint).
            let start = self.slices.range(w.start..w.end).next().map(|(&s, _)| s);
            match start.and_then(|s| self.slices.remove(&s)) {
                Some(SliceAccs::Plain(mut map)) => {
                    for (key, acc) in map.drain() {
                        let value = agg.finish(&key, &w, acc.0);
                        out.give(pane(key, value));
                        panes += 1;
                    }
                    SliceAccs::Plain(map).recycle(&mut self.spare);
                }
                Some(SliceAccs::Tracked(table)) => {
                    let table = Rc::try_unwrap(table).map(RefCell::into_inner);
                    let table =
                        table.and_then(|t| t.into_entries().map_err(|t| Rc::new(RefCell::new(t))));
                    match table {
                        Ok(entries) => {
                            for ((key, _), acc) in entries {
                                let value = agg.finish(&key, &w, acc.0);
                                out.give(pane(key, value));
                                panes += 1;
                            }
                        }
                        Err(shared) => {
                            for ((key, _), acc) in shared.borrow().iter() {
                                out.give(pane(key.clone(), agg.result(key, &w, &acc.0)));
                                panes += 1;
                            }
                        }
                    }
                }
                None => {}
            }
            self.base.spec.metrics.windows_removed(panes);
        } else {
            // The slices merged ahead of this firing, if any (`prepare`).
            let from = match self.ahead.take() {
                Some((a, to)) if a == w => to,
                _ => {
                    self.merged.clear();
                    w.start
                }
            };
            for (_, accs) in self.slices.range(from..w.end) {
                merge_into(&mut self.merged, &self.base.agg, accs);
            }
            // `merged` is scratch from here on (the next window's merge starts empty).
            for (key, acc) in self.merged.drain() {
                let value = agg.finish(&key, &w, acc);
                out.give(pane(key, value));
                panes += 1;
            }
        }
        self.base.spec.metrics.add_panes(panes);
    }

    /// Releases the windows the domain time has passed.
    fn advance(&mut self, out: &mut Output<Pane<K, G::Out>>) {
        let dt = self.base.domain_time();
        if dt > self.released {
            self.release(dt, out);
        }
    }
}

/// Merges a slice's accumulators into `merged`, by key.
fn merge_into<T, K, G>(
    merged: &mut FxHashMap<K, G::Acc>,
    agg: &G,
    accs: &SliceAccs<K, SliceAcc<G::Acc>>,
) where
    K: Clone + Hash + Eq,
    G: Aggregate<T, K>,
{
    accs.for_each(|key, acc| match merged.get_mut(key) {
        Some(m) => agg.merge(m, acc.0.clone()),
        None => {
            merged.insert(key.clone(), acc.0.clone());
        }
    });
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> Windowing<T> for OnTimeWindowOperator<T, K, G> {
    type Outs = (Output<Pane<K, G::Out>>, Output<T>);

    fn clock(&mut self) -> &mut OperatorClock {
        &mut self.base.clock
    }

    fn domain(&self) -> TimeDomain {
        self.base.spec.domain
    }

    fn add_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Outs) -> OpResult {
        self.add(batch, &mut out.1);
        Ok(())
    }

    fn advance(&mut self, out: &mut Self::Outs) {
        OnTimeWindowOperator::advance(self, &mut out.0)
    }

    const SECTION: Section = SLICE_ACCUMULATORS;

    /// The slices' accumulators.
    fn write_tables(&mut self, state: &mut StateWriter) -> OpResult {
        for (&start, accs) in &self.slices {
            accs.write(start, &self.codec, state)?;
        }
        Ok(())
    }

    /// Restores the slices some window still open covers (checkpoints may still hold
    /// slices dropped whole since).
    fn read_tables(&mut self, state: &StateReader) -> OpResult {
        self.ahead = None;
        self.released = self.base.domain_time();
        let all = slice_table::<K, _>(Changes::Untracked);
        self.codec.read(&mut all.borrow_mut(), state)?;
        let all = all.borrow();
        let (changes, released) = (self.base.changes, self.released);
        for ((key, start), acc) in all.iter() {
            if self.slicing.open_after(*start, released) {
                self.base.spec.metrics.window_created();
                let spare = &mut self.spare;
                self.slices
                    .entry(*start)
                    .or_insert_with(|| SliceAccs::new(changes, spare))
                    .insert(key.clone(), *start, acc.clone());
            }
        }
        Ok(())
    }
}
