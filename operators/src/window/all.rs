//! Non-keyed windows: one result per window over all records, in two phases.
//!
//! `stream.window_all(spec).aggregate(name, agg)` first aggregates on every shard, without
//! moving records, and sends partial accumulators, not records, to one shard that merges
//! them (Flink SQL's local/global aggregation, Beam's combiner lifting). This is the
//! pre-aggregation of keyed windows (`pre_aggregate.rs`) with a single key: each shard
//! keeps a partial per slice, sends it when the watermark passes the slice's end (and at
//! every barrier, at idleness and at the end), and the operator for windows that fire
//! once merges the partials of a window's slices and fires it when the watermark passes
//! its end. A record late on its own shard goes on as a one-record partial, so the final
//! operator decides lateness and counts the drop. The first phase keeps no state across
//! a barrier (it sends its partials before it), so a restore, on any shard count, finds
//! every partial in the final operator's state or replays the records behind it.
//!
//! Two phases need windows that fire once, when the watermark passes their end
//! (tumbling or sliding windows in event time, a watermark trigger, no allowed lateness):
//! an early or late pane of a shard is only part of the window's records. Any other spec
//! (other triggers, lateness, sessions, count windows, processing time), or one that turns
//! pre-aggregation off ([`WindowSpec::pre_aggregate`]), runs in one phase: every record
//! goes to one shard, which windows them all.

use std::sync::Arc;

use rill_runtime::{ExchangeData, StateData, Stream};

use super::aggregate::{extremum_methods, Aggregate, Count, Max, Min, Sum};
use super::pane::{AllPane, Pane};
use super::pre_aggregate::pre_aggregate;
use super::spec::WindowSpec;
use crate::key_by::KeyBy;
use crate::map::Map;
use crate::summable::Summable;

/// Non-keyed windows over a stream, ready for a window function: one result per window
/// over all records. Windows that fire once (tumbling or sliding, event time, a watermark
/// trigger, no allowed lateness) are aggregated in two phases: partial accumulators per
/// shard and slice, merged on one shard, so records stay on their shards. Any
/// other spec runs in one phase, every record on one shard (docs/windows.md).
pub trait WindowAll<T> {
    /// Windows all records of the stream as `spec` says.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_operators::window::Max;
    ///
    /// // (price, event time in ms): the highest price per second, over all records.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("bids", vec![(5i64, 100i64), (9, 900), (3, 1500), (7, 1200)])
    ///         .window_all(WindowSpec::event_time(Windows::tumbling(1000), |b: &(i64, i64)| b.1))
    ///         .aggregate("highest", Max::new(|b: &(i64, i64)| b.0))
    ///         .map("row", |p| (p.window.start, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(0, Some(9)), (1000, Some(7))]);
    /// ```
    fn window_all(&self, spec: WindowSpec<T, ()>) -> AllWindowedStream<T>;
}

impl<T: ExchangeData> WindowAll<T> for Stream<T> {
    fn window_all(&self, spec: WindowSpec<T, ()>) -> AllWindowedStream<T> {
        AllWindowedStream {
            stream: self.clone(),
            spec,
        }
    }
}

/// A stream with a non-keyed window specification.
pub struct AllWindowedStream<T> {
    stream: Stream<T>,
    spec: WindowSpec<T, ()>,
}

impl<T> std::fmt::Debug for AllWindowedStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllWindowedStream")
            .field("stream", &self.stream)
            .field("spec", &self.spec)
            .finish()
    }
}

impl<T: ExchangeData + StateData> AllWindowedStream<T> {
    /// Aggregates each window's records with `agg`: one pane per window with records.
    pub fn aggregate<G: Aggregate<T, ()> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> Stream<AllPane<G::Out>>
    where
        G::Acc: StateData + ExchangeData,
        G::Out: StateData,
    {
        let panes = match self.spec.two_phase_slicing() {
            None => self
                .stream
                .key_by(|_: &T| ())
                .window(self.spec.clone())
                .aggregate(name, agg),
            Some(slicing) => pre_aggregate(
                &self.stream,
                None,
                name,
                &self.spec,
                slicing,
                Arc::new(|_: &T| ()),
                agg,
            ),
        };
        panes.map(&format!("{name} (panes)"), AllPane::from)
    }

    /// The sum of `value(record)` per window (the [`Sum`] aggregate).
    pub fn sum<V>(
        &self,
        name: &str,
        value: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Stream<AllPane<V>>
    where
        V: Summable + StateData + ExchangeData,
        Pane<(), V>: ExchangeData + StateData,
    {
        self.aggregate(name, Sum::new(value))
    }

    /// The number of records per window (the [`Count`] aggregate).
    pub fn count(&self, name: &str) -> Stream<AllPane<u64>> {
        self.aggregate(name, Count::new())
    }

    extremum_methods!(
        AllPane<Option<V>>,
        [
            V: Ord + StateData + ExchangeData,
            Option<V>: StateData + ExchangeData,
            Pane<(), Option<V>>: ExchangeData + StateData,
        ],
        /// The largest `value(record)` per window (the [`Max`] aggregate).
        max: Max;
        /// The smallest `value(record)` per window (the [`Min`] aggregate).
        min: Min;
    );
}
