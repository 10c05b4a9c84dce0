//! The operator chained to the Kafka source that keeps state per partition: it follows
//! the source's assignment items, calls the user's function per record, and writes the
//! state of the partitions that advanced at every checkpoint barrier.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::rkyv::ser::allocator::Arena;
use rill_runtime::{Data, ExchangeData, Failure, OpResult, Operator, OperatorState, Output};

use super::file::{expired, StateFiles};
use super::{PartitionRecord, ProcessFn};
use crate::error::Error;
use crate::plan::Plan;
use crate::source::{BadRecord, Item, Start};

/// One partition this shard reads, with its state.
struct Slot<S> {
    state: S,
    /// The offset the state covers: the next one after the last record it has seen
    /// (`None`: a fresh start in a group, before the first record).
    covered: Option<i64>,
    /// The offset of the file that holds `state` (loaded or written), if any.
    written: Option<i64>,
    /// The offsets of the partition's files in the directory.
    files: BTreeSet<i64>,
}

/// The slot of `split` in `owned`; a failure of source `name` if the shard does not own
/// it.
fn slot<'a, S>(
    owned: &'a mut HashMap<u32, Slot<S>>,
    name: &str,
    split: u32,
) -> Result<&'a mut Slot<S>, Failure> {
    owned.get_mut(&split).ok_or_else(|| {
        Failure::new(format!(
            "Kafka source {name} (partition state): a record of split {split} arrived before \
             the partition was assigned to this shard"
        ))
    })
}

/// One shard's instance.
pub(crate) struct PartitionStateOperator<T, S, O> {
    name: String,
    files: StateFiles,
    plan: Arc<Plan>,
    process: ProcessFn<T, S, O>,
    retain: usize,
    /// Whether offsets are committed to a group (then retention waits for its commits).
    commits: bool,
    /// Why the operator cannot run (no checkpoints).
    refused: Option<String>,
    owned: HashMap<u32, Slot<S>>,
    /// The committed offsets the group acknowledged, by split.
    committed: HashMap<u32, i64>,
    /// A fresh run with a static assignment: the shard's partitions not yet assigned. The
    /// source reports their start offsets in a checkpoint whose barrier comes before its
    /// first poll (which assigns them); such a barrier writes their empty state there, so
    /// that a restore from that checkpoint finds it.
    fresh: Vec<u32>,
    arena: Arena,
}

/// How a partition's state starts, given where the shard starts reading it: the state and
/// the offset it covers, and whether it came from a file. `earliest`: the partition's
/// earliest offset when the job started.
pub(crate) fn load<S: ExchangeData + Default>(
    files: &StateFiles,
    topic: &str,
    partition: i32,
    start: &Start,
    earliest: i64,
) -> Result<(S, Option<i64>, bool), Failure> {
    let failure = |e: Error| Failure::from_error(e);
    match start {
        Start::Fresh(at) => Ok((S::default(), *at, false)),
        Start::At(o) => match files.read::<S>(topic, partition, *o).map_err(failure)? {
            Some(state) => Ok((state, Some(*o), true)),
            None if *o <= earliest => Ok((S::default(), Some(*o), false)),
            None => Err(failure(Error::MissingState {
                dir: files.root().to_path_buf(),
                topic: topic.to_string(),
                partition,
                offset: *o,
                earliest,
            })),
        },
        Start::Unknown(why) => Err(Failure::new(format!(
            "partition {topic}/{partition} was assigned, but {why}: where its state starts is \
             unknown"
        ))),
    }
}

impl<T, S: ExchangeData + Default, O> PartitionStateOperator<T, S, O> {
    pub(crate) fn new(
        name: String,
        files: StateFiles,
        plan: Arc<Plan>,
        process: ProcessFn<T, S, O>,
        retain: usize,
        commits: bool,
        refused: Option<String>,
    ) -> Self {
        PartitionStateOperator {
            name,
            files,
            plan,
            process,
            retain,
            commits,
            refused,
            owned: HashMap::new(),
            committed: HashMap::new(),
            fresh: Vec::new(),
            arena: Arena::new(),
        }
    }

    /// A static assignment: `splits` are the shard's partitions, which a fresh run starts
    /// empty at the source's start offsets (see `fresh`).
    pub(crate) fn fresh_static(mut self, splits: Vec<u32>) -> Self {
        self.fresh = splits;
        self
    }

    /// A failure of this operator, caused by `e`.
    fn failed(name: &str, e: impl std::error::Error + Send + Sync + 'static) -> Failure {
        Failure::caused_by(format_args!("Kafka source {name} (partition state)"), e)
    }

    fn assign(&mut self, split: u32, start: Start) -> OpResult {
        let p = &self.plan.partitions[split as usize];
        let earliest = self.plan.low[split as usize];
        let files = self
            .files
            .list(&p.topic, p.partition)
            .map_err(Failure::from_error)?;
        let (state, covered, loaded) = load(&self.files, &p.topic, p.partition, &start, earliest)?;
        self.owned.insert(
            split,
            Slot {
                state,
                covered,
                written: covered.filter(|_| loaded),
                files,
            },
        );
        Ok(())
    }

    fn slot(&mut self, split: u32) -> Result<&mut Slot<S>, Failure> {
        slot(&mut self.owned, &self.name, split)
    }

    /// Removes the partition's files that retention lets go.
    fn prune(&mut self, split: u32) -> OpResult {
        let Some(slot) = self.owned.get_mut(&split) else {
            return Ok(());
        };
        let p = &self.plan.partitions[split as usize];
        let committed = self.committed.get(&split).copied();
        for o in expired(&slot.files, self.retain, self.commits, committed) {
            self.files
                .remove(&p.topic, p.partition, o)
                .map_err(Failure::from_error)?;
            slot.files.remove(&o);
        }
        Ok(())
    }
}

impl<T: Data, S: ExchangeData + Default, O: Data> Operator<Item<T>>
    for PartitionStateOperator<T, S, O>
{
    type Out = (Output<O>, Output<BadRecord>);
    const STATE: OperatorState = OperatorState::Checkpointed;

    fn on_batch(&mut self, batch: &mut Vec<Item<T>>, out: &mut Self::Out) -> OpResult {
        if let Some(why) = &self.refused {
            return Err(Failure::new(why.clone()));
        }
        for item in batch.drain(..) {
            match item {
                Item::Record {
                    split,
                    offset,
                    value,
                } => {
                    let slot = slot(&mut self.owned, &self.name, split)?;
                    let p = &self.plan.partitions[split as usize];
                    let at = PartitionRecord {
                        topic: &p.topic,
                        partition: p.partition,
                        offset,
                    };
                    (self.process)(&at, &mut slot.state, value, &mut out.0);
                    slot.covered = Some(offset + 1);
                }
                Item::Bad { split, record } => {
                    self.slot(split)?.covered = Some(record.offset + 1);
                    out.1.give(record);
                }
                Item::Skipped { split, next } => self.slot(split)?.covered = Some(next),
                Item::Assigned { split, start } => {
                    self.fresh.retain(|&s| s != split);
                    self.assign(split, start)
                        .map_err(|e| Self::failed(&self.name, e))?
                }
                Item::Revoked => self.owned.clear(),
                Item::Committed { split, offset } => {
                    self.committed.insert(split, offset);
                    self.prune(split).map_err(|e| Self::failed(&self.name, e))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the state of every partition that advanced since its last file (durably,
    /// before the barrier's checkpoint can complete and its offsets be committed).
    fn snapshot(&mut self, _checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        for &split in &self.fresh {
            let p = &self.plan.partitions[split as usize];
            let start = self.plan.start[split as usize];
            let written =
                self.files
                    .write(&p.topic, p.partition, start, &S::default(), &mut self.arena);
            written.map_err(|e| Self::failed(&self.name, e))?;
        }
        let mut advanced: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, s)| s.covered.is_some() && s.covered != s.written)
            .map(|(&split, _)| split)
            .collect();
        advanced.sort_unstable();
        for split in advanced {
            let p = &self.plan.partitions[split as usize];
            let slot = self.owned.get_mut(&split).expect("listed above");
            let offset = slot.covered.expect("filtered above");
            let written =
                self.files
                    .write(&p.topic, p.partition, offset, &slot.state, &mut self.arena);
            written.map_err(|e| Self::failed(&self.name, e))?;
            slot.written = Some(offset);
            slot.files.insert(offset);
            self.prune(split).map_err(|e| Self::failed(&self.name, e))?;
        }
        Ok(())
    }

    /// The job restored from a checkpoint: partitions start where it has them, and their
    /// state is in the files (this operator writes nothing into rill's checkpoints).
    fn restore(&mut self, _state: &StateReader) -> OpResult {
        self.fresh.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_starts_from_its_file_or_empty_only_at_its_start() {
        let dir = std::env::temp_dir().join(format!("rill-kafka-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = StateFiles::new(&dir, "s", 1);
        files.write("t", 3, 500, &41u64, &mut Arena::new()).unwrap();
        let load = |start: Start| load::<u64>(&files, "t", 3, &start, 100);
        // From its file.
        assert_eq!(load(Start::At(500)).unwrap(), (41, Some(500), true));
        // Nothing read before: empty.
        assert_eq!(load(Start::Fresh(None)).unwrap(), (0, None, false));
        assert_eq!(
            load(Start::Fresh(Some(700))).unwrap(),
            (0, Some(700), false)
        );
        assert_eq!(load(Start::At(100)).unwrap(), (0, Some(100), false));
        // Past its start without a file: an error naming the directory, partition and
        // offset, never an empty state.
        let e = load(Start::At(600)).unwrap_err().to_string();
        assert!(
            e.contains(&dir.join("s").display().to_string())
                && e.contains("partition t/3 at offset 600"),
            "{e}"
        );
        let e = load(Start::Unknown("the broker timed out".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t/3") && e.contains("the broker timed out"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_barrier_before_the_first_poll_of_a_fresh_static_run_writes_empty_states_at_the_start() {
        use crate::plan::PartitionId;

        let dir = std::env::temp_dir().join(format!("rill-kafka-fresh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = StateFiles::new(&dir, "s", 1);
        let partitions = (0..2)
            .map(|partition| PartitionId {
                topic: "t".into(),
                partition,
            })
            .collect();
        let plan = Arc::new(Plan {
            partitions,
            start: vec![5, 7],
            low: vec![0, 0],
            end: None,
        });
        let process: ProcessFn<u64, u64, u64> = Arc::new(|_, _, _, _| {});
        let mut op =
            PartitionStateOperator::new("s".into(), files.clone(), plan, process, 4, false, None)
                .fresh_static(vec![1]);
        op.snapshot(1, &mut StateWriter::default()).unwrap();
        // The source reported split 1 at its start offset: a restore there finds its state.
        assert_eq!(
            load::<u64>(&files, "t", 1, &Start::At(7), 0).unwrap(),
            (0, Some(7), true)
        );
        // Split 0 is another shard's.
        assert!(files.list("t", 0).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
