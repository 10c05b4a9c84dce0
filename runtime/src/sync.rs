//! The atomics and thread parking the lock-free parts of the runtime use, routed through
//! loom when built with `--cfg rill_loom` so that the wake-up handshake can be model-checked
//! (`RUSTFLAGS="--cfg rill_loom" cargo test -p rill-runtime --lib loom`).

#[cfg(rill_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(rill_loom)]
pub(crate) use loom::thread::{current, Thread};

#[cfg(not(rill_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(not(rill_loom))]
pub(crate) use std::thread::{current, Thread};

/// Parks the calling thread; a timeout bounds the wait outside loom (loom has none, so a
/// lost wake-up shows up there as a deadlock).
#[inline]
pub(crate) fn park(timeout: std::time::Duration) {
    #[cfg(rill_loom)]
    {
        let _ = timeout;
        loom::thread::park();
    }
    #[cfg(not(rill_loom))]
    std::thread::park_timeout(timeout);
}
