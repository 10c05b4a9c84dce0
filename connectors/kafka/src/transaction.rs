//! A transactional producer with an *epoch marker*: the unit that exactly-once output to
//! Kafka is built from (the exactly-once sink uses one per shard; a repartition topic
//! between processes can use the same).
//!
//! A [`TransactionalProducer`] has a stable `transactional.id`. Creating it calls
//! `init_transactions`, which *fences* every older producer with that id (a zombie of a
//! crashed or restarted job can no longer commit) and aborts the transaction it left
//! open. Records go into the open transaction; [`TransactionalProducer::mark`] adds the
//! *marker* to it: the epoch (a checkpoint id) committed as the offset of partition 0 of
//! the output topic for the consumer group `rill-txn-<transactional.id>`, through
//! `send_offsets_to_transaction`. Kafka commits the marker atomically with the records,
//! so [`TransactionalProducer::committed_marker`] tells after a crash whether the
//! transaction of an epoch committed: librdkafka cannot commit a transaction another
//! producer instance opened, so a restarted job must find that out and produce the
//! epoch's records again if it did not (see docs/kafka.md, "Exactly-once").

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::health::HealthContext;
use crate::plan::client_config;
use crate::sink::{producer, DeliveryContext};

/// The marker of the last committed transaction of a transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The epoch (checkpoint id) of the transaction.
    pub epoch: u64,
    /// `Some(shards)`: the transaction was the last one, committed at the end of the input
    /// by a job on `shards` shards: everything the producer wrote after `epoch`'s barrier
    /// is committed too.
    pub last: Option<u32>,
}

/// The marker's metadata of a last transaction: `last/<shards>`.
const LAST: &str = "last/";

/// A producer with a stable transactional id and an epoch marker (see the module docs).
pub struct TransactionalProducer {
    producer: BaseProducer<DeliveryContext>,
    marker_reader: BaseConsumer<HealthContext>,
    group: ConsumerGroupMetadata,
    id: String,
    topic: String,
    brokers: String,
    timeout: Duration,
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The consumer group that holds the marker of transactional id `id`.
pub fn marker_group(id: &str) -> String {
    format!("rill-txn-{id}")
}

impl TransactionalProducer {
    /// A producer with transactional id `id` writing to `topic` (whose partition 0 holds
    /// the marker); fences older producers with that id. `timeout` bounds each blocking
    /// call (init, flush, marker, commit).
    pub fn new(
        brokers: &str,
        topic: &str,
        id: &str,
        properties: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self> {
        let mut props = properties.to_vec();
        props.push(("transactional.id".into(), id.into()));
        let producer = producer(brokers, &props, timeout)?;
        retrying(timeout, || producer.init_transactions(timeout))
            .map_err(|e| broker(brokers, format!("initializing transactional id {id:?}"), e))?;
        let marker_reader: BaseConsumer<HealthContext> = client_config(brokers, &[])
            .set("group.id", marker_group(id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create_with_context(HealthContext::default())
            .map_err(|source| Error::Client {
                brokers: brokers.to_string(),
                source: Box::new(source),
            })?;
        let group = marker_reader.group_metadata().ok_or_else(|| {
            Error::Config(format!(
                "no consumer group metadata for {}",
                marker_group(id)
            ))
        })?;
        Ok(TransactionalProducer {
            producer,
            marker_reader,
            group,
            id: id.to_string(),
            topic: topic.to_string(),
            brokers: brokers.to_string(),
            timeout,
        })
    }

    /// The transactional id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The producer, to send records into the open transaction (and poll it).
    pub(crate) fn producer(&self) -> &BaseProducer<DeliveryContext> {
        &self.producer
    }

    /// Queues `payload` for `partition` of the topic (or the producer's choice) in the
    /// open transaction; waits while librdkafka's queue is full, at most the timeout.
    pub fn send(&self, partition: Option<i32>, payload: &[u8]) -> Result<()> {
        crate::sink::send(
            &self.producer,
            &self.topic,
            partition,
            None,
            payload,
            self.timeout,
        )
        .map_err(|e| Error::write(&self.brokers, &self.topic, e))
    }

    /// Waits until the broker acknowledged every record sent.
    pub fn flush(&self) -> Result<()> {
        crate::sink::flush(&self.producer, self.timeout)
            .map_err(|e| Error::write(&self.brokers, &self.topic, e))
    }

    /// The marker of the last committed transaction; `None` if none committed one.
    pub fn committed_marker(&self) -> Result<Option<Marker>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        // The group coordinator may not be there yet (a new cluster creates its offsets
        // topic at the first request): retry within the timeout.
        let deadline = Instant::now() + self.timeout;
        let committed = loop {
            match self
                .marker_reader
                .committed_offsets(tpl.clone(), self.timeout)
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(self.error("reading the marker", e)),
            }
        };
        Ok(committed
            .find_partition(&self.topic, 0)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(Marker {
                    epoch: o as u64,
                    last: e.metadata().strip_prefix(LAST).and_then(|n| n.parse().ok()),
                }),
                _ => None,
            }))
    }

    /// Opens a transaction (local: no request to the broker).
    pub fn begin(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.error("beginning a transaction", e))
    }

    /// Adds `marker` to the open transaction (a request to the group coordinator).
    pub fn mark(&self, marker: Marker) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        let metadata = marker
            .last
            .map_or_else(String::new, |shards| format!("{LAST}{shards}"));
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(marker.epoch as i64))
            .map_err(|e| self.error("building the marker", e))?;
        if let Some(mut e) = tpl.find_partition(&self.topic, 0) {
            e.set_metadata(&metadata);
        }
        retrying(self.timeout, || {
            self.producer
                .send_offsets_to_transaction(&tpl, &self.group, self.timeout)
        })
        .map_err(|e| self.error(&format!("adding marker {marker:?}"), e))
    }

    /// Commits the open transaction (flushes what is in flight first).
    pub fn commit(&self) -> Result<()> {
        // librdkafka's commit flushes, but the delivery reports of a BaseProducer are
        // served only by polling it: flush (which polls) first.
        self.flush()?;
        retrying(self.timeout, || {
            self.producer.commit_transaction(self.timeout)
        })
        .map_err(|e| self.error("committing", e))
    }

    /// Aborts the open transaction (its records are dropped from the queue).
    pub fn abort(&self) -> Result<()> {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        // Serve the purged records' reports (and queued statistics): librdkafka's abort
        // waits for the application's queue to drain.
        let _ = self.producer.flush(self.timeout);
        // The purged records are reported as failed deliveries: they belong to the
        // aborted transaction, not to the next one.
        let ctx = self.producer.context();
        ctx.failed.store(0, std::sync::atomic::Ordering::Relaxed);
        *ctx.first_failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.producer
            .abort_transaction(self.timeout)
            .map_err(|e| self.error("aborting", e))
    }

    fn error(&self, what: &str, e: KafkaError) -> Error {
        broker(
            &self.brokers,
            format!("transactional id {:?}: {what}", self.id),
            e,
        )
    }
}

/// Runs `call` again while it fails with a retriable transaction error (librdkafka asks
/// the application to retry those: a coordinator that moved, a broker away for a while),
/// until `timeout` passed.
fn retrying(timeout: Duration, mut call: impl FnMut() -> KafkaResult<()>) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match call() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn broker(brokers: &str, what: String, source: KafkaError) -> Error {
    Error::Broker {
        brokers: brokers.to_string(),
        what,
        source: Box::new(source),
    }
}
