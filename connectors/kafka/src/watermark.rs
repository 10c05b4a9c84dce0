//! Watermarks per partition, combined as the minimum.
//!
//! Each partition is in the order its producer wrote it, so its own watermark follows its
//! records: *ascending* (the largest event time seen: no later record is earlier) or
//! *bounded out-of-orderness* (the largest time seen minus a bound). A partition that has
//! not delivered a record yet holds the watermark at its minimum, so nothing it delivers
//! later is late. A partition that has had no data for the idle timeout is *idle* and does
//! not hold the watermark back; its next record makes it active again (records it then
//! delivers may be late: the idle timeout is a heuristic). A bounded partition that reached
//! its end offset is *finished* and no longer counts.

use std::time::{Duration, Instant};

use rill_runtime::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

/// How a partition's watermark follows the event times of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionWatermarks {
    /// Event times never decrease within a partition: the watermark is the largest seen.
    Ascending,
    /// Records are at most this late within a partition: the watermark is the largest
    /// time seen minus the bound (in ms).
    BoundedOutOfOrderness(Duration),
}

/// One partition's watermark state.
#[derive(Debug, Clone)]
pub(crate) struct PartitionClock {
    max_time: Option<Timestamp>,
    last_data: Instant,
    finished: bool,
}

impl PartitionClock {
    pub(crate) fn new(now: Instant) -> Self {
        PartitionClock {
            max_time: None,
            last_data: now,
            finished: false,
        }
    }

    /// A record with event time `time` arrived at `now`.
    pub(crate) fn observe(&mut self, time: Timestamp, now: Instant) {
        self.max_time = Some(self.max_time.map_or(time, |m| m.max(time)));
        self.last_data = now;
    }

    /// The partition reached its end (bounded mode).
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    fn watermark(&self, strategy: PartitionWatermarks) -> Timestamp {
        match (self.max_time, strategy) {
            (None, _) => MIN_WATERMARK,
            (Some(t), PartitionWatermarks::Ascending) => t,
            (Some(t), PartitionWatermarks::BoundedOutOfOrderness(bound)) => {
                t.saturating_sub(bound.as_millis().min(i64::MAX as u128) as i64)
            }
        }
    }
}

/// The watermark of a set of partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combined {
    /// The minimum over the active partitions.
    Watermark(Timestamp),
    /// Every unfinished partition is idle (or there is none that is unfinished, but not all
    /// are finished: no partition at all).
    Idle,
    /// Every partition is finished.
    Finished,
}

/// The combined watermark of `clocks` at `now`.
pub(crate) fn combine<'a>(
    clocks: impl IntoIterator<Item = &'a PartitionClock>,
    strategy: PartitionWatermarks,
    idle_after: Option<Duration>,
    now: Instant,
) -> Combined {
    let mut any = false;
    let mut unfinished = false;
    let mut min = MAX_WATERMARK;
    for c in clocks {
        any = true;
        if c.finished {
            continue;
        }
        unfinished = true;
        let idle = idle_after.is_some_and(|d| now.saturating_duration_since(c.last_data) >= d);
        if !idle {
            min = min.min(c.watermark(strategy));
        }
    }
    match (any, unfinished, min) {
        (true, false, _) => Combined::Finished,
        (_, _, MAX_WATERMARK) => Combined::Idle,
        (_, _, w) => Combined::Watermark(w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_of_active_partitions_a_silent_one_holds_until_idle() {
        let t0 = Instant::now();
        let (mut a, mut b) = (PartitionClock::new(t0), PartitionClock::new(t0));
        let asc = PartitionWatermarks::Ascending;
        let idle = Some(Duration::from_secs(1));
        a.observe(100, t0);
        a.observe(90, t0); // out of order: the watermark does not go back
                           // b has delivered nothing: it holds the watermark at the minimum.
        assert_eq!(
            combine([&a, &b], asc, idle, t0),
            Combined::Watermark(MIN_WATERMARK)
        );
        b.observe(50, t0);
        assert_eq!(combine([&a, &b], asc, idle, t0), Combined::Watermark(50));
        // b goes silent for the idle timeout: a alone counts.
        let later = t0 + Duration::from_millis(1500);
        a.observe(200, later);
        assert_eq!(
            combine([&a, &b], asc, idle, later),
            Combined::Watermark(200)
        );
        // Without an idle timeout b holds the watermark forever.
        assert_eq!(combine([&a, &b], asc, None, later), Combined::Watermark(50));
        let bounded = PartitionWatermarks::BoundedOutOfOrderness(Duration::from_millis(30));
        assert_eq!(
            combine([&a, &b], bounded, None, later),
            Combined::Watermark(20)
        );
        // Both silent: idle; a finished partition no longer counts; all finished: finished.
        let much_later = later + Duration::from_secs(2);
        assert_eq!(combine([&a, &b], asc, idle, much_later), Combined::Idle);
        b.finish();
        assert_eq!(
            combine([&a, &b], asc, None, much_later),
            Combined::Watermark(200)
        );
        a.finish();
        assert_eq!(combine([&a, &b], asc, None, much_later), Combined::Finished);
        assert_eq!(combine([], asc, None, much_later), Combined::Idle);
    }
}
