//! At-most-once leases: how far ahead of its position each source split may have read,
//! written by the shards and merged at the next start.

use std::path::Path;

use rkyv::util::AlignedVec;

use super::splits::{SplitPosition, SPLITS};
use super::store::{self, ShardFile};
use super::{Coordinator, StateWriter};
use crate::data::ExchangeData;
use crate::error::{Error, Failure};

/// At-most-once: writes the lease of `node`'s source on `shard` (atomically and durably,
/// see [`crate::fs::write_atomic`]).
pub(crate) fn write_lease(
    coord: &Coordinator,
    shard: usize,
    node: usize,
    lease: &[SplitPosition],
) -> Result<(), Failure> {
    let mut state = StateWriter::default();
    for p in lease {
        state.section(SPLITS, 1).put_split(p.split, *p)?;
    }
    let file = ShardFile {
        checkpoint: coord.completed.load(std::sync::atomic::Ordering::Relaxed),
        shard: shard as u32,
        shards: coord.shards as u32,
        nodes: vec![store::NodeState {
            operator: coord.operator_ids[node].clone(),
            entries: state.entries,
        }],
    };
    let path = store::lease_path(&coord.dir, shard, node);
    let bytes = store::encode(&file)
        .map_err(|e| Failure::caused_by(format!("could not encode lease {}", path.display()), e))?;
    crate::fs::write_atomic(&path, &bytes)
        .map_err(|e| Failure::caused_by(format!("could not write lease {}", path.display()), e))
}

/// At-most-once: merges lease files (the furthest position of each split wins, so a
/// lease left behind by a run with another shard count does no harm) into one payload.
pub(crate) fn merge_leases(
    root: &Path,
    files: &[AlignedVec<16>],
    run: u64,
) -> Result<AlignedVec<16>, Error> {
    let corrupt = |problem: String| Error::CheckpointCorrupt {
        path: root.join("leases"),
        problem,
    };
    let mut splits: std::collections::BTreeMap<(String, u32), SplitPosition> = Default::default();
    for payload in files {
        for node in store::archived(payload).nodes.iter() {
            for e in node.entries.iter() {
                let mut bytes = AlignedVec::<16>::with_capacity(e.bytes.len());
                bytes.extend_from_slice(&e.bytes);
                let mut values: Vec<SplitPosition> = Vec::new();
                SplitPosition::read_batch(&bytes, &mut values)
                    .map_err(|err| corrupt(format!("lease entry: {err}")))?;
                for p in values {
                    let slot = splits
                        .entry((node.operator.to_string(), p.split))
                        .or_insert(p);
                    if p.position > slot.position {
                        *slot = p;
                    }
                }
            }
        }
    }
    let mut nodes: std::collections::BTreeMap<String, StateWriter> = Default::default();
    for ((node, split), p) in splits {
        nodes
            .entry(node)
            .or_default()
            .section(SPLITS, 1)
            .put_split(split, p)
            .map_err(|e| corrupt(e.message))?;
    }
    let file = ShardFile {
        checkpoint: run,
        shard: 0,
        shards: 1,
        nodes: nodes
            .into_iter()
            .map(|(operator, w)| store::NodeState {
                operator,
                entries: w.entries,
            })
            .collect(),
    };
    let bytes = store::encode(&file).map_err(|e| corrupt(e.to_string()))?;
    store::decode(&bytes).map_err(corrupt)
}
