//! Support for the doc examples (hidden from the docs): one call that builds, runs and
//! hands back a small dataflow, so that an example shows only the operators it is about.

use rill_runtime::{Config, Dataflow, Runtime};

/// Builds a dataflow with `build`, runs it to the end on two unpinned shards
/// (`Config::default().shards(2).pin(false)`) and returns what `build` returned, usually
/// the [`Collected`](rill_runtime::Collected) records of its sink. Records from two shards
/// interleave, so sort them before comparing.
///
/// ```
/// use rill_operators::doc_support::run_on_two_shards;
///
/// let out = run_on_two_shards(|df| df.vec_source("numbers", vec![3, 1, 2]).collect("out"));
/// let mut got = out.take();
/// got.sort();
/// assert_eq!(got, [1, 2, 3]);
/// ```
///
/// # Panics
///
/// If the runtime cannot start or the job fails: an example should fail loudly.
pub fn run_on_two_shards<R>(build: impl FnOnce(&mut Dataflow) -> R) -> R {
    let mut df = Dataflow::new();
    let result = build(&mut df);
    Runtime::new(Config::default().shards(2).pin(false))
        .expect("the runtime starts")
        .run(df)
        .expect("the example job runs");
    result
}
