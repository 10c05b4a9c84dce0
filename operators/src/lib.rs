//! # rill-operators
//!
//! Operators for rill dataflows, as extension traits on [`Stream`](rill_runtime::Stream),
//! each named after its verb: [`Map`], [`Filter`], [`FlatMap`], [`Inspect`], [`KeyBy`]
//! (which yields a [`KeyedStream`] with rolling aggregates).
//!
//! ```
//! use rill_operators::prelude::*;
//! use rill_runtime::{Config, Dataflow, Runtime};
//!
//! let mut df = Dataflow::new();
//! let out = df
//!     .vec_source("words", vec!["a".to_string(), "b".into(), "a".into()])
//!     .key_by(|w: &String| w.clone())
//!     .count("count")
//!     .collect("out");
//! Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
//! let mut counts = out.take();
//! counts.sort();
//! assert_eq!(counts, vec![("a".to_string(), 1), ("a".to_string(), 2), ("b".to_string(), 1)]);
//! ```
//!
//! The examples on each operator are shorter: `run_on_two_shards(|df| ...)` builds the
//! dataflow in `df`, runs it as above on two unpinned shards and returns what the closure
//! returned (usually the [`Collected`](rill_runtime::Collected) records of its sink).
//! Records from two shards interleave, so the examples sort what they collect.
//!
//! ## Layers
//!
//! The modules form layers, lowest first, on top of `rill-runtime`. A module uses only
//! modules of lower layers (or of its own layer, without a cycle); `runtime/tests/layers.rs`
//! reads every `crate::` and `super::` path and fails on an import that climbs, here and in
//! `window` (whose submodules' layers `window/mod.rs` lists).
//!
//! 0. `doc_support`, `map`, `filter`, `flat_map`, `inspect`, `watermark`, `summable` —
//!    stateless transformations, watermark generators, the numbers sums add up.
//! 1. `file_source`, `file_sink` — files in and out.
//! 2. `key_by` — keyed streams: key functions, the key exchange, rolling aggregates.
//! 3. `window` — windows: assigners, triggers, window functions, the window operators.
//! 4. `join`, `process` — joins of two keyed streams, keyed process functions.
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

#[doc(hidden)]
pub mod doc_support;
pub mod file_sink;
pub mod file_source;
mod filter;
mod flat_map;
mod inspect;
mod join;
mod key_by;
mod map;
mod process;
mod summable;
mod watermark;
pub mod window;

pub use filter::Filter;
pub use flat_map::FlatMap;
pub use inspect::Inspect;
pub use key_by::{KeyBy, KeyedStream};
pub use map::Map;
pub use process::{ProcessContext, ProcessFunction};
pub use summable::Summable;
pub use watermark::{AssignWatermarks, WatermarkStrategy};

/// Every operator trait, for `use rill_operators::prelude::*`.
pub mod prelude {
    pub use crate::window::{Accumulation, Trigger, WindowAll, WindowSpec, Windows};
    pub use crate::{
        AssignWatermarks, Filter, FlatMap, Inspect, KeyBy, KeyedStream, Map, WatermarkStrategy,
    };
}
