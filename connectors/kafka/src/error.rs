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
}

/// The connector's result type.
pub type Result<T> = std::result::Result<T, Error>;
