//! SIGINT and SIGTERM for a running job: the first stops it (with a savepoint when it
//! takes checkpoints, so that the same command resumes it; otherwise a drain), a second
//! one cancels it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rill_runtime::JobController;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// Signal handling installed for one job; [`SignalStop::finish`] removes it.
#[derive(Debug)]
pub struct SignalStop {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    received: Arc<AtomicU32>,
}

impl SignalStop {
    /// From now until [`SignalStop::finish`], SIGINT and SIGTERM go to `job`: the first
    /// stops it with a savepoint (`savepoint`) or drains it, the next cancels it.
    pub fn install(job: JobController, savepoint: bool) -> std::io::Result<SignalStop> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let received = Arc::new(AtomicU32::new(0));
        let count = received.clone();
        let thread = std::thread::Builder::new()
            .name("rill-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    match count.fetch_add(1, Ordering::SeqCst) {
                        0 if savepoint => match job.stop_with_savepoint() {
                            Ok(()) => eprintln!(
                                "rill-bench: {name}: stopping with a savepoint (run the same \
                                 command to resume; a second signal cancels)"
                            ),
                            Err(e) => {
                                eprintln!("rill-bench: {name}: {e}; draining instead");
                                job.stop();
                            }
                        },
                        0 => {
                            eprintln!(
                                "rill-bench: {name}: stopping (sources end, what is in flight \
                                 is processed; a second signal cancels)"
                            );
                            job.stop();
                        }
                        _ => {
                            eprintln!("rill-bench: {name}: cancelling");
                            job.cancel();
                        }
                    }
                }
            })?;
        Ok(SignalStop {
            handle,
            thread: Some(thread),
            received,
        })
    }

    /// Restores the signals' default handling; returns whether one was received.
    pub fn finish(mut self) -> bool {
        self.close();
        self.received.load(Ordering::SeqCst) > 0
    }

    fn close(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SignalStop {
    fn drop(&mut self) {
        self.close();
    }
}
