//! Fault tolerance: checkpoint barriers, snapshots of operator state and source positions,
//! recovery, and the hooks two-phase-commit sinks need.
//!
//! **Barriers.** A coordinator thread asks every source for checkpoint `n` at a fixed
//! interval (or on demand, [`JobHandle::checkpoint_now`](crate::JobHandle::checkpoint_now)).
//! Each source records its position and sends [`Progress::Barrier(n)`](crate::Progress)
//! down its chain, in band with the data. An operator snapshots its state once the barrier
//! arrived on all of its inputs and then forwards it. With [`Guarantee::ExactlyOnce`] the
//! barriers are *aligned*: an input that delivered barrier `n` is held back (an exchange
//! stops reading that channel; a two-input operator or a union buffers it) until every
//! other input delivered it too, so the snapshot holds exactly the effect of the records
//! before the barrier (asynchronous barrier snapshots, as in Flink). With
//! [`Guarantee::AtLeastOnce`] inputs are not held back, so a snapshot may include records
//! after the barrier, which are replayed (and counted twice) after a recovery.
//! [`Guarantee::AtMostOnce`] takes no snapshots: sources record *leases* (positions a bit
//! ahead of what they emitted) and a restarted job resumes after them, with fresh state.
//!
//! **Files.** At the barrier each operator writes its state as rkyv archives (a
//! [`StateWriter`]); the shard hands its operators' entries to the coordinator thread
//! (`crate::job_checkpoints`), which frames and checksums them into
//! `DIR/chk-<n>/shard-<i>.bin` and writes that while the shard keeps processing. When every
//! shard's file is written the coordinator writes `DIR/chk-<n>/MANIFEST`: only then is
//! checkpoint `n` complete. Every one of these files is written with
//! [`crate::fs::write_atomic`] (temporary file, fsync, rename, fsync of the directory).
//!
//! **Incremental checkpoints.** Keyed state kept in [`KeyedState`](crate::state::KeyedState)
//! tables writes only its keys changed since the previous checkpoint, plus a whole copy of
//! one part of its key groups in turn ([`Checkpointing::chain_length`]); the manifest names
//! the oldest checkpoint its chain needs (`base`). Recovery reads the chain in order; a
//! damaged or missing link makes the checkpoint unusable and an older one is tried. The
//! run's first checkpoint, one every [`Checkpointing::full_every`] and one requested (a
//! savepoint) are *full*: they copy every key group and need no older checkpoint, and no
//! chain reaches past them. The last [`Checkpointing::retain`] complete checkpoints are
//! kept, with every checkpoint their chains need, and the *fallback*: the newest full
//! checkpoint older than the newest chain's base, which shares no file with that chain.
//!
//! This module is a shard's side of checkpoints (state written at barriers, the file
//! format, recovery's reading of it); starting checkpoints and completing them is
//! `crate::job_checkpoints`'s.
//!
//! **Rescaling.** Keyed state is written per key group ([`StateWriter::put_keyed`]); on a
//! restore onto `M` shards each shard takes the key groups it owns under `M`. Non-keyed
//! state and source positions are written per *split* ([`StateWriter::put_split`]), and
//! split `s` goes to shard `s % M`.
//!
//! **Recovery.** Starting a job with a checkpoint directory restores the latest complete
//! checkpoint. Every file of its chain is validated (checksum, then rkyv validation); a
//! corrupt or truncated checkpoint is reported in [`Recovery::skipped`] and the previous
//! complete one is used, down to the fallback: one damaged file never leaves nothing to
//! restore. The checkpoints skipped are moved to `DIR/damaged` (a restored run reuses
//! their ids). A job refuses to start only if no checkpoint is usable.
//!
//! ## Files
//!
//! `config.rs` (guarantees and settings), `splits.rs` (source positions), `scope.rs`
//! (which shards restore an entry), `writer.rs` and `reader.rs` (an operator's state at a
//! barrier and at a restore), `assign.rs` (which entries a shard restores), `leases.rs`
//! (at-most-once), `hooks.rs` (job-level hooks), `local.rs` (a shard's part),
//! `coordinator.rs` (what the shards and the coordinator share), `store.rs` (the files and
//! their validation).

mod assign;
mod config;
mod coordinator;
mod hooks;
mod leases;
mod local;
mod reader;
mod scope;
mod splits;
mod stall;
mod store;
#[cfg(test)]
mod tests;
mod writer;

pub(crate) use assign::assign;
pub use config::{CheckpointContext, Checkpointing, Guarantee, UnknownGuarantee};
pub use coordinator::{CheckpointRecord, CheckpointStats};
pub(crate) use coordinator::{Coordinator, WriteBuffers};
pub use hooks::{HookError, JobHook};
pub(crate) use leases::{merge_leases, write_lease};
pub(crate) use local::ShardCheckpoint;
pub(crate) use reader::RestoredEntry;
pub use reader::StateReader;
pub(crate) use splits::SPLITS;
pub use splits::{SplitPosition, AT_MOST_ONCE_LEASE};
pub(crate) use stall::Stopwatch;
pub(crate) use store::{
    archived, load_leases as store_leases, prune, remove_after, set_aside, Manifest, FORMAT_VERSION,
};
pub use store::{find_latest, Recovery};
#[cfg(test)]
pub(crate) use store::{ShardFile, StateEntry};
pub use writer::StateWriter;
pub(crate) use writer::{archive_chunk, Archiving, Deferred, Scratch};
