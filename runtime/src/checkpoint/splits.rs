//! Where replayable sources are: the positions of their splits, written at every barrier
//! (and, at-most-once, leased ahead).

/// The position of one split of a replayable source: `position` is the source's own unit
/// (an event number, a byte offset) of the next record the split will emit.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct SplitPosition {
    /// The split's id, unique in the source (split `s` is restored onto shard `s % M`).
    pub split: u32,
    /// How many splits the source had when it started (e.g. the shard count of the first
    /// run, for a generator that strides over shards).
    pub of: u32,
    /// The next position the split emits.
    pub position: u64,
}

/// The named state a source's split positions are written in (and leases).
pub(crate) const SPLITS: &str = "splits";

/// How far ahead of its position an at-most-once source leases (in the source's units):
/// after a crash it resumes there, skipping at most this much input per split.
pub const AT_MOST_ONCE_LEASE: u64 = 1 << 22;
