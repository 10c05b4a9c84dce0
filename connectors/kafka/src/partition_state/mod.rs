//! Partition-local state that moves with its partition.
//!
//! Many jobs keep state per key where the key is a function of the Kafka partition: the
//! producer partitioned the topic by that key, so every record of a key is in one
//! partition (a running total per account, a session per user). Such a job needs no
//! exchange: the shard that reads a partition keeps its state. And when the job runs as
//! several processes in one consumer group (docs/scale-out.md), a partition that moves to
//! another process must take its state along.
//!
//! [`kafka_source_with_state`] reads topics as [`kafka_source`](crate::kafka_source) does
//! and hands every decoded record, with its partition, to a user function together with
//! that partition's state (a user type `S`, serializable as rill serializes state: derive
//! rkyv's traits, or use a `HashMap`, `BTreeMap`, tuple or `Vec` of such types). The
//! function runs on the shard that reads the partition, chained to the source.
//!
//! How the state moves:
//!
//! - The source tells the operator, in order with the records, when its shard is given a
//!   partition (and the offset it starts at) and when its partitions are revoked: a
//!   partition's state is loaded before its first record, and dropped on revoke.
//! - At every checkpoint barrier, the state of every partition that advanced is written
//!   to the **partition-state directory** (a path every process can read: a shared file
//!   system), as one file per (topic, partition, offset), where the offset is the next
//!   one after the last record the state has seen. The state at an offset depends only on
//!   the partition's records before it, so a file is valid whichever process wrote it.
//!   Files are written atomically and durably, with a format version and a checksum
//!   (see `file.rs`).
//! - Offsets are committed to the group only after a checkpoint completes (and one
//!   behind), so the file of a committed offset was durable before the commit.
//! - A member given partition `p` at offset `o` (the group's committed offset, or the
//!   position in its own restored checkpoint) loads `p`'s file at `o`. If there is none,
//!   the state starts empty only if nothing of the partition was read before (no
//!   committed offset, a fresh start, or `o` at the partition's earliest offset);
//!   otherwise the job fails with [`Error::MissingState`](crate::Error::MissingState),
//!   naming the directory, partition and offset: a state is never silently restarted
//!   empty.
//! - Retention: per partition, the newest [`PartitionState::retain`] files are kept, and
//!   older ones are removed once they are below the offset the group acknowledged as
//!   committed (without a group: at once).
//!
//! The same files serve a single process restarted from its own checkpoint (static
//! assignment or a group): the restored positions are offsets whose files were written
//! before the checkpoint completed. The job needs checkpoints (exactly-once or
//! at-least-once); the operator refuses to run without them.
//!
//! Guarantee: after a rebalance, the new owner's state of a partition is exactly the
//! state after the records before the committed offset; records after it are read again,
//! so output is at least once, as for every group job, and state is exactly once.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use rill_kafka::{kafka_source_with_state, KafkaSourceConfig, PartitionState};
//! use rill_runtime::{Dataflow, Output};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut df = Dataflow::new();
//! let config = KafkaSourceConfig::new("127.0.0.1:9092", &["clicks"]).group("click-counts");
//! // A running count of clicks per page, in each partition.
//! let counts = kafka_source_with_state(
//!     &mut df,
//!     "clicks",
//!     config,
//!     PartitionState::new("/mnt/shared/rill/partition-state"),
//!     |r| String::from_utf8(r.payload.unwrap_or_default().to_vec()),
//!     |at, counts: &mut HashMap<String, u64>, page: String, out: &mut Output<(i32, String, u64)>| {
//!         let n = counts.entry(page.clone()).or_default();
//!         *n += 1;
//!         out.give((at.partition, page, *n));
//!     },
//! )?;
//! counts.output.discard("rows");
//! # Ok(())
//! # }
//! ```

mod file;
mod operator;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_runtime::checkpoint::Guarantee;
use rill_runtime::{Data, Dataflow, ExchangeData, Output, Stream};

use crate::config::KafkaSourceConfig;
use crate::error::Result;
use crate::source::{source_items, BadRecord, KafkaRecord};

use file::StateFiles;
use operator::PartitionStateOperator;

/// Where a record the state function sees comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRecord<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// The settings of partition state: where its files go, and how many are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    dir: PathBuf,
    version: u32,
    retain: usize,
}

impl PartitionState {
    /// State files in `dir`, a directory every process of the job can read and write
    /// (under it, one directory per source name). State version 1; the newest 4 files of
    /// each partition are always kept.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PartitionState {
            dir: dir.into(),
            version: 1,
            retain: 4,
        }
    }

    /// The version of the state's format, written into every file: a job that reads
    /// another version fails with a clear error. Change it with the state type.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// How many of a partition's newest files are always kept (at least 1). A process
    /// restarted from its own checkpoint needs the file of that checkpoint's offsets, so
    /// keep at least the number of checkpoints retained plus one when offsets are not
    /// committed to a group (with a group, files at or above the acknowledged committed
    /// offset are kept too).
    pub fn retain(mut self, files: usize) -> Self {
        self.retain = files.max(1);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// The streams of [`kafka_source_with_state`].
pub struct StatefulKafkaSource<O> {
    /// What the state function emitted.
    pub output: Stream<O>,
    /// Records that did not decode.
    pub bad_records: Stream<BadRecord>,
    /// How many records did not decode (over all runs of this process).
    pub bad_count: Arc<AtomicU64>,
    /// The partitions the source reads (its splits).
    pub partitions: usize,
}

impl<O> std::fmt::Debug for StatefulKafkaSource<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatefulKafkaSource")
            .field("output", &self.output)
            .field("bad_records", &self.bad_records)
            .field("bad_count", &self.bad_count.load(Ordering::Relaxed))
            .field("partitions", &self.partitions)
            .finish()
    }
}

/// The state function: a record of a partition, that partition's state, and the output.
type ProcessFn<T, S, O> =
    Arc<dyn Fn(&PartitionRecord<'_>, &mut S, T, &mut Output<O>) + Send + Sync>;

/// Reads the topics of `config` as [`kafka_source`](crate::kafka_source) does, and calls
/// `process` with every decoded record, its partition's state `S` and the output, on the
/// shard that reads the partition. The state of each partition is written to
/// `state`'s directory at every checkpoint and follows the partition to whichever
/// process of the consumer group reads it next (see the module docs).
pub fn kafka_source_with_state<T, S, O, E, D, F>(
    df: &mut Dataflow,
    name: &str,
    config: KafkaSourceConfig<T>,
    state: PartitionState,
    decode: D,
    process: F,
) -> Result<StatefulKafkaSource<O>>
where
    T: Data,
    S: ExchangeData + Default,
    O: Data,
    E: std::fmt::Display,
    D: Fn(&KafkaRecord<'_>) -> std::result::Result<T, E> + Send + Sync + 'static,
    F: Fn(&PartitionRecord<'_>, &mut S, T, &mut Output<O>) + Send + Sync + 'static,
{
    let source = source_items(df, name, config, decode)?;
    let files = StateFiles::new(&state.dir, name, state.version);
    let process: ProcessFn<T, S, O> = Arc::new(process);
    let (plan, commits, group, retain, source_name) = (
        source.plan.clone(),
        source.commits,
        source.group,
        state.retain,
        name.to_string(),
    );
    let (output, bad_records) =
        source
            .items
            .unary_split(&format!("{name} (partition state)"), move |shard| {
                let refused = match shard.checkpoint().map(|c| c.guarantee) {
                    None | Some(Guarantee::AtMostOnce) => Some(format!(
                        "Kafka source {source_name}: partition state is written at checkpoints, \
                         so the job needs checkpoints with the exactly-once or at-least-once \
                         guarantee"
                    )),
                    _ => None,
                };
                // A static assignment: the shard's partitions (see `KafkaPartitions`).
                let splits = (0..plan.partitions.len() as u32)
                    .filter(|&s| !group && s as usize % shard.shards == shard.index)
                    .collect();
                PartitionStateOperator::new(
                    source_name.clone(),
                    files.clone(),
                    plan.clone(),
                    process.clone(),
                    retain,
                    commits,
                    refused,
                )
                .fresh_static(splits)
            });
    Ok(StatefulKafkaSource {
        output,
        bad_records,
        bad_count: source.bad_count,
        partitions: source.plan.partitions.len(),
    })
}
