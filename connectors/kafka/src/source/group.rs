//! The source's side of a consumer group: the consumer's context (the rebalance
//! hand-over, acknowledged commits, broker health), applying rebalances in order with the
//! records, and the watcher that tells bounded members when the whole group is done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use rill_runtime::{Data, SourceOutput};

use super::fetch::{Batches, PartitionQueue};
use super::{Item, Owned, Start};
use crate::error::{Error, Result};
use crate::health::{broker_up, Health};
use crate::plan::{client_config, Plan};
use crate::watermark::PartitionClock;

/// How long a rebalance may wait for the group's committed offsets.
pub(super) const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// A change of a group member's partitions, as the rebalance callback saw it.
#[derive(Debug)]
pub(super) enum Rebalanced {
    /// These partitions (split, where it starts) are now the member's; `unplanned`: the
    /// ones the group gave that the job's plan does not have (`topic/partition`).
    Assigned {
        splits: Vec<(usize, Start)>,
        unplanned: Vec<String>,
    },
    /// The member no longer owns any partition.
    Revoked,
}

/// The consumer's context: broker health, and (in a group) the rebalance hand-over.
pub(super) struct SourceContext {
    pub(super) health: Arc<Health>,
    pub(super) plan: Arc<Plan>,
    /// Restored offsets not yet applied, by split: a group assignment of one of these
    /// partitions starts there instead of at the committed offset.
    pub(super) restored: Arc<Mutex<HashMap<usize, i64>>>,
    pub(super) events: Mutex<Vec<Rebalanced>>,
    /// Offsets the group acknowledged (split, offset), not yet reported.
    pub(super) committed: Mutex<Vec<(usize, i64)>>,
    /// Whether a revocation commits `read` (a job without checkpoints, whose offsets are
    /// otherwise never committed before a partition's end: without it, every rebalance
    /// would send each partition's next owner back to the start).
    pub(super) commit_on_revoke: bool,
    /// Where the source had got to in each partition (split, next offset) when it last
    /// polled the consumer: what a revocation commits. It may lag the records emitted
    /// since (read again by the next owner, never skipped).
    pub(super) read: Mutex<Vec<(usize, i64)>>,
    /// Tests: how long the rebalance callback waits after it assigned the partitions
    /// (librdkafka fetches meanwhile, into the consumer's own queue if the partitions'
    /// queues were not detached).
    #[cfg(test)]
    pub(super) assign_delay: Duration,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.health.error(&error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if broker_up(statistics) {
            self.health.up();
        }
    }
}

impl SourceContext {
    /// Commits `read` (asynchronously); a failure only means that the next owners read
    /// those records again.
    fn commit_read(&self, consumer: &BaseConsumer<Self>) {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let mut tpl = TopicPartitionList::new();
        for &(split, next) in read.iter() {
            let p = &self.plan.partitions[split];
            let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(next));
        }
        if tpl.count() > 0 {
            let _ = consumer.commit(&tpl, CommitMode::Async);
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            // Revoked (or a rebalance error): give everything back, after committing
            // where the source got to if the job keeps no checkpoints (not if the
            // partitions were already lost to another member). The commit is
            // asynchronous: librdkafka lets the member rejoin the group only once its
            // outstanding commits are answered, so the next owners start from it.
            if self.commit_on_revoke && !consumer.assignment_lost() {
                self.commit_read(consumer);
            }
            let _ = consumer.unassign();
            events.push(Rebalanced::Revoked);
            return;
        }
        // The group's committed offsets, so that the member knows where each partition
        // starts before its first record (a blocking request, once per rebalance).
        let committed = consumer
            .committed_offsets(tpl.clone(), COMMITTED_TIMEOUT)
            .map_err(|e| format!("reading the group's committed offsets failed: {e}"));
        let mut restored = self.restored.lock().unwrap_or_else(|e| e.into_inner());
        let mut assigned = Vec::new();
        let mut unplanned = Vec::new();
        let elements: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in elements.iter().cloned() {
            let Some(split) = self.plan.split_of(&topic, partition) else {
                unplanned.push(format!("{topic}/{partition}"));
                continue;
            };
            let group = committed.as_ref().map(|c| {
                match c.find_partition(&topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => Some(o),
                    _ => None,
                }
            });
            // A restored offset (this process's own checkpoint) is used unless the group
            // committed a later one since (another member went on with the partition).
            let start = match (restored.remove(&split), group) {
                (Some(r), Ok(Some(c))) => Start::At(r.max(c)),
                (Some(r), _) => Start::At(r),
                (None, Ok(Some(c))) => Start::At(c),
                (None, Ok(None)) => Start::Fresh(None),
                (None, Err(e)) => Start::Unknown(e.clone()),
            };
            if let Some(offset) = start.offset() {
                let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset));
            }
            assigned.push((split, start));
        }
        // Each partition's records stay in its own fetch queue, which the source reads:
        // detached before the assignment starts fetching (see `fetch`). A partition
        // librdkafka refuses here is refused again when the source applies the event,
        // which then fails.
        for (topic, partition) in &elements {
            drop(PartitionQueue::detach(consumer, topic, *partition));
        }
        let _ = consumer.assign(tpl);
        // A partition this member paused when it finished it before (bounded mode) may
        // come back: it is read again from the committed offset.
        let _ = consumer.resume(tpl);
        #[cfg(test)]
        std::thread::sleep(self.assign_delay);
        events.push(Rebalanced::Assigned {
            splits: assigned,
            unplanned,
        });
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if result.is_err() {
            return;
        }
        let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        for e in offsets.elements() {
            if let (Some(split), Offset::Offset(o), None) = (
                self.plan.split_of(e.topic(), e.partition()),
                e.offset(),
                e.error().err(),
            ) {
                committed.push((split, o));
            }
        }
    }
}

/// Watches, in bounded group mode, whether the group has committed every partition's
/// end offset: then every member is done.
#[derive(Debug, Default)]
pub(super) struct GroupEnd {
    pub(super) reached: AtomicBool,
}

impl GroupEnd {
    /// Starts a thread that checks the group's committed offsets every 300 ms for as long
    /// as the returned handle lives.
    pub(super) fn watch(
        brokers: String,
        group: String,
        plan: Arc<Plan>,
        properties: Vec<(String, String)>,
    ) -> Result<Arc<Self>> {
        let consumer: BaseConsumer = client_config(&brokers, &properties)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|source| Error::Client {
                brokers: brokers.clone(),
                source: Box::new(source),
            })?;
        let end = Arc::new(GroupEnd::default());
        let weak: Weak<GroupEnd> = Arc::downgrade(&end);
        std::thread::Builder::new()
            .name("rill-kafka-group-end".into())
            .spawn(move || {
                let ends = plan.end.clone().unwrap_or_default();
                let mut tpl = TopicPartitionList::new();
                for p in &plan.partitions {
                    tpl.add_partition(&p.topic, p.partition);
                }
                while let Some(end) = weak.upgrade() {
                    if let Ok(committed) = consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
                        let all = plan.partitions.iter().zip(&ends).all(|(p, &e)| {
                            e <= 0
                                || matches!(
                                    committed.find_partition(&p.topic, p.partition).map(|c| c.offset()),
                                    Some(Offset::Offset(o)) if o >= e
                                )
                        });
                        if all {
                            end.reached.store(true, Ordering::Release);
                            return;
                        }
                    }
                    drop(end);
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the group watcher thread: {e}")))?;
        Ok(end)
    }
}

/// Group mode: applies what rebalances (run inside the consumer's poll) did to this
/// member's partitions, and tells the operators behind the source (in order with the
/// records). A revoked partition's records left in its queue
/// are dropped; a newly assigned one gets a handle of its queue (detached in the
/// rebalance callback). An error (why) if librdkafka refuses a partition's queue.
pub(super) fn apply_rebalances<T: Data>(
    consumer: &BaseConsumer<SourceContext>,
    batches: &mut Batches,
    owned: &mut Vec<Owned>,
    out: &mut SourceOutput<Item<T>>,
) -> std::result::Result<(), String> {
    let context = consumer.context();
    let events = {
        let mut events = context.events.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *events)
    };
    let now = Instant::now();
    for event in events {
        match event {
            Rebalanced::Revoked => {
                for o in owned.drain(..) {
                    batches.purge(&o.queue);
                }
                out.give(Item::Revoked);
            }
            Rebalanced::Assigned { splits, unplanned } => {
                if !unplanned.is_empty() {
                    // Reading them would need splits the job's checkpoints and state do
                    // not have; leaving them unread would leave them unread by the whole
                    // group (the group gave them to this member).
                    return Err(format!(
                        "the group assigned partitions the job was not planned with: {} \
                         (added after the job started, which found {} partitions of {:?}); \
                         start the job again without restoring (from the group's committed \
                         offsets: a restore needs the partitions it was planned with) to read \
                         them",
                        unplanned.join(", "),
                        context.plan.partitions.len(),
                        topics(&context.plan)
                    ));
                }
                for (split, start) in splits {
                    let p = &context.plan.partitions[split];
                    let queue = PartitionQueue::detach(consumer, &p.topic, p.partition)?;
                    owned.push(Owned {
                        split,
                        next: start.offset(),
                        clock: PartitionClock::new(now),
                        skip_before: None,
                        queue,
                    });
                    out.give(Item::Assigned {
                        split: split as u32,
                        start,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Reports the offsets the group acknowledged (commit callbacks run inside the poll).
pub(super) fn report_committed<T: Data>(
    consumer: &BaseConsumer<SourceContext>,
    out: &mut SourceOutput<Item<T>>,
) {
    let committed = {
        let mut c = consumer
            .context()
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *c)
    };
    for (split, offset) in committed {
        out.give(Item::Committed {
            split: split as u32,
            offset,
        });
    }
}

/// The plan's topics, each once, in order.
fn topics(plan: &Plan) -> Vec<&str> {
    let mut topics: Vec<&str> = plan.partitions.iter().map(|p| p.topic.as_str()).collect();
    topics.dedup();
    topics
}
