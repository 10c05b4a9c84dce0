//! A locked-memory limit below glommio's need is reported up front with what to do.
//! (Its own test binary: it lowers this process's RLIMIT_MEMLOCK.)

use rill_runtime::{Config, Error, Runtime};

#[test]
fn too_low_memlock_is_a_clear_error() {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed, alive for the call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old), 0);
        let low = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_MEMLOCK, &low), 0);
    }
    let result = Runtime::new(Config::default().shards(1));
    // SAFETY: as above; restores the soft limit we lowered.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &old);
    }
    let err = result.expect_err("64 KiB is below glommio's 512 KiB");
    assert!(
        matches!(err, Error::MemLockTooLow { limit: 65536, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("ulimit -l"), "{message}");
}
