//! Runtime configuration: shard count, pinning, batching and credits.

use std::time::Duration;

use crate::checkpoint::Checkpointing;
use crate::clock::{Clock, EventTimeNow};
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// How a runtime runs its jobs. Built with chained setters; checked by [`Config::validate`]
/// when a [`Runtime`](crate::Runtime) is created.
///
/// ```
/// use std::time::Duration;
/// let config = rill_runtime::Config::default()
///     .shards(2)
///     .pin(false)
///     .flush_delay(Duration::from_micros(50));
/// assert_eq!(config.shard_count(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) shards: Option<usize>,
    pub(crate) pin: bool,
    pub(crate) batch_bytes: usize,
    pub(crate) batch_records: usize,
    pub(crate) credits: usize,
    pub(crate) flush_delay: Duration,
    pub(crate) spin_before_park: Duration,
    pub(crate) io_memory: usize,
    pub(crate) clock: Clock,
    pub(crate) checkpointing: Option<Checkpointing>,
    pub(crate) profile: bool,
    pub(crate) event_time_now: EventTimeNow,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: None,
            pin: true,
            batch_bytes: 32 * 1024,
            batch_records: 1024,
            credits: 4,
            flush_delay: Duration::from_micros(100),
            spin_before_park: Duration::ZERO,
            io_memory: 256 * 1024,
            clock: Clock::System,
            checkpointing: None,
            profile: true,
            event_time_now: EventTimeNow::default(),
        }
    }
}

impl Config {
    /// Takes checkpoints as `checkpointing` says, and restores from the latest complete
    /// one in its directory when the job starts (see [`crate::checkpoint`]).
    pub fn checkpointing(mut self, checkpointing: Checkpointing) -> Self {
        self.checkpointing = Some(checkpointing);
        self
    }

    /// The checkpoint settings, if any.
    pub fn checkpoint_settings(&self) -> Option<&Checkpointing> {
        self.checkpointing.as_ref()
    }

    /// Where processing time comes from (default [`Clock::System`]); see
    /// [`clock`](crate::clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Measures where the time goes (default on): each operator instance's time busy in its
    /// callbacks, and each shard's time busy, idle, backpressured and on checkpoint work
    /// (`docs/metrics.md`). It reads the clock twice per batch an operator handles and once
    /// per turn of a shard's loop; NEXMark q0, the cheapest query per record, ran within
    /// the noise of the same binary with it off (`docs/results.md`). Off, those times read
    /// zero; records, drops and watermarks are counted either way.
    pub fn profile(mut self, on: bool) -> Self {
        self.profile = on;
        self
    }

    /// Whether where the time goes is measured ([`Config::profile`]).
    pub fn profiled(&self) -> bool {
        self.profile
    }

    /// Where an operator's watermark lag is measured from: `now` returns the event time
    /// (ms) that is due at the moment it is called. The lag is `now() - watermark`.
    /// Default: the wall clock, in ms since the Unix epoch, which is right when event time
    /// is wall-clock time (records stamped as they happen, Kafka timestamps). A job whose
    /// event times follow a schedule of their own (a replay of last year's log, a
    /// generator) gives that schedule here, so that the lag says how far behind it each
    /// operator is; see `docs/metrics.md`, "Watermark lag".
    pub fn event_time_now(mut self, now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.event_time_now = EventTimeNow(std::sync::Arc::new(now));
        self
    }

    /// Number of shards; default: every core this process may run on.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Pin each shard to its own core (default true). Without pinning, more shards than
    /// cores are allowed (useful in tests).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Target size of a batch on an exchange channel (default 32 KiB): after each batch, the
    /// records per batch are set so that the next one serializes to about this many bytes
    /// (at most `batch_records`).
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// Records per batch handed from one chained operator to the next, per source poll, and
    /// at most per exchange batch (default 1024).
    pub fn batch_records(mut self, records: usize) -> Self {
        self.batch_records = records;
        self
    }

    /// Batches a producer may have in flight on one channel before it must wait for the
    /// consumer to hand one back (default 4).
    pub fn credits(mut self, credits: usize) -> Self {
        self.credits = credits;
        self
    }

    /// A partly filled batch is sent at the latest this long after its first record
    /// (default 100 µs); a shard with nothing else to do sends it at once.
    pub fn flush_delay(mut self, delay: Duration) -> Self {
        self.flush_delay = delay;
        self
    }

    /// How long an idle shard keeps polling before it parks its thread (default 0: it
    /// parks as soon as a turn of its loop finds nothing to do, and whoever hands it work
    /// wakes it). A busy shard never parks, so this costs no throughput (NEXMark q0 and q5
    /// unthrottled on 2 shards: within 0.3 % of a 50 µs spin); it decides what an idle
    /// shard costs the rest of the machine. A spinning shard yields its core to any
    /// runnable thread between polls, but on a machine without spare cores a spin still
    /// starves the host program's own threads: with a 50 µs spin, round trips through an
    /// embedded job had a median 10-20 times longer (`docs/embedding.md`). Set a spin on
    /// machines whose cores are dedicated to the shards.
    pub fn spin_before_park(mut self, spin: Duration) -> Self {
        self.spin_before_park = spin;
        self
    }

    /// Memory each shard's glommio executor registers with io_uring (default 256 KiB;
    /// counts against RLIMIT_MEMLOCK).
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.io_memory = bytes;
        self
    }

    /// The shard count this configuration runs with.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(available_cores)
    }

    /// Whether shards are pinned to cores.
    pub fn pinned(&self) -> bool {
        self.pin
    }

    /// Checks every value; the runtime calls this before starting.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(Error::Config {
                    field,
                    problem: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("shards", self.shard_count())?;
        positive("batch_bytes", self.batch_bytes)?;
        positive("batch_records", self.batch_records)?;
        positive("credits", self.credits)?;
        if self.batch_bytes > u32::MAX as usize / 2 {
            return Err(Error::Config {
                field: "batch_bytes",
                problem: format!("{} is larger than 2 GiB", self.batch_bytes),
            });
        }
        if let Some(c) = &self.checkpointing {
            if c.interval.is_some_and(|i| i.is_zero()) {
                return Err(Error::Config {
                    field: "checkpoint interval",
                    problem: "must be positive".into(),
                });
            }
            if c.retain == 0 {
                return Err(Error::Config {
                    field: "checkpoint retain",
                    problem: "must keep at least 1 checkpoint".into(),
                });
            }
        }
        if self.pin {
            let available = available_cores();
            if self.shard_count() > available {
                return Err(Error::TooManyShards {
                    requested: self.shard_count(),
                    available,
                });
            }
        }
        Ok(())
    }
}

/// The cores this process may run on (its affinity mask), at least 1.
pub fn available_cores() -> usize {
    core_affinity::get_core_ids()
        .map(|ids| ids.len())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The core ids shards are pinned to, in shard order.
pub(crate) fn core_ids() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .filter(|ids: &Vec<usize>| !ids.is_empty())
        .unwrap_or_else(|| (0..available_cores()).collect())
}
