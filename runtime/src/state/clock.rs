//! [`OperatorClock`]: an operator's view of time, the one clock every stateful operator
//! keeps and checkpoints (windows, joins, process functions).

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::OpResult;
use crate::time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

/// Which clock an operator measures windows and timers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// Record timestamps; windows close when the watermark passes their end.
    EventTime,
    /// Arrival (processing) time; windows close when processing time passes their end,
    /// and when the input ends.
    ProcessingTime,
}

/// An operator's view of time: its input watermark and processing time, as they arrived,
/// written to checkpoints and restored per shard ([`OperatorClock::restore`]).
#[derive(Debug, Clone, Copy)]
pub struct OperatorClock {
    /// The input watermark.
    pub watermark: Timestamp,
    /// Processing time ([`MIN_WATERMARK`] before any arrived).
    pub now: Timestamp,
}

impl Default for OperatorClock {
    fn default() -> Self {
        OperatorClock {
            watermark: MIN_WATERMARK,
            now: MIN_WATERMARK,
        }
    }
}

impl OperatorClock {
    /// The time windows and timers of `domain` are measured against: the watermark, or
    /// processing time (which jumps to the end of time when the input ends).
    pub fn domain_time(&self, domain: TimeDomain) -> Timestamp {
        match domain {
            TimeDomain::EventTime => self.watermark,
            TimeDomain::ProcessingTime if self.watermark == MAX_WATERMARK => MAX_WATERMARK,
            TimeDomain::ProcessingTime => self.now,
        }
    }

    /// A record's time in `domain`: `event_time()` or the current processing time.
    #[inline]
    pub fn element_time(
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
    pub fn unclocked(&self, domain: TimeDomain) -> bool {
        domain == TimeDomain::ProcessingTime && self.now == MIN_WATERMARK
    }

    /// The input ended before any processing time arrived (a manual clock that never
    /// moved): held records count at time 0.
    pub fn start(&mut self) {
        if self.now == MIN_WATERMARK {
            self.now = 0;
        }
    }

    /// Whether a new watermark (`watermark` true) or processing time moved the time of
    /// `domain`.
    pub fn advances(&self, domain: TimeDomain, watermark: bool) -> bool {
        if watermark {
            domain == TimeDomain::EventTime || self.watermark == MAX_WATERMARK
        } else {
            domain == TimeDomain::ProcessingTime
        }
    }

    /// Writes the clock as this shard's own and as shared state (see
    /// [`OperatorClock::restore`]).
    pub fn snapshot(&self, state: &mut StateWriter) -> OpResult {
        let clock = (self.watermark, self.now);
        state.section("clock", 1).put_shared(clock)?;
        state.section("shard clock", 1).put_own(clock)
    }

    /// Restores the clock. On as many shards as the checkpoint was taken on, each shard
    /// takes its own: an operator without an exchange in front (after `assume_keyed_by`,
    /// the first phase of `window_all`), or any operator under unaligned barriers, saw a
    /// watermark of its own at its barrier, and a lower one would fire again the windows
    /// it had fired (or let in records it had dropped as late). On another shard count,
    /// the minimum over the shards: under aligned barriers every shard fed by an exchange
    /// saw the same one, so it is exact there.
    pub fn restore(&mut self, state: &StateReader) -> OpResult {
        let own = state
            .section("shard clock", 1)?
            .own::<(Timestamp, Timestamp)>()?;
        let (watermark, now) = match own {
            Some(clock) => (Some(clock.0), Some(clock.1)),
            None => {
                let clocks = state
                    .section("clock", 1)?
                    .values::<(Timestamp, Timestamp)>()?;
                (
                    clocks.iter().map(|c| c.0).min(),
                    clocks.iter().map(|c| c.1).min(),
                )
            }
        };
        if let Some(w) = watermark {
            self.watermark = self.watermark.max(w);
        }
        if let Some(n) = now {
            self.now = self.now.max(n);
        }
        Ok(())
    }
}
