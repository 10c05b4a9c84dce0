//! The atomics and thread parking the lock-free parts of the runtime use, routed through
//! loom when built with `--cfg loom` so that the wake-up handshake can be model-checked
//! (`RUSTFLAGS="--cfg loom" cargo test -p rill-runtime --lib loom`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::thread::{current, Thread};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::thread::{current, Thread};

/// Parks the calling thread; a timeout bounds the wait outside loom (loom has none, so a
/// lost wake-up shows up there as a deadlock).
#[inline]
pub(crate) fn park(timeout: std::time::Duration) {
    #[cfg(loom)]
    {
        let _ = timeout;
        loom::thread::park();
    }
    #[cfg(not(loom))]
    std::thread::park_timeout(timeout);
}
