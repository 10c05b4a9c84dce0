//! The Kafka source: a replayable source whose splits are the partitions of its topics.
//!
//! Every shard owns some partitions (static assignment: partition index `i` of the
//! source's sorted partition list on shard `i % shards`; in a consumer group: what the
//! group assigns to that shard's member) and polls its consumer with a zero timeout from
//! the shard's loop: librdkafka's threads fetch in the background, and a poll only takes
//! what is already there, so the shard never blocks. Nothing arrived: the source is idle.
//!
//! A split's position in rill's checkpoints is the partition's next offset, so a restored
//! job seeks every partition back to it, and with aligned checkpoints and a transactional
//! sink the output is exactly-once. After a checkpoint completes, the offsets of the one
//! before it are committed to the consumer group, if there is one: Kafka's tools then
//! show the lag, and a group member that takes a partition over resumes there. (One
//! behind, so that every shard's sink has committed the output of those offsets first.)
//!
//! Watermarks are per partition (see [`crate::watermark`]). A record that does not decode
//! is counted and sent to the bad-records stream with its partition, offset and the
//! decoder's message; the job goes on.
//!
//! In order with the records, the source also emits the changes of the shard's partitions
//! (given one, at which offset; all revoked) and the offsets the group acknowledged, for
//! an operator chained behind it that keeps state per partition
//! ([`crate::partition_state`]); the plain [`kafka_source`] drops them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rill_runtime::checkpoint::SplitPosition;
use rill_runtime::{
    Data, Dataflow, Failure, OpResult, Operator, OperatorState, Output, Source, SourceOutput,
    SourceStatus, Stream, Timestamp,
};

use crate::config::{Assignment, EventTime, KafkaSourceConfig, StartFrom};
use crate::error::{Error, Result};
use crate::health::{Health, STATS_INTERVAL_MS};
use crate::plan::{client_config, plan, Plan};
use crate::watermark::{combine, Combined, PartitionClock};

mod fetch;
mod group;

use fetch::{Batches, PartitionQueue};
use group::{apply_rebalances, report_committed, GroupEnd, SourceContext};

/// A record as the decoder sees it.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its Kafka timestamp in ms since the Unix epoch, if it has one.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub payload: Option<&'a [u8]>,
}

/// A record that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its value (empty if it had none).
    pub payload: Vec<u8>,
    /// The decoder's message.
    pub error: String,
}

/// What the source emits, before decoded records and bad ones are split apart: the
/// records with their partition (split) and offset, and, in order with them, the changes
/// of the partitions this shard reads, for an operator chained behind the source that
/// keeps state per partition (see [`crate::partition_state`]).
#[derive(Debug, Clone)]
pub(crate) enum Item<T> {
    /// A decoded record of split `split` at `offset`.
    Record { split: u32, offset: i64, value: T },
    /// A record of split `split` that did not decode.
    Bad { split: u32, record: BadRecord },
    /// Records of `split` before `next` were skipped (a start at a timestamp).
    Skipped { split: u32, next: i64 },
    /// The shard now reads `split`, from `start`: ahead of every record of it.
    Assigned { split: u32, start: Start },
    /// The shard no longer reads any partition (a group rebalance revoked them all).
    Revoked,
    /// The consumer group acknowledged `offset` as split `split`'s committed offset.
    Committed { split: u32, offset: i64 },
}

/// Where the shard starts reading a partition it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// Nothing of the partition was read before (a fresh static start, or a group that
    /// never committed an offset for it); the first offset, if known.
    Fresh(Option<i64>),
    /// At this offset: restored from a checkpoint, or committed by the group.
    At(i64),
    /// In a group, the committed offset could not be read (why).
    Unknown(String),
}

impl Start {
    /// The offset the shard reads next, if known.
    fn offset(&self) -> Option<i64> {
        match self {
            Start::Fresh(o) => *o,
            Start::At(o) => Some(*o),
            Start::Unknown(_) => None,
        }
    }
}

type DecodeFn<T> = Arc<dyn Fn(&KafkaRecord<'_>) -> std::result::Result<T, String> + Send + Sync>;

/// One partition this shard reads.
#[derive(Debug)]
struct Owned {
    split: usize,
    /// The next offset to read (`None`: in a group, a partition the group never committed
    /// or whose committed offset could not be read, until its first record).
    next: Option<i64>,
    clock: PartitionClock,
    /// A fresh start at a timestamp: records before it are skipped until the first at or
    /// after it (a broker may answer the time lookup with the start of a batch).
    skip_before: Option<i64>,
    /// The partition's fetch queue, where its records wait (see `fetch`).
    queue: PartitionQueue,
}

/// Settings every shard's instance shares.
struct Shared<T> {
    name: String,
    config: KafkaSourceConfig<T>,
    plan: Arc<Plan>,
    decode: DecodeFn<T>,
    bad: Arc<AtomicU64>,
    group_end: Option<Arc<GroupEnd>>,
}

/// One shard's instance of the Kafka source.
pub struct KafkaPartitions<T> {
    shared: Arc<Shared<T>>,
    shard: usize,
    /// Whether the job takes checkpoints (else a group member commits a partition's end
    /// offset as soon as it reaches it, in bounded mode).
    checkpointing: bool,
    /// The partitions this shard reads, with their fetch queues (declared before the
    /// consumer: they are dropped first).
    owned: Vec<Owned>,
    consumer: BaseConsumer<SourceContext>,
    health: Arc<Health>,
    restored: Arc<Mutex<HashMap<usize, i64>>>,
    /// The buffer records are read into from the partitions' queues.
    batches: Batches,
    /// The index into `owned` of the partition whose queue the next poll reads first
    /// (each poll starts one further, so that a poll's limit starves no partition).
    first_queue: usize,
    /// Static assignment: the splits to read once the first poll assigns them (a restore
    /// replaces them).
    pending: Option<Vec<(usize, i64)>>,
    /// Whether a restore set the static assignment's positions.
    restored_static: bool,
    /// The positions of the previous completed checkpoint: committed at the next one.
    uncommitted: Option<Vec<SplitPosition>>,
}

impl<T> std::fmt::Debug for KafkaPartitions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPartitions")
            .field("source", &self.shared.name)
            .field("shard", &self.shard)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

/// The librdkafka settings of shard `shard`'s consumer of source `name`: the source's
/// defaults, then the user's properties, which win over every default (e.g.
/// `queued.min.messages=100000` restores librdkafka's prefetch depth).
fn consumer_config<T>(c: &KafkaSourceConfig<T>, name: &str, shard: usize) -> ClientConfig {
    let mut props = client_config(&c.brokers, &c.properties);
    props
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", STATS_INTERVAL_MS)
        .set("client.id", format!("rill-{name}-{shard}"))
        .set(
            "enable.partition.eof",
            if c.until_end { "true" } else { "false" },
        )
        // A bounded partition ends at an empty fetch: answer those after 100 ms, not
        // librdkafka's default 500 ms.
        .set("fetch.wait.max.ms", "100")
        // Prefetch deeper than librdkafka's default of 100,000 messages: q0 from
        // tansu on loopback ran at 250k events/s with it, 610-690k with this.
        .set("queued.min.messages", "1000000");
    // Records of aborted and open transactions are never read (librdkafka's default
    // too, said here; a property `isolation.level=read_uncommitted` overrides it).
    props.set("isolation.level", "read_committed");
    let group = match &c.assignment {
        Assignment::Group(g) => Some(g),
        Assignment::Static { commit_group } => commit_group.as_ref(),
    };
    // librdkafka needs a group id even to assign partitions by hand; without a
    // group to commit to, this one is never used for commits or membership.
    match group {
        Some(g) => props.set("group.id", g),
        None => props.set("group.id", format!("rill-static-{name}")),
    };
    if let Assignment::Group(_) = c.assignment {
        let reset = match c.start {
            StartFrom::Latest => "latest",
            _ => "earliest",
        };
        props
            .set("auto.offset.reset", reset)
            .set("partition.assignment.strategy", "range");
        if !c.properties.iter().any(|(k, _)| k == "session.timeout.ms") {
            props.set("session.timeout.ms", "10000");
            props.set("heartbeat.interval.ms", "1000");
        }
    }
    // Properties given explicitly win over the defaults above (set last).
    for (k, v) in &c.properties {
        props.set(k, v);
    }
    props
}

impl<T: Data> KafkaPartitions<T> {
    /// Shard `shard`'s instance, with its consumer (an error if librdkafka refuses to
    /// create it).
    fn new(
        shared: Arc<Shared<T>>,
        shard: usize,
        shards: usize,
        checkpointing: bool,
    ) -> Result<Self> {
        let health = Arc::new(Health::default());
        let restored = Arc::new(Mutex::new(HashMap::new()));
        let props = consumer_config(&shared.config, &shared.name, shard);
        let context = SourceContext {
            health: health.clone(),
            plan: shared.plan.clone(),
            restored: restored.clone(),
            events: Mutex::new(Vec::new()),
            committed: Mutex::new(Vec::new()),
            commit_on_revoke: !checkpointing,
            read: Mutex::new(Vec::new()),
            #[cfg(test)]
            assign_delay: shared.config.assign_delay,
        };
        let consumer = props
            .create_with_context(context)
            .map_err(|source| Error::Client {
                brokers: shared.config.brokers.clone(),
                source: Box::new(source),
            })?;
        let pending = match shared.config.assignment {
            Assignment::Static { .. } => Some(
                (0..shared.plan.partitions.len())
                    .filter(|i| i % shards == shard)
                    .map(|i| (i, shared.plan.start[i]))
                    .collect(),
            ),
            Assignment::Group(_) => None,
        };
        Ok(KafkaPartitions {
            shared,
            shard,
            checkpointing,
            owned: Vec::new(),
            consumer,
            health,
            restored,
            batches: Batches::default(),
            first_queue: 0,
            pending,
            restored_static: false,
            uncommitted: None,
        })
    }

    fn failure(&self, what: &str, e: KafkaError) -> Failure {
        Failure::caused_by(format!("Kafka source {}: {what}", self.shared.name), e)
    }

    /// Static assignment, at the first poll: assigns the partitions this shard reads.
    fn assign_pending(&mut self, out: &mut SourceOutput<Item<T>>) -> OpResult {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let now = Instant::now();
        let skip_before = match (self.restored_static, self.shared.config.start) {
            (false, StartFrom::Timestamp(t)) => Some(t),
            _ => None,
        };
        let mut tpl = TopicPartitionList::new();
        for (split, next) in pending {
            // Even a partition that looks empty is read until the consumer reports its
            // end (see `finish_at_eof`).
            let p = &self.shared.plan.partitions[split];
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(next))
                .map_err(|e| self.failure("cannot build the assignment", e))?;
            // Its records stay in its own queue: detached before it is assigned.
            let queue = PartitionQueue::detach(&self.consumer, &p.topic, p.partition)
                .map_err(|why| self.failed(why))?;
            self.owned.push(Owned {
                split,
                next: Some(next),
                clock: PartitionClock::new(now),
                skip_before,
                queue,
            });
            let start = match self.restored_static {
                true => Start::At(next),
                false => Start::Fresh(Some(next)),
            };
            out.give(Item::Assigned {
                split: split as u32,
                start,
            });
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| self.failure("cannot assign the partitions", e))?;
        #[cfg(test)]
        std::thread::sleep(self.shared.config.assign_delay);
        Ok(())
    }

    /// A failure of this source, for `why`.
    fn failed(&self, why: String) -> Failure {
        Failure::new(format!("Kafka source {}: {why}", self.shared.name))
    }

    /// Group mode: applies what rebalances did to this member's partitions, and reports
    /// the offsets the group acknowledged since the last call.
    fn apply_rebalances(&mut self, out: &mut SourceOutput<Item<T>>) -> OpResult {
        apply_rebalances(&self.consumer, &mut self.batches, &mut self.owned, out)
            .map_err(|why| self.failed(why))?;
        report_committed(&self.consumer, out);
        Ok(())
    }

    /// Group mode without checkpoints: tells the consumer's context where the source has
    /// got to in each partition, for a revocation to commit (see [`SourceContext`]).
    fn publish_read(&self) {
        let mut read = self
            .consumer
            .context()
            .read
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        read.clear();
        read.extend(
            self.owned
                .iter()
                .filter_map(|o| o.next.map(|next| (o.split, next))),
        );
    }

    /// Bounded mode: the consumer reached the end of owned partition `i`, at `at` (the
    /// offset it fetches next there: past transaction markers, which a topic written
    /// with transactions often ends with). It is finished if that is at or past the end
    /// offset seen at the start. (Finishing at the consumer's end rather than exactly at
    /// the start's end offset also copes with brokers whose offset lookup reports less
    /// than the partition holds, as tansu 0.6 does for the last batch; Apache Kafka's is
    /// exact.)
    fn finish_at_eof(&mut self, i: usize, at: i64) -> OpResult {
        let Some(ends) = &self.shared.plan.end else {
            return Ok(());
        };
        let o = &mut self.owned[i];
        let next = o.next.map_or(at, |n| n.max(at));
        o.next = Some(next);
        if o.clock.is_finished() || next < ends[o.split] {
            return Ok(());
        }
        o.clock.finish();
        let split = o.split;
        self.pause(split)?;
        let group = matches!(self.shared.config.assignment, Assignment::Group(_));
        if group && !self.checkpointing {
            self.commit(&[SplitPosition {
                split: split as u32,
                of: self.shared.plan.partitions.len() as u32,
                position: next as u64,
            }])?;
        }
        Ok(())
    }

    /// Stops fetching a partition that reached its end (bounded mode).
    fn pause(&self, split: usize) -> OpResult {
        let p = &self.shared.plan.partitions[split];
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.topic, p.partition);
        self.consumer
            .pause(&tpl)
            .map_err(|e| self.failure("cannot pause a finished partition", e))
    }

    fn commit(&self, positions: &[SplitPosition]) -> OpResult {
        let mut tpl = TopicPartitionList::new();
        for p in positions {
            let id = &self.shared.plan.partitions[p.split as usize];
            tpl.add_partition_offset(&id.topic, id.partition, Offset::Offset(p.position as i64))
                .map_err(|e| self.failure("cannot build the offsets to commit", e))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        // Asynchronous: the shard does not wait; a commit lost in a crash only means that
        // the group's offsets lag one checkpoint more.
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| self.failure("cannot commit offsets", e))
    }

    /// Reads records from the owned partitions' queues in batches, each queue until it
    /// is empty or gave a fetch error, until `max` are emitted; returns how many were.
    /// Each call starts at the next partition, so that the limit starves none.
    fn read_batches(
        &mut self,
        max: usize,
        now: Instant,
        out: &mut SourceOutput<Item<T>>,
    ) -> std::result::Result<usize, Failure> {
        let mut batches = std::mem::take(&mut self.batches);
        let n = self.owned.len();
        let first = self.first_queue % n.max(1);
        self.first_queue = first + 1;
        let mut emitted = 0;
        for i in (first..n).chain(0..first) {
            let mut fetch_error = false;
            while emitted < max && !fetch_error {
                let want = (max - emitted).min(FETCH_BATCH);
                let batch = batches.take(&self.owned[i].queue, want);
                let taken = batch.len();
                let mut records = false;
                for j in 0..taken {
                    let m = batch.get(j);
                    match m.err() {
                        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {}
                        RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                            // The event's offset: the consumer's position is one past it
                            // after a batch (see `fetch`).
                            self.finish_at_eof(i, m.offset())?;
                            continue;
                        }
                        code => {
                            // As from `poll`: fetch errors are transient (librdkafka
                            // retries), transport errors count towards the broker
                            // timeout. The rest of the batch is still taken (it is
                            // consumed).
                            let e = KafkaError::MessageConsumption(code.into());
                            self.health.error(&e, "while fetching");
                            fetch_error = true;
                            continue;
                        }
                    }
                    records = true;
                    let owned = &mut self.owned[i];
                    let record = KafkaRecord {
                        topic: &self.shared.plan.partitions[owned.split].topic,
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp(),
                        key: m.key(),
                        payload: m.payload(),
                    };
                    if deliver(&self.shared, owned, &record, now, out) {
                        emitted += 1;
                    }
                }
                if records {
                    self.health.up();
                }
                if taken < want {
                    break; // the queue is empty
                }
            }
            if emitted >= max {
                break;
            }
        }
        self.batches = batches;
        Ok(emitted)
    }

    fn check_brokers(&self) -> OpResult {
        if let Some((down, why)) = self.health.down_for() {
            let limit = self.shared.config.broker_timeout;
            if down > limit {
                return Err(Failure::new(format!(
                    "Kafka source {}: the brokers at {} have been unreachable for {:.1} s, more \
                     than the broker timeout of {:.1} s (librdkafka retried all along): {why}",
                    self.shared.name,
                    self.shared.config.brokers,
                    down.as_secs_f64(),
                    limit.as_secs_f64()
                )));
            }
        }
        Ok(())
    }
}

impl<T: Data> Source<Item<T>> for KafkaPartitions<T> {
    fn poll(
        &mut self,
        out: &mut SourceOutput<Item<T>>,
        max: usize,
    ) -> std::result::Result<SourceStatus, Failure> {
        let group = matches!(self.shared.config.assignment, Assignment::Group(_));
        if group {
            if self.owned.is_empty() && self.pending.is_none() {
                // First poll: join the group.
                let topics: Vec<&str> = self
                    .shared
                    .config
                    .topics
                    .iter()
                    .map(String::as_str)
                    .collect();
                self.consumer
                    .subscribe(&topics)
                    .map_err(|e| self.failure("cannot subscribe", e))?;
                self.pending = Some(Vec::new());
            }
        } else {
            self.assign_pending(out)?;
        }
        self.check_brokers()?;
        let now = Instant::now();
        let bounded = self.shared.plan.end.is_some();
        if group && !self.checkpointing {
            self.publish_read();
        }
        // The consumer's own queue: statistics, errors, rebalances and commit results,
        // served by the poll, one event a call (rdkafka returns `None` after serving a
        // rebalance or a commit result as well as when the queue is empty). Records and
        // ends of partitions never come here: every partition's fetch queue was detached
        // before it was assigned (see `fetch`).
        match self.consumer.poll(Duration::ZERO) {
            None => {}
            Some(Ok(m)) => {
                return Err(self.failed(format!(
                    "a record of {}/{} (offset {}) reached the consumer's own queue, where \
                     the order of a partition's records is not kept: its fetch queue was not \
                     detached",
                    m.topic(),
                    m.partition(),
                    m.offset()
                )))
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                return Err(self.failed(format!(
                    "the end of partition {partition} reached the consumer's own queue: its \
                     fetch queue was not detached"
                )))
            }
            // Client errors (transport errors count towards the broker timeout;
            // librdkafka retries all along).
            Some(Err(e)) => self.health.error(&e, "from the consumer"),
        }
        // What rebalances did goes ahead of the records read after them: a revoked
        // partition's records left in its queue are dropped, a new one gets its queue.
        if group {
            self.apply_rebalances(out)?;
        }
        let emitted = self.read_batches(max, now, out)?;
        if !group {
            report_committed(&self.consumer, out);
        }
        let c = &self.shared.config;
        let combined = combine(
            self.owned.iter().map(|o| &o.clock),
            c.strategy,
            c.idle_after,
            now,
        );
        let status = if emitted > 0 {
            SourceStatus::Emitted
        } else {
            SourceStatus::Idle
        };
        match combined {
            Combined::Watermark(w) => {
                if w > out.current_watermark() {
                    out.watermark(w)?;
                }
            }
            Combined::Idle if !bounded || group => out.idle()?,
            Combined::Idle if self.owned.is_empty() => return Ok(SourceStatus::Done),
            Combined::Idle => out.idle()?,
            Combined::Finished if group => {
                let reached = self
                    .shared
                    .group_end
                    .as_ref()
                    .is_some_and(|g| g.reached.load(Ordering::Acquire));
                if reached {
                    return Ok(SourceStatus::Done);
                }
                out.idle()?;
            }
            Combined::Finished => return Ok(SourceStatus::Done),
        }
        Ok(status)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        let of = self.shared.plan.partitions.len() as u32;
        let position = |split: usize, next: i64| SplitPosition {
            split: split as u32,
            of,
            position: next.max(0) as u64,
        };
        let mut splits: Vec<SplitPosition> = match &self.pending {
            // Not yet assigned: the positions it will start at.
            Some(p) if !matches!(self.shared.config.assignment, Assignment::Group(_)) => {
                p.iter().map(|&(s, n)| position(s, n)).collect()
            }
            _ => Vec::new(),
        };
        splits.extend(
            self.owned
                .iter()
                .filter_map(|o| o.next.map(|n| position(o.split, n))),
        );
        Some(splits)
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> std::result::Result<(), Failure> {
        let n = self.shared.plan.partitions.len();
        let mut restored = Vec::with_capacity(splits.len());
        for p in splits {
            if p.of as usize != n || p.split as usize >= n {
                return Err(Failure::new(format!(
                    "Kafka source {}: the checkpoint has split {} of {} partitions, but the \
                     topics {:?} now have {n}: a restore needs the same topics and partitions",
                    self.shared.name, p.split, p.of, self.shared.config.topics
                )));
            }
            restored.push((p.split as usize, p.position as i64));
        }
        match self.shared.config.assignment {
            Assignment::Static { .. } => {
                self.pending = Some(restored);
                self.restored_static = true;
            }
            Assignment::Group(_) => {
                let mut map = self.restored.lock().unwrap_or_else(|e| e.into_inner());
                map.extend(restored);
            }
        }
        Ok(())
    }

    fn on_checkpoint_complete(
        &mut self,
        _checkpoint: u64,
        splits: &[SplitPosition],
    ) -> std::result::Result<(), Failure> {
        let commits = match &self.shared.config.assignment {
            Assignment::Group(_) => true,
            Assignment::Static { commit_group } => commit_group.is_some(),
        };
        if !commits {
            return Ok(());
        }
        if let Some(previous) = self.uncommitted.replace(splits.to_vec()) {
            self.commit(&previous)?;
        }
        Ok(())
    }

    fn lease_ahead(&self) -> u64 {
        // Offsets: far more than one poll reads.
        1 << 16
    }
}

/// The most messages one batch takes from a partition's queue.
const FETCH_BATCH: usize = 4096;

/// Hands `record` of partition `owned` to `out`, decoded or as a bad record, or skips it
/// (its partition finished; before the start time): whether it was emitted.
fn deliver<T: Data>(
    shared: &Shared<T>,
    owned: &mut Owned,
    record: &KafkaRecord<'_>,
    now: Instant,
    out: &mut SourceOutput<Item<T>>,
) -> bool {
    if owned.clock.is_finished() {
        return false;
    }
    let offset = record.offset;
    owned.next = Some(offset + 1);
    let split = owned.split as u32;
    if let Some(t) = owned.skip_before {
        if record.timestamp.is_some_and(|ts| ts < t) {
            out.give(Item::Skipped {
                split,
                next: offset + 1,
            });
            return false;
        }
        owned.skip_before = None;
    }
    match (shared.decode)(record) {
        Ok(value) => {
            let time = match &shared.config.event_time {
                EventTime::RecordTimestamp => record.timestamp.unwrap_or(Timestamp::MIN),
                EventTime::Extract(f) => f(&value),
            };
            owned.clock.observe(time, now);
            out.give(Item::Record {
                split,
                offset,
                value,
            });
        }
        Err(error) => {
            shared.bad.fetch_add(1, Ordering::Relaxed);
            owned.clock.observe(Timestamp::MIN, now);
            out.give(Item::Bad {
                split,
                record: BadRecord {
                    topic: record.topic.to_string(),
                    partition: record.partition,
                    offset,
                    payload: record.payload.unwrap_or_default().to_vec(),
                    error,
                },
            });
        }
    }
    true
}

/// Splits decoded records from bad ones.
struct SplitRecords;

impl<T: Data> Operator<Item<T>> for SplitRecords {
    type Out = (Output<T>, Output<BadRecord>);
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<Item<T>>, out: &mut Self::Out) -> OpResult {
        for item in batch.drain(..) {
            match item {
                Item::Record { value, .. } => out.0.give(value),
                Item::Bad { record, .. } => out.1.give(record),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The streams of a Kafka source.
pub struct KafkaSource<T> {
    /// The decoded records.
    pub records: Stream<T>,
    /// Records that did not decode.
    pub bad_records: Stream<BadRecord>,
    /// How many records did not decode (over all runs of this process).
    pub bad_count: Arc<AtomicU64>,
    /// The partitions the source reads (its splits).
    pub partitions: usize,
}

impl<T> std::fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("records", &self.records)
            .field("bad_records", &self.bad_records)
            .field("bad_count", &self.bad_count.load(Ordering::Relaxed))
            .field("partitions", &self.partitions)
            .finish()
    }
}

/// Reads the topics of `config`, decoding every record with `decode` (see the module
/// docs). Asks the brokers for the topics' partitions and offsets first, so an unknown
/// topic or unreachable brokers are an error here, before the job starts.
pub fn kafka_source<T, E, F>(
    df: &mut Dataflow,
    name: &str,
    config: KafkaSourceConfig<T>,
    decode: F,
) -> Result<KafkaSource<T>>
where
    T: Data,
    E: std::fmt::Display,
    F: Fn(&KafkaRecord<'_>) -> std::result::Result<T, E> + Send + Sync + 'static,
{
    let source = source_items(df, name, config, decode)?;
    let (records, bad_records) = source
        .items
        .unary_split(&format!("{name} (decode)"), |_| SplitRecords);
    Ok(KafkaSource {
        records,
        bad_records,
        bad_count: source.bad_count,
        partitions: source.plan.partitions.len(),
    })
}

/// The source's items, before an operator chained behind it splits them.
pub(crate) struct SourceItems<T> {
    pub items: Stream<Item<T>>,
    pub plan: Arc<Plan>,
    pub bad_count: Arc<AtomicU64>,
    /// Whether offsets are committed to a consumer group.
    pub commits: bool,
    /// Whether the shards are members of a consumer group (else: a static assignment).
    pub group: bool,
}

/// Plans the source and adds it to `df` (see [`kafka_source`]).
pub(crate) fn source_items<T, E, F>(
    df: &mut Dataflow,
    name: &str,
    config: KafkaSourceConfig<T>,
    decode: F,
) -> Result<SourceItems<T>>
where
    T: Data,
    E: std::fmt::Display,
    F: Fn(&KafkaRecord<'_>) -> std::result::Result<T, E> + Send + Sync + 'static,
{
    config.validate()?;
    let plan = Arc::new(plan(&config)?);
    let group_end = match (&config.assignment, config.until_end) {
        (Assignment::Group(g), true) => Some(GroupEnd::watch(
            config.brokers.clone(),
            g.clone(),
            plan.clone(),
            config.properties.clone(),
        )?),
        _ => None,
    };
    let group = matches!(config.assignment, Assignment::Group(_));
    let commits = match &config.assignment {
        Assignment::Group(_) => true,
        Assignment::Static { commit_group } => commit_group.is_some(),
    };
    let bad = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        name: name.to_string(),
        config,
        plan: plan.clone(),
        decode: Arc::new(move |r: &KafkaRecord<'_>| decode(r).map_err(|e| e.to_string())),
        bad: bad.clone(),
        group_end,
    });
    // A consumer that cannot be created (e.g. properties that conflict with the source's
    // defaults) fails the job's start, naming the source and the shard.
    let items = df.try_source(name, move |shard| {
        KafkaPartitions::new(
            shared.clone(),
            shard.index,
            shard.shards,
            shard.checkpoint().is_some(),
        )
        .map_err(Failure::from_error)
    });
    Ok(SourceItems {
        items,
        plan,
        bad_count: bad,
        commits,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_properties_win_over_the_sources_defaults() {
        let defaults = KafkaSourceConfig::<u64>::new("127.0.0.1:9092", &["t"]);
        let props = consumer_config(&defaults, "src", 0);
        assert_eq!(props.get("queued.min.messages"), Some("1000000"));
        assert_eq!(props.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(props.get("isolation.level"), Some("read_committed"));
        assert_eq!(props.get("group.id"), Some("rill-static-src"));
        let given = defaults
            .property("queued.min.messages", "100000")
            .property("fetch.wait.max.ms", "10")
            .property("isolation.level", "read_uncommitted")
            .property("enable.partition.eof", "true")
            .property("group.id", "mine")
            .group("g")
            .property("session.timeout.ms", "30000");
        let props = consumer_config(&given, "src", 1);
        assert_eq!(props.get("queued.min.messages"), Some("100000"));
        assert_eq!(props.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(props.get("isolation.level"), Some("read_uncommitted"));
        assert_eq!(props.get("enable.partition.eof"), Some("true"));
        assert_eq!(props.get("group.id"), Some("mine"));
        assert_eq!(props.get("session.timeout.ms"), Some("30000"));
        assert_eq!(props.get("client.id"), Some("rill-src-1"));
    }

    /// Reads a 3-partition topic of `per_partition` records each with `config`, the
    /// assignment waiting 300 ms after librdkafka was told (so that it fetches before the
    /// source applies it), on one shard: the (partition, offset) of every record, in the
    /// order the source emitted them.
    fn read_slowly_assigned(config: KafkaSourceConfig<(i32, i64)>, name: &str) -> Vec<(i32, i64)> {
        let mut config = config.until_end(true);
        config.assign_delay = Duration::from_millis(300);
        let mut df = Dataflow::new();
        let source = kafka_source(&mut df, name, config, |r: &KafkaRecord<'_>| {
            Ok::<_, String>((r.partition, r.offset))
        })
        .unwrap();
        let records = source.records.collect("records");
        let runtime = rill_runtime::Config::default().shards(1).pin(false);
        rill_runtime::Runtime::new(runtime)
            .unwrap()
            .run(df)
            .unwrap();
        records.take()
    }

    #[test]
    fn a_partitions_records_come_in_offset_order_however_late_its_assignment_is_applied() {
        use crate::admin::{ensure_topic, TopicWriter};
        let broker = crate::testing::TestBroker::shared();
        let b = broker.brokers();
        let (topic, partitions, per_partition) = ("assigned-late", 3, 3000);
        assert_eq!(ensure_topic(&b, topic, partitions).unwrap(), partitions);
        // Small record batches: a fetch returns part of a partition.
        let w = TopicWriter::with_properties(&b, topic, &[("batch.num.messages", "100")]).unwrap();
        for i in 0..per_partition * partitions {
            w.send((i % partitions) as i32, None, b"x").unwrap();
        }
        w.flush().unwrap();
        let static_ = KafkaSourceConfig::new(b.clone(), &[topic]);
        let group = KafkaSourceConfig::new(b.clone(), &[topic]).group("assigned-late");
        for (mode, config) in [("static", static_), ("group", group)] {
            let got = read_slowly_assigned(config, mode);
            for p in 0..partitions as i32 {
                let offsets: Vec<i64> = got.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
                let expected: Vec<i64> = (0..per_partition as i64).collect();
                assert!(
                    offsets == expected,
                    "{mode}: partition {p} came in this order: {} records, first {:?}",
                    offsets.len(),
                    &offsets[..offsets.len().min(5)]
                );
            }
        }
    }
}
