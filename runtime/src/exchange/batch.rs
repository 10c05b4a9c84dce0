//! Batch buffers: a batch of records serialized with rkyv, as one archived vector, into an
//! aligned buffer.
//!
//! The receiver validates the archive (bounds, alignment, and for plain-data records
//! nothing more: O(1) per record) and reads each record in place. Buffers are 64-byte
//! aligned (avoiding the slow glibc memcpy case noted in `docs/design.md`) and recycled: the
//! consumer hands a read buffer back to the producer's pool instead of freeing it, so
//! steady-state exchange allocates nothing.

use rkyv::ser::allocator::Arena;

use crate::data::{BatchBytes, ExchangeData};
use crate::error::Failure;

/// A reusable buffer holding one serialized batch.
#[derive(Debug, Default)]
pub struct BatchBuf {
    bytes: BatchBytes,
    records: usize,
}

impl BatchBuf {
    /// An empty buffer with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        BatchBuf {
            bytes: BatchBytes::with_capacity(bytes),
            records: 0,
        }
    }

    /// Replaces the buffer's contents with the archive of `records` (`arena`: rkyv's
    /// scratch space, reused from batch to batch).
    #[allow(clippy::ptr_arg)] // rkyv archives the sized `Vec<T>`
    pub fn write_all<T: ExchangeData>(
        &mut self,
        records: &Vec<T>,
        arena: &mut Arena,
    ) -> Result<(), Failure> {
        self.clear();
        let bytes = std::mem::take(&mut self.bytes);
        self.bytes =
            T::write_batch(records, bytes, arena.acquire()).map_err(crate::data::corrupt)?;
        self.records = records.len();
        Ok(())
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.records
    }

    /// True if the buffer holds no record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Serialized size in bytes.
    #[inline]
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the buffer, keeping its memory.
    #[inline]
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records = 0;
    }

    /// Validates the archive and appends its records to `out`.
    pub fn read_into<T: ExchangeData>(&self, out: &mut Vec<T>) -> Result<(), Failure> {
        T::read_batch(&self.bytes, out).map_err(crate::data::corrupt)
    }

    /// The raw bytes, for tests that corrupt them.
    #[cfg(test)]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq)]
    struct Rec {
        id: u64,
        name: String,
        tags: Vec<u32>,
    }

    fn recs(n: u64) -> Vec<Rec> {
        (0..n)
            .map(|i| Rec {
                id: i,
                name: "x".repeat(i as usize % 11),
                tags: (0..(i as u32 % 5)).collect(),
            })
            .collect()
    }

    #[test]
    fn round_trips_variable_size_records_in_order() {
        let recs = recs(100);
        let mut arena = Arena::new();
        let mut buf = BatchBuf::with_capacity(64);
        buf.write_all(&recs, &mut arena).unwrap();
        assert_eq!(buf.len(), 100);
        let mut out: Vec<Rec> = Vec::new();
        buf.read_into(&mut out).unwrap();
        assert_eq!(out, recs);
        // Reuse: the second batch replaces the first.
        let few = vec![recs[3].clone()];
        buf.write_all(&few, &mut arena).unwrap();
        let mut out: Vec<Rec> = Vec::new();
        buf.read_into(&mut out).unwrap();
        assert_eq!(out, few);
        buf.clear();
        assert!(buf.is_empty());
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_ub() {
        let mut buf = BatchBuf::with_capacity(64);
        buf.write_all(&recs(10), &mut Arena::new()).unwrap();
        // The root is the archived vector: a 4-byte relative pointer, then the length.
        // Point it far past the buffer.
        let bytes = buf.bytes_mut();
        let n = bytes.len();
        bytes[n - 8..n - 4].copy_from_slice(&0x3fff_ffffi32.to_le_bytes());
        let mut out: Vec<Rec> = Vec::new();
        assert!(buf.read_into(&mut out).is_err());
        // A truncated buffer is an error too.
        let mut short = BatchBuf::with_capacity(64);
        short.write_all(&recs(10), &mut Arena::new()).unwrap();
        let len = short.byte_len();
        assert!(Rec::read_batch(&short.bytes[..len - 3], &mut out).is_err());
    }
}
