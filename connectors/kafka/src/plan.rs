//! What a source learns from the brokers before the job starts: the partitions of its
//! topics (which become its splits, in a fixed order), where each starts, and in bounded
//! mode where each ends.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::{KafkaSourceConfig, StartFrom};
use crate::error::{Error, Result};
use crate::health::HealthContext;

/// How long a request before the job starts may take.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// One partition of one of the topics: split `i` of the source is `partitions[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionId {
    pub topic: String,
    pub partition: i32,
}

/// The splits of a source, with their start and (bounded) end offsets.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub partitions: Vec<PartitionId>,
    /// The offset each partition starts at on a fresh start (static assignment).
    pub start: Vec<i64>,
    /// The earliest offset each partition held when the job started.
    pub low: Vec<i64>,
    /// Bounded mode: the end offset of each partition when the job started.
    pub end: Option<Vec<i64>>,
}

impl Plan {
    /// The split of `topic`/`partition`, if it is one of the source's.
    pub fn split_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.partitions
            .iter()
            .position(|p| p.partition == partition && p.topic == topic)
    }
}

pub(crate) fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Asks the brokers for the partitions of the topics, and their offsets.
pub(crate) fn plan<T>(config: &KafkaSourceConfig<T>) -> Result<Plan> {
    let brokers = config.brokers.clone();
    let consumer: BaseConsumer<HealthContext> = client_config(&brokers, &config.properties)
        .set("enable.auto.commit", "false")
        .create_with_context(HealthContext::default())
        .map_err(|source| Error::Client {
            brokers: brokers.clone(),
            source: Box::new(source),
        })?;
    let broker = |what: String| {
        let brokers = brokers.clone();
        move |source| Error::Broker {
            brokers,
            what,
            source: Box::new(source),
        }
    };
    let mut partitions = Vec::new();
    for topic in &config.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), SETUP_TIMEOUT)
            .map_err(broker(format!("reading the metadata of topic {topic:?}")))?;
        let mut ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if ids.is_empty() {
            return Err(Error::UnknownTopic {
                brokers: brokers.clone(),
                topic: topic.clone(),
            });
        }
        ids.sort_unstable();
        partitions.extend(ids.into_iter().map(|partition| PartitionId {
            topic: topic.clone(),
            partition,
        }));
    }
    let mut low = Vec::with_capacity(partitions.len());
    let mut high = Vec::with_capacity(partitions.len());
    for p in &partitions {
        let (l, h) = consumer
            .fetch_watermarks(&p.topic, p.partition, SETUP_TIMEOUT)
            .map_err(broker(format!(
                "reading the offsets of {}/{}",
                p.topic, p.partition
            )))?;
        low.push(l);
        high.push(h);
    }
    let start = match config.start {
        StartFrom::Earliest => low.clone(),
        StartFrom::Latest => high.clone(),
        StartFrom::Timestamp(ms) => {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(ms))
                    .map_err(broker(format!("asking for offsets at {ms}")))?;
            }
            let found = consumer
                .offsets_for_times(tpl, SETUP_TIMEOUT)
                .map_err(broker(format!("looking up the offsets at time {ms}")))?;
            partitions
                .iter()
                .zip(&high)
                .map(|(p, &h)| {
                    match found
                        .find_partition(&p.topic, p.partition)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(o)) if o >= 0 => o,
                        _ => h,
                    }
                })
                .collect()
        }
    };
    Ok(Plan {
        partitions,
        start,
        low,
        end: config.until_end.then_some(high),
    })
}
