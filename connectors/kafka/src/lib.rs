//! # rill-kafka
//!
//! Kafka for rill: [`kafka_source`] reads topics as a replayable source (partitions are
//! its splits, offsets are in rill's checkpoints, watermarks per partition) and
//! [`kafka_sink`] writes records at least once (what the broker has not acknowledged at a
//! barrier goes into the checkpoint and is sent again on restore) or exactly once (one
//! Kafka transaction per checkpoint epoch and shard, committed when the checkpoint
//! completes). Built on librdkafka (through
//! `rdkafka`), compiled from source and linked statically, without TLS, SASL or
//! compression. See `docs/kafka.md` for usage and guarantees, and `docs/scale-out.md` for
//! jobs that span processes through consumer groups.
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod admin;
mod config;
mod error;
pub mod exactly_once;
mod health;
pub mod partition_state;
mod plan;
pub mod sink;
pub mod source;
pub mod testing;
pub mod transaction;
pub mod watermark;

pub use config::{Assignment, EventTime, KafkaSinkConfig, KafkaSourceConfig, StartFrom};
pub use error::{Error, Result};
pub use exactly_once::ExactlyOnceKafkaSink;
pub use partition_state::{
    kafka_source_with_state, PartitionRecord, PartitionState, StatefulKafkaSource,
};
pub use sink::{kafka_sink, KafkaSink};
pub use source::{kafka_source, BadRecord, KafkaRecord, KafkaSource};
pub use transaction::{Marker, TransactionalProducer};
pub use watermark::PartitionWatermarks;
