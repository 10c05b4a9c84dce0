//! What a Kafka source and sink connect to, and how they read and write.

use std::sync::Arc;
use std::time::Duration;

use rill_runtime::Timestamp;

use crate::error::{Error, Result};
use crate::watermark::PartitionWatermarks;

/// Where a source starts reading a partition that has no restored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record still in the partition.
    Earliest,
    /// The end of the partition when the job starts (only records written after it).
    Latest,
    /// The first record whose Kafka timestamp is at or after this time (ms since the Unix
    /// epoch); the end if there is none.
    Timestamp(i64),
}

/// Where a record's event time comes from, for watermarks.
pub enum EventTime<T> {
    /// The record's Kafka timestamp (producer create time or broker log-append time).
    RecordTimestamp,
    /// A time the decoded record carries.
    Extract(Arc<dyn Fn(&T) -> Timestamp + Send + Sync>),
}

impl<T> Clone for EventTime<T> {
    fn clone(&self) -> Self {
        match self {
            EventTime::RecordTimestamp => EventTime::RecordTimestamp,
            EventTime::Extract(f) => EventTime::Extract(f.clone()),
        }
    }
}

impl<T> std::fmt::Debug for EventTime<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventTime::RecordTimestamp => f.write_str("RecordTimestamp"),
            EventTime::Extract(_) => f.write_str("Extract(..)"),
        }
    }
}

/// How a source is assigned its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Every partition of the topics, spread over the shards (partition index `i` on shard
    /// `i % shards`); rill's checkpoints hold the offsets. `commit_group`: a consumer
    /// group whose committed offsets mirror the completed checkpoints (for lag monitoring).
    Static {
        /// The group offsets are committed to, if any.
        commit_group: Option<String>,
    },
    /// Every shard is a member of this consumer group: the group protocol spreads the
    /// partitions over all shards of all processes with this group id, and moves them
    /// when a member leaves or joins (see docs/scale-out.md).
    Group(String),
}

/// The settings of a [`kafka_source`](crate::kafka_source).
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig<T> {
    pub(crate) brokers: String,
    pub(crate) topics: Vec<String>,
    pub(crate) assignment: Assignment,
    pub(crate) start: StartFrom,
    pub(crate) until_end: bool,
    pub(crate) event_time: EventTime<T>,
    pub(crate) strategy: PartitionWatermarks,
    pub(crate) idle_after: Option<Duration>,
    pub(crate) broker_timeout: Duration,
    pub(crate) properties: Vec<(String, String)>,
    /// Tests: see `SourceContext::assign_delay`.
    #[cfg(test)]
    pub(crate) assign_delay: Duration,
}

impl<T> KafkaSourceConfig<T> {
    /// Reads `topics` from the cluster at `brokers` (`host:port,...`): every partition,
    /// from the earliest offset, unbounded, ascending watermarks over the record
    /// timestamps, no idle timeout, giving up after the brokers were unreachable for 60 s.
    pub fn new(brokers: impl Into<String>, topics: &[&str]) -> Self {
        KafkaSourceConfig {
            brokers: brokers.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignment: Assignment::Static { commit_group: None },
            start: StartFrom::Earliest,
            until_end: false,
            event_time: EventTime::RecordTimestamp,
            strategy: PartitionWatermarks::Ascending,
            idle_after: None,
            broker_timeout: Duration::from_secs(60),
            properties: Vec::new(),
            #[cfg(test)]
            assign_delay: Duration::ZERO,
        }
    }

    /// Join consumer group `group`: see [`Assignment::Group`].
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.assignment = Assignment::Group(group.into());
        self
    }

    /// Keep the static assignment, and commit the offsets of completed checkpoints to
    /// consumer group `group`.
    pub fn commit_offsets_to(mut self, group: impl Into<String>) -> Self {
        self.assignment = Assignment::Static {
            commit_group: Some(group.into()),
        };
        self
    }

    /// Where to start a partition that has no restored (or, in a group, committed) offset.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Bounded mode: read each partition up to its end offset as seen when the job
    /// starts, then end the stream.
    pub fn until_end(mut self, until_end: bool) -> Self {
        self.until_end = until_end;
        self
    }

    /// Take event times from the decoded records instead of the Kafka timestamps.
    pub fn event_time(mut self, extract: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        self.event_time = EventTime::Extract(Arc::new(extract));
        self
    }

    /// How a partition's watermark follows its event times.
    pub fn watermarks(mut self, strategy: PartitionWatermarks) -> Self {
        self.strategy = strategy;
        self
    }

    /// A partition without data for this long is idle and does not hold the watermark
    /// back (`None`, the default: never).
    pub fn idle_after(mut self, idle: Option<Duration>) -> Self {
        self.idle_after = idle;
        self
    }

    /// Fail the job once the brokers have been unreachable for this long.
    pub fn broker_timeout(mut self, timeout: Duration) -> Self {
        self.broker_timeout = timeout;
        self
    }

    /// Sets a librdkafka consumer property (see librdkafka's CONFIGURATION.md).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_brokers(&self.brokers)?;
        if self.topics.is_empty() || self.topics.iter().any(|t| t.is_empty()) {
            return Err(Error::Config(
                "a source needs at least one topic, none empty".into(),
            ));
        }
        if let Assignment::Group(g) = &self.assignment {
            if g.is_empty() {
                return Err(Error::Config("the consumer group id is empty".into()));
            }
            if let StartFrom::Timestamp(_) = self.start {
                return Err(Error::Config(
                    "a start timestamp cannot be combined with a consumer group (partitions \
                     without committed offsets start at the earliest or latest offset)"
                        .into(),
                ));
            }
            // The source takes a group's partitions with the eager protocol (all revoked,
            // then all assigned: `assign`); librdkafka refuses that call under the
            // incremental ones.
            for (key, value) in &self.properties {
                let incremental = match key.as_str() {
                    "partition.assignment.strategy" => value.contains("cooperative"),
                    "group.protocol" => value.trim() == "consumer",
                    _ => false,
                };
                if incremental {
                    return Err(Error::Config(format!(
                        "{key}={value}: the Kafka source takes a group's partitions with the \
                         eager rebalance protocol (librdkafka's classic group protocol with the \
                         range or roundrobin assignor)"
                    )));
                }
            }
        }
        if self.broker_timeout.is_zero() {
            return Err(Error::Config("the broker timeout must be positive".into()));
        }
        if self.idle_after.is_some_and(|d| d.is_zero()) {
            return Err(Error::Config("the idle timeout must be positive".into()));
        }
        Ok(())
    }
}

pub(crate) fn check_brokers(brokers: &str) -> Result<()> {
    let ok = !brokers.is_empty()
        && brokers.split(',').all(|b| {
            b.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "brokers {brokers:?} are not a list of host:port separated by commas"
        )))
    }
}

/// The settings of a [`kafka_sink`](crate::kafka_sink).
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    pub(crate) brokers: String,
    pub(crate) topic: String,
    pub(crate) flush_timeout: Duration,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) transactional_id: Option<String>,
}

impl KafkaSinkConfig {
    /// Writes to `topic` on the cluster at `brokers`, waiting at most 60 s at a barrier
    /// for the broker to acknowledge what was sent.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSinkConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            flush_timeout: Duration::from_secs(60),
            properties: Vec::new(),
            transactional_id: None,
        }
    }

    /// Exactly-once output through Kafka transactions (see [`crate::exactly_once`]):
    /// shard `s` writes with transactional id `<prefix>-<s>`. The prefix names the job
    /// and the sink: stable across restarts (so that a restarted job fences the old
    /// one's producers), distinct between jobs and sinks writing at the same time.
    pub fn exactly_once(mut self, transactional_id_prefix: impl Into<String>) -> Self {
        self.transactional_id = Some(transactional_id_prefix.into());
        self
    }

    /// How long a barrier waits for acknowledgements before the job fails.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Sets a librdkafka producer property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_brokers(&self.brokers)?;
        if self.topic.is_empty() {
            return Err(Error::Config("the sink's topic is empty".into()));
        }
        if self.flush_timeout.is_zero() {
            return Err(Error::Config("the flush timeout must be positive".into()));
        }
        if self.transactional_id.as_deref() == Some("") {
            return Err(Error::Config(
                "an exactly-once sink needs a transactional id prefix".into(),
            ));
        }
        if let Some((key, _)) = self
            .properties
            .iter()
            .find(|(k, _)| k == "transactional.id")
        {
            return Err(Error::Config(format!(
                "the sink sets {key} itself (exactly_once gives the transactional id prefix)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let ok = KafkaSourceConfig::<u64>::new("127.0.0.1:9092", &["t"]);
        assert!(ok.validate().is_ok());
        let e = KafkaSourceConfig::<u64>::new("localhost", &["t"])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("host:port"), "{e}");
        let e = KafkaSourceConfig::<u64>::new("a:1", &[])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("topic"), "{e}");
        let e = ok
            .clone()
            .group("g")
            .start_from(StartFrom::Timestamp(5))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("consumer group"), "{e}");
        for (key, value) in [
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("group.protocol", "consumer"),
        ] {
            let e = ok
                .clone()
                .group("g")
                .property(key, value)
                .validate()
                .unwrap_err();
            assert!(e.to_string().contains("eager"), "{e}");
        }
        assert!(ok
            .clone()
            .group("g")
            .property("partition.assignment.strategy", "roundrobin")
            .validate()
            .is_ok());
        let e = KafkaSinkConfig::new("a:1", "").validate().unwrap_err();
        assert!(e.to_string().contains("topic"), "{e}");
        let e = KafkaSinkConfig::new("a:1", "t")
            .exactly_once("")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("transactional id"), "{e}");
        let e = KafkaSinkConfig::new("a:1", "t")
            .exactly_once("job")
            .property("transactional.id", "x")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("transactional.id"), "{e}");
        assert!(KafkaSinkConfig::new("a:1", "t")
            .exactly_once("job")
            .validate()
            .is_ok());
    }
}
