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
//! a key still to collect saves the key's record first (see `table/copy_on_write.rs`).
//!
//! The built-in stateful operators (windows, joins, process functions, rolling
//! aggregates) take three mechanisms from here, one of each: their clock
//! ([`OperatorClock`]: the input watermark and processing time, restored per shard), their
//! timers ([`TimerQueue`]: timers by time, set again from the state on a restore) and the
//! way a table is written to checkpoints ([`TableCodec`], held as a [`Codec`] so that only
//! an operator's constructor carries the serialization bounds).
//!
//! ## Modules
//!
//! The submodules form layers, lowest first (kept by `runtime/tests/layers.rs`, which
//! refuses an import through this module's re-exports):
//!
//! 0. `clock`, `timer_queue`, `table` — an operator's clock; timers by time; keyed tables
//!    and their copy-on-write checkpoints (`table/copy_on_write.rs`).
//! 1. `codec`, `handles` — how a table is written to checkpoints; a user's state handles.
//! 2. `timers` — a user's timers per key.
//! 3. `registry`, `tests` — the tables the runtime registers for an operator.
//!
//! The cost on the record path: one flag test per write (two while a checkpoint is being
//! collected: is the key still to collect?), and the first write to a key after a
//! checkpoint clones the key into the list of changed keys. Without checkpoints nothing is
//! tracked.

mod clock;
mod codec;
mod handles;
mod registry;
mod table;
#[cfg(test)]
mod tests;
mod timer_queue;
mod timers;

pub use clock::{OperatorClock, TimeDomain};
pub(crate) use codec::Registered;
pub use codec::{record_codec, table_codec, Codec, KeyRecord, TableCodec};
pub use handles::{ListState, MapState, ValueState};
pub(crate) use registry::Registry;
pub use table::{Changes, KeyedState, SharedKeyedState, Update};
pub use timer_queue::TimerQueue;
pub use timers::Timers;
