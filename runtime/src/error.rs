//! The runtime's error type: configuration problems found before a job starts, and
//! failures of a running job, each naming what the caller needs to act on.

use thiserror::Error;

/// Everything that can go wrong when starting or running a rill job.
#[derive(Debug, Error)]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid configuration: {field} {problem}")]
    Config {
        /// The setting at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// More pinned shards were requested than this process may run on.
    #[error(
        "{requested} pinned shards requested but only {available} cores are available to this \
         process; use at most {available} shards, or switch pinning off (Config::pin(false)) to \
         run more shards than cores"
    )]
    TooManyShards {
        /// Shards asked for.
        requested: usize,
        /// Cores this process may run on.
        available: usize,
    },
    /// io_uring cannot be used, so glommio cannot start.
    #[error(
        "io_uring is not available: {reason}. rill runs its shards on glommio, which needs \
         io_uring (Linux >= 5.8). Check `uname -r`, `sysctl kernel.io_uring_disabled` (must be 0), \
         and, in containers, that the seccomp profile allows io_uring_setup/io_uring_enter \
         (e.g. docker --security-opt seccomp=unconfined)"
    )]
    IoUringUnavailable {
        /// What the probe found.
        reason: String,
    },
    /// RLIMIT_MEMLOCK is below what glommio needs.
    #[error(
        "the locked-memory limit (RLIMIT_MEMLOCK) is {limit} bytes, but rill needs at least \
         {required} bytes for {shards} shard(s) (glommio registers io_uring memory). Raise it: \
         `ulimit -l unlimited` (or a value in KiB) in the shell, LimitMEMLOCK=infinity in a \
         systemd unit, or `docker run --ulimit memlock=-1`"
    )]
    MemLockTooLow {
        /// The current soft limit.
        limit: u64,
        /// What this configuration needs.
        required: u64,
        /// Shards configured.
        shards: usize,
    },
    /// A shard's executor could not be created.
    #[error("shard {shard}: could not start its glommio executor: {message}")]
    ExecutorStart {
        /// The shard.
        shard: usize,
        /// glommio's error.
        message: String,
    },
    /// The dataflow description is not valid.
    #[error("invalid dataflow: {0}")]
    Graph(String),
    /// A user function returned an error.
    #[error("operator '{operator}' failed on shard {shard}: {message}")]
    OperatorFailed {
        /// The operator's name.
        operator: String,
        /// The shard it ran on.
        shard: usize,
        /// The error it returned.
        message: String,
    },
    /// A user function panicked.
    #[error("operator '{operator}' panicked on shard {shard}: {message}")]
    OperatorPanicked {
        /// The operator's name.
        operator: String,
        /// The shard it ran on.
        shard: usize,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The shard stopped because another shard failed (the job reports that failure).
    #[error("shard {shard} stopped because another shard failed")]
    Aborted {
        /// The shard that stopped.
        shard: usize,
    },
    /// A checkpoint could not be restored or taken.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Restoring an operator or source from a checkpoint failed.
    #[error("restore failed: {0}")]
    Restore(String),
    /// A record could not be read back from an exchange buffer.
    #[error("shard {shard}: corrupt record in exchange '{exchange}': {message}")]
    CorruptBatch {
        /// The receiving shard.
        shard: usize,
        /// The exchange edge.
        exchange: String,
        /// The validation error.
        message: String,
    },
}

/// A failure inside a running dataflow, before it is attributed to an operator and shard.
///
/// Operators return it from their callbacks; the runtime adds the operator's name and the
/// shard when it turns it into an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// The operator it happened in, filled in by the runtime.
    pub(crate) operator: Option<usize>,
    pub(crate) kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    User,
    Corrupt,
}

impl Failure {
    /// A failure with a message, as a user function reports it.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            operator: None,
            kind: FailureKind::User,
        }
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            operator: None,
            kind: FailureKind::Corrupt,
        }
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::new(e.to_string())
    }
}

/// The result of an operator callback.
pub type OpResult = std::result::Result<(), Failure>;

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, Error>;
