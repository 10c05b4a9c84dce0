//! The one place rill uses glommio: each shard is a glommio `LocalExecutor` on its own
//! thread, pinned to its core.
//!
//! What glommio provides here: the pinned, single-threaded executor (placement on a CPU,
//! io_uring rings set up with the locked memory they need) and cooperative yielding, so
//! that a shard's loop lets other tasks of its executor run. What rill does *not* use from
//! it: its channels (shards exchange batches over rtrb rings polled in the shard's loop,
//! with a wake-up only for a parked shard, see `crate::park`), its timers and its file I/O
//! (checkpoint files are written by the coordinator thread; see `crate::job_checkpoints` for
//! why). `crate::preflight` checks io_uring and `RLIMIT_MEMLOCK` before any executor starts.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

use crate::error::{Error, Result};

/// Where and how a shard's executor runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecutorSettings {
    /// The CPU to pin to (`None`: unpinned).
    pub cpu: Option<usize>,
    /// io_uring buffer memory, in bytes.
    pub io_memory: usize,
}

/// Starts shard `index`'s thread: creates its executor there and runs `body` on it to
/// completion. If the executor cannot be created, sets `abort` so the other shards stop.
pub(crate) fn spawn<T, F, Fut>(
    index: usize,
    settings: ExecutorSettings,
    abort: Arc<AtomicBool>,
    body: F,
) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>> + 'static,
{
    std::thread::Builder::new()
        .name(format!("rill-shard-{index}"))
        .spawn(move || {
            let executor = match make_executor(index, settings) {
                Ok(e) => e,
                Err(e) => {
                    abort.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            };
            // A panic outside the shard's loop (which catches its own) still stops the
            // other shards and the coordinator; the panic then reaches `join`.
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.run(body())));
            run.unwrap_or_else(|panic| {
                abort.store(true, Ordering::SeqCst);
                std::panic::resume_unwind(panic)
            })
        })
        .map_err(|source| Error::ThreadSpawn {
            shard: index,
            source,
        })
}

/// Lets the executor's other tasks run if the shard's loop has had the thread long enough.
pub(crate) async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// Creates the shard's executor on the calling thread, retrying for a while: locked memory
/// of executors that just stopped is released asynchronously by the kernel.
fn make_executor(shard: usize, settings: ExecutorSettings) -> Result<LocalExecutor> {
    let placement = match settings.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut backoff = Duration::from_millis(5);
    loop {
        let attempt = LocalExecutorBuilder::new(placement.clone())
            .name("rill-shard")
            .io_memory(settings.io_memory)
            .ring_depth(64)
            .make();
        match attempt {
            Ok(e) => return Ok(e),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::ExecutorStart {
                    shard,
                    message: e.to_string(),
                })
            }
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
    }
}
