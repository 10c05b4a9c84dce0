//! What a job's handle asks of the running job: stop (drain), cancel (now), or stop at a
//! savepoint. The handle sets these; the shards read them on every loop turn.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Requests from a job's handle to its shards.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct JobControl {
    /// Sources end (each drains what was already handed to it), the final watermark and
    /// the end of the stream flow through, sinks see their end: the job finishes.
    stop: AtomicBool,
    /// Every shard returns at its next loop turn; nothing more is processed.
    cancel: AtomicBool,
    /// Sources stop after injecting the barrier of this checkpoint (0: none), and the
    /// shards return once it completed and their sinks committed it.
    stop_at: AtomicU64,
    /// Asked to stop with a savepoint: the coordinator starts it as its next checkpoint.
    savepoint: AtomicBool,
}

impl JobControl {
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn request_cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub(crate) fn request_savepoint(&self) {
        self.savepoint.store(true, Ordering::SeqCst);
    }

    pub(crate) fn savepoint_requested(&self) -> bool {
        self.savepoint.load(Ordering::SeqCst)
    }

    /// Sources stop after the barrier of checkpoint `id`.
    pub(crate) fn stop_at(&self, id: u64) {
        self.stop_at.store(id, Ordering::SeqCst);
    }

    /// The checkpoint after whose barrier sources stop (0: none).
    pub(crate) fn stopping_at(&self) -> u64 {
        self.stop_at.load(Ordering::Acquire)
    }
}
