//! The connector's error type.

/// What can go wrong setting up a Kafka source or sink, before the job starts. (Failures
/// while the job runs end it with a [`rill_runtime::Failure`] naming the source or sink.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not usable.
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// librdkafka refused to create a client with these properties.
    #[error("cannot create a Kafka client for {brokers}")]
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
    /// Creating, writing or reading a topic outside a job failed.
    #[error("Kafka at {brokers}, topic {topic:?}: {reason}")]
    Topic {
        /// The bootstrap brokers.
        brokers: String,
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
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
    /// [`Error::Topic`]: writing or reading `topic` at `brokers` failed for `reason`.
    pub(crate) fn topic(brokers: &str, topic: &str, reason: String) -> Error {
        Error::Topic {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            reason,
        }
    }
}

/// The connector's result type.
pub type Result<T> = std::result::Result<T, Error>;
