//! Criterion benchmarks live in `benches/`; this library holds what a benchmark and its
//! test share: the bid workload and rill's hand-written q5/q7 plans, run against the
//! library's (`benches/library_vs_handwritten.rs`, `tests/library_vs_handwritten.rs`).

pub mod bids;
pub mod handwritten;
pub mod plans;
