//! What the window operators keep besides their keys' windows: the clock they measure
//! windows against, and how a key's state is written to checkpoints.

use std::hash::Hash;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{record_codec, Codec, KeyRecord, OperatorClock, TimeDomain, TimerQueue};
use rill_runtime::{OpResult, Operator, Outputs, StateData, Timestamp, MAX_WATERMARK};

use crate::window::Window;

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

/// The sections the three window operators write their keys to; the windows of a spec
/// decide which operator runs it (see docs/windows.md).
pub(crate) const SECTIONS: [Section; 3] = [WINDOWS, SLICED_WINDOWS, SLICE_ACCUMULATORS];

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

/// What the window operators do alike as records and time arrive: records of
/// processing-time windows wait for the first processing time, and a watermark or a new
/// processing time fires what is due. Each operator says how it adds records and fires;
/// [`on_batch`], [`on_watermark`] and [`on_processing_time`] drive it.
pub(crate) trait Clocked<T> {
    type Outs;
    fn clock(&mut self) -> &mut OperatorClock;
    fn domain(&self) -> TimeDomain;
    /// Records that arrived before any processing time (processing-time windows).
    fn held(&mut self) -> &mut Vec<T>;
    /// Adds records at the current time.
    fn add_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Outs) -> OpResult;
    /// Fires what the time the windows are measured in made due.
    fn advance(&mut self, out: &mut Self::Outs);
    /// Fires what processing-time triggers made due.
    fn fire_processing_timers(&mut self, _out: &mut Self::Outs) {}
}

/// Adds a batch, or holds it until processing time arrives.
fn on_batch<T, O: Clocked<T>>(op: &mut O, batch: &mut Vec<T>, out: &mut O::Outs) -> OpResult {
    let domain = op.domain();
    if op.clock().unclocked(domain) {
        op.held().append(batch);
        return Ok(());
    }
    op.add_batch(batch, out)
}

/// Adds the held records at the current processing time.
fn add_held<T, O: Clocked<T>>(op: &mut O, out: &mut O::Outs) -> OpResult {
    op.clock().start();
    let mut held = std::mem::take(op.held());
    op.add_batch(&mut held, out)
}

fn on_watermark<T, O: Clocked<T>>(op: &mut O, watermark: Timestamp, out: &mut O::Outs) -> OpResult {
    if watermark > op.clock().watermark {
        if watermark == MAX_WATERMARK && !op.held().is_empty() {
            add_held(op, out)?;
        }
        op.clock().watermark = watermark;
        let domain = op.domain();
        if op.clock().advances(domain, true) {
            op.advance(out);
        }
    }
    Ok(())
}

fn on_processing_time<T, O: Clocked<T>>(op: &mut O, now: Timestamp, out: &mut O::Outs) -> OpResult {
    if now > op.clock().now {
        op.clock().now = now;
        if !op.held().is_empty() {
            add_held(op, out)?;
        }
        op.fire_processing_timers(out);
        let domain = op.domain();
        if op.clock().advances(domain, false) {
            op.advance(out);
        }
    }
    Ok(())
}

/// A window operator's tables in checkpoints: what [`Windowed`] needs besides
/// [`Clocked`] to be an [`Operator`].
pub(crate) trait WindowTables<T>: Clocked<T> {
    /// The section of its keys (a restore refuses the other window operators'
    /// [`SECTIONS`]).
    const SECTION: Section;
    /// Writes its tables, incrementally (after the clock).
    fn write_tables(&mut self, state: &mut StateWriter) -> OpResult;
    /// Reads its tables back (after the clock) and sets again the timers still to come.
    fn read_tables(&mut self, state: &StateReader) -> OpResult;
}

/// A window operator ([`operator`](super::operator), [`sliced`](super::sliced) or
/// [`on_time`](super::on_time)) as the runtime runs it: records, watermarks and processing
/// time go through [`Clocked`]; a snapshot writes the clock and the tables (refusing
/// records held for want of processing time), a restore reads them back.
pub(crate) struct Windowed<O>(pub(crate) O);

impl<T, O> Operator<T> for Windowed<O>
where
    O: WindowTables<T>,
    O::Outs: Outputs,
{
    /// The operator's clock (each shard restores its own: see
    /// [`OperatorClock::restore`]), and its tables, incrementally: the keys changed since
    /// the last checkpoint.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        check_none_held(self.0.held())?;
        self.0.clock().snapshot(state)?;
        self.0.write_tables(state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.0.clock().restore(state)?;
        refuse_other_sections(state, O::SECTION.0)?;
        self.0.read_tables(state)
    }

    type Out = O::Outs;

    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Out) -> OpResult {
        on_batch(&mut self.0, batch, out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        on_watermark(&mut self.0, watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Self::Out) -> OpResult {
        on_processing_time(&mut self.0, now, out)
    }
}

/// A checkpoint cannot hold records that wait for processing time.
fn check_none_held<T>(held: &[T]) -> OpResult {
    if held.is_empty() {
        return Ok(());
    }
    Err(rill_runtime::Failure::new(
        "a processing-time window holds records that arrived before any processing time; \
         it cannot take a checkpoint yet",
    ))
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
