//! Parking an idle shard, and waking it when another shard sends it work.
//!
//! A shard with work polls its rings in its loop: no syscall, no wake-up. A shard that ran
//! out of work parks its thread; whoever publishes to one of its rings (or the checkpoint
//! coordinator) unparks it. The handshake is Dekker-style: the shard announces that it
//! parks, fences, then looks for work once more; the waker publishes, fences, then checks
//! the announcement. The loom model below checks that no wake-up is lost
//! (`RUSTFLAGS="--cfg rill_loom" cargo test -p rill-runtime --lib park`).

use std::sync::OnceLock;
use std::time::Duration;

use crate::sync::{current, fence, park, AtomicBool, Ordering, Thread};

/// Parking state of one shard, shared with every shard that sends to it.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ShardWaker {
    /// True while the shard is parked or about to park.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

impl ShardWaker {
    /// Registers the calling thread as the shard's thread.
    pub(crate) fn register_current(&self) {
        let _ = self.thread.set(current());
    }

    /// Wakes the shard if it is parked. Call after publishing to one of its rings.
    #[inline]
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Parks the calling shard for at most `timeout`, unless `has_work` (checked after the
    /// shard announced it is parking) finds something to do.
    pub(crate) fn park(&self, timeout: Duration, has_work: impl FnOnce() -> bool) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !has_work() {
            park(timeout);
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

#[cfg(all(test, rill_loom))]
mod loom_tests {
    use super::ShardWaker;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;
    use std::time::Duration;

    /// A producer publishes work and wakes; the consumer checks for work after announcing
    /// that it parks. In every interleaving the consumer sees the work or gets unparked
    /// (a lost wake-up would leave it parked forever: loom reports that as a deadlock).
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let waker = Arc::new(ShardWaker::default());
            waker.register_current();
            let work = Arc::new(AtomicBool::new(false));
            let (w, p) = (waker.clone(), work.clone());
            let producer = loom::thread::spawn(move || {
                p.store(true, Ordering::Release);
                w.wake();
            });
            while !work.load(Ordering::Acquire) {
                waker.park(Duration::from_millis(1), || work.load(Ordering::Acquire));
            }
            producer.join().unwrap();
        });
    }
}
