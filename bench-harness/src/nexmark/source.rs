//! The NEXMark source: every shard generates its own slice of the event sequence.
//!
//! Shard `s` of `S` emits positions `s, s + S, s + 2S, ...` of the one global sequence, so
//! the set of events depends only on the seed and the count. Position `n` is due at
//! `n * inter_event_ns` after the run's [`Epoch`]. Unthrottled, a source emits as fast as
//! the dataflow takes events; open loop, it emits each event once it is due and never
//! waits for the dataflow (Karimov et al.): if the dataflow is slow, the source falls
//! behind its schedule, and that lag is measured rather than hidden.
//!
//! After every batch the source emits its watermark: the event time of its next
//! position's out-of-order group (the next event's time when events are in order), which
//! no later event of this shard precedes. So the queries never see late events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rill_runtime::rkyv;
use rill_runtime::{Failure, Output, Source, SourceStatus, Timestamp};

use super::{Event, GeneratorConfig};

/// A generated event and the moment it was due, in ns after the run's [`Epoch`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Timed {
    /// When the event was due (its intended emission time), in ns after the epoch.
    pub due_ns: u64,
    /// The event.
    pub event: Event,
}

/// The run's time origin, shared by sources and sinks: set when the first source polls,
/// so that executor start-up does not count as latency.
#[derive(Clone, Default, Debug)]
pub struct Epoch(Arc<OnceLock<(Instant, u64)>>);

impl Epoch {
    fn get(&self) -> (Instant, u64) {
        *self.0.get_or_init(|| {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            (Instant::now(), unix)
        })
    }

    /// Nanoseconds since the epoch (starting it if no source has yet).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.get().0.elapsed().as_nanos() as u64
    }

    /// The epoch's wall-clock time, in ns since the Unix epoch.
    pub fn unix_ns(&self) -> u64 {
        self.get().1
    }

    /// A wall-clock time in ms since the Unix epoch, as ns after this epoch (0 if earlier).
    pub fn from_unix_ms(&self, ms: Timestamp) -> u64 {
        (ms.max(0) as u64)
            .saturating_mul(1_000_000)
            .saturating_sub(self.unix_ns())
    }
}

/// Counters the sources share with whoever watches the run.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Events emitted so far, over all shards.
    pub emitted: AtomicU64,
    /// The largest lag behind schedule seen at a poll, in ns.
    pub max_lag_ns: AtomicU64,
    /// How late the slowest source emitted its last event, in ns.
    pub end_lag_ns: AtomicU64,
}

/// One shard's NEXMark source.
pub struct NexmarkSource {
    config: Arc<GeneratorConfig>,
    next: u64,
    step: u64,
    end: u64,
    open_loop: bool,
    epoch: Epoch,
    stats: Arc<SourceStats>,
    watermark: Timestamp,
}

impl NexmarkSource {
    /// Shard `shard` of `shards`, emitting positions below `events`; open loop if
    /// `open_loop`, on the schedule `config.inter_event_ns` sets.
    pub fn new(
        config: Arc<GeneratorConfig>,
        shard: usize,
        shards: usize,
        events: u64,
        open_loop: bool,
        epoch: Epoch,
        stats: Arc<SourceStats>,
    ) -> Self {
        NexmarkSource {
            config,
            next: shard as u64,
            step: shards.max(1) as u64,
            end: events,
            open_loop,
            epoch,
            stats,
            watermark: Timestamp::MIN,
        }
    }

    #[inline]
    fn due_ns(&self, position: u64) -> u64 {
        position.saturating_mul(self.config.inter_event_ns)
    }
}

impl Source<Timed> for NexmarkSource {
    fn poll(&mut self, out: &mut Output<Timed>, max: usize) -> Result<SourceStatus, Failure> {
        let now = self.epoch.now_ns();
        if self.next >= self.end {
            if self.open_loop && self.end > 0 {
                // The last position this shard emitted.
                let last = self.next - self.step;
                let lag = now.saturating_sub(self.due_ns(last));
                self.stats.end_lag_ns.fetch_max(lag, Ordering::Relaxed);
            }
            return Ok(SourceStatus::Done);
        }
        let due_until = if self.open_loop {
            let due = self.due_ns(self.next);
            if due > now {
                return Ok(SourceStatus::Idle);
            }
            self.stats
                .max_lag_ns
                .fetch_max(now - due, Ordering::Relaxed);
            // Positions due by now: n * inter <= now.
            now / self.config.inter_event_ns.max(1) + 1
        } else {
            u64::MAX
        };
        let mut emitted = 0u64;
        while (emitted as usize) < max && self.next < self.end && self.next < due_until {
            let position = self.next;
            out.give(Timed {
                due_ns: self.due_ns(position),
                event: self.config.event(position),
            });
            self.next += self.step;
            emitted += 1;
        }
        self.stats.emitted.fetch_add(emitted, Ordering::Relaxed);
        if self.next < self.end {
            let watermark = self.config.watermark_ms(self.next) as Timestamp;
            if watermark > self.watermark {
                self.watermark = watermark;
                out.watermark(watermark)?;
            }
        }
        Ok(SourceStatus::Emitted)
    }
}
