//! `rill-bench replay`: a recorded event log replayed through one keyed windowed
//! aggregation on a simulated processing-time clock, deterministically, through the same
//! engine as the library.
//!
//! [`parse`] reads the log and the options into plain data, [`run`] builds and runs the
//! dataflow, [`cli`] is the command itself.

pub mod cli;
pub mod parse;
pub mod run;
