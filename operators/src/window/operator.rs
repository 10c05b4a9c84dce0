//! The window operator: per-key window state, timers, firing and garbage collection.
//!
//! State lives in a hash map from key to the key's live windows (a short vector: one or
//! two tumbling windows, `size / period` sliding ones, a few sessions). Two timer queues,
//! ordered by time, say when to look at a window again: one in the window's time domain
//! (end of window and garbage collection) and one in processing time (deadlines set by
//! processing-time triggers). Timers are not cancelled: a timer whose window is gone or
//! has nothing to do is skipped when it comes due.

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{
    Codec, KeyRecord, KeyedState, OperatorClock, SharedKeyedState, TimeDomain,
};
use rill_runtime::{Failure, OpResult, Output, Timestamp, MAX_WATERMARK};

use super::aggregate::Aggregate;
use super::assigner::Windows;
use super::pane::{Firing, Pane, Panes, Window};
use super::spec::Accumulation;
use super::state::{Element, Section, WindowBase, WindowKey, WindowTimers, Windowing, WINDOWS};
use super::trigger::{NodeState, TriggerContext, TriggerProgram};

struct WinState<A, V> {
    window: Window,
    acc: A,
    /// Records arrived since the previous firing.
    nonempty: bool,
    panes: Panes<V>,
    /// Values of windows merged into this one, to retract before its first pane.
    retract: Vec<(Window, V)>,
    trigger: Vec<NodeState>,
    /// The trigger finished: the window takes no more records.
    closed: bool,
    /// A session extended at its end since its end timer was set: that timer (at an
    /// earlier end, same start) is still pending and, when it fires, sets the timer at
    /// the current end instead of firing (one timer per session, not one per record).
    /// Not checkpointed: a restore sets every window's timers at its end.
    lazy: bool,
}

pub(crate) struct KeyState<A, V> {
    windows: Vec<WinState<A, V>>,
    /// Records seen (count windows).
    ordinal: u64,
    /// The key's windows are count windows, measured in ordinals.
    count: bool,
}

impl<A, V> KeyState<A, V> {
    fn find(&self, w: Window) -> Option<usize> {
        self.windows.iter().position(|e| e.window == w)
    }
}

/// One window's part of a checkpoint: (window, accumulator, records since the last
/// firing, holding, pane index, last pane's value, values to retract, trigger node states
/// as (finished, flag, count, deadline), closed).
type WindowRecord<A, V> = (
    Window,
    A,
    bool,
    bool,
    u64,
    Option<V>,
    Vec<(Window, V)>,
    Vec<(bool, bool, u64, Timestamp)>,
    bool,
);

/// One key's part of a checkpoint, in the section "windows", version 2: (windows, records
/// seen, count windows). Its timers are not written: a restore derives them from the
/// windows and their triggers' deadlines.
impl<A: Clone, V: Clone> KeyRecord for KeyState<A, V> {
    type Record = (Vec<WindowRecord<A, V>>, u64, bool);

    fn record(&self) -> Self::Record {
        let windows = self
            .windows
            .iter()
            .map(|w| {
                (
                    w.window,
                    w.acc.clone(),
                    w.nonempty,
                    w.panes.holding,
                    w.panes.index,
                    w.panes.last.clone(),
                    w.retract.clone(),
                    w.trigger.iter().map(|n| n.to_parts()).collect(),
                    w.closed,
                )
            })
            .collect();
        (windows, self.ordinal, self.count)
    }

    fn from_record((windows, ordinal, count): Self::Record) -> Self {
        let windows = windows
            .into_iter()
            .map(
                |(window, acc, nonempty, holding, index, last, retract, trigger, closed)| {
                    WinState {
                        window,
                        acc,
                        nonempty,
                        panes: Panes {
                            holding,
                            index,
                            last,
                        },
                        retract,
                        trigger: trigger.into_iter().map(NodeState::from_parts).collect(),
                        closed,
                        lazy: false,
                    }
                },
            )
            .collect();
        KeyState {
            windows,
            ordinal,
            count,
        }
    }
}

pub(crate) struct WindowOperator<T, K, G: Aggregate<T, K>> {
    /// Shared with the checkpoint being collected after its barrier (copy-on-write).
    keys: SharedKeyedState<K, KeyState<G::Acc, G::Out>>,
    core: Core<T, K, G>,
    codec: Codec<K, KeyState<G::Acc, G::Out>>,
    /// Windows chosen per key that cannot be built: the job fails with it.
    invalid: Option<Failure>,
}

struct Core<T, K, G: Aggregate<T, K>> {
    base: WindowBase<T, K, G>,
    program: TriggerProgram,
    /// See [`TriggerProgram::quiet_before_end`].
    quiet: bool,
    timers: WindowTimers<K>,
    assigned: Vec<Window>,
    deadlines: Vec<Timestamp>,
    /// Scratch: the indices of a key's sessions a record overlaps.
    overlapping: Vec<usize>,
    /// Scratch: a merged trigger state (swapped with the merged window's).
    merged_trigger: Vec<NodeState>,
}

type Outs<K, V, T> = (Output<Pane<K, V>>, Output<T>);
type Key<G, T, K> = KeyState<<G as Aggregate<T, K>>::Acc, <G as Aggregate<T, K>>::Out>;

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> WindowOperator<T, K, G> {
    pub(crate) fn new(
        base: WindowBase<T, K, G>,
        codec: Codec<K, KeyState<G::Acc, G::Out>>,
    ) -> Self {
        let program = TriggerProgram::new(&base.spec.trigger);
        WindowOperator {
            keys: KeyedState::with_changes(base.changes).into_shared(),
            core: Core {
                base,
                quiet: program.quiet_before_end(),
                program,
                timers: WindowTimers::new(),
                assigned: Vec::new(),
                deadlines: Vec::new(),
                overlapping: Vec::new(),
                merged_trigger: Vec::new(),
            },
            codec,
            invalid: None,
        }
    }

    fn process(&mut self, record: T, out: &mut Outs<K, G::Out, T>) {
        let core = &mut self.core;
        let key = (core.base.key)(&record);
        let policy = (core.base.spec.windows)(&key);
        let mut keys = self.keys.borrow_mut();
        let ks = match keys.get_mut(&key) {
            Some(ks) => ks,
            None => {
                if let Err(e) = policy.validate() {
                    self.invalid
                        .get_or_insert_with(|| Failure::new(format!("windows of a key: {e}")));
                    return;
                }
                keys.get_or_insert_with(key.clone(), || KeyState {
                    windows: Vec::new(),
                    ordinal: 0,
                    count: policy.is_count(),
                })
            }
        };
        let (kept, late) = if let Windows::Session { gap } = policy {
            core.add_to_session(ks, &key, &record, gap, out)
        } else {
            core.add_to_windows(ks, &key, &record, policy, out)
        };
        if kept == 0 {
            if late {
                core.base.spec.metrics.add_late(1);
                out.1.give(record);
            } else {
                core.base.spec.metrics.add_closed(1);
            }
        }
        if ks.windows.is_empty() && !policy.is_count() {
            keys.remove(&key);
        }
    }
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> Core<T, K, G> {
    fn past_end(&self, ks: &Key<G, T, K>, w: Window) -> bool {
        let dt = self.base.domain_time();
        if dt == MAX_WATERMARK {
            return true;
        }
        if ks.count {
            ks.ordinal >= w.end as u64
        } else {
            dt >= w.end
        }
    }

    fn gc_time(&self, w: Window) -> Timestamp {
        self.base.spec.gc_time(w)
    }

    fn is_expired(&self, ks: &Key<G, T, K>, w: Window) -> bool {
        if ks.count {
            self.past_end(ks, w)
        } else {
            self.base.domain_time() >= self.gc_time(w)
        }
    }

    fn context(&self, ks: &Key<G, T, K>, w: Window) -> TriggerContext {
        TriggerContext {
            past_end: self.past_end(ks, w),
            now: self.base.clock.now,
        }
    }

    /// A new window's state, with its timers registered.
    fn open(&mut self, key: &K, w: Window, count: bool) -> WinState<G::Acc, G::Out> {
        if !count {
            self.register(key, w);
        }
        self.base.spec.metrics.window_created();
        WinState {
            window: w,
            acc: self.base.agg.create(),
            nonempty: false,
            panes: Panes::default(),
            retract: Vec::new(),
            trigger: self.program.fresh(),
            closed: false,
            lazy: false,
        }
    }

    /// Registers the timers of time window `w` of `key`: its end and its garbage
    /// collection.
    fn register(&mut self, key: &K, w: Window) {
        let (gc, dt) = (self.gc_time(w), self.base.domain_time());
        self.timers.open(key, w, gc, dt);
    }

    /// Adds a record to the windows of a non-merging policy. Returns how many windows
    /// took it, and whether it was dropped as late (rather than for closed windows).
    fn add_to_windows(
        &mut self,
        ks: &mut Key<G, T, K>,
        key: &K,
        record: &T,
        policy: Windows,
        out: &mut Outs<K, G::Out, T>,
    ) -> (usize, bool) {
        let count = policy.is_count();
        let t = if count {
            ks.ordinal as Timestamp
        } else {
            self.base.element_time(record)
        };
        let mut assigned = std::mem::take(&mut self.assigned);
        assigned.clear();
        policy.assign(t, &mut assigned);
        let (mut kept, mut late) = (0, false);
        for &w in &assigned {
            if !count && self.is_expired(ks, w) {
                late = true;
                continue;
            }
            let i = match ks.find(w) {
                Some(i) => i,
                None => {
                    let state = self.open(key, w, count);
                    ks.windows.push(state);
                    ks.windows.len() - 1
                }
            };
            if self.add(ks, key, i, record, out) {
                kept += 1;
            }
        }
        if count {
            // The record was added before its window ended; counting it ends the windows
            // it completes.
            ks.ordinal += 1;
            for &w in &assigned {
                if w.end as u64 == ks.ordinal {
                    if let Some(i) = ks.find(w) {
                        self.garbage_collect(ks, key, i, out);
                    }
                }
            }
        }
        self.assigned = assigned;
        (kept, late && kept == 0)
    }

    /// Adds a record to its key's sessions, merging the ones it bridges.
    fn add_to_session(
        &mut self,
        ks: &mut Key<G, T, K>,
        key: &K,
        record: &T,
        gap: i64,
        out: &mut Outs<K, G::Out, T>,
    ) -> (usize, bool) {
        let t = self.base.element_time(record);
        let proto = Window::new(t, t.saturating_add(gap));
        let mut span = proto;
        let mut overlapping = std::mem::take(&mut self.overlapping);
        overlapping.clear();
        for (i, e) in ks.windows.iter().enumerate() {
            if e.window.overlaps(&proto) {
                span = span.span(&e.window);
                overlapping.push(i);
            }
        }
        let placed = if self.is_expired(ks, span) {
            Err(true)
        } else if overlapping.iter().any(|&i| ks.windows[i].closed) {
            Err(false)
        } else {
            Ok(match overlapping[..] {
                [i] if ks.windows[i].window == span => i,
                [] => {
                    let state = self.open(key, span, false);
                    ks.windows.push(state);
                    ks.windows.len() - 1
                }
                _ => self.merge(ks, key, &overlapping, span),
            })
        };
        self.overlapping = overlapping;
        match placed {
            Ok(i) => (usize::from(self.add(ks, key, i, record, out)), false),
            Err(late) => (0, late),
        }
    }

    /// Replaces the windows at `parts` (ascending indices) by one window `span`: the
    /// merged window is a new one (pane index 0, timers for `span`), whose accumulator
    /// merges the parts' in order. It takes the first part's state and goes last, where a
    /// new window would go (the other windows keep their order), so that extending a
    /// session by a record allocates and moves nothing.
    fn merge(&mut self, ks: &mut Key<G, T, K>, key: &K, parts: &[usize], span: Window) -> usize {
        let cx = self.context(ks, span);
        let mut trigger = std::mem::take(&mut self.merged_trigger);
        if parts.len() > 1 {
            self.program.merge_into(
                &mut trigger,
                parts.iter().map(|&i| &ks.windows[i].trigger[..]),
                cx,
            );
        }
        let retracting = self.base.spec.accumulation == Accumulation::Retracting;
        let (&first, rest) = parts.split_first().expect("a merge has parts");
        // Moving the first part last shifts the later windows down by one.
        ks.windows[first..].rotate_left(1);
        let old = ks.windows.last().expect("a merge has parts").window;
        if retracting {
            let merged = ks.windows.last_mut().expect("a merge has parts");
            let last = merged.panes.last.take().map(|v| (merged.window, v));
            merged.retract.extend(last);
        }
        // Removing a part shifts the later ones (and the merged window) down by one.
        for (removed, &i) in rest.iter().enumerate() {
            let p = ks.windows.remove(i - 1 - removed);
            let merged = ks.windows.last_mut().expect("a merge has parts");
            self.base.agg.merge(&mut merged.acc, p.acc);
            merged.nonempty |= p.nonempty;
            merged.panes.holding |= p.panes.holding;
            if retracting {
                merged.retract.extend(p.retract);
                merged.retract.extend(p.panes.last.map(|v| (p.window, v)));
            }
        }
        // The parts are gone and the merged window is new: one fewer live window per part
        // beyond the first (the largest count of live windows is not touched either way).
        if !rest.is_empty() {
            self.base.spec.metrics.windows_removed(rest.len() as u64);
        }
        // A session extended at its end keeps its pending end timer (see `lazy`) where
        // only that timer is due (no allowed lateness) and it is still to fire.
        let lazy = rest.is_empty()
            && old.start == span.start
            && old.end > self.base.domain_time()
            && self.gc_time(old) == old.end
            && self.gc_time(span) == span.end;
        let merged = ks.windows.last_mut().expect("a merge has parts");
        if rest.is_empty() {
            self.program.merge_one(&mut merged.trigger, cx);
        } else {
            std::mem::swap(&mut merged.trigger, &mut trigger);
        }
        self.merged_trigger = trigger;
        merged.window = span;
        merged.panes.index = 0;
        merged.panes.last = None;
        merged.lazy = lazy;
        let deadlines = self.program.deadlines(&merged.trigger);
        if !lazy {
            self.register(key, span);
        }
        self.timers.deadlines(key, span, deadlines);
        ks.windows.len() - 1
    }

    /// Adds a record to window `i` and fires it if its trigger says so. False if the
    /// window is closed.
    fn add(
        &mut self,
        ks: &mut Key<G, T, K>,
        key: &K,
        i: usize,
        record: &T,
        out: &mut Outs<K, G::Out, T>,
    ) -> bool {
        if ks.windows[i].closed {
            return false;
        }
        let w = ks.windows[i].window;
        let cx = self.context(ks, w);
        if self.quiet && !cx.past_end {
            // The trigger neither looks at the record nor fires before the end.
            let e = &mut ks.windows[i];
            self.base.agg.add(&mut e.acc, record);
            e.nonempty = true;
            e.panes.holding = true;
            return true;
        }
        let punctuation = self.base.punctuates(record);
        let e = &mut ks.windows[i];
        self.base.agg.add(&mut e.acc, record);
        e.nonempty = true;
        e.panes.holding |= !cx.past_end;
        self.deadlines.clear();
        self.program
            .on_element(&mut e.trigger, cx, punctuation, &mut self.deadlines);
        self.timers
            .deadlines(key, w, self.deadlines.iter().copied());
        self.fire_if_ready(ks, key, i, out);
        true
    }

    /// A domain-time timer of window `i` came due.
    fn on_timer(&mut self, ks: &mut Key<G, T, K>, key: &K, i: usize, out: &mut Outs<K, G::Out, T>) {
        let w = ks.windows[i].window;
        if self.is_expired(ks, w) {
            self.garbage_collect(ks, key, i, out);
        } else {
            self.fire_if_ready(ks, key, i, out);
        }
    }

    /// Fires window `i` if it is open and its trigger is ready.
    fn fire_if_ready(
        &mut self,
        ks: &mut Key<G, T, K>,
        key: &K,
        i: usize,
        out: &mut Outs<K, G::Out, T>,
    ) {
        let cx = self.context(ks, ks.windows[i].window);
        if !ks.windows[i].closed && self.program.should_fire(&ks.windows[i].trigger, cx) {
            self.fire(ks, key, i, cx, out);
        }
    }

    /// The trigger of window `i` fired.
    fn fire(
        &mut self,
        ks: &mut Key<G, T, K>,
        key: &K,
        i: usize,
        cx: TriggerContext,
        out: &mut Outs<K, G::Out, T>,
    ) {
        let e = &mut ks.windows[i];
        self.program.on_fire(&mut e.trigger, cx);
        let finished = self.program.is_finished(&e.trigger);
        self.emit(key, e, cx, finished, &mut out.0);
        if finished {
            e.closed = true;
            e.acc = self.base.agg.create();
            e.panes.last = None;
            e.retract = Vec::new();
        }
    }

    /// Window `i` is garbage-collected: its final pane fires if records arrived since the
    /// previous firing, or if its trigger is ready (the on-time pane); then it is removed.
    fn garbage_collect(
        &mut self,
        ks: &mut Key<G, T, K>,
        key: &K,
        i: usize,
        out: &mut Outs<K, G::Out, T>,
    ) {
        let w = ks.windows[i].window;
        let cx = self.context(ks, w);
        let mut e = ks.windows.remove(i);
        self.base.spec.metrics.window_removed();
        if e.closed {
            return;
        }
        if e.nonempty || self.program.should_fire(&e.trigger, cx) {
            self.emit(key, &mut e, cx, true, &mut out.0);
        }
    }

    /// Emits a pane of `e` (and retractions before it), unless it is empty and not the
    /// on-time pane; then resets the pane's contents as the accumulation mode says.
    fn emit(
        &mut self,
        key: &K,
        e: &mut WinState<G::Acc, G::Out>,
        cx: TriggerContext,
        is_last: bool,
        out: &mut Output<Pane<K, G::Out>>,
    ) {
        let discarding = self.base.spec.accumulation == Accumulation::Discarding;
        let agg = &self.base.agg;
        if let Some(timing) = e.panes.due(cx.past_end, e.nonempty) {
            let value = if discarding {
                agg.finish(key, &e.window, std::mem::replace(&mut e.acc, agg.create()))
            } else {
                agg.result(key, &e.window, &e.acc)
            };
            let merged = std::mem::take(&mut e.retract);
            let firing = Firing::new(key, e.window, timing, is_last);
            self.base.emit(&mut e.panes, firing, value, merged, out);
        } else if discarding {
            e.acc = agg.create();
        }
        e.nonempty = false;
    }
}

impl<T: Element, K: WindowKey, G: Aggregate<T, K>> Windowing<T> for WindowOperator<T, K, G> {
    type Outs = Outs<K, G::Out, T>;

    fn clock(&mut self) -> &mut OperatorClock {
        &mut self.core.base.clock
    }

    fn domain(&self) -> TimeDomain {
        self.core.base.spec.domain
    }

    fn add_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Outs) -> OpResult {
        for record in batch.drain(..) {
            self.process(record, out);
        }
        match self.invalid.take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Fires the domain-time timers that are due, in time order; at the end of time also
    /// closes every count window.
    fn advance(&mut self, out: &mut Self::Outs) {
        let core = &mut self.core;
        let mut keys = self.keys.borrow_mut();
        let dt = core.base.domain_time();
        while let Some((_, due)) = core.timers.domain.pop_due(dt) {
            for (key, w) in due {
                let Some(ks) = keys.get_mut(&key) else {
                    continue;
                };
                if let Some(i) = ks.find(w) {
                    core.on_timer(ks, &key, i, out);
                } else if let Some(e) = ks
                    .windows
                    .iter_mut()
                    .find(|e| e.lazy && e.window.start == w.start && e.window.end > w.end)
                {
                    // The session grew since this timer was set: set it at its end now.
                    e.lazy = false;
                    core.timers
                        .domain
                        .set(e.window.end, (key.clone(), e.window));
                }
                if ks.windows.is_empty() && !ks.count {
                    keys.remove(&key);
                }
            }
        }
        if dt == MAX_WATERMARK {
            for (key, ks) in keys.iter_mut() {
                ks.windows.sort_by_key(|e| (e.window.end, e.window.start));
                while !ks.windows.is_empty() {
                    core.garbage_collect(ks, key, 0, out);
                }
            }
        }
    }

    fn fire_processing_timers(&mut self, out: &mut Self::Outs) {
        let core = &mut self.core;
        let mut keys = self.keys.borrow_mut();
        while let Some((_, due)) = core.timers.processing.pop_due(core.base.clock.now) {
            for (key, w) in due {
                let Some(ks) = keys.get_mut(&key) else {
                    continue;
                };
                if let Some(i) = ks.find(w) {
                    core.fire_if_ready(ks, &key, i, out);
                }
            }
        }
    }

    const SECTION: Section = WINDOWS;

    /// Every key's windows (accumulators, pane state, trigger state).
    fn write_tables(&mut self, state: &mut StateWriter) -> OpResult {
        self.codec.write(&self.keys, state)
    }

    fn read_tables(&mut self, state: &StateReader) -> OpResult {
        let mut keys = self.keys.borrow_mut();
        self.codec.read(&mut keys, state)?;
        let core = &mut self.core;
        let times = (core.base.domain_time(), core.base.clock.now);
        for (key, ks) in keys.iter() {
            for w in &ks.windows {
                core.base.spec.metrics.window_created();
                // Count windows end by ordinals, not by time.
                let gc = (!ks.count).then(|| core.gc_time(w.window));
                let deadlines = core.program.deadlines(&w.trigger);
                core.timers.rearm(key, w.window, gc, times, deadlines);
            }
        }
        Ok(())
    }
}
