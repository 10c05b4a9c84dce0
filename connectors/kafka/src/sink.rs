//! The Kafka sink: at-least-once output to a topic, or exactly-once through transactions
//! ([`KafkaSinkConfig::exactly_once`], see [`crate::exactly_once`]).
//!
//! Records are handed to librdkafka's producer as they arrive (it batches and sends them
//! in the background). At a checkpoint barrier the sink *flushes*: it waits until the
//! broker acknowledged every record sent before the barrier, and fails the checkpoint
//! (and so the job) if any was not. A checkpoint therefore completes only when everything
//! before its barrier is in Kafka: after a crash the job replays from the checkpoint and
//! nothing is lost, though records sent after it may be written twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::Message;
use rill_runtime::checkpoint::StateWriter;
use rill_runtime::{Data, Failure, OpResult, Sink, Stream};

use crate::config::KafkaSinkConfig;
use crate::error::{Error, Result};
use crate::exactly_once::ExactlyOnceKafkaSink;
use crate::health::{broker_up, Health, STATS_INTERVAL_MS};
use crate::plan::client_config;

/// Counts what the broker acknowledged and what it refused.
#[derive(Debug, Default)]
pub(crate) struct DeliveryContext {
    pub(crate) health: Arc<Health>,
    pub(crate) acked: AtomicU64,
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
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
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

/// Sends `payload` to `topic` (partition `partition`, or the producer's choice), waiting
/// while librdkafka's queue is full; fails once the brokers have been unreachable for
/// longer than `timeout`.
pub(crate) fn send(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    partition: Option<i32>,
    timestamp: Option<i64>,
    payload: &[u8],
    timeout: Duration,
) -> std::result::Result<(), String> {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload);
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
                    return Err(format!(
                        "the producer's queue stayed full for {:.1} s: the brokers do not take \
                         records ({})",
                        timeout.as_secs_f64(),
                        producer
                            .context()
                            .health
                            .down_for()
                            .map_or_else(|| "no transport error".to_string(), |(_, w)| w)
                    ));
                }
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(format!("cannot send to {topic}: {e}")),
        }
    }
}

/// Waits until every record sent was acknowledged; an error if one was refused or the
/// wait passed `timeout`.
pub(crate) fn flush(
    producer: &BaseProducer<DeliveryContext>,
    timeout: Duration,
) -> std::result::Result<(), String> {
    producer.flush(timeout).map_err(|e| {
        format!(
            "{} records not acknowledged within {:.1} s ({e}){}",
            producer.in_flight_count(),
            timeout.as_secs_f64(),
            producer
                .context()
                .health
                .down_for()
                .map_or_else(String::new, |(d, w)| format!(
                    "; brokers unreachable for {:.1} s: {w}",
                    d.as_secs_f64()
                ))
        )
    })?;
    let ctx = producer.context();
    if ctx.failed.load(Ordering::Relaxed) > 0 {
        let first = ctx.first_failure.lock().unwrap_or_else(|e| e.into_inner());
        return Err(format!(
            "the broker refused {} records, the first: {}",
            ctx.failed.load(Ordering::Relaxed),
            first.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
}

pub(crate) type EncodeFn<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// One shard's instance of the Kafka sink.
pub struct KafkaSink<T> {
    name: String,
    config: Arc<KafkaSinkConfig>,
    producer: std::result::Result<BaseProducer<DeliveryContext>, String>,
    encode: EncodeFn<T>,
    buffer: Vec<u8>,
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
    fn producer(&self) -> std::result::Result<&BaseProducer<DeliveryContext>, Failure> {
        self.producer.as_ref().map_err(|e| Failure::new(e.clone()))
    }

    fn flush(&self, when: &str) -> OpResult {
        flush(self.producer()?, self.config.flush_timeout).map_err(|e| {
            Failure::new(format!(
                "Kafka sink {} ({}): {when}: {e}",
                self.name, self.config.topic
            ))
        })
    }
}

impl<T> Sink<T> for KafkaSink<T> {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        let producer = self
            .producer
            .as_ref()
            .map_err(|e| Failure::new(e.clone()))?;
        for record in batch.drain(..) {
            self.buffer.clear();
            (self.encode)(&record, &mut self.buffer);
            send(
                producer,
                &self.config.topic,
                None,
                None,
                &self.buffer,
                self.config.flush_timeout,
            )
            .map_err(|e| Failure::new(format!("Kafka sink {}: {e}", self.name)))?;
        }
        // Serve delivery reports.
        producer.poll(Duration::ZERO);
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        self.flush(&format!("at the barrier of checkpoint {checkpoint}"))
    }

    fn on_end(&mut self) -> OpResult {
        self.flush("at the end of the input")
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
        let dropped = Arc::new(AtomicU64::new(0));
        stream.sink(name, move |shard| {
            ExactlyOnceKafkaSink::new(
                sink_name.clone(),
                config.clone(),
                encode.clone(),
                shard.index,
                dropped.clone(),
            )
        });
        return Ok(());
    }
    stream.sink(name, move |shard| KafkaSink {
        name: sink_name.clone(),
        producer: producer(&config.brokers, &config.properties, config.flush_timeout)
            .map_err(|e| format!("shard {}: {e}", shard.index)),
        config: config.clone(),
        encode: encode.clone(),
        buffer: Vec::new(),
    });
    Ok(())
}
