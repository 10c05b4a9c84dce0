//! The runtime's error type: configuration problems found before a job starts, and
//! failures of a running job, each naming what the caller needs to act on.

use std::path::PathBuf;
use std::sync::Arc;

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
    /// A shard's thread could not be spawned.
    #[error("shard {shard}: could not spawn its thread: {source}")]
    ThreadSpawn {
        /// The shard.
        shard: usize,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The metrics endpoint could not be started.
    #[error("metrics endpoint: could not {what}: {source}")]
    MetricsEndpoint {
        /// What failed (bind the address, start the thread).
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The dataflow description is not valid.
    #[error("invalid dataflow: {problem}")]
    Graph {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A savepoint was asked of a job that runs without checkpointing.
    #[error(
        "cannot stop with a savepoint: the job runs without checkpointing (Config::checkpointing)"
    )]
    NoCheckpointing,
    /// An operator was built with a configuration it cannot run with.
    #[error("invalid dataflow: operator '{operator}': {problem}")]
    InvalidOperator {
        /// The operator's name.
        operator: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A user function returned an error.
    #[error("operator '{operator}' failed on shard {shard}: {message}")]
    OperatorFailed {
        /// The operator's name.
        operator: String,
        /// The shard it ran on.
        shard: usize,
        /// The error it returned.
        message: String,
        /// What caused it, if the failure carried a cause.
        #[source]
        cause: Option<Cause>,
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
    /// A checkpoint file or directory could not be read or written.
    #[error("checkpoint: could not {action} {}: {source}", path.display())]
    CheckpointIo {
        /// What was being done (`create`, `write`, `read`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file is damaged where no older checkpoint can stand in for it (an
    /// at-most-once lease).
    #[error("checkpoint: {}: {problem}", path.display())]
    CheckpointCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Checkpoints exist but none can be used: starting over would repeat committed
    /// output.
    #[error(
        "checkpoint: no usable checkpoint in {}: {}. Starting over would repeat committed \
         output; delete the directory (and the job's output) to start from scratch",
        dir.display(),
        skipped_reasons(skipped)
    )]
    NoUsableCheckpoint {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Each checkpoint skipped and why.
        skipped: Vec<(PathBuf, String)>,
    },
    /// The checkpoint to restore holds state of operators this job does not have (they
    /// were removed or renamed; give renamed ones their old id with `Stream::uid`).
    #[error(
        "checkpoint: checkpoint {checkpoint} in {} holds state of operators this job does not \
         have: {}. Give a renamed operator its old id with .uid(\"...\"), or allow dropping \
         the state (Checkpointing::allow_non_restored_state)",
        dir.display(),
        operators.join(", ")
    )]
    UnmatchedState {
        /// The checkpoint.
        checkpoint: u64,
        /// The checkpoint directory.
        dir: PathBuf,
        /// The operator ids with state and no operator.
        operators: Vec<String>,
    },
    /// The newest checkpoint was written in a format this build does not read.
    #[error(
        "checkpoint: {} is in checkpoint format version {found}, this build reads version \
         {supported}; restore it with the build that wrote it, or delete the directory (and \
         the job's output) to start over",
        dir.display()
    )]
    CheckpointFormat {
        /// The checkpoint's directory.
        dir: PathBuf,
        /// Its format version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The checkpoint coordinator's thread could not be started.
    #[error("checkpoint: cannot start its thread: {source}")]
    CoordinatorStart {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A job hook (a two-phase-commit sink resolving its transactions) failed.
    #[error("checkpoint: {stage} hook failed: {source}")]
    JobHook {
        /// `before_start` or `after_finish`.
        stage: &'static str,
        /// The hook's error.
        #[source]
        source: Cause,
    },
    /// A fallible factory ([`Stream::try_unary`](crate::Stream::try_unary), ...) could not
    /// build its operator, sink or source on a shard.
    #[error("operator '{operator}' could not be built on shard {shard}: {message}")]
    OperatorBuild {
        /// The operator's name.
        operator: String,
        /// The shard.
        shard: usize,
        /// The error the factory returned.
        message: String,
        /// What caused it, if the failure carried a cause.
        #[source]
        cause: Option<Cause>,
    },
    /// Restoring an operator or source from a checkpoint failed.
    #[error("restore failed: operator '{operator}' on shard {shard}: {message}")]
    Restore {
        /// The operator's name.
        operator: String,
        /// The shard.
        shard: usize,
        /// What went wrong.
        message: String,
        /// What caused it, if known.
        #[source]
        cause: Option<Cause>,
    },
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

/// The cause of an error, shareable between threads.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

fn skipped_reasons(skipped: &[(PathBuf, String)]) -> String {
    let reasons: Vec<String> = skipped
        .iter()
        .map(|(d, r)| format!("{}: {r}", d.display()))
        .collect();
    reasons.join("; ")
}

/// A failure inside a running dataflow, before it is attributed to an operator and shard.
///
/// Operators return it from their callbacks; the runtime adds the operator's name and the
/// shard when it turns it into an [`Error`](enum@Error). It keeps its cause ([`Failure::caused_by`], or
/// the error it was converted from) as its [`source`](std::error::Error::source), and the
/// job's error keeps it too; the message reads whole on its own.
///
/// ```
/// use rill_runtime::Failure;
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
/// let f = Failure::caused_by("cannot open events.csv", io);
/// assert_eq!(f.to_string(), "cannot open events.csv: no such file");
/// assert_eq!(std::error::Error::source(&f).unwrap().to_string(), "no such file");
/// ```
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    cause: Option<Cause>,
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
            cause: None,
            operator: None,
            kind: FailureKind::User,
        }
    }

    /// A failure in `context` (what was being done) caused by `cause`: the message is
    /// `"{context}: {cause}"`, and `cause` is kept as the source.
    pub fn caused_by(
        context: impl std::fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let message = format!("{context}: {cause}");
        Failure {
            cause: Some(Arc::new(cause)),
            ..Failure::new(message)
        }
    }

    /// A failure that is `error`: its message is the error's, and the error its source.
    pub fn from_error(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        let message = error.to_string();
        Failure {
            cause: Some(Arc::new(error)),
            ..Failure::new(message)
        }
    }

    /// The cause, if any.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Failure {
            kind: FailureKind::Corrupt,
            ..Failure::new(message)
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for Failure {
    /// Failures are equal when they say the same thing (causes are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.kind == other.kind
    }
}

impl Eq for Failure {}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::new(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::new(message)
    }
}

/// `?` on the errors operators meet most.
macro_rules! failure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::from_error(e)
            }
        }
    )*};
}
failure_from!(
    std::io::Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::fmt::Error,
    rkyv::rancor::Error
);

/// The result of an operator callback.
pub type OpResult = std::result::Result<(), Failure>;

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// The message of a panic's payload (a `&str` or `String`; otherwise a placeholder).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
