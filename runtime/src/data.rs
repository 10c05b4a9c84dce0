//! What records must be to flow through a dataflow.
//!
//! Every record type is [`Data`] (cloneable, owned). Records that cross an exchange edge
//! must also be [`ExchangeData`]: rkyv-serializable, so that a batch of them can be written
//! once into an aligned buffer and read in place by the receiving shard. Derive rkyv's
//! `Archive`, `Serialize` and `Deserialize` on your record types and `ExchangeData` follows.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::Failure;
use crate::exchange::batch::BATCH_ALIGN;

/// A record type: owned and cloneable (a record sent to several consumers is cloned).
pub trait Data: Clone + 'static {}
impl<T: Clone + 'static> Data for T {}

/// The writer records are serialized into.
pub type BatchBytes = AlignedVec<BATCH_ALIGN>;

/// A record that can cross shards: serialized with rkyv into a batch buffer and validated
/// when read back. Implemented for every rkyv-serializable [`Data`] type.
pub trait ExchangeData: Data {
    /// Appends this record's archive to `bytes`, using `arena` for scratch space.
    fn write_archive(
        &self,
        bytes: BatchBytes,
        arena: ArenaHandle<'_>,
    ) -> Result<BatchBytes, rancor::Error>;
    /// Validates the archive of one record (its root at the end of `bytes`) and
    /// deserializes it.
    fn read_archive(bytes: &[u8]) -> Result<Self, rancor::Error>;
}

impl<T> ExchangeData for T
where
    T: Data
        + Archive
        + for<'a> Serialize<HighSerializer<BatchBytes, ArenaHandle<'a>, rancor::Error>>,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    #[inline]
    fn write_archive(
        &self,
        bytes: BatchBytes,
        arena: ArenaHandle<'_>,
    ) -> Result<BatchBytes, rancor::Error> {
        rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(self, bytes, arena)
    }

    #[inline]
    fn read_archive(bytes: &[u8]) -> Result<Self, rancor::Error> {
        rkyv::from_bytes::<T, rancor::Error>(bytes)
    }
}

pub(crate) fn corrupt(e: rancor::Error) -> Failure {
    Failure::corrupt(e.to_string())
}
