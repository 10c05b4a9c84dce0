//! What the window operators keep besides their keys' windows: the clock they measure
//! windows against, and how a key's state is written to checkpoints.

use std::hash::Hash;
use std::sync::Arc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{KeyedState, SharedKeyedState};
use rill_runtime::{OpResult, StateData, Timestamp, MAX_WATERMARK, MIN_WATERMARK};

use crate::window::TimeDomain;

/// A window operator's view of time: the input watermark and processing time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) watermark: Timestamp,
    pub(crate) now: Timestamp,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            watermark: MIN_WATERMARK,
            now: MIN_WATERMARK,
        }
    }
}

impl Clock {
    /// The time windows are measured against: the watermark, or processing time (which
    /// jumps to the end of time when the input ends).
    pub(crate) fn domain_time(&self, domain: TimeDomain) -> Timestamp {
        match domain {
            TimeDomain::EventTime => self.watermark,
            TimeDomain::ProcessingTime if self.watermark == MAX_WATERMARK => MAX_WATERMARK,
            TimeDomain::ProcessingTime => self.now,
        }
    }

    /// A record's time in `domain`: `event_time()` or the current processing time.
    #[inline]
    pub(crate) fn element_time(
        &self,
        domain: TimeDomain,
        event_time: impl FnOnce() -> Timestamp,
    ) -> Timestamp {
        match domain {
            TimeDomain::EventTime => event_time(),
            TimeDomain::ProcessingTime => self.now,
        }
    }

    /// Processing-time windows cannot place records before processing time arrived (an
    /// input that has not ticked yet holds the operator's clock at its minimum).
    pub(crate) fn unclocked(&self, domain: TimeDomain) -> bool {
        domain == TimeDomain::ProcessingTime && self.now == MIN_WATERMARK
    }

    /// The input ended before any processing time arrived (a manual clock that never
    /// moved): held records count at time 0.
    pub(crate) fn start(&mut self) {
        if self.now == MIN_WATERMARK {
            self.now = 0;
        }
    }

    /// Whether a new watermark (`watermark` true) or processing time moved the time
    /// windows are measured in.
    pub(crate) fn advances(&self, domain: TimeDomain, watermark: bool) -> bool {
        if watermark {
            domain == TimeDomain::EventTime || self.watermark == MAX_WATERMARK
        } else {
            domain == TimeDomain::ProcessingTime
        }
    }

    /// Writes the clock as shared state (every shard restores the minimum).
    pub(crate) fn snapshot(&self, state: &mut StateWriter) -> OpResult {
        state
            .section("clock", 1)
            .put_shared((self.watermark, self.now))
    }

    /// Restores the clock: under aligned barriers every shard saw the same one, so the
    /// minimum is exact.
    pub(crate) fn restore(&mut self, state: &StateReader) -> OpResult {
        let clocks = state
            .section("clock", 1)?
            .values::<(Timestamp, Timestamp)>()?;
        if let Some(w) = clocks.iter().map(|c| c.0).min() {
            self.watermark = self.watermark.max(w);
        }
        if let Some(n) = clocks.iter().map(|c| c.1).min() {
            self.now = self.now.max(n);
        }
        Ok(())
    }
}

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
