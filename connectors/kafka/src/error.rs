//! The connector's error type.

/// What can go wrong setting up a Kafka source or sink, before the job starts. (Failures
/// while the job runs end it with a [`rill_runtime::Failure`] naming the source or sink.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not usable.
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// librdkafka refused to create a client with these properties.
    #[error("cannot create a Kafka client for {brokers}: {source}")]
    Client {
        /// The bootstrap brokers.
        brokers: String,
        /// librdkafka's error.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The brokers did not answer a request in time, or answered with an error.
    #[error("Kafka at {brokers}: {what}")]
    Broker {
        /// The bootstrap brokers.
        brokers: String,
        /// What was asked.
        what: String,
        /// librdkafka's error.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A topic does not exist (or has no partitions).
    #[error("Kafka at {brokers}: topic {topic:?} does not exist or has no partitions")]
    UnknownTopic {
        /// The bootstrap brokers.
        brokers: String,
        /// The topic.
        topic: String,
    },
    /// Creating or reading a topic outside a job failed.
    #[error("Kafka at {brokers}, topic {topic:?}: {reason}")]
    Topic {
        /// The bootstrap brokers.
        brokers: String,
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
    /// Writing to `topic` outside a sink (a [`crate::admin::TopicWriter`] or a
    /// [`crate::TransactionalProducer`]) failed.
    #[error("Kafka at {brokers}, topic {topic:?}: {source}")]
    Write {
        /// The bootstrap brokers.
        brokers: String,
        /// The topic.
        topic: String,
        /// What failed: [`Error::Send`], [`Error::QueueFull`], [`Error::Refused`] or
        /// [`Error::Unacknowledged`].
        #[source]
        source: Box<Error>,
    },
    /// librdkafka did not take a record (other than for a full queue).
    #[error("cannot send a record: {source}")]
    Send {
        /// librdkafka's error.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// librdkafka's producer queue stayed full for longer than the timeout.
    #[error(
        "the producer's queue stayed full for {:.1} s: the brokers do not take records ({})",
        waited.as_secs_f64(),
        unreachable.as_deref().unwrap_or("no transport error")
    )]
    QueueFull {
        /// How long the queue stayed full.
        waited: std::time::Duration,
        /// The last transport error, if the brokers are unreachable.
        unreachable: Option<String>,
    },
    /// The broker refused records (their deliveries failed).
    #[error("the broker refused {count} records, the first: {first}")]
    Refused {
        /// How many.
        count: u64,
        /// The first refusal: `topic/partition: error`.
        first: String,
    },
    /// Records sent were not acknowledged in time.
    #[error(
        "{in_flight} records not acknowledged within {:.1} s{}{}",
        timeout.as_secs_f64(),
        unreachable.as_ref().map_or_else(String::new, |(d, w)| format!(
            "; brokers unreachable for {:.1} s: {w}",
            d.as_secs_f64()
        )),
        source.as_ref().map_or_else(String::new, |e| format!(" ({e})"))
    )]
    Unacknowledged {
        /// The records in flight.
        in_flight: i32,
        /// How long the wait was.
        timeout: std::time::Duration,
        /// For how long the brokers have been unreachable, and the last transport error.
        unreachable: Option<(std::time::Duration, String)>,
        /// librdkafka's error of the flush, if it returned one.
        #[source]
        source: Option<Box<rdkafka::error::KafkaError>>,
    },
    /// A partition-state file could not be read, written or removed.
    #[error("partition state: could not {action} {}", path.display())]
    StateIo {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A partition-state file is corrupt, of another format, or not the file its name says.
    #[error("partition state file {}: {reason}", path.display())]
    CorruptState {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A partition resumes at an offset after its start, and the partition-state
    /// directory has no state for that offset: the state cannot be rebuilt, so the job
    /// stops rather than go on with the partition's state empty.
    #[error("the partition-state directory {} has no state of partition {topic}/{partition} at offset {offset}, where this member resumes it (the partition's earliest offset was {earliest}, so records before it were processed and their state is needed): is the directory shared by every process of the job, and were its files kept?", dir.display())]
    MissingState {
        /// The partition-state directory of the source.
        dir: std::path::PathBuf,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset the member resumes at.
        offset: i64,
        /// The partition's earliest offset when the job started.
        earliest: i64,
    },
}

impl Error {
    /// [`Error::Write`]: writing to `topic` at `brokers` failed with `source`.
    pub(crate) fn write(brokers: &str, topic: &str, source: Error) -> Error {
        Error::Write {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            source: Box::new(source),
        }
    }
}

/// The connector's result type.
pub type Result<T> = std::result::Result<T, Error>;
