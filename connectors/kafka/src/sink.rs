//! The Kafka sink: at-least-once output to a topic, or exactly-once through transactions
//! ([`KafkaSinkConfig::exactly_once`], see [`crate::exactly_once`]).
//!
//! Records are handed to librdkafka's producer as they arrive (it batches and sends them
//! in the background), each tagged with its *epoch* (the barriers it falls between), and
//! a copy of each epoch's records is kept until the broker acknowledged all of them
//! (delivery reports, counted per epoch). At a checkpoint barrier the sink does not wait
//! for the broker: it writes the records of the epochs not yet acknowledged into its
//! checkpoint state, and a restore sends them again. So everything before a completed
//! checkpoint's barrier is either in Kafka or in the checkpoint: nothing is lost, though
//! records may be written twice. A refused record fails the job (which restarts from the
//! last checkpoint). At the end of the input the sink waits for every acknowledgement.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::Message;
use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::{Data, Failure, OpResult, Pending, Sink, Stream};

use crate::config::KafkaSinkConfig;
use crate::error::{Error, Result};
use crate::exactly_once::{framed_at, ExactlyOnceKafkaSink};
use crate::health::{broker_up, Health, STATS_INTERVAL_MS};
use crate::plan::client_config;

/// Counts what the broker acknowledged (in all, and per tag: a record's delivery opaque,
/// the at-least-once sink's epoch) and what it refused.
#[derive(Debug, Default)]
pub(crate) struct DeliveryContext {
    pub(crate) health: Arc<Health>,
    pub(crate) acked: AtomicU64,
    pub(crate) acked_by_tag: Mutex<BTreeMap<usize, u64>>,
    pub(crate) failed: AtomicU64,
    pub(crate) first_failure: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.health.error(&error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if broker_up(statistics) {
            self.health.up();
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                // Tag 0: untracked (the topic writer, the exactly-once sink).
                if tag != 0 {
                    let mut by_tag = self.acked_by_tag.lock().unwrap_or_else(|e| e.into_inner());
                    *by_tag.entry(tag).or_default() += 1;
                }
            }
            Err((e, m)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| format!("{}/{}: {e}", m.topic(), m.partition()));
            }
        }
    }
}

/// Creates a producer for `brokers` with `properties`, delivery reports counted.
pub(crate) fn producer(
    brokers: &str,
    properties: &[(String, String)],
    message_timeout: Duration,
) -> Result<BaseProducer<DeliveryContext>> {
    let mut c = client_config(brokers, &[]);
    c.set("statistics.interval.ms", STATS_INTERVAL_MS)
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        )
        .set("linger.ms", "5");
    for (k, v) in properties {
        c.set(k, v);
    }
    c.create_with_context(DeliveryContext::default())
        .map_err(|source| Error::Client {
            brokers: brokers.to_string(),
            source: Box::new(source),
        })
}

/// Sends `payload` to `topic` (partition `partition`, or the producer's choice), its
/// delivery counted under `tag`, waiting while librdkafka's queue is full; fails once the
/// brokers have been unreachable for longer than `timeout`.
pub(crate) fn send(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    partition: Option<i32>,
    timestamp: Option<i64>,
    payload: &[u8],
    timeout: Duration,
) -> Result<()> {
    send_tagged(producer, topic, partition, timestamp, payload, timeout, 0)
}

/// [`send`] with the delivery counted under `tag`.
pub(crate) fn send_tagged(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    partition: Option<i32>,
    timestamp: Option<i64>,
    payload: &[u8],
    timeout: Duration,
    tag: usize,
) -> Result<()> {
    let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, tag).payload(payload);
    record.partition = partition;
    record.timestamp = timestamp;
    let mut waiting: Option<Instant> = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                let since = *waiting.get_or_insert_with(Instant::now);
                if since.elapsed() > timeout {
                    return Err(queue_full_error(producer, timeout));
                }
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => {
                return Err(Error::Send {
                    source: Box::new(e),
                })
            }
        }
    }
}

/// Hands `payload` to the producer for `topic` without waiting, its delivery counted
/// under `tag`: false if librdkafka's queue is full (the caller keeps the record and tries
/// again later).
pub(crate) fn try_send(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    payload: &[u8],
    tag: usize,
) -> Result<bool> {
    let record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, tag).payload(payload);
    match producer.send(record) {
        Ok(()) => Ok(true),
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Ok(false),
        Err((e, _)) => Err(Error::Send {
            source: Box::new(e),
        }),
    }
}

/// The error for a producer whose queue stayed full for longer than `timeout`.
pub(crate) fn queue_full_error(
    producer: &BaseProducer<DeliveryContext>,
    timeout: Duration,
) -> Error {
    Error::QueueFull {
        waited: timeout,
        unreachable: producer.context().health.down_for().map(|(_, w)| w),
    }
}

/// A refused record, if the broker refused one.
pub(crate) fn refused(producer: &BaseProducer<DeliveryContext>) -> Option<Error> {
    let ctx = producer.context();
    let count = ctx.failed.load(Ordering::Relaxed);
    (count > 0).then(|| {
        let first = ctx.first_failure.lock().unwrap_or_else(|e| e.into_inner());
        Error::Refused {
            count,
            first: first.clone().unwrap_or_else(|| "?".to_string()),
        }
    })
}

/// The error for records not acknowledged within `timeout` (`source`: the flush's error).
pub(crate) fn unacknowledged_error(
    producer: &BaseProducer<DeliveryContext>,
    timeout: Duration,
    source: Option<KafkaError>,
) -> Error {
    Error::Unacknowledged {
        in_flight: producer.in_flight_count(),
        timeout,
        unreachable: producer.context().health.down_for(),
        source: source.map(Box::new),
    }
}

/// Waits until every record sent was acknowledged; an error if one was refused or the
/// wait passed `timeout`.
pub(crate) fn flush(producer: &BaseProducer<DeliveryContext>, timeout: Duration) -> Result<()> {
    producer
        .flush(timeout)
        .map_err(|e| unacknowledged_error(producer, timeout, Some(e)))?;
    refused(producer).map_or(Ok(()), Err)
}

/// A failure of Kafka sink `name` writing to `topic`.
fn sink_failure(name: &str, topic: &str, e: Error) -> Failure {
    Failure::caused_by(format!("Kafka sink {name} ({topic})"), e)
}

pub(crate) type EncodeFn<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// The records of one epoch (between two barriers) not all acknowledged yet.
#[derive(Debug)]
struct Unconfirmed {
    tag: usize,
    /// Records handed to the producer.
    sent: u64,
    acked: u64,
    /// The records, each a 4-byte little-endian length and the bytes.
    framed: Vec<u8>,
    /// The bytes of `framed` whose records were handed to the producer (the rest waits
    /// for room in its queue).
    handed: usize,
}

impl Unconfirmed {
    fn done(&self) -> bool {
        self.handed == self.framed.len() && self.acked >= self.sent
    }
}

/// The state section of the at-least-once sink: the framed records not acknowledged at
/// the barrier.
const UNCONFIRMED: &str = "kafka-unconfirmed";

/// One shard's instance of the at-least-once Kafka sink.
pub struct KafkaSink<T> {
    name: String,
    shard: u32,
    config: Arc<KafkaSinkConfig>,
    producer: BaseProducer<DeliveryContext>,
    encode: EncodeFn<T>,
    buffer: Vec<u8>,
    /// Epochs with records not handed over or in flight, oldest first; the last is the
    /// current one.
    unconfirmed: VecDeque<Unconfirmed>,
    next_tag: usize,
    /// Since when librdkafka's queue has been full (records wait to be handed over).
    full_since: Option<Instant>,
    /// When the input ended (the sink then waits for every acknowledgement).
    ended_at: Option<Instant>,
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("topic", &self.config.topic)
            .finish_non_exhaustive()
    }
}

impl<T> KafkaSink<T> {
    fn fail(&self, e: Error) -> Failure {
        sink_failure(&self.name, &self.config.topic, e)
    }

    /// Takes `payload` into the current epoch (a copy is kept until it is acknowledged);
    /// [`Self::hand_over`] gives it to the producer.
    fn take(&mut self, payload: &[u8]) {
        if self.unconfirmed.is_empty() {
            self.new_epoch();
        }
        let epoch = self.unconfirmed.back_mut().expect("an epoch");
        epoch
            .framed
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        epoch.framed.extend_from_slice(payload);
    }

    /// Hands the records taken to the producer, oldest first, until its queue is full
    /// (never waits: what does not fit waits for the next call). Fails once the queue
    /// stayed full for longer than the flush timeout.
    fn hand_over(&mut self) -> OpResult {
        let producer = &self.producer;
        for epoch in &mut self.unconfirmed {
            while epoch.handed < epoch.framed.len() {
                let (record, next) = framed_at(&epoch.framed, epoch.handed)?;
                match try_send(producer, &self.config.topic, record, epoch.tag) {
                    Ok(true) => {
                        epoch.handed = next;
                        epoch.sent += 1;
                    }
                    Ok(false) => {
                        let since = *self.full_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > self.config.flush_timeout {
                            let e = queue_full_error(producer, self.config.flush_timeout);
                            return Err(sink_failure(&self.name, &self.config.topic, e));
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(sink_failure(&self.name, &self.config.topic, e)),
                }
            }
        }
        self.full_since = None;
        Ok(())
    }

    fn new_epoch(&mut self) {
        self.next_tag += 1;
        self.unconfirmed.push_back(Unconfirmed {
            tag: self.next_tag,
            sent: 0,
            acked: 0,
            framed: Vec::new(),
            handed: 0,
        });
    }

    /// Serves delivery reports, fails on a refused record, and forgets the epochs whose
    /// records were all acknowledged.
    fn confirm(&mut self) -> OpResult {
        let producer = &self.producer;
        producer.poll(Duration::ZERO);
        if let Some(e) = refused(producer) {
            return Err(self.fail(e));
        }
        let ctx = producer.context();
        let acked =
            std::mem::take(&mut *ctx.acked_by_tag.lock().unwrap_or_else(|e| e.into_inner()));
        for epoch in &mut self.unconfirmed {
            epoch.acked += acked.get(&epoch.tag).copied().unwrap_or(0);
        }
        let current = self.unconfirmed.back().map(|e| e.tag);
        self.unconfirmed
            .retain(|e| !e.done() || Some(e.tag) == current);
        Ok(())
    }
}

impl<T> Sink<T> for KafkaSink<T> {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        let mut buffer = std::mem::take(&mut self.buffer);
        for record in batch.drain(..) {
            buffer.clear();
            (self.encode)(&record, &mut buffer);
            self.take(&buffer);
        }
        self.buffer = buffer;
        self.hand_over()?;
        self.confirm()
    }

    /// No waiting for the broker here: the records taken before the barrier that it has
    /// not acknowledged yet (handed over or not) go into the checkpoint, and a restore
    /// sends them again.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.confirm()?;
        let mut framed = Vec::new();
        for epoch in &self.unconfirmed {
            if !epoch.done() {
                framed.extend_from_slice(&epoch.framed);
            }
        }
        self.new_epoch();
        state.section(UNCONFIRMED, 1).put_split(self.shard, framed)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        for framed in state.section(UNCONFIRMED, 1)?.values::<Vec<u8>>()? {
            for record in crate::exactly_once::records(&framed)? {
                self.take(record);
            }
        }
        self.hand_over()
    }

    /// Waits for nothing: the shard polls the sink ([`Sink::poll_pending`]) until every
    /// record was acknowledged.
    fn on_end(&mut self) -> OpResult {
        self.ended_at = Some(Instant::now());
        self.hand_over()?;
        self.confirm()
    }

    /// Blocked while records wait for room in librdkafka's queue; at the end, working
    /// until every record was acknowledged.
    fn pending(&self) -> Pending {
        if self.unconfirmed.iter().any(|e| e.handed < e.framed.len()) {
            Pending::Blocked
        } else if self.ended_at.is_some() && self.unconfirmed.iter().any(|e| !e.done()) {
            Pending::Working
        } else {
            Pending::Nothing
        }
    }

    fn poll_pending(&mut self) -> OpResult {
        self.confirm()?;
        self.hand_over()?;
        if let Some(at) = self.ended_at {
            let timeout = self.config.flush_timeout;
            if at.elapsed() > timeout && self.unconfirmed.iter().any(|e| !e.done()) {
                let e = unacknowledged_error(&self.producer, timeout, None);
                return Err(Failure::caused_by(
                    format!(
                        "Kafka sink {} ({}): at the end of the input",
                        self.name, self.config.topic
                    ),
                    e,
                ));
            }
        }
        Ok(())
    }
}

/// Writes `stream` to the topic of `config`, each record's value written by `encode`
/// into the buffer it is given (see the module docs).
pub fn kafka_sink<T, F>(
    stream: &Stream<T>,
    name: &str,
    config: KafkaSinkConfig,
    encode: F,
) -> Result<()>
where
    T: Data,
    F: Fn(&T, &mut Vec<u8>) + Send + Sync + 'static,
{
    config.validate()?;
    // Fail before the job starts if librdkafka refuses the properties.
    producer(&config.brokers, &config.properties, config.flush_timeout)?;
    let config = Arc::new(config);
    let encode: EncodeFn<T> = Arc::new(encode);
    let sink_name = name.to_string();
    // A missing topic is an error now, not refused records later (and the exactly-once
    // sink's markers name partition 0 of it).
    if crate::admin::partition_count(&config.brokers, &config.topic)?.is_none() {
        return Err(Error::UnknownTopic {
            brokers: config.brokers.clone(),
            topic: config.topic.clone(),
        });
    }
    if config.transactional_id.is_some() {
        stream.sink(name, move |shard| {
            ExactlyOnceKafkaSink::new(
                sink_name.clone(),
                config.clone(),
                encode.clone(),
                shard.index,
                shard.shards,
                shard.dropped_records(),
            )
        });
        return Ok(());
    }
    // A producer that cannot be created fails the job's start (naming the sink and the
    // shard).
    stream.try_sink(name, move |shard| {
        Ok(KafkaSink {
            name: sink_name.clone(),
            shard: shard.index as u32,
            unconfirmed: VecDeque::new(),
            next_tag: 0,
            full_since: None,
            ended_at: None,
            producer: producer(&config.brokers, &config.properties, config.flush_timeout)
                .map_err(Failure::from_error)?,
            config: config.clone(),
            encode: encode.clone(),
            buffer: Vec::new(),
        })
    });
    Ok(())
}
