//! How a job takes checkpoints ([`Checkpointing`], [`Guarantee`]) and what its operators
//! learn about that while they are built ([`CheckpointContext`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The result guarantee a job runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guarantee {
    /// Aligned barriers and replayable sources: after a failure, every record affects the
    /// state exactly once.
    ExactlyOnce,
    /// Snapshots without barrier alignment: after a failure nothing is lost, but records
    /// may be counted twice.
    AtLeastOnce,
    /// No snapshots and no replay: after a failure the job resumes after the input it had
    /// already read, with empty state; records may be lost, never duplicated.
    AtMostOnce,
}

impl Guarantee {
    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::AtMostOnce => "at-most-once",
        }
    }

    /// True if barriers are aligned.
    pub fn aligned(self) -> bool {
        self == Guarantee::ExactlyOnce
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Guarantee {
    type Err = UnknownGuarantee;
    fn from_str(s: &str) -> Result<Self, UnknownGuarantee> {
        match s {
            "exactly-once" => Ok(Guarantee::ExactlyOnce),
            "at-least-once" => Ok(Guarantee::AtLeastOnce),
            "at-most-once" => Ok(Guarantee::AtMostOnce),
            _ => Err(UnknownGuarantee(s.to_string())),
        }
    }
}

/// A guarantee name that is none of `exactly-once`, `at-least-once`, `at-most-once`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown guarantee '{0}': use exactly-once, at-least-once or at-most-once")]
pub struct UnknownGuarantee(pub String);

/// How a job takes checkpoints. Give it to [`Config::checkpointing`](crate::Config::checkpointing).
#[derive(Debug, Clone)]
pub struct Checkpointing {
    pub(crate) dir: PathBuf,
    pub(crate) interval: Option<Duration>,
    pub(crate) guarantee: Guarantee,
    pub(crate) retain: usize,
    pub(crate) allow_non_restored_state: bool,
    pub(crate) chain: usize,
    /// Set by [`Checkpointing::full_every`]; `None`: twice the chain length.
    pub(crate) full_every: Option<usize>,
}

impl Checkpointing {
    /// Checkpoints in `dir` (created if missing), exactly-once, every second, keeping 3.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Checkpointing {
            dir: dir.into(),
            interval: Some(Duration::from_secs(1)),
            guarantee: Guarantee::ExactlyOnce,
            retain: 3,
            allow_non_restored_state: false,
            chain: 8,
            full_every: None,
        }
    }

    /// Incremental checkpoints, in chains of at most `n`: recovery reads the newest
    /// complete checkpoint and the `n - 1` before it (or back to the newest full one, if
    /// that is newer). The first checkpoint of a run is full; every later one but the full
    /// ones ([`Checkpointing::full_every`]) writes the keyed state changed since the
    /// previous checkpoint plus a whole copy of one `n`-th of the key groups, in turn, so
    /// that the last `n` checkpoints hold every key's newest state, and no increment writes
    /// everything at once. (This is keyed state kept in
    /// [`KeyedState`](crate::state::KeyedState) tables, which the built-in operators use;
    /// other state is written whole every time.) Retention keeps every checkpoint a
    /// retained one needs. `1` makes every checkpoint full. Default 8.
    pub fn chain_length(mut self, n: usize) -> Self {
        self.chain = n.max(1);
        self
    }

    /// A full (self-contained) checkpoint once `n` checkpoints were taken since the
    /// previous full one; `0`: only the run's first checkpoint is full. Default: twice the
    /// chain length ([`Checkpointing::chain_length`]), 16.
    ///
    /// A chain never reaches past a full checkpoint, and retention keeps the newest full
    /// checkpoint older than the newest chain's base as the *fallback*: it shares no file
    /// with the newest chain, so one damaged file never leaves nothing to restore. The
    /// cost, for keyed state of size `S` with chains of length `L` and a full checkpoint
    /// every `n`: each checkpoint writes its changes plus `S / L`, and every `n`-th writes
    /// `S` instead, so `S (1 + (n - 1) / L) / n` per checkpoint on average, about 1.44 times
    /// `S / L` with the defaults; the disk holds the fallback (`S`) besides the retained
    /// chains; and a restore from the fallback replays the input since it, up to
    /// `n + L - 1` checkpoint intervals.
    pub fn full_every(mut self, n: usize) -> Self {
        self.full_every = Some(n);
        self
    }

    /// After how many checkpoints a full one is taken (0: never but the run's first).
    pub(crate) fn fulls(&self) -> usize {
        self.full_every.unwrap_or(2 * self.chain)
    }

    /// Lets the job start from a checkpoint that holds state for an operator the job no
    /// longer has (that state is dropped; Flink's `allowNonRestoredState`). Off by default:
    /// then such a checkpoint is refused with [`Error::UnmatchedState`](crate::Error).
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    /// Time between the start of one checkpoint and the next (`None`: only on demand).
    pub fn interval(mut self, interval: Option<Duration>) -> Self {
        self.interval = interval;
        self
    }

    /// The result guarantee.
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// How many complete checkpoints to keep (at least 1; default 3), besides the
    /// checkpoints their chains need and the fallback ([`Checkpointing::full_every`]).
    pub fn retain(mut self, retain: usize) -> Self {
        self.retain = retain;
        self
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The guarantee.
    pub fn guarantee_of(&self) -> Guarantee {
        self.guarantee
    }
}

/// What a shard's operators can learn about checkpointing while they are built (from
/// [`ShardContext::checkpoint`](crate::ShardContext::checkpoint)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointContext {
    /// The guarantee the job runs with.
    pub guarantee: Guarantee,
    /// The first epoch this run writes: one past the checkpoint it restored (exactly- and
    /// at-least-once), or one past the previous run (at-most-once). Epoch `e` holds the
    /// output between barriers `e - 1` and `e`.
    pub first_epoch: u64,
}
