//! Non-keyed windows: one result per window over all records, in two phases.
//!
//! `stream.window_all(spec).aggregate(name, agg)` first aggregates on every shard, without
//! moving records: a window operator keyed by `()` on each shard's own records makes one
//! partial accumulator per window (Flink SQL's local aggregation, Beam's combiner
//! lifting). The partials go to one shard per window (exchanged by window) where a second
//! window operator merges them and emits the pane. A shard sends one partial per window it
//! has records of, so no shard receives every record.
//!
//! The second phase reads each partial at its pane's timestamp (the end of its window
//! minus one, [`Pane::timestamp`]) and closes a window when the watermark passes its
//! end. Every upstream shard sends its partial before it forwards a watermark past the
//! window's end, so every partial is in when the merged pane fires, on time.
//!
//! Two phases need windows that fire once, when the watermark passes their end
//! (tumbling or sliding windows in event time, a watermark trigger, no allowed lateness):
//! an early or late pane of a shard is only part of the window's records. Any other spec
//! (other triggers, lateness, sessions, count windows, processing time) runs in one phase:
//! every record goes to one shard, which windows them all.

use std::marker::PhantomData;

use rill_runtime::{Data, ExchangeData, StateData, Stream};

use crate::key_by::KeyBy;
use crate::window::{
    Aggregate, Count, Max, Min, Pane, Sum, Summable, TimeDomain, Window, WindowSpec, Windows,
};
use crate::Map;

/// Non-keyed windows over a stream, ready for a window function: one result per window
/// over all records. Windows that fire once (tumbling or sliding, event time, a watermark
/// trigger, no allowed lateness) are aggregated in two phases: a partial accumulator per
/// shard and window, merged on one shard per window, so records stay on their shards. Any
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
    /// True if the windows can be aggregated in two phases (see the [module docs](self)).
    fn two_phase(&self) -> bool {
        let tumbling_or_sliding = matches!(
            self.spec.fixed,
            Some(Windows::Tumbling { .. } | Windows::Sliding { .. })
        );
        tumbling_or_sliding && self.spec.domain == TimeDomain::EventTime && self.spec.fires_once()
    }

    /// Aggregates each window's records with `agg`: one pane per window with records.
    pub fn aggregate<G: Aggregate<T, ()> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> Stream<Pane<(), G::Out>>
    where
        G::Acc: StateData + ExchangeData,
        G::Out: StateData,
        Pane<(), G::Acc>: ExchangeData + StateData,
        Pane<Window, G::Out>: Data,
    {
        if !self.two_phase() {
            return self
                .stream
                .key_by(|_: &T| ())
                .window(self.spec.clone())
                .aggregate(name, agg);
        }
        let partials = self
            .stream
            .assume_keyed_by(|_: &T| ())
            .window(self.spec.clone())
            .aggregate(&format!("{name} (partial)"), Partial(agg.clone()));
        // Each partial falls in exactly its own window: a tumbling grid per window.
        let merged = WindowSpec::event_time(Windows::tumbling(1), |p: &Pane<(), G::Acc>| {
            p.window.end - 1
        })
        .per_key(|w: &Window| {
            let size = w.end - w.start;
            Windows::Tumbling {
                size,
                offset: w.start.rem_euclid(size),
            }
        });
        partials
            .key_by(|p: &Pane<(), G::Acc>| p.window)
            .window(merged)
            .aggregate(name, MergePartials(agg, PhantomData))
            .map(&format!("{name} (panes)"), |p: Pane<Window, G::Out>| Pane {
                key: (),
                window: p.key,
                value: p.value,
                timing: p.timing,
                index: p.index,
                is_last: p.is_last,
                retraction: p.retraction,
                emit_time: p.emit_time,
            })
    }

    /// The sum of `value(record)` per window (the [`Sum`] aggregate).
    pub fn sum<V>(
        &self,
        name: &str,
        value: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Stream<Pane<(), V>>
    where
        V: Summable + StateData + ExchangeData,
        Pane<(), V>: ExchangeData + StateData,
    {
        self.aggregate(name, Sum::new(value))
    }

    /// The number of records per window (the [`Count`] aggregate).
    pub fn count(&self, name: &str) -> Stream<Pane<(), u64>> {
        self.aggregate(name, Count::new())
    }

    /// The largest `value(record)` per window (the [`Max`] aggregate).
    pub fn max<V>(
        &self,
        name: &str,
        value: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Stream<Pane<(), Option<V>>>
    where
        V: Ord + StateData + ExchangeData,
        Option<V>: StateData + ExchangeData,
        Pane<(), Option<V>>: ExchangeData + StateData,
    {
        self.aggregate(name, Max::new(value))
    }

    /// The smallest `value(record)` per window (the [`Min`] aggregate).
    pub fn min<V>(
        &self,
        name: &str,
        value: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Stream<Pane<(), Option<V>>>
    where
        V: Ord + StateData + ExchangeData,
        Option<V>: StateData + ExchangeData,
        Pane<(), Option<V>>: ExchangeData + StateData,
    {
        self.aggregate(name, Min::new(value))
    }
}

/// The first phase: a shard's accumulator of a window is the pane's value.
#[derive(Clone)]
struct Partial<G>(G);

impl<T, G: Aggregate<T, ()>> Aggregate<T, ()> for Partial<G> {
    type Acc = G::Acc;
    type Out = G::Acc;
    fn create(&self) -> G::Acc {
        self.0.create()
    }
    #[inline]
    fn add(&self, acc: &mut G::Acc, record: &T) {
        self.0.add(acc, record)
    }
    fn merge(&self, acc: &mut G::Acc, other: G::Acc) {
        self.0.merge(acc, other)
    }
    fn result(&self, _: &(), _: &Window, acc: &G::Acc) -> G::Acc {
        acc.clone()
    }
}

/// The second phase: merges the shards' partial accumulators of a window (the key).
struct MergePartials<G, T>(G, PhantomData<fn(&T)>);

impl<G: Clone, T> Clone for MergePartials<G, T> {
    fn clone(&self) -> Self {
        MergePartials(self.0.clone(), PhantomData)
    }
}

impl<T: 'static, G: Aggregate<T, ()>> Aggregate<Pane<(), G::Acc>, Window> for MergePartials<G, T> {
    type Acc = G::Acc;
    type Out = G::Out;
    fn create(&self) -> G::Acc {
        self.0.create()
    }
    fn add(&self, acc: &mut G::Acc, partial: &Pane<(), G::Acc>) {
        self.0.merge(acc, partial.value.clone())
    }
    fn merge(&self, acc: &mut G::Acc, other: G::Acc) {
        self.0.merge(acc, other)
    }
    fn result(&self, _: &Window, window: &Window, acc: &G::Acc) -> G::Out {
        self.0.result(&(), window, acc)
    }
}
