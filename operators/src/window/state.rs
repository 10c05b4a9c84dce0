//! What the window operators keep besides their keys' windows: the clock they measure
//! windows against, and how a key's state is written to checkpoints.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{KeyedState, SharedKeyedState};
use rill_runtime::state::{OperatorClock, TimeDomain};
use rill_runtime::{OpResult, StateData, Timestamp, MAX_WATERMARK};

use crate::window::Window;

/// A key's state as a checkpoint record: written to the named section `SECTION`,
/// version `VERSION` (another version is refused on restore).
pub(crate) trait KeyRecord: Sized {
    type Record;
    const SECTION: &'static str;
    const VERSION: u32;
    fn record(&self) -> Self::Record;
    fn from_record(record: Self::Record) -> Self;
}

/// Writes and reads a window operator's keys (behind a trait object, so that only the
/// constructor carries the serialization bounds).
pub(crate) trait WindowTable<K, S> {
    /// Writes the keys copy-on-write (see `KeyedState::snapshot_shared`).
    fn write(&self, keys: &SharedKeyedState<K, S>, state: &mut StateWriter) -> OpResult;
    fn read(&self, keys: &mut KeyedState<K, S>, state: &StateReader) -> OpResult;
}

/// The keys' table, incrementally, in the section its records name.
pub(crate) struct RkyvWindows;

impl<K, S> WindowTable<K, S> for RkyvWindows
where
    K: StateData + Hash + Eq,
    S: KeyRecord + 'static,
    S::Record: StateData,
{
    fn write(&self, keys: &SharedKeyedState<K, S>, state: &mut StateWriter) -> OpResult {
        let section = state.section(S::SECTION, S::VERSION);
        KeyedState::snapshot_shared_as(keys, section, |_, ks: &S| ks.record())
    }
    fn read(&self, keys: &mut KeyedState<K, S>, state: &StateReader) -> OpResult {
        keys.restore_as(&state.section(S::SECTION, S::VERSION)?, |_, r| {
            S::from_record(r)
        })
    }
}

pub(crate) type WindowCodec<K, S> = Arc<dyn WindowTable<K, S> + Send + Sync>;

/// The sections the three window operators write their keys to (name, version); the
/// windows of a spec decide which operator runs it (see docs/windows.md).
pub(crate) const SECTIONS: [(&str, u32); 3] = [
    ("windows", 2),
    ("sliced windows", 1),
    ("slice accumulators", 1),
];

/// Fails if `state` holds window state another window operator wrote (a job whose window
/// spec changed between the checkpoint and the restore, e.g. its lateness or trigger, or a
/// checkpoint from before windows were sliced): restoring would silently lose it.
pub(crate) fn refuse_other_sections(state: &StateReader, mine: &str) -> OpResult {
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
pub(crate) fn on_batch<T, O: Clocked<T>>(
    op: &mut O,
    batch: &mut Vec<T>,
    out: &mut O::Outs,
) -> OpResult {
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

pub(crate) fn on_watermark<T, O: Clocked<T>>(
    op: &mut O,
    watermark: Timestamp,
    out: &mut O::Outs,
) -> OpResult {
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

pub(crate) fn on_processing_time<T, O: Clocked<T>>(
    op: &mut O,
    now: Timestamp,
    out: &mut O::Outs,
) -> OpResult {
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

/// A checkpoint cannot hold records that wait for processing time.
pub(crate) fn check_none_held<T>(held: &[T]) -> OpResult {
    if held.is_empty() {
        return Ok(());
    }
    Err(rill_runtime::Failure::new(
        "a processing-time window holds records that arrived before any processing time; \
         it cannot take a checkpoint yet",
    ))
}

/// Timers of a window operator: at a time, the (key, window) pairs to look at again.
pub(crate) type Timers<K> = BTreeMap<Timestamp, Vec<(K, Window)>>;

/// After a restore, sets again the timers of `key`'s `window` still to come (timers are
/// not checkpointed): `times` in the window's time domain (its end and garbage
/// collection) after `domain_time`, and its trigger's processing-time `deadlines` after
/// `now` (those already due fired before the checkpoint).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rearm<K: Clone>(
    timers: &mut Timers<K>,
    proc_timers: &mut Timers<K>,
    key: &K,
    window: Window,
    times: impl IntoIterator<Item = Timestamp>,
    domain_time: Timestamp,
    deadlines: impl IntoIterator<Item = Timestamp>,
    now: Timestamp,
) {
    for t in times.into_iter().filter(|&t| t > domain_time) {
        timers.entry(t).or_default().push((key.clone(), window));
    }
    for d in deadlines.into_iter().filter(|&d| d > now) {
        proc_timers
            .entry(d)
            .or_default()
            .push((key.clone(), window));
    }
}
