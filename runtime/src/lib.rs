//! # rill-runtime
//!
//! The core of rill, a thread-per-core streaming dataflow runtime: pinned shards (one
//! glommio executor per core), a dataflow graph whose operators run one instance per
//! shard, exchanges that move rkyv-serialized batches between shards over lock-free SPSC
//! rings, and credit-based backpressure that slows producers down to the sources.
//!
//! Build a [`Dataflow`] from [`Stream`]s, then hand it to a [`Runtime`]. Transformations,
//! windows and joins live in the `rill-operators` crate, built on [`Operator`] and
//! [`BinaryOperator`].
//!
//! The library does not set a global allocator; rill's binaries, tests and benchmarks use
//! mimalloc, and embedders are advised to do the same (glibc's malloc trims its heap
//! when a buffer allocated on one thread is freed on another).
#![warn(missing_docs)]

pub mod checkpoint;
pub mod clock;
mod config;
mod context;
mod data;
mod error;
pub mod exchange;
mod graph;
mod head;
mod instrument;
pub mod keys;
mod metrics;
mod operator;
mod park;
pub mod preflight;
mod progress;
mod push;
mod runtime;
mod shard;
mod sink;
mod source;
mod sync;
mod time;

pub use clock::Clock;
pub use config::{available_cores, Config};
pub use context::ShardInfo;
pub use data::{BatchBytes, Data, ExchangeData, BATCH_ALIGN};
pub use error::{Error, Failure, OpResult, Result};
pub use exchange::channel::ChannelMetrics;
pub use exchange::route::Partitioning;
pub use graph::{Dataflow, Stream};
pub use keys::{hash_key, shard_of_key, KEY_GROUPS};
pub use metrics::{ChannelReport, JobReport, OperatorReport};
pub use operator::{BinaryOperator, Operator};
pub use progress::{Frontier, Progress};
pub use push::{Output, Outputs, SourceOutput};
pub use runtime::{JobHandle, Runtime};
pub use sink::{Collected, Sink};
pub use source::{IterSource, Source, SourceStatus};
pub use time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

/// rkyv, re-exported so that record types can derive its traits with a matching version.
pub use rkyv;
