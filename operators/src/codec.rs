//! How stateful operators write their keyed records into checkpoints and read them back
//! (to be replaced by the runtime's keyed state backend).

/// Writes and reads an operator's keyed records (`(key hash, record)`), behind a trait
/// object so that only the operators' constructors carry the serialization bounds.
pub(crate) trait RecordCodec<R> {
    fn write(
        &self,
        records: Vec<(u64, R)>,
        state: &mut rill_runtime::checkpoint::StateWriter,
    ) -> rill_runtime::OpResult;
    fn read(
        &self,
        state: &rill_runtime::checkpoint::StateReader,
    ) -> Result<Vec<R>, rill_runtime::Failure>;
}

/// Keyed records in the operator's named state `.0` (format version 1).
pub(crate) struct RkyvRecords(pub &'static str);

impl<R> RecordCodec<R> for RkyvRecords
where
    (u32, R): rill_runtime::ExchangeData,
{
    fn write(
        &self,
        records: Vec<(u64, R)>,
        state: &mut rill_runtime::checkpoint::StateWriter,
    ) -> rill_runtime::OpResult {
        state.section(self.0, 1).put_keyed_all(records)
    }
    fn read(
        &self,
        state: &rill_runtime::checkpoint::StateReader,
    ) -> Result<Vec<R>, rill_runtime::Failure> {
        state.section(self.0, 1)?.keyed_values()
    }
}

pub(crate) type Codec<R> = std::sync::Arc<dyn RecordCodec<R> + Send + Sync>;
