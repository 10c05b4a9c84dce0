//! How long checkpoint work held a shard: the measure (wall-clock and thread CPU time) and
//! the longest piece, which a shard records and the coordinator reports. Below both
//! `local` and `coordinator`, which read it.

use std::time::{Duration, Instant};

/// How long a piece of checkpoint work held the shard: wall-clock time, and the part of
/// it the shard's thread ran (the rest it was descheduled, e.g. for the coordinator's
/// writer or another process on a core it shares).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Work {
    pub wall: Duration,
    pub cpu: Duration,
}

/// Measures a piece of work on the current thread.
pub(crate) struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Stopwatch {
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }

    /// Wall-clock time since the start (one clock read, no CPU-time call).
    pub(crate) fn wall_elapsed(&self) -> Duration {
        self.wall.elapsed()
    }

    pub(crate) fn elapsed(&self) -> Work {
        Work {
            wall: self.wall.elapsed(),
            cpu: thread_cpu_time().saturating_sub(self.cpu),
        }
    }
}

/// CPU time the calling thread has run.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the duration of the call;
    // CLOCK_THREAD_CPUTIME_ID needs no other argument.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Which piece of checkpoint work a stall was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Piece {
    /// None yet.
    #[default]
    Nothing,
    /// An operator's (or source's) snapshot at the barrier.
    Barrier(usize),
    /// One slice archiving an operator's changelog after the barrier.
    Archive(usize),
}

/// The longest piece of checkpoint work on a shard, and what it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stall {
    pub work: Work,
    pub piece: Piece,
}
