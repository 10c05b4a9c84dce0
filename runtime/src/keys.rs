//! How an exchange picks the destination shard of a record.
//!
//! **Key placement** is stable across runs, processes and machines of the same build: the
//! key is hashed with `rustc-hash`'s `FxHasher` (version pinned by the workspace) over its
//! `std::hash::Hash` encoding, finished with MurmurHash3's 64-bit mixer; the hash picks one
//! of [`KEY_GROUPS`] key groups (`hash % KEY_GROUPS`), and key group `g` lives on shard
//! `g * shards / KEY_GROUPS` (contiguous ranges of key groups per shard, as in Flink, so
//! that state can later be moved between shard counts group by group).

use std::hash::{Hash, Hasher};

use rustc_hash::FxHasher;

/// The number of key groups, the unit in which keyed state is placed on shards. It is
/// also the largest shard count a keyed exchange supports.
pub const KEY_GROUPS: u32 = 32_768;

/// The stable 64-bit hash of a key.
#[inline]
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    fmix64(h.finish())
}

/// MurmurHash3's finalizer: spreads every input bit over the output.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The key group of a key hash.
#[inline]
pub fn key_group(hash: u64) -> u32 {
    (hash % KEY_GROUPS as u64) as u32
}

/// The shard that owns key group `group` when the job runs on `shards` shards.
#[inline]
pub fn shard_of_key_group(group: u32, shards: usize) -> usize {
    (group as usize * shards) / KEY_GROUPS as usize
}

/// The shard a key lives on.
#[inline]
pub fn shard_of_key<K: Hash + ?Sized>(key: &K, shards: usize) -> usize {
    shard_of_key_group(key_group(hash_key(key)), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_fixed_and_documented() {
        // Golden values: part of rill's contract. Changing them moves keys between shards
        // and invalidates keyed state in existing checkpoints.
        assert_eq!(hash_key(&42u64), 0x7d81_41de_dcd6_3d7d);
        assert_eq!(hash_key(&1u64), 0x5b01_c098_6128_f248);
        let groups: Vec<u32> = ["a", "b", "hello", ""]
            .iter()
            .map(|k| key_group(hash_key(*k)))
            .collect();
        assert_eq!(groups, vec![1784, 3347, 25143, 1164]);
        assert_eq!(shard_of_key("hello", 4), 3);
        assert_eq!(shard_of_key(&42u64, 2), 0);
        assert_eq!(shard_of_key_group(0, 4), 0);
        assert_eq!(shard_of_key_group(KEY_GROUPS - 1, 4), 3);
        assert_eq!(shard_of_key_group(KEY_GROUPS / 2, 2), 1);
    }

    #[test]
    fn keys_spread_over_shards() {
        let mut counts = [0usize; 4];
        for k in 0u64..40_000 {
            counts[shard_of_key(&k, 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
