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

use rill_runtime::checkpoint::SplitPosition;
use rill_runtime::rkyv;
use rill_runtime::{Failure, Source, SourceOutput, SourceStatus, Timestamp};

use super::{Event, GeneratorConfig};

/// A generated event and the moment it was due, in ns after the run's [`Epoch`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Timed {
    /// When the event was due (its intended emission time), in ns after the epoch.
    pub due_ns: u64,
    /// When a source read it, in ns after the epoch: a record's poll from Kafka in a
    /// latency run (rill's part of the latency starts there), else `due_ns`.
    pub polled_ns: u64,
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

    /// Nanoseconds since the epoch, if a source started it (without starting it).
    pub fn started_ns(&self) -> Option<u64> {
        self.0.get().map(|(at, _)| at.elapsed().as_nanos() as u64)
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

/// One split of the event sequence: positions `id, id + of, id + 2 * of, ...` (a fresh
/// run has one split per shard; a restore onto another shard count moves whole splits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Split {
    id: u32,
    of: u32,
    next: u64,
}

/// One shard's NEXMark source.
#[derive(Debug)]
pub struct NexmarkSource {
    config: Arc<GeneratorConfig>,
    splits: Vec<Split>,
    end: u64,
    open_loop: bool,
    epoch: Epoch,
    stats: Arc<SourceStats>,
    watermark: Timestamp,
    /// The last position emitted, if any.
    last: Option<u64>,
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
            splits: vec![Split {
                id: shard as u32,
                of: shards.max(1) as u32,
                next: shard as u64,
            }],
            end: events,
            open_loop,
            epoch,
            stats,
            watermark: Timestamp::MIN,
            last: None,
        }
    }

    #[inline]
    fn due_ns(&self, position: u64) -> u64 {
        position.saturating_mul(self.config.inter_event_ns)
    }

    /// The split with the lowest next position (events leave in about event-time order).
    #[inline]
    fn lowest(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, s) in self.splits.iter().enumerate() {
            if s.next < self.end && best.map_or(true, |b| s.next < self.splits[b].next) {
                best = Some(i);
            }
        }
        best
    }
}

impl Source<Timed> for NexmarkSource {
    fn poll(&mut self, out: &mut SourceOutput<Timed>, max: usize) -> Result<SourceStatus, Failure> {
        let now = self.epoch.now_ns();
        let Some(mut current) = self.lowest() else {
            if self.open_loop {
                if let Some(last) = self.last {
                    let lag = now.saturating_sub(self.due_ns(last));
                    self.stats.end_lag_ns.fetch_max(lag, Ordering::Relaxed);
                }
            }
            return Ok(SourceStatus::Done);
        };
        let due_until = if self.open_loop {
            let due = self.due_ns(self.splits[current].next);
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
        let single = self.splits.len() == 1;
        while (emitted as usize) < max {
            let split = &mut self.splits[current];
            let position = split.next;
            if position >= self.end || position >= due_until {
                break;
            }
            split.next += split.of as u64;
            let due_ns = position.saturating_mul(self.config.inter_event_ns);
            out.give(Timed {
                due_ns,
                polled_ns: due_ns,
                event: self.config.event(position),
            });
            self.last = Some(position);
            emitted += 1;
            if !single {
                match self.lowest() {
                    Some(i) => current = i,
                    None => break,
                }
            }
        }
        self.stats.emitted.fetch_add(emitted, Ordering::Relaxed);
        if let Some(next) = self.lowest().map(|i| self.splits[i].next) {
            let watermark = self.config.watermark_ms(next) as Timestamp;
            if watermark > self.watermark {
                self.watermark = watermark;
                out.watermark(watermark)?;
            }
        }
        Ok(SourceStatus::Emitted)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(
            self.splits
                .iter()
                .map(|s| SplitPosition {
                    split: s.id,
                    of: s.of,
                    position: s.next,
                })
                .collect(),
        )
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        let mut restored = Vec::with_capacity(splits.len());
        for p in splits {
            if p.of == 0 || p.split >= p.of {
                return Err(Failure::new(format!(
                    "NEXMark split {} of {} is not a valid split",
                    p.split, p.of
                )));
            }
            // The first position of the split's stride at or after the recorded one (an
            // at-most-once lease need not lie on the stride).
            let (of, id) = (p.of as u64, p.split as u64);
            let next = p.position + (id + of - p.position % of) % of;
            restored.push(Split {
                id: p.split,
                of: p.of,
                next,
            });
        }
        restored.sort_by_key(|s| s.next);
        self.splits = restored;
        Ok(())
    }

    fn lease_ahead(&self) -> u64 {
        // 16,384 events per split: far more than one poll emits, little to lose.
        self.splits.iter().map(|s| s.of as u64).max().unwrap_or(1) << 14
    }
}
