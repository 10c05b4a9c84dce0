//! What the window operators share: what each is made of ([`WindowBase`]: spec, key,
//! aggregate, clock), the driver that runs each as an [`Operator`] ([`Windowed`]: records
//! held for want of processing time, the clock, snapshot and restore), their timers
//! ([`WindowTimers`]) and the checkpoint sections of their keys.

use std::hash::Hash;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{
    record_codec, Changes, Codec, KeyRecord, OperatorClock, TimeDomain, TimerQueue,
};
use rill_runtime::{
    OpResult, Operator, OperatorState, Output, Outputs, StateData, Timestamp, MAX_WATERMARK,
};

use super::pane::{Firing, Pane, Panes, Window};
use super::spec::{Accumulation, WindowSpec};
use crate::key_by::KeyFn;

/// A checkpoint section: (name, format version).
pub(crate) type Section = (&'static str, u32);

/// The per-window operator's keys (`operator.rs`).
pub(crate) const WINDOWS: Section = ("windows", 2);
/// The sliced operator's keys (`sliced.rs`).
pub(crate) const SLICED_WINDOWS: Section = ("sliced windows", 1);
/// The sliced operator's slices (`slices.rs`).
pub(crate) const SLICES: Section = ("slices", 1);
/// The on-time operator's slices (`on_time.rs`).
pub(crate) const SLICE_ACCUMULATORS: Section = ("slice accumulators", 1);
/// The top operator's windows (`top.rs`).
pub(crate) const TOP_WINDOWS: Section = ("top windows", 1);

/// The sections the window operators write their keys to; the windows of a spec decide
/// which operator runs it (see docs/windows.md), and a top (`top.rs`) has its own.
pub(crate) const SECTIONS: [Section; 4] =
    [WINDOWS, SLICED_WINDOWS, SLICE_ACCUMULATORS, TOP_WINDOWS];

/// A window table's codec: its values' [`KeyRecord`]s in `section`.
pub(crate) fn codec<K, S>(section: Section) -> Codec<K, S>
where
    K: StateData + Hash + Eq,
    S: KeyRecord + 'static,
    S::Record: StateData,
{
    record_codec(section.0, section.1)
}

/// Fails if `state` holds window state another window operator wrote (a job whose window
/// spec changed between the checkpoint and the restore, e.g. its lateness or trigger, or a
/// checkpoint from before windows were sliced): restoring would silently lose it.
fn refuse_other_sections(state: &StateReader, mine: &str) -> OpResult {
    for (name, version) in SECTIONS {
        if name != mine && !state.section(name, version)?.is_empty() {
            return Err(rill_runtime::Failure::new(format!(
                "the checkpoint holds this window operator's state as '{name}', written by \
                 another kind of window operator (the window spec changed since, e.g. its \
                 windows, trigger or allowed lateness, or the checkpoint predates sliced \
                 windows); restore it with the spec that wrote it"
            )));
        }
    }
    Ok(())
}

/// What the window operators need of a record: a value they can clone and own.
pub(crate) trait Element: Clone + 'static {}

impl<T: Clone + 'static> Element for T {}

/// What the window operators need of a key: a value they can clone, hash and own.
pub(crate) trait WindowKey: Clone + Hash + Eq + 'static {}

impl<K: Clone + Hash + Eq + 'static> WindowKey for K {}

/// What every window operator is made of: its spec (on its shard), the key of a record,
/// the aggregate of its panes, its clock, and how its tables record changes for
/// incremental checkpoints.
pub(crate) struct WindowBase<T, K, G> {
    pub(crate) spec: WindowSpec<T, K>,
    pub(crate) key: KeyFn<T, K>,
    pub(crate) agg: G,
    pub(crate) clock: OperatorClock,
    pub(crate) changes: Changes,
}

impl<T, K, G> WindowBase<T, K, G> {
    /// An operator's parts, its clock at its start.
    pub(crate) fn new(spec: WindowSpec<T, K>, key: KeyFn<T, K>, agg: G, changes: Changes) -> Self {
        WindowBase {
            spec,
            key,
            agg,
            clock: OperatorClock::default(),
            changes,
        }
    }

    /// The time the windows are measured in: the watermark, or processing time.
    #[inline]
    pub(crate) fn domain_time(&self) -> Timestamp {
        self.clock.domain_time(self.spec.domain)
    }

    /// Whether `record` is a punctuation (the spec's punctuation says so).
    #[inline]
    pub(crate) fn punctuates(&self, record: &T) -> bool {
        self.spec.punctuation.as_ref().is_some_and(|p| p(record))
    }

    /// Emits a window's pane of `value` at `firing` (and, in retracting mode, the
    /// retractions of `merged` and of the previous value: see [`Panes::emit`]), and
    /// counts them.
    #[inline]
    pub(crate) fn emit<V: Clone>(
        &self,
        panes: &mut Panes<V>,
        firing: Firing<'_, K>,
        value: V,
        merged: Vec<(Window, V)>,
        out: &mut Output<Pane<K, V>>,
    ) where
        K: Clone,
    {
        let retracting = self.spec.accumulation == Accumulation::Retracting;
        let emitted = panes.emit(firing, (self.clock.now, retracting), value, merged, out);
        self.spec.metrics.add_panes(emitted);
    }

    /// The time of `record` in the windows' time domain.
    #[inline]
    pub(crate) fn element_time(&self, record: &T) -> Timestamp {
        self.clock
            .element_time(self.spec.domain, || (self.spec.timestamp)(record))
    }
}

/// One of the window operators ([`operator`](super::operator), [`sliced`](super::sliced),
/// [`on_time`](super::on_time)): how it adds records, fires what time made due and writes
/// its tables. [`Windowed`] does the rest, alike for the three.
pub(crate) trait Windowing<T> {
    type Outs: Outputs;
    /// The section of its keys (a restore refuses the other window operators'
    /// [`SECTIONS`]).
    const SECTION: Section;
    fn clock(&mut self) -> &mut OperatorClock;
    fn domain(&self) -> TimeDomain;
    /// Adds records at the current time.
    fn add_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Outs) -> OpResult;
    /// Fires what the time the windows are measured in made due.
    fn advance(&mut self, out: &mut Self::Outs);
    /// Fires what processing-time triggers made due.
    fn fire_processing_timers(&mut self, _out: &mut Self::Outs) {}
    /// Writes its tables, incrementally (after the clock).
    fn write_tables(&mut self, state: &mut StateWriter) -> OpResult;
    /// Reads its tables back (after the clock) and sets again the timers still to come.
    fn read_tables(&mut self, state: &StateReader) -> OpResult;
}

/// A window operator as the runtime runs it: records of processing-time windows wait for
/// the first processing time; a watermark or a new processing time fires what is due; a
/// snapshot writes the clock and the operator's tables, a restore reads them back.
pub(crate) struct Windowed<T, O> {
    op: O,
    /// Processing-time windows: records that arrived before any processing time did (an
    /// input that has not ticked yet holds the operator's clock at its minimum). They are
    /// assigned with the first processing time, or at the end of the input.
    held: Vec<T>,
}

impl<T, O: Windowing<T>> Windowed<T, O> {
    pub(crate) fn new(op: O) -> Self {
        Windowed {
            op,
            held: Vec::new(),
        }
    }

    /// Adds the held records at the current processing time.
    fn add_held(&mut self, out: &mut O::Outs) -> OpResult {
        self.op.clock().start();
        let mut held = std::mem::take(&mut self.held);
        self.op.add_batch(&mut held, out)
    }
}

impl<T, O: Windowing<T>> Operator<T> for Windowed<T, O> {
    /// The operator's clock (each shard restores its own: see
    /// [`OperatorClock::restore`]), and its tables, incrementally: the keys changed since
    /// the last checkpoint. A checkpoint cannot hold records that wait for processing
    /// time.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        if !self.held.is_empty() {
            return Err(rill_runtime::Failure::new(
                "a processing-time window holds records that arrived before any processing \
                 time; it cannot take a checkpoint yet",
            ));
        }
        self.op.clock().snapshot(state)?;
        self.op.write_tables(state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.op.clock().restore(state)?;
        refuse_other_sections(state, O::SECTION.0)?;
        self.op.read_tables(state)
    }

    type Out = O::Outs;
    const STATE: OperatorState = OperatorState::Checkpointed;

    /// Adds a batch, or holds it until processing time arrives.
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Out) -> OpResult {
        let domain = self.op.domain();
        if self.op.clock().unclocked(domain) {
            self.held.append(batch);
            return Ok(());
        }
        self.op.add_batch(batch, out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        if watermark > self.op.clock().watermark {
            if watermark == MAX_WATERMARK && !self.held.is_empty() {
                self.add_held(out)?;
            }
            self.op.clock().watermark = watermark;
            let domain = self.op.domain();
            if self.op.clock().advances(domain, true) {
                self.op.advance(out);
            }
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Self::Out) -> OpResult {
        if now > self.op.clock().now {
            self.op.clock().now = now;
            if !self.held.is_empty() {
                self.add_held(out)?;
            }
            self.op.fire_processing_timers(out);
            let domain = self.op.domain();
            if self.op.clock().advances(domain, false) {
                self.op.advance(out);
            }
        }
        Ok(())
    }
}

/// A window operator's timers: at a time, the (key, window) pairs to look at again, in
/// the windows' time domain (end of window and garbage collection) and in processing time
/// (deadlines of processing-time triggers). Not checkpointed: a restore sets them again
/// from the windows ([`WindowTimers::rearm`]).
pub(crate) struct WindowTimers<K> {
    pub(crate) domain: TimerQueue<(K, Window)>,
    pub(crate) processing: TimerQueue<(K, Window)>,
}

impl<K: Clone> WindowTimers<K> {
    pub(crate) fn new() -> Self {
        WindowTimers {
            domain: TimerQueue::new(),
            processing: TimerQueue::new(),
        }
    }

    /// Sets the timers of a new time window `window` of `key`: its end (unless
    /// `domain_time` passed it) and its garbage collection at `gc` (see
    /// [`WindowSpec::gc_time`](super::WindowSpec::gc_time)), if later.
    pub(crate) fn open(&mut self, key: &K, window: Window, gc: Timestamp, domain_time: Timestamp) {
        if window.end > domain_time {
            self.domain.set(window.end, (key.clone(), window));
        }
        if gc != window.end {
            self.domain.set(gc, (key.clone(), window));
        }
    }

    /// Sets processing-time trigger deadlines of `key`'s `window`.
    pub(crate) fn deadlines(
        &mut self,
        key: &K,
        window: Window,
        deadlines: impl IntoIterator<Item = Timestamp>,
    ) {
        for d in deadlines {
            self.processing.set(d, (key.clone(), window));
        }
    }

    /// After a restore, sets again the timers of `key`'s `window` still to come: its end
    /// and garbage collection at `gc` (`None` for a count window, which ends by ordinals)
    /// after `domain_time`, and its trigger's processing-time `deadlines` after `now`
    /// (those already due fired before the checkpoint).
    pub(crate) fn rearm(
        &mut self,
        key: &K,
        window: Window,
        gc: Option<Timestamp>,
        (domain_time, now): (Timestamp, Timestamp),
        deadlines: impl IntoIterator<Item = Timestamp>,
    ) {
        let times = gc.map(|gc| [Some(window.end), (gc != window.end).then_some(gc)]);
        for t in times.into_iter().flatten().flatten() {
            if t > domain_time {
                self.domain.set(t, (key.clone(), window));
            }
        }
        for d in deadlines.into_iter().filter(|&d| d > now) {
            self.processing.set(d, (key.clone(), window));
        }
    }
}
