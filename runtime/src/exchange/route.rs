//! How an exchange picks the destination shard of a record: by key (see [`crate::keys`]
//! for the stable placement of keys on key groups and shards), broadcast, or round robin.

use std::hash::Hash;
use std::sync::Arc;

use crate::keys::hash_key;

/// How records move from the producing operator's instances to the consuming ones.
pub enum Partitioning<T> {
    /// Each record stays on its shard; the operators are chained into direct calls.
    Forward,
    /// Each record goes to the shard that owns its key (see the module docs). The function
    /// returns the key's hash; build it with [`Partitioning::by_key`].
    KeyHash(Arc<dyn Fn(&T) -> u64 + Send + Sync>),
    /// Every shard gets every record.
    Broadcast,
    /// Records are spread evenly, round robin, starting at a different shard on each
    /// producer.
    Rebalance,
}

impl<T> Clone for Partitioning<T> {
    fn clone(&self) -> Self {
        match self {
            Partitioning::Forward => Partitioning::Forward,
            Partitioning::KeyHash(f) => Partitioning::KeyHash(f.clone()),
            Partitioning::Broadcast => Partitioning::Broadcast,
            Partitioning::Rebalance => Partitioning::Rebalance,
        }
    }
}

impl<T> std::fmt::Debug for Partitioning<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl<T> Partitioning<T> {
    /// Key-hash partitioning by the key `key` extracts.
    pub fn by_key<K: Hash>(key: impl Fn(&T) -> K + Send + Sync + 'static) -> Self {
        Partitioning::KeyHash(Arc::new(move |r| hash_key(&key(r))))
    }

    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Partitioning::Forward => "forward",
            Partitioning::KeyHash(_) => "key-hash",
            Partitioning::Broadcast => "broadcast",
            Partitioning::Rebalance => "rebalance",
        }
    }
}
