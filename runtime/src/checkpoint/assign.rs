//! Restore assignment: which entries of a checkpoint's shard files each shard restores.

use rkyv::util::AlignedVec;

use super::local::Restore;
use super::reader::RestoredEntry;
use super::scope::EntryScope;
use super::store;

/// Picks, from the shard files of a checkpoint, the entries shard `shard` of `shards`
/// restores: keyed entries of the key groups it owns, split entries `s` with
/// `s % shards == shard`; each operator's under the node that now has its id (`ids`, by
/// node). State of an id no node has is left out (the job was allowed to drop it).
pub(crate) fn assign(
    files: &[AlignedVec<16>],
    checkpoint: u64,
    shard: usize,
    shards: usize,
    ids: &[String],
) -> Restore {
    let node_of: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut nodes: std::collections::HashMap<usize, Vec<RestoredEntry>> = Default::default();
    for payload in files {
        let file = store::archived(payload);
        // An earlier checkpoint of the chain contributes only its keyed changelogs.
        let top = file.checkpoint.to_native() == checkpoint;
        for node in file.nodes.iter() {
            let Some(&index) = node_of.get(node.operator.as_str()) else {
                continue;
            };
            for e in node.entries.iter().filter(|e| top || e.changelog) {
                let scope = EntryScope::from_parts(e.split, e.scope.to_native());
                if scope.restored_by(shard, shards) {
                    let mut bytes = AlignedVec::<16>::with_capacity(e.bytes.len());
                    bytes.extend_from_slice(&e.bytes);
                    nodes.entry(index).or_default().push(RestoredEntry {
                        name: e.name.to_string(),
                        version: e.version.to_native(),
                        mixed: scope.is_mixed(),
                        changelog: e.changelog,
                        bytes,
                    });
                }
            }
        }
    }
    Restore {
        checkpoint,
        shard,
        shards,
        nodes,
    }
}
