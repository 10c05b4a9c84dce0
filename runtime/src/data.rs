//! What records must be to flow through a dataflow.
//!
//! Every record type is [`Data`] (cloneable, owned). Records that cross an exchange edge
//! must also be [`ExchangeData`]: rkyv-serializable, so that a batch of them can be written
//! once into an aligned buffer and read in place by the receiving shard. Derive rkyv's
//! `Archive`, `Serialize` and `Deserialize` on your record types and `ExchangeData` follows.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::rancor::Fallible;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Allocator, Writer};
use rkyv::util::AlignedVec;
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Deserialize, Place, Serialize};

use crate::error::Failure;

/// Alignment of batch buffers, in bytes (see `docs/design.md`, "Facts measured": glibc's
/// memcpy is slow for some misaligned copies).
pub const BATCH_ALIGN: usize = 64;

/// A record type: owned and cloneable (a record sent to several consumers is cloned).
pub trait Data: Clone + 'static {}
impl<T: Clone + 'static> Data for T {}

/// The writer records are serialized into.
pub type BatchBytes = AlignedVec<BATCH_ALIGN>;

/// A record that can cross shards: a batch of them is serialized with rkyv as one
/// archived vector into an aligned buffer, and validated and read in place by the
/// receiver. Implemented for every rkyv-serializable [`Data`] type.
pub trait ExchangeData: Data {
    /// Appends the archive of `records` (an archived `Vec<Self>`) to `bytes`, using
    /// `arena` for scratch space.
    fn write_batch(
        records: &[Self],
        bytes: BatchBytes,
        arena: ArenaHandle<'_>,
    ) -> Result<BatchBytes, rancor::Error>;

    /// Validates the archive in `bytes` (as written by [`ExchangeData::write_batch`]) and
    /// appends its records to `out`.
    fn read_batch(bytes: &[u8], out: &mut Vec<Self>) -> Result<(), rancor::Error>;
}

impl<T> ExchangeData for T
where
    T: Data
        + Archive
        + for<'a> Serialize<HighSerializer<BatchBytes, ArenaHandle<'a>, rancor::Error>>,
    ArchivedVec<T::Archived>: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    T::Archived: Deserialize<T, HighDeserializer<rancor::Error>>,
{
    #[inline]
    fn write_batch(
        records: &[Self],
        bytes: BatchBytes,
        arena: ArenaHandle<'_>,
    ) -> Result<BatchBytes, rancor::Error> {
        rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            &AsVec(records),
            bytes,
            arena,
        )
    }

    #[inline]
    fn read_batch(bytes: &[u8], out: &mut Vec<Self>) -> Result<(), rancor::Error> {
        let archived = rkyv::access::<ArchivedVec<T::Archived>, rancor::Error>(bytes)?;
        out.reserve(archived.len());
        for record in archived.iter() {
            out.push(rkyv::deserialize::<T, rancor::Error>(record)?);
        }
        Ok(())
    }
}

/// A slice archived as rkyv archives a `Vec` of its records, so that a batch can be written
/// from part of a vector without copying the records out.
struct AsVec<'a, T>(&'a [T]);

impl<T: Archive> Archive for AsVec<'_, T> {
    type Archived = ArchivedVec<T::Archived>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_slice(self.0, resolver, out);
    }
}

impl<T, S> Serialize<S> for AsVec<'_, T>
where
    T: Serialize<S>,
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<VecResolver, S::Error> {
        ArchivedVec::<T::Archived>::serialize_from_slice(self.0, serializer)
    }
}

/// A type an operator keeps as state: rkyv-serializable as [`ExchangeData`] records are, so
/// that checkpoints can write it and restore it. Implemented for every such type; a state
/// record made of `StateData` parts (tuples, `Vec`s, `Option`s, rkyv-derived structs) is
/// serializable too, so an operator's bounds name the user's types, never its own records:
///
/// ```
/// use rill_runtime::{ExchangeData, StateData};
///
/// fn writable<T: ExchangeData>() {}
/// fn keyed_state<K: StateData, A: StateData>() {
///     writable::<(u32, (K, Option<A>, Vec<i64>))>(); // holds for any such K and A
/// }
/// keyed_state::<String, (u64, i64)>();
/// ```
pub trait StateData:
    Data
    + Archive<
        Archived: Deserialize<Self, HighDeserializer<rancor::Error>>
                      + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<BatchBytes, ArenaHandle<'a>, rancor::Error>>
{
}

impl<T> StateData for T where
    T: Data
        + Archive<
            Archived: Deserialize<T, HighDeserializer<rancor::Error>>
                          + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
        > + for<'a> Serialize<HighSerializer<BatchBytes, ArenaHandle<'a>, rancor::Error>>
{
}

pub(crate) fn corrupt(e: rancor::Error) -> Failure {
    Failure::corrupt(e.to_string())
}
