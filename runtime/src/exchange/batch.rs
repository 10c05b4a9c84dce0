//! Batch buffers: records serialized back to back with rkyv into one aligned buffer.
//!
//! A [`BatchBuf`] holds the bytes and the end offset of every record. Each record's archive
//! ends with its root object, so record `i` is the slice `ends[i-1]..ends[i]`, which rkyv
//! validates and reads in place. The buffer is 64-byte aligned (avoiding the slow glibc
//! memcpy case noted in DESIGN.md) and is recycled: a consumer hands it back to the
//! producer's pool instead of freeing it, so steady-state exchange allocates nothing.

use rkyv::ser::allocator::Arena;

use crate::data::{BatchBytes, ExchangeData};
use crate::error::Failure;

/// Alignment of batch buffers, in bytes.
pub const BATCH_ALIGN: usize = 64;

/// A reusable buffer of serialized records.
#[derive(Debug, Default)]
pub struct BatchBuf {
    bytes: BatchBytes,
    ends: Vec<u32>,
}

impl BatchBuf {
    /// An empty buffer with room for `bytes` bytes and `records` records.
    pub fn with_capacity(bytes: usize, records: usize) -> Self {
        BatchBuf {
            bytes: BatchBytes::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// Serializes `record` at the end of the buffer (`arena`: rkyv's scratch space,
    /// reused from record to record).
    #[inline]
    pub fn write<T: ExchangeData>(&mut self, record: &T, arena: &mut Arena) -> Result<(), Failure> {
        let bytes = std::mem::take(&mut self.bytes);
        let bytes = record
            .write_archive(bytes, arena.acquire())
            .map_err(crate::data::corrupt)?;
        let end = u32::try_from(bytes.len())
            .map_err(|_| Failure::corrupt("batch buffer grew past 4 GiB"))?;
        self.bytes = bytes;
        self.ends.push(end);
        Ok(())
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if the buffer holds no record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
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
        self.ends.clear();
    }

    /// The archived bytes of each record, in order; each slice ends with its root.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let slice = &self.bytes[start..end as usize];
            start = end as usize;
            slice
        })
    }

    /// Validates and deserializes every record, appending them to `out`.
    pub fn read_into<T: ExchangeData>(&self, out: &mut Vec<T>) -> Result<(), Failure> {
        out.reserve(self.len());
        for slice in self.records() {
            out.push(T::read_archive(slice).map_err(crate::data::corrupt)?);
        }
        Ok(())
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

    #[test]
    fn round_trips_variable_size_records_in_order() {
        let recs: Vec<Rec> = (0..100)
            .map(|i| Rec {
                id: i,
                name: "x".repeat(i as usize % 7),
                tags: (0..(i as u32 % 5)).collect(),
            })
            .collect();
        let mut buf = BatchBuf::with_capacity(64, 4);
        let mut arena = Arena::new();
        for r in &recs {
            buf.write(r, &mut arena).unwrap();
        }
        assert_eq!(buf.len(), 100);
        let mut out: Vec<Rec> = Vec::new();
        buf.read_into(&mut out).unwrap();
        assert_eq!(out, recs);
        buf.clear();
        assert!(buf.is_empty());
        buf.write(&recs[3], &mut arena).unwrap();
        let mut out = Vec::new();
        buf.read_into::<Rec>(&mut out).unwrap();
        assert_eq!(out, vec![recs[3].clone()]);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_ub() {
        let mut buf = BatchBuf::with_capacity(64, 4);
        buf.write(
            &Rec {
                id: 1,
                name: "hello".into(),
                tags: vec![1, 2],
            },
            &mut Arena::new(),
        )
        .unwrap();
        // The root ends with `tags`: a 4-byte relative pointer and a 4-byte length. Point
        // it far past the buffer.
        let n = buf.bytes.len();
        buf.bytes[n - 8..n - 4].copy_from_slice(&0x3fff_ffffi32.to_le_bytes());
        let mut out: Vec<Rec> = Vec::new();
        assert!(buf.read_into(&mut out).is_err());
    }
}
