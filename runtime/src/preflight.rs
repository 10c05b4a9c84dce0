//! Checks made before any glommio executor starts, so that a machine that cannot run rill
//! gets an actionable message instead of glommio's panic ("kernel too old") or its bare
//! `MemLockLimit` error.

use crate::config::Config;
use crate::error::{Error, Result};

/// glommio refuses to start below this RLIMIT_MEMLOCK (its `MIN_MEMLOCK_LIMIT`).
const GLOMMIO_MIN_MEMLOCK: u64 = 512 * 1024;

/// Runs every check for `config`: io_uring can be set up, and the locked-memory limit
/// covers the shards.
pub fn check(config: &Config) -> Result<()> {
    check_memlock(config)?;
    check_io_uring()
}

/// The locked memory a configuration needs: glommio's floor, and per shard its registered
/// io memory (at least 64 KiB, glommio rounds up) plus three small rings.
pub fn required_memlock(config: &Config) -> u64 {
    let per_shard = config.io_memory.max(64 * 1024) as u64 + 3 * 16 * 1024;
    GLOMMIO_MIN_MEMLOCK.max(per_shard * config.shard_count() as u64)
}

fn check_memlock(config: &Config) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return Ok(());
    }
    let required = required_memlock(config);
    if limit.rlim_cur < required {
        return Err(Error::MemLockTooLow {
            limit: limit.rlim_cur,
            required,
            shards: config.shard_count(),
        });
    }
    Ok(())
}

/// Size of the kernel's `struct io_uring_params`.
const IO_URING_PARAMS_WORDS: usize = 30;

fn check_io_uring() -> Result<()> {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if v.trim() == "2" {
            return Err(Error::IoUringUnavailable {
                reason: "the kernel has io_uring switched off (kernel.io_uring_disabled = 2)"
                    .into(),
            });
        }
    }
    let mut params = [0u32; IO_URING_PARAMS_WORDS];
    // SAFETY: io_uring_setup(entries, params) reads and writes at most
    // sizeof(struct io_uring_params) = 120 bytes at `params`, which is a live, writable,
    // 4-byte aligned 120-byte array. The returned descriptor is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let reason = match err.raw_os_error() {
            Some(libc::ENOSYS) => {
                "io_uring_setup is not implemented (kernel older than 5.1, or built without \
                 io_uring)"
                    .to_string()
            }
            Some(libc::EPERM) | Some(libc::EACCES) => format!(
                "io_uring_setup was refused ({err}): a seccomp filter or \
                 kernel.io_uring_disabled = 1 without the io_uring group blocks it"
            ),
            _ => format!("io_uring_setup failed: {err}"),
        };
        return Err(Error::IoUringUnavailable { reason });
    }
    // SAFETY: `fd` is a descriptor io_uring_setup just returned to us and nothing else owns.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}
