//! The window operator for tumbling and sliding windows, on slices (see
//! [`slices`](super::slices) for the state and why it gives the same panes).
//!
//! A record whose slice the key already has, and that no window of it has passed the
//! end of, takes the fast path when the trigger ignores elements (`AfterWatermark` and
//! its compositions without counts, processing-time delays or punctuation, and not ready
//! before the end of the window): one hash lookup, one accumulator update. Every other
//! record — the first of a slice, a late one, one for a trigger that counts — takes the
//! general path, which does per window what the per-window operator does.

use std::hash::Hash;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{Codec, KeyedState, OperatorClock, SharedKeyedState, TimeDomain};
use rill_runtime::{OpResult, Output, Timestamp, MAX_WATERMARK};

use super::aggregate::Aggregate;
use super::pane::{Firing, Pane, Window};
use super::slices::{slice_table, KeyWindows, Slice, Slicing};
use super::spec::Accumulation;
use super::state::{
    Element, Section, WindowBase, WindowKey, WindowTimers, Windowing, SLICED_WINDOWS,
};
use super::trigger::{NodeState, TriggerContext, TriggerProgram};

type Outs<K, V, T> = (Output<Pane<K, V>>, Output<T>);
type Key<G, T, K> = KeyWindows<<G as Aggregate<T, K>>::Out>;
type Slices<K, A> = KeyedState<(K, Timestamp), Slice<A>>;
type Shared<K, V> = SharedKeyedState<K, V>;

/// What became of a record on the general path: a window took it, or every window of it
/// was garbage-collected (late: to the side output), or the others were closed.
enum Added {
    Taken,
    Late,
    Closed,
}

/// How the operator's two tables are written to checkpoints.
pub(crate) type SlicedCodecs<K, A, V> = (Codec<K, KeyWindows<V>>, Codec<(K, Timestamp), Slice<A>>);

pub(crate) struct SlicedWindowOperator<T, K, G: Aggregate<T, K>> {
    keys: Shared<K, Key<G, T, K>>,
    slices: Shared<(K, Timestamp), Slice<G::Acc>>,
    core: Core<T, K, G>,
    codecs: SlicedCodecs<K, G::Acc, G::Out>,
}

struct Core<T, K, G: Aggregate<T, K>> {
    base: WindowBase<T, K, G>,
    program: TriggerProgram,
    /// Trigger nodes per window.
    nodes: usize,
    fresh: Vec<NodeState>,
    slicing: Slicing,
    /// The trigger ignores elements and never fires before the end of a window.
    fast: bool,
    /// Discarding panes: slices keep parts by firing.
    split: bool,
    timers: WindowTimers<K>,
    assigned: Vec<Window>,
    taken: Vec<usize>,
    deadlines: Vec<Timestamp>,
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> SlicedWindowOperator<T, K, G> {
    /// The operator for `base`'s spec, whose windows are tumbling or sliding (`slicing`).
    pub(crate) fn new(
        base: WindowBase<T, K, G>,
        slicing: Slicing,
        codecs: SlicedCodecs<K, G::Acc, G::Out>,
    ) -> Self {
        let program = TriggerProgram::new(&base.spec.trigger);
        let fresh = program.fresh();
        SlicedWindowOperator {
            keys: KeyedState::with_changes(base.changes).into_shared(),
            slices: slice_table(base.changes),
            core: Core {
                nodes: fresh.len(),
                fresh,
                fast: program.waits_for_end(),
                split: base.spec.accumulation == Accumulation::Discarding,
                base,
                program,
                slicing,
                timers: WindowTimers::new(),
                assigned: Vec::new(),
                taken: Vec::new(),
                deadlines: Vec::new(),
            },
            codecs,
        }
    }

    /// Adds a batch (one borrow of the tables per batch).
    fn process(&mut self, batch: impl Iterator<Item = T>, out: &mut Outs<K, G::Out, T>) {
        let (mut keys, mut slices) = (self.keys.borrow_mut(), self.slices.borrow_mut());
        for record in batch {
            self.core.process(&mut keys, &mut slices, record, out);
        }
    }
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> Core<T, K, G> {
    fn process(
        &mut self,
        keys: &mut KeyedState<K, Key<G, T, K>>,
        slices: &mut Slices<K, G::Acc>,
        record: T,
        out: &mut Outs<K, G::Out, T>,
    ) {
        let key = (self.base.key)(&record);
        let t = self.base.element_time(&record);
        let slice = self.slicing.slice_of(t);
        let key = if self.fast && t >= self.base.domain_time() {
            // No window of the record is past its end: with a trigger that ignores
            // elements, adding it to its slice, if the key has it, is all there is to do.
            let at = (key, slice);
            if let Some(s) = slices.get_mut(&at) {
                s.add_fast(|acc| self.base.agg.add(acc, &record));
                return;
            }
            at.0
        } else {
            key
        };
        let ks = keys.get_or_insert_with(key.clone(), KeyWindows::default);
        let added = self.add(ks, slices, &key, t, slice, &record, out);
        if ks.windows.is_empty() {
            keys.remove(&key);
        }
        match added {
            Added::Taken => {}
            Added::Late => {
                self.base.spec.metrics.add_late(1);
                out.1.give(record);
            }
            Added::Closed => self.base.spec.metrics.add_closed(1),
        }
    }

    fn is_expired(&self, w: Window) -> bool {
        self.base.domain_time() >= self.base.spec.gc_time(w)
    }

    fn context(&self, w: Window) -> TriggerContext {
        TriggerContext {
            past_end: self.base.domain_time() >= w.end,
            now: self.base.clock.now,
        }
    }

    /// The general path: adds a record at time `t` (in slice `slice`) to each of its
    /// windows that is not garbage-collected or closed, and fires those whose triggers
    /// say so.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        ks: &mut Key<G, T, K>,
        slices: &mut Slices<K, G::Acc>,
        key: &K,
        t: Timestamp,
        slice: Timestamp,
        record: &T,
        out: &mut Outs<K, G::Out, T>,
    ) -> Added {
        let mut assigned = std::mem::take(&mut self.assigned);
        assigned.clear();
        self.slicing.windows_of(t, &mut assigned);
        self.taken.clear();
        let mut late = false;
        for &w in &assigned {
            if self.is_expired(w) {
                late = true;
                continue;
            }
            let i = match ks.window(w) {
                Some(i) => i,
                None => self.open(ks, key, w),
            };
            if !ks.windows[i].closed {
                self.taken.push(i);
            }
        }
        self.assigned = assigned;
        if self.taken.is_empty() {
            return if late { Added::Late } else { Added::Closed };
        }
        let at = (key.clone(), slice);
        match slices.get_mut(&at) {
            Some(s) => {
                let agg = &self.base.agg;
                ks.add_to(
                    s,
                    slice,
                    self.split,
                    || agg.create(),
                    |acc| agg.add(acc, record),
                );
            }
            None => {
                let mut acc = self.base.agg.create();
                self.base.agg.add(&mut acc, record);
                slices.insert(at, Slice::new(ks.seq, acc));
                ks.add_start(slice);
            }
        }
        let punctuation = self.base.punctuates(record);
        let taken = std::mem::take(&mut self.taken);
        for &i in &taken {
            let w = ks.windows[i].window;
            let cx = self.context(w);
            ks.windows[i].panes.holding |= !cx.past_end;
            self.deadlines.clear();
            let state = ks.trigger_mut(i, self.nodes);
            self.program
                .on_element(state, cx, punctuation, &mut self.deadlines);
            self.timers
                .deadlines(key, w, self.deadlines.iter().copied());
            self.fire_if_ready(ks, slices, key, i, out);
        }
        self.taken = taken;
        Added::Taken
    }

    /// Gives window `w` of `key` its state and timers; returns its index.
    fn open(&mut self, ks: &mut Key<G, T, K>, key: &K, w: Window) -> usize {
        let (gc, dt) = (self.base.spec.gc_time(w), self.base.domain_time());
        self.timers.open(key, w, gc, dt);
        self.base.spec.metrics.window_created();
        ks.open(w, &self.fresh)
    }

    fn fire_if_ready(
        &mut self,
        ks: &mut Key<G, T, K>,
        slices: &Slices<K, G::Acc>,
        key: &K,
        i: usize,
        out: &mut Outs<K, G::Out, T>,
    ) {
        let cx = self.context(ks.windows[i].window);
        if ks.windows[i].closed || !self.program.should_fire(ks.trigger(i, self.nodes), cx) {
            return;
        }
        self.program.on_fire(ks.trigger_mut(i, self.nodes), cx);
        let finished = self.program.is_finished(ks.trigger(i, self.nodes));
        self.emit(ks, slices, key, i, cx, finished, &mut out.0);
        if finished {
            let e = &mut ks.windows[i];
            e.closed = true;
            e.panes.last = None;
        }
    }

    /// Window `i` is garbage-collected: its final pane fires if records arrived since the
    /// previous firing, or if its trigger is ready (the on-time pane); then it is removed
    /// with the slices no other window covers.
    fn garbage_collect(
        &mut self,
        ks: &mut Key<G, T, K>,
        slices: &mut Slices<K, G::Acc>,
        key: &K,
        i: usize,
        out: &mut Outs<K, G::Out, T>,
    ) {
        let cx = self.context(ks.windows[i].window);
        if !ks.windows[i].closed
            && (nonempty(ks, slices, key, i)
                || self.program.should_fire(ks.trigger(i, self.nodes), cx))
        {
            self.emit(ks, slices, key, i, cx, true, &mut out.0);
        }
        ks.remove_window(i, self.nodes, |s| {
            slices.remove(&(key.clone(), s));
        });
        self.base.spec.metrics.window_removed();
    }

    /// The value of window `i`: the merge of its slices (in discarding mode, of the
    /// parts since its previous firing).
    fn value(&self, ks: &Key<G, T, K>, slices: &Slices<K, G::Acc>, key: &K, i: usize) -> G::Acc {
        let cut = if self.split { ks.windows[i].cut } else { 0 };
        let mut acc = self.base.agg.create();
        for s in slices_of(ks, slices, key, i) {
            for p in s.parts().filter(|p| p.since >= cut) {
                self.base.agg.merge(&mut acc, p.acc.clone());
            }
        }
        acc
    }

    /// Emits a pane of window `i` (and the retraction before it), unless it is empty and
    /// not the on-time pane; then starts the window's next pane.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        ks: &mut Key<G, T, K>,
        slices: &Slices<K, G::Acc>,
        key: &K,
        i: usize,
        cx: TriggerContext,
        is_last: bool,
        out: &mut Output<Pane<K, G::Out>>,
    ) {
        let nonempty = nonempty(ks, slices, key, i);
        if let Some(timing) = ks.windows[i].panes.due(cx.past_end, nonempty) {
            let value = self.value(ks, slices, key, i);
            let e = &mut ks.windows[i];
            let value = self.base.agg.finish(key, &e.window, value);
            let firing = Firing::new(key, e.window, timing, is_last);
            self.base.emit(&mut e.panes, firing, value, Vec::new(), out);
        }
        ks.fired(i);
    }
}

/// The slices of window `i` of `key`.
fn slices_of<'a, K: Clone + Hash + Eq, A, V>(
    ks: &'a KeyWindows<V>,
    slices: &'a Slices<K, A>,
    key: &'a K,
    i: usize,
) -> impl Iterator<Item = &'a Slice<A>> + 'a {
    ks.starts_in(ks.windows[i].window)
        .filter_map(move |s| slices.get(&(key.clone(), s)))
}

/// Whether window `i` of `key` received records since its previous firing.
fn nonempty<K: Clone + Hash + Eq, A, V>(
    ks: &KeyWindows<V>,
    slices: &Slices<K, A>,
    key: &K,
    i: usize,
) -> bool {
    let cut = ks.windows[i].cut;
    slices_of(ks, slices, key, i).any(|s| s.last_seq >= cut)
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> Windowing<T> for SlicedWindowOperator<T, K, G> {
    type Outs = Outs<K, G::Out, T>;

    fn clock(&mut self) -> &mut OperatorClock {
        &mut self.core.base.clock
    }

    fn domain(&self) -> TimeDomain {
        self.core.base.spec.domain
    }

    fn add_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Outs) -> OpResult {
        self.process(batch.drain(..), out);
        Ok(())
    }

    /// Fires the domain-time timers that are due, in time order; at the end of time
    /// garbage-collects every window.
    fn advance(&mut self, out: &mut Self::Outs) {
        let (mut keys, mut slices) = (self.keys.borrow_mut(), self.slices.borrow_mut());
        let core = &mut self.core;
        let dt = core.base.domain_time();
        while let Some((_, due)) = core.timers.domain.pop_due(dt) {
            for (key, w) in due {
                let Some(ks) = keys.get_mut(&key) else {
                    continue;
                };
                if let Some(i) = ks.window(w) {
                    if core.is_expired(w) {
                        core.garbage_collect(ks, &mut slices, &key, i, out);
                    } else {
                        core.fire_if_ready(ks, &slices, &key, i, out);
                    }
                }
                if ks.windows.is_empty() {
                    keys.remove(&key);
                }
            }
        }
        if dt == MAX_WATERMARK {
            for (key, ks) in keys.iter_mut() {
                while let Some(i) = (0..ks.windows.len())
                    .min_by_key(|&i| (ks.windows[i].window.end, ks.windows[i].window.start))
                {
                    core.garbage_collect(ks, &mut slices, key, i, out);
                }
            }
            keys.update_each(|_, _| rill_runtime::state::Update::Remove);
        }
    }

    fn fire_processing_timers(&mut self, out: &mut Self::Outs) {
        let (mut keys, slices) = (self.keys.borrow_mut(), self.slices.borrow());
        let core = &mut self.core;
        while let Some((_, due)) = core.timers.processing.pop_due(core.base.clock.now) {
            for (key, w) in due {
                let Some(ks) = keys.get_mut(&key) else {
                    continue;
                };
                if let Some(i) = ks.window(w) {
                    core.fire_if_ready(ks, &slices, &key, i, out);
                }
            }
        }
    }

    const SECTION: Section = SLICED_WINDOWS;

    /// Every key's slices and windows.
    fn write_tables(&mut self, state: &mut StateWriter) -> OpResult {
        self.codecs.0.write(&self.keys, state)?;
        self.codecs.1.write(&self.slices, state)
    }

    fn read_tables(&mut self, state: &StateReader) -> OpResult {
        let mut keys = self.keys.borrow_mut();
        self.codecs.0.read(&mut keys, state)?;
        self.codecs.1.read(&mut self.slices.borrow_mut(), state)?;
        let core = &mut self.core;
        let times = (core.base.domain_time(), core.base.clock.now);
        for (key, ks) in keys.iter() {
            for (i, w) in ks.windows.iter().enumerate() {
                core.base.spec.metrics.window_created();
                let gc = Some(core.base.spec.gc_time(w.window));
                let deadlines = core.program.deadlines(ks.trigger(i, core.nodes));
                core.timers.rearm(key, w.window, gc, times, deadlines);
            }
        }
        Ok(())
    }
}
