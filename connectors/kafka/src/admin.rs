//! Topics and plain producing, outside a job: creating a topic, writing records to chosen
//! partitions (what `rill-bench generate --kafka` does), reading a topic back (for tests).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::health::HealthContext;
use crate::plan::{client_config, SETUP_TIMEOUT};
use crate::sink::{flush, producer, send, DeliveryContext};

fn broker_error(
    brokers: &str,
    what: String,
) -> impl FnOnce(rdkafka::error::KafkaError) -> Error + '_ {
    move |source| Error::Broker {
        brokers: brokers.to_string(),
        what,
        source: Box::new(source),
    }
}

/// The number of partitions of `topic`, or `None` if it does not exist.
pub fn partition_count(brokers: &str, topic: &str) -> Result<Option<usize>> {
    crate::config::check_brokers(brokers)?;
    let consumer: BaseConsumer<HealthContext> = client_config(brokers, &[])
        .create_with_context(HealthContext::default())
        .map_err(|source| Error::Client {
            brokers: brokers.to_string(),
            source: Box::new(source),
        })?;
    let metadata = consumer
        .fetch_metadata(Some(topic), SETUP_TIMEOUT)
        .map_err(broker_error(
            brokers,
            format!("reading the metadata of {topic:?}"),
        ))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

/// Creates `topic` with `partitions` partitions (replication 1) unless it exists; returns
/// its partition count (which may differ from `partitions` if it existed).
pub fn ensure_topic(brokers: &str, topic: &str, partitions: usize) -> Result<usize> {
    if let Some(n) = partition_count(brokers, topic)? {
        return Ok(n);
    }
    if partitions == 0 {
        return Err(Error::Config("a topic needs at least one partition".into()));
    }
    let admin: AdminClient<HealthContext> = client_config(brokers, &[])
        .create_with_context(HealthContext::default())
        .map_err(|source| Error::Client {
            brokers: brokers.to_string(),
            source: Box::new(source),
        })?;
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
    let options = AdminOptions::new().request_timeout(Some(SETUP_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(broker_error(brokers, format!("creating topic {topic:?}")))?;
    for r in results {
        if let Err((_, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(Error::Topic {
                    brokers: brokers.to_string(),
                    topic: topic.to_string(),
                    reason: format!("cannot create it: {code}"),
                });
            }
        }
    }
    // The metadata may lag the creation a little.
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        if let Some(n) = partition_count(brokers, topic)? {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(Error::UnknownTopic {
                brokers: brokers.to_string(),
                topic: topic.to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes records to chosen partitions of one topic, and waits for their
/// acknowledgement at [`TopicWriter::flush`].
pub struct TopicWriter {
    brokers: String,
    topic: String,
    producer: BaseProducer<DeliveryContext>,
    timeout: Duration,
}

impl std::fmt::Debug for TopicWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicWriter")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl TopicWriter {
    /// A writer to `topic` at `brokers`.
    pub fn new(brokers: &str, topic: &str) -> Result<Self> {
        TopicWriter::with_properties(brokers, topic, &[])
    }

    /// A writer with librdkafka producer properties on top of its defaults (e.g.
    /// `batch.num.messages`, 10,000 by default).
    pub fn with_properties(
        brokers: &str,
        topic: &str,
        properties: &[(&str, &str)],
    ) -> Result<Self> {
        crate::config::check_brokers(brokers)?;
        let timeout = Duration::from_secs(60);
        let props: Vec<(String, String)> = [
            ("linger.ms", "10"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
        ]
        .iter()
        .chain(properties)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Ok(TopicWriter {
            producer: producer(brokers, &props, timeout)?,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            timeout,
        })
    }

    /// Queues `payload` for `partition` with Kafka timestamp `timestamp` (ms).
    pub fn send(&self, partition: i32, timestamp: Option<i64>, payload: &[u8]) -> Result<()> {
        send(
            &self.producer,
            &self.topic,
            Some(partition),
            timestamp,
            payload,
            self.timeout,
        )
        .map_err(|e| Error::write(&self.brokers, &self.topic, e))
    }

    /// Waits until the broker acknowledged every record queued.
    pub fn flush(&self) -> Result<()> {
        flush(&self.producer, self.timeout).map_err(|e| Error::write(&self.brokers, &self.topic, e))
    }
}

/// The consumer's position in `topic`/`partition` (the offset it fetches next), if known.
pub(crate) fn position_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Reads every record's value of every partition of `topic`, from the earliest offset
/// until the consumer reaches each partition's end at or after the end offset seen at the
/// start (for tests and checks). It reads with `read_committed` isolation (librdkafka's
/// default): records of aborted or open transactions are not returned.
pub fn read_topic(brokers: &str, topic: &str) -> Result<Vec<Vec<u8>>> {
    let Some(partitions) = partition_count(brokers, topic)? else {
        return Err(Error::UnknownTopic {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        });
    };
    let consumer: BaseConsumer<HealthContext> = client_config(brokers, &[])
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("group.id", "rill-read-topic")
        .set("isolation.level", "read_committed")
        .create_with_context(HealthContext::default())
        .map_err(|source| Error::Client {
            brokers: brokers.to_string(),
            source: Box::new(source),
        })?;
    let mut ends = Vec::new();
    let mut next = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        let (low, high) =
            consumer
                .fetch_watermarks(topic, p, SETUP_TIMEOUT)
                .map_err(broker_error(
                    brokers,
                    format!("reading the offsets of {topic}/{p}"),
                ))?;
        ends.push(high);
        next.push(low);
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .map_err(broker_error(brokers, "assigning".into()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(broker_error(brokers, "assigning".into()))?;
    let mut done = vec![false; partitions];
    let mut out = Vec::new();
    let mut last = Instant::now();
    while done.iter().any(|d| !d) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let p = m.partition() as usize;
                if !done[p] {
                    next[p] = m.offset() + 1;
                    out.push(m.payload().unwrap_or_default().to_vec());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // (The consumer's position passes transaction markers, which are no
                // records: a transactional topic's last offset is often one.)
                let position = position_of(&consumer, topic, p);
                let p = p as usize;
                if p < partitions && next[p].max(position.unwrap_or(0)) >= ends[p] {
                    done[p] = true;
                }
            }
            Some(Err(_)) | None => {
                if last.elapsed() > SETUP_TIMEOUT {
                    return Err(Error::Topic {
                        brokers: brokers.to_string(),
                        topic: topic.to_string(),
                        reason: "the topic could not be read to its end".into(),
                    });
                }
            }
        }
    }
    Ok(out)
}
