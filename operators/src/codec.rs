//! How stateful operators write their keyed state tables into checkpoints and read them
//! back.

/// Writes and reads an operator's [`KeyedState`](rill_runtime::state::KeyedState) table,
/// behind a trait object so that only the operators' constructors carry the
/// serialization bounds.
pub(crate) trait TableCodec<K, V> {
    /// Writes the table copy-on-write (see `KeyedState::snapshot_shared`).
    fn write(
        &self,
        table: &rill_runtime::state::SharedKeyedState<K, V>,
        state: &mut rill_runtime::checkpoint::StateWriter,
    ) -> rill_runtime::OpResult;
    fn read(
        &self,
        table: &mut rill_runtime::state::KeyedState<K, V>,
        state: &rill_runtime::checkpoint::StateReader,
    ) -> rill_runtime::OpResult;
}

/// A table in the operator's named state `.0` at format version `.1` (incremental: see
/// `rill_runtime::state`).
pub(crate) struct RkyvTable(pub &'static str, pub u32);

impl<K, V> TableCodec<K, V> for RkyvTable
where
    K: rill_runtime::StateData + std::hash::Hash + Eq,
    V: rill_runtime::StateData,
{
    fn write(
        &self,
        table: &rill_runtime::state::SharedKeyedState<K, V>,
        state: &mut rill_runtime::checkpoint::StateWriter,
    ) -> rill_runtime::OpResult {
        rill_runtime::state::KeyedState::snapshot_shared(table, state.section(self.0, self.1))
    }
    fn read(
        &self,
        table: &mut rill_runtime::state::KeyedState<K, V>,
        state: &rill_runtime::checkpoint::StateReader,
    ) -> rill_runtime::OpResult {
        table.restore(&state.section(self.0, self.1)?)
    }
}

pub(crate) type Tables<K, V> = std::sync::Arc<dyn TableCodec<K, V> + Send + Sync>;
