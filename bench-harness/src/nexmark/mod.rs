//! NEXMark: the online-auction benchmark (Tucker et al.; Beam's and Flink's NEXMark suites).
//!
//! A deterministic [generator] of people, auctions and bids (the event set
//! depends only on the seed and the event count), a rill [source] that runs it on
//! every shard over disjoint event numbers, unthrottled or open loop at a target rate, and
//! the [queries] q0–q8, q11 and q12 written with rill's public API. Every query's
//! output rows carry the moment they could ideally have been produced, so one sink
//! measures latency for all of them. `docs/nexmark.md` is the contract: event format,
//! generator formulas, query semantics and output columns.

pub mod cli;
pub mod generate;
pub mod generator;
pub mod kafka;
pub mod model;
pub mod queries;
pub mod rows;
pub mod run;
pub mod source;
pub mod sweep;

pub use generator::GeneratorConfig;
pub use model::{Auction, Bid, Event, Person};
