//! How a keyed table is written to a checkpoint and read back: one trait, [`TableCodec`],
//! for the built-in operators' tables and the tables the runtime registers for a user's
//! operator ([`Registered`]).
//!
//! A table is written to a named section of its operator's state at a format version (a
//! restore refuses another version). An operator generic over its state holds its codec
//! as a trait object ([`Codec`]), so that only the code that builds the operator carries
//! the serialization bounds: [`table_codec`] writes the values as they are, and
//! [`record_codec`] as records of another type ([`KeyRecord`]), for state that is not
//! itself serializable.

use std::cell::RefCell;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use super::table::{KeyedState, SharedKeyedState};
use crate::checkpoint::{StateReader, StateWriter};
use crate::data::StateData;
use crate::error::OpResult;

/// Writes and reads a keyed table of `V` per key `K` in one section of its operator's
/// state.
pub trait TableCodec<K, V> {
    /// Writes the table copy-on-write (see [`KeyedState::snapshot_shared`]).
    fn write(&self, table: &SharedKeyedState<K, V>, state: &mut StateWriter) -> OpResult;
    /// Restores what [`TableCodec::write`] wrote (the key groups this shard owns).
    fn read(&self, table: &mut KeyedState<K, V>, state: &StateReader) -> OpResult;
}

/// A table's codec, shared by its operator's instances on every shard.
pub type Codec<K, V> = Arc<dyn TableCodec<K, V> + Send + Sync>;

/// A value written to checkpoints as a record of another type, for state that is not
/// itself serializable (e.g. a window's trigger state, kept as plain fields).
pub trait KeyRecord: Sized {
    /// What a checkpoint holds.
    type Record;
    /// The value's record.
    fn record(&self) -> Self::Record;
    /// The value a record restores.
    fn from_record(record: Self::Record) -> Self;
}

/// The values as they are, in section `name` at `version`.
struct Values {
    name: &'static str,
    version: u32,
}

/// The values as [`KeyRecord`]s, in section `name` at `version`.
struct Records<V> {
    name: &'static str,
    version: u32,
    value: PhantomData<fn(V) -> V>,
}

/// A codec writing the values as they are, in section `name` at format `version`.
pub fn table_codec<K, V>(name: &'static str, version: u32) -> Codec<K, V>
where
    K: StateData + Hash + Eq,
    V: StateData,
{
    Arc::new(Values { name, version })
}

/// A codec writing each value's [`KeyRecord`], in section `name` at format `version`.
pub fn record_codec<K, V>(name: &'static str, version: u32) -> Codec<K, V>
where
    K: StateData + Hash + Eq,
    V: KeyRecord + 'static,
    V::Record: StateData,
{
    Arc::new(Records {
        name,
        version,
        value: PhantomData,
    })
}

impl<K, V> TableCodec<K, V> for Values
where
    K: StateData + Hash + Eq,
    V: StateData,
{
    fn write(&self, table: &SharedKeyedState<K, V>, state: &mut StateWriter) -> OpResult {
        KeyedState::snapshot_shared(table, state.section(self.name, self.version))
    }
    fn read(&self, table: &mut KeyedState<K, V>, state: &StateReader) -> OpResult {
        table.restore(&state.section(self.name, self.version)?)
    }
}

impl<K, V> TableCodec<K, V> for Records<V>
where
    K: StateData + Hash + Eq,
    V: KeyRecord + 'static,
    V::Record: StateData,
{
    fn write(&self, table: &SharedKeyedState<K, V>, state: &mut StateWriter) -> OpResult {
        let section = state.section(self.name, self.version);
        KeyedState::snapshot_shared_as(table, section, |_, v: &V| v.record())
    }
    fn read(&self, table: &mut KeyedState<K, V>, state: &StateReader) -> OpResult {
        let section = state.section(self.name, self.version)?;
        table.restore_as(&section, |_, r| V::from_record(r))
    }
}

/// A table the runtime checkpoints and restores for the operator that registered it (see
/// `registry.rs`).
pub(crate) trait Registered {
    /// Writes the table copy-on-write (see [`KeyedState::snapshot_shared`]).
    fn snapshot(self: Rc<Self>, state: &mut StateWriter) -> OpResult;
    fn restore(&self, state: &StateReader) -> OpResult;
}

impl<K: StateData + Hash + Eq, V: StateData> Registered for RefCell<KeyedState<K, V>> {
    fn snapshot(self: Rc<Self>, state: &mut StateWriter) -> OpResult {
        KeyedState::snapshot_shared(&self, state)
    }
    fn restore(&self, state: &StateReader) -> OpResult {
        self.borrow_mut().restore(state)
    }
}
