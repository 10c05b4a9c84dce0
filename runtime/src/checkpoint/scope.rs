//! [`EntryScope`]: which shards an entry of an operator's state goes to on a restore.

use crate::keys::shard_of_key_group;

/// Which shards restore an entry of an operator's state (what
/// [`StateWriter`](super::StateWriter)'s `put_*` method wrote it with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryScope {
    /// The state of keys of one key group (`put_keyed`): the shard that owns the group.
    KeyGroup(u32),
    /// Keyed values that each carry their key group (`put_keyed_all`, a table's
    /// changelog): every shard reads it and keeps the groups it owns.
    KeyGroups,
    /// The state of split `s` (`put_split`, and `put_own` with the writing shard as the
    /// split): shard `s % M` of `M`.
    Split(u32),
    /// State every shard restores (`put_shared`).
    Shared,
}

/// How a shard file holds the scope: `(split, scope)`, a key group or a split, with
/// `u32::MAX` for every key group or every shard.
const ALL: u32 = u32::MAX;

impl EntryScope {
    /// The scope as a shard file holds it: (per split, key group or split).
    pub(crate) fn to_parts(self) -> (bool, u32) {
        match self {
            EntryScope::KeyGroup(g) => (false, g),
            EntryScope::KeyGroups => (false, ALL),
            EntryScope::Split(s) => (true, s),
            EntryScope::Shared => (true, ALL),
        }
    }

    /// The scope a shard file's `(split, scope)` stands for.
    pub(crate) fn from_parts(split: bool, scope: u32) -> Self {
        match (split, scope) {
            (false, ALL) => EntryScope::KeyGroups,
            (false, g) => EntryScope::KeyGroup(g),
            (true, ALL) => EntryScope::Shared,
            (true, s) => EntryScope::Split(s),
        }
    }

    /// Whether shard `shard` of `shards` restores the entry.
    pub(crate) fn restored_by(self, shard: usize, shards: usize) -> bool {
        match self {
            EntryScope::KeyGroup(g) => shard_of_key_group(g, shards) == shard,
            EntryScope::KeyGroups | EntryScope::Shared => true,
            EntryScope::Split(s) => s as usize % shards == shard,
        }
    }

    /// Whether the entry's values carry their key groups.
    pub(crate) fn is_mixed(self) -> bool {
        self == EntryScope::KeyGroups
    }
}
