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
//!
//! ## Layers
//!
//! The modules form layers, lowest first. A module uses only modules of lower layers (or
//! of its own layer, without a cycle); `tests/layers.rs` reads every `crate::` path and
//! fails on an import that climbs, so the structure stays as written here.
//!
//! 0. `time`, `sync`, `error`, `fs` — timestamps, the loom-routable atomics, the error
//!    types, durable file writes.
//! 1. `clock`, `data`, `keys`, `shard_info`, `park`, `control` — processing-time clocks, what
//!    records must be, stable key placement, where an instance runs, parking a shard, what
//!    a job's handle asks of its shards (stop, cancel, savepoint).
//! 2. `progress` — watermarks, idleness, end of stream and barriers, and how inputs
//!    combine them.
//! 3. `checkpoint`, `state` — a shard's part in checkpoints: state written at barriers,
//!    the files and their validation, what the shards and the coordinator share; keyed
//!    state tables that checkpoint incrementally.
//! 4. `push`, `head` — chained edges and operator outputs; what a shard's loop polls.
//! 5. `instrument` — record counters, time busy per operator and per shard, and which
//!    operator runs, for errors and panics.
//! 6. `exchange`, `operator` — channels between shards; the operator interfaces and the
//!    runtime's side of them (forwarding progress, aligning barriers).
//! 7. `source`, `sink` — where records enter and leave, also from and to the host program
//!    while the job runs (`source::input`, `sink::subscription`).
//! 8. `shard` — the pinned executor (the one module that uses glommio) and its loop.
//! 9. `graph` — describing a dataflow, and building it on a shard.
//! 10. `metrics`, `job_checkpoints` — job reports, live metrics and their Prometheus
//!     endpoint; checkpoint coordination for a job.
//! 11. `config`, `preflight` — settings and the machine checks before a start.
//! 12. `runtime` — starting shards and running jobs.
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod checkpoint;
pub mod clock;
mod config;
mod control;
mod data;
mod error;
pub mod exchange;
pub mod fs;
mod graph;
mod head;
mod instrument;
mod job_checkpoints;
pub mod keys;
mod metrics;
mod operator;
mod park;
pub mod preflight;
mod progress;
mod push;
mod runtime;
mod shard;
mod shard_info;
mod sink;
mod source;
pub mod state;
mod sync;
mod time;

pub use clock::Clock;
pub use config::{available_cores, Config};
pub use data::{BatchBytes, Data, ExchangeData, StateData, BATCH_ALIGN};
pub use error::{Error, Failure, OpResult, Result};
pub use exchange::channel::ChannelMetrics;
pub use exchange::route::Partitioning;
pub use graph::{Dataflow, ShardContext, Stream};
pub use instrument::DroppedRecords;
pub use keys::{hash_key, shard_of_key, KEY_GROUPS};
pub use metrics::prometheus;
pub use metrics::{
    ChannelReport, JobEnd, JobReport, MetricsServer, OperatorReport, Profile, ShardReport,
};
pub use operator::{BinaryOperator, Operator, OperatorState};
pub use progress::{Frontier, Progress};
pub use push::{Output, Outputs, SourceOutput};
pub use runtime::{JobController, JobHandle, Runtime};
pub use shard_info::ShardInfo;
pub use sink::subscription::{self, Event, Subscription};
pub use sink::{Collected, Pending, Sink};
pub use source::input::{self, InputHandle};
pub use source::{IterSource, Source, SourceStatus};
pub use time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

/// rkyv, re-exported so that record types can derive its traits with a matching version.
pub use rkyv;
