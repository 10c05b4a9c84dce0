//! # rill-bench
//!
//! Workloads and measurement for rill: a synthetic keyed workload of 40-byte records run
//! unthrottled (maximum throughput) or open loop at a target rate (latency, with
//! HdrHistogram). NEXMark and the sustainable-throughput search build on these pieces.
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod csv_format;
pub mod duration;
pub mod embed;
pub mod latency;
pub mod nexmark;
pub mod plot;
pub mod replay;
pub mod signals;
pub mod synthetic;
