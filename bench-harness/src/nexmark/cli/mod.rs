//! `rill-bench run`, `rill-bench sweep` and the default benchmark.
//!
//! `flags` holds the flags and the parsers of their values; `commands` runs the queries
//! (with a `progress` bar on long interactive runs) as short sequences of steps, and
//! prints what they measured through `report` (terminal table, JSON, CSV) and `plots`
//! (charts). Everything public is re-exported here.

mod commands;
mod flags;
mod plots;
mod progress;
mod report;

pub use commands::{default_benchmark, run_command, sweep_command};
pub use flags::{parse_ms, parse_rate, Common, FlagError, RunArgs, SweepArgs};
pub use report::RunSummary;
