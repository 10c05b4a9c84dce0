//! Keyed state that takes part in checkpoints by itself, and incrementally.
//!
//! [`KeyedState`] is a hash table from a key to its state that remembers which keys
//! changed since the last checkpoint. At a barrier it writes, as changelog records of its
//! section, those keys' new values and the keys removed (tombstones), plus a whole copy of
//! one part of its key groups, in turn (see
//! [`Checkpointing::chain_length`](crate::checkpoint::Checkpointing::chain_length)); the
//! first checkpoint of a run, and every full one, writes the whole table. Recovery applies the records of a
//! checkpoint's chain oldest first, keeping the key groups the shard owns (so state
//! rescales as other keyed state does). The built-in stateful operators keep their per-key
//! state in such tables.
//!
//! A user's operator gets tables from its [`ShardContext`](crate::ShardContext) that the
//! runtime checkpoints and restores with no code of the operator's own:
//! [`ValueState`] (a value per key), [`MapState`] (a map per key), [`ListState`] (a list
//! per key) and [`Timers`] (event- or processing-time timers per key), Flink's
//! `ValueState`, `MapState`, `ListState` and timer service.
//!
//! A table shared with the runtime ([`SharedKeyedState`], as the tables of the handles
//! above are) is checkpointed copy-on-write ([`KeyedState::snapshot_shared`]): the barrier
//! only swaps out the list of changed keys and lists the keys of the part copied whole;
//! the records are collected in slices between batches, after the barrier, and a write to
//! a key still to collect saves the key's record first (see `copy_on_write.rs`).
//!
//! The cost on the record path: one flag test per write (two while a checkpoint is being
//! collected: is the key still to collect?), and the first write to a key after a
//! checkpoint clones the key into the list of changed keys. Without checkpoints nothing is
//! tracked.

mod clock;
mod copy_on_write;
#[cfg(test)]
mod copy_on_write_tests;
mod handles;
mod registry;
mod table;
#[cfg(test)]
mod tests;
mod timers;

pub use clock::{OperatorClock, TimeDomain};
pub use handles::{ListState, MapState, ValueState};
pub(crate) use registry::{Registered, Registry};
pub use table::{KeyedState, SharedKeyedState, Update};
pub use timers::Timers;
