//! [`WindowedStream`]: a keyed stream with a window specification, and the window
//! functions that make its operator (the spec's windows and trigger choose which of the
//! three window operators runs it, and whether it pre-aggregates: see docs/windows.md).

use rill_runtime::state::{table_codec, TimeDomain};
use rill_runtime::{Data, ExchangeData, ShardContext, StateData, Stream};

use super::aggregate::{extremum_methods, Aggregate, Collect, Count, Max, Min, Sum};
use super::all::WindowAll;
use super::assigner::Windows;
use super::pane::{AllPane, Pane, TopPane, Window};
use super::spec::WindowSpec;
use super::state::WindowBase;
use super::top::{MergeTops, TopWindowOperator, WindowTopKeys};
use super::{on_time, operator, pre_aggregate, sliced, slices, state};
use crate::flat_map::FlatMap;
use crate::key_by::KeyedStream;
use crate::summable::Summable;

/// A keyed stream with a window specification, ready for a window function.
pub struct WindowedStream<T, K> {
    keyed: KeyedStream<T, K>,
    spec: WindowSpec<T, K>,
}

impl<T, K> std::fmt::Debug for WindowedStream<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("keyed", &self.keyed)
            .field("spec", &self.spec)
            .finish()
    }
}

impl<T: Data, K: Data + std::hash::Hash + Eq> KeyedStream<T, K> {
    /// Windows this keyed stream as `spec` says; a window function on the result
    /// ([`WindowedStream::aggregate`], [`WindowedStream::count`], ...) makes the operator.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // Sliding windows of 10 ms every 5 ms: a record falls into two of them.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("clicks", vec![(1u32, 3i64), (1, 7), (1, 12)])
    ///         .key_by(|c: &(u32, i64)| c.0)
    ///         .window(WindowSpec::event_time(Windows::sliding(10, 5), |c: &(u32, i64)| c.1))
    ///         .count("clicks")
    ///         .map("row", |p| (p.window.start, p.window.end, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(-5, 5, 1), (0, 10, 2), (5, 15, 2), (10, 20, 1)]);
    /// ```
    pub fn window(&self, spec: WindowSpec<T, K>) -> WindowedStream<T, K> {
        WindowedStream {
            keyed: self.clone(),
            spec,
        }
    }
}

impl<T: Data, K: Data + std::hash::Hash + Eq> WindowedStream<T, K> {
    /// Aggregates each window with `agg` (an [`Aggregate`]: [`Sum`], [`Count`], [`Min`],
    /// [`Max`], [`Collect`] or your own); late records are dropped and counted.
    ///
    /// Tumbling and sliding event-time windows that fire once (a watermark trigger, no
    /// allowed lateness) on a stream from [`key_by`](crate::KeyBy::key_by) are
    /// pre-aggregated before the key exchange when `agg` opts in
    /// ([`Aggregate::PRE_AGGREGATE`], as the built-ins but [`Collect`] do) and the spec does
    /// not turn it off ([`WindowSpec::pre_aggregate`]): each shard sends a partial
    /// accumulator per key and slice instead of the records. The panes and the
    /// dropped counts are the same (docs/windows.md, "Pre-aggregation before the
    /// exchange").
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_operators::window::Max;
    ///
    /// // (sensor, temperature, event time in ms): the hottest reading per second.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("readings", vec![(1u32, 20i64, 100i64), (1, 25, 900), (1, 21, 1100)])
    ///         .key_by(|r: &(u32, i64, i64)| r.0)
    ///         .window(WindowSpec::event_time(Windows::tumbling(1000), |r: &(u32, i64, i64)| r.2))
    ///         .aggregate("hottest", Max::new(|r: &(u32, i64, i64)| r.1))
    ///         .map("row", |p| (p.key, p.window.start, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// // `Max` gives `None` only for an empty pane.
    /// assert_eq!(got, [(1, 0, Some(25)), (1, 1000, Some(21))]);
    /// ```
    pub fn aggregate<G: Aggregate<T, K> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> Stream<Pane<K, G::Out>>
    where
        K: StateData,
        G::Acc: StateData,
        G::Out: StateData,
    {
        match self.pre_aggregation::<G>() {
            Some((slicing, exchange)) => pre_aggregate::pre_aggregate(
                self.keyed.input(),
                exchange,
                name,
                &self.spec,
                slicing,
                self.keyed.key_fn(),
                agg,
            ),
            None => self.aggregate_with_late(name, agg).0,
        }
    }

    /// The slicing and the key exchange's name if [`WindowedStream::aggregate`] with `G`
    /// pre-aggregates before the exchange: the keyed stream has an exchange to make (not
    /// [`assume_keyed_by`](crate::KeyBy::assume_keyed_by)), `G` opts in
    /// ([`Aggregate::PRE_AGGREGATE`]) and the spec allows it ([`WindowSpec::pre_aggregate`]),
    /// and the windows are tumbling or sliding in event
    /// time and fire once (a trigger that waits for the end, no allowed lateness): then a
    /// window's pane is the merge of its slices' partials, whatever shard they were made
    /// on. Other triggers see records (counts, punctuation, processing-time delays after
    /// an element), and lateness and processing time are decided per record downstream.
    fn pre_aggregation<G: Aggregate<T, K>>(&self) -> Option<(slices::Slicing, Option<&str>)> {
        let exchange = self.keyed.exchange_name()?;
        let opted_in = G::PRE_AGGREGATE && self.spec.sliced;
        let slicing = self.spec.two_phase_slicing().filter(|_| opted_in)?;
        Some((slicing, exchange))
    }

    /// Aggregates each window with `agg`; records dropped as too late (every window they
    /// belong to was garbage-collected) go to the second stream. Never pre-aggregated
    /// before the exchange (only the final operator knows which records are late, and the
    /// side output needs them).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use std::collections::VecDeque;
    /// use rill_operators::prelude::*;
    /// use rill_operators::window::Sum;
    /// use rill_runtime::{shard_of_key, Failure, Source, SourceOutput, SourceStatus, Timestamp};
    ///
    /// // Emits (value, event time) records and watermarks (`Err`) in the given order.
    /// struct Script(VecDeque<Result<(i64, i64), Timestamp>>);
    /// impl Source<(i64, i64)> for Script {
    ///     fn poll(&mut self, out: &mut SourceOutput<(i64, i64)>, _: usize)
    ///         -> Result<SourceStatus, Failure> {
    ///         match self.0.pop_front() {
    ///             Some(Ok(r)) => out.give(r),
    ///             Some(Err(w)) => out.watermark(w)?,
    ///             None => return Ok(SourceStatus::Done),
    ///         }
    ///         Ok(SourceStatus::Emitted)
    ///     }
    /// }
    /// let (panes, late) = run_on_two_shards(|df| {
    ///     let (panes, late) = df
    ///         .source("script", |shard| {
    ///             // The shard owning key 0 plays the script; with no exchange in between, its
    ///             // window operator sees exactly these watermarks.
    ///             let owner = shard_of_key(&0u32, shard.shards) == shard.index;
    ///             let script = vec![Ok((1, 100)), Err(1000), Ok((2, 500)), Ok((4, 1200))];
    ///             Script(if owner { script.into() } else { VecDeque::new() })
    ///         })
    ///         .assume_keyed_by(|_: &(i64, i64)| 0u32)
    ///         .window(WindowSpec::event_time(Windows::tumbling(1000), |r: &(i64, i64)| r.1))
    ///         .aggregate_with_late("sum", Sum::new(|r: &(i64, i64)| r.0));
    ///     (panes.collect("panes"), late.collect("late"))
    /// });
    /// let mut sums: Vec<_> = panes.take().iter().map(|p| (p.window.start, p.value)).collect();
    /// sums.sort();
    /// // The watermark 1000 closed [0, 1000) before (2, 500) came: it went to the late stream.
    /// assert_eq!(sums, [(0, 1), (1000, 4)]);
    /// assert_eq!(late.take(), [(2, 500)]);
    /// ```
    pub fn aggregate_with_late<G: Aggregate<T, K> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> (Stream<Pane<K, G::Out>>, Stream<T>)
    where
        K: StateData,
        G::Acc: StateData,
        G::Out: StateData,
    {
        let spec = self.spec.clone();
        let key = self.keyed.key_fn();
        let (fixed, sliced, fires_once) = (spec.fixed, spec.sliced, spec.fires_once());
        // What every window operator is made of, on its shard.
        let base = move |shard: &ShardContext| {
            WindowBase::new(
                spec.on_shard(shard),
                key.clone(),
                agg.clone(),
                shard.state_changes(),
            )
        };
        if let Some(Err(e)) = fixed.map(|w| w.validate()) {
            // Refused before the job starts (windows chosen per key are checked per key).
            self.keyed.input().invalid(name, e.to_string());
        }
        let slicing = fixed.filter(|_| sliced).and_then(slices::Slicing::of);
        let input = self.keyed.stream();
        if let Some(slicing) = slicing.filter(|_| fires_once) {
            let codec: on_time::OnTimeCodec<K, G::Acc> = state::codec(state::SLICE_ACCUMULATORS);
            return input.unary_split(name, move |shard| {
                let op =
                    on_time::OnTimeWindowOperator::new(base(shard), slicing, codec.clone(), |_| 1);
                state::Windowed::new(op)
            });
        }
        if let Some(slicing) = slicing {
            let codecs = (
                state::codec(state::SLICED_WINDOWS),
                state::codec(state::SLICES),
            );
            return input.unary_split(name, move |shard| {
                let op = sliced::SlicedWindowOperator::new(base(shard), slicing, codecs.clone());
                state::Windowed::new(op)
            });
        }
        let codec = state::codec(state::WINDOWS);
        input.unary_split(name, move |shard| {
            state::Windowed::new(operator::WindowOperator::new(base(shard), codec.clone()))
        })
    }

    /// Window Top-N, for the largest value: per window, the keys whose aggregate `agg` is
    /// the largest, with that value, all of them when several tie (in no particular
    /// order): the result of `.aggregate(name, agg)` followed by
    /// `window_all(..).aggregate(.., MaxBy::new(|p| p.value))` over its panes, as one
    /// [`AllPane`] per window with records, whose window is the keyed window.
    ///
    /// Made for values that only grow as records are added (a count, a sum of
    /// non-negative values, a maximum): each window keeps its largest value and the keys
    /// at it up to date as records arrive, so a window's close emits its top keys instead
    /// of a pane per key (Flink's Window Top-N with a monotonic ranking). An aggregate
    /// whose value can shrink still gives the right top, by a scan of the window at its
    /// close when a value at the top shrank. Records cross the key exchange as they are;
    /// each shard sends its top per window to one shard (`window_all`'s two phases),
    /// which merges them.
    ///
    /// Windows must fire once: tumbling or sliding windows in event time with a trigger
    /// that waits for the end of the window and no allowed lateness (the default spec).
    /// Any other spec is refused when the job starts. Late records are dropped and
    /// counted as the window operators count them.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_operators::window::Sum;
    ///
    /// // (item, amount, event time in ms): the best-selling items per second.
    /// type Sale = (u32, u64, i64);
    /// let sales = vec![(1, 5, 100), (2, 3, 200), (2, 2, 300), (3, 1, 1100), (4, 1, 1900)];
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("sales", sales)
    ///         .key_by(|s: &Sale| s.0)
    ///         .window(WindowSpec::event_time(Windows::tumbling(1000), |s: &Sale| s.2))
    ///         .top_by("best sellers", Sum::new(|s: &Sale| s.1))
    ///         .map("row", |p| {
    ///             let mut items = p.value;
    ///             items.sort();
    ///             (p.window.start, items)
    ///         })
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(0, vec![(1, 5), (2, 5)]), (1000, vec![(3, 1), (4, 1)])]);
    /// ```
    pub fn top_by<G: Aggregate<T, K> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> Stream<TopPane<K, G::Out>>
    where
        K: StateData + ExchangeData,
        G::Acc: StateData,
        G::Out: Ord + StateData + ExchangeData,
        Pane<(), Vec<(K, G::Out)>>: StateData + ExchangeData,
        Option<(Window, Vec<(K, G::Out)>)>: StateData + ExchangeData,
    {
        let spec = self.spec.clone();
        let grid = spec.fixed.and_then(|w| w.validate().ok().and(w.grid()));
        let slicing = spec.fixed.and_then(slices::Slicing::of);
        let input = self.keyed.input();
        let (slicing, (size, period, offset)) = match (slicing, grid) {
            (Some(slicing), Some(grid))
                if spec.domain == TimeDomain::EventTime && spec.fires_once() =>
            {
                (slicing, grid)
            }
            _ => {
                input.invalid(
                    name,
                    "a top (top_by, top_count) needs tumbling or sliding windows in event \
                     time that fire once: a trigger that waits for the end of the window \
                     and no allowed lateness",
                );
                let tumbling = Windows::tumbling(1);
                (slices::Slicing::of(tumbling).expect("tumbling"), (1, 1, 0))
            }
        };
        let key = self.keyed.key_fn();
        let codec = table_codec(state::TOP_WINDOWS.0, state::TOP_WINDOWS.1);
        let tops = self.keyed.stream().unary(name, move |shard| {
            let base = WindowBase::new(
                spec.on_shard(shard),
                key.clone(),
                agg.clone(),
                shard.state_changes(),
            );
            state::Windowed::new(TopWindowOperator::new(base, slicing, codec.clone()))
        });
        // One tumbling window of `period` per window end: the shards' tops of a window
        // (placed at its end - 1) meet in the merge, which fires at that end.
        let ends = Windows::Tumbling {
            size: period,
            offset: (offset + size).rem_euclid(period),
        };
        tops.window_all(WindowSpec::timestamped(ends))
            .aggregate(&format!("{name} (merge)"), MergeTops::new())
            .flat_map(
                &format!("{name} (top)"),
                |p: AllPane<WindowTopKeys<K, G::Out>>| {
                    p.value.map(|(window, value)| AllPane {
                        window,
                        value,
                        timing: p.timing,
                        index: p.index,
                        is_last: p.is_last,
                        retraction: p.retraction,
                        emit_time: p.emit_time,
                    })
                },
            )
    }

    /// Window Top-N by record count: per window, the keys with the most records and
    /// their count ([`WindowedStream::top_by`] with [`Count`]), e.g. NEXMark q5's hot
    /// items.
    pub fn top_count(&self, name: &str) -> Stream<TopPane<K, u64>>
    where
        K: StateData + ExchangeData,
        Pane<(), Vec<(K, u64)>>: StateData + ExchangeData,
        Option<(Window, Vec<(K, u64)>)>: StateData + ExchangeData,
    {
        self.top_by(name, Count::new())
    }

    /// The sum of `value(record)` per window (the [`Sum`] aggregate), for any
    /// [`Summable`] value: integers (wrapping on overflow) or floats.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // (user, amount, event time in ms): spending per user per minute.
    /// type Order = (u32, i64, i64);
    /// let out = run_on_two_shards(|df| {
    ///     let orders = vec![(1, 5, 0), (2, 3, 10), (1, 7, 59_999), (1, 1, 60_000)];
    ///     df.vec_source("orders", orders)
    ///         .key_by(|o: &Order| o.0)
    ///         .window(WindowSpec::event_time(Windows::tumbling(60_000), |o: &Order| o.2))
    ///         .sum("spent", |o: &Order| o.1)
    ///         .map("row", |p| (p.key, p.window.start, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(1, 0, 12), (1, 60_000, 1), (2, 0, 3)]);
    /// ```
    pub fn sum<V>(
        &self,
        name: &str,
        value: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Stream<Pane<K, V>>
    where
        K: StateData,
        V: Summable + StateData,
    {
        self.aggregate(name, Sum::new(value))
    }

    /// The number of records per window (the [`Count`] aggregate).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // Sessions: a user's clicks less than 30 ms apart belong to one session.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("clicks", vec![(1u32, 0i64), (1, 20), (1, 45), (1, 200), (2, 5)])
    ///         .key_by(|c: &(u32, i64)| c.0)
    ///         .window(WindowSpec::event_time(Windows::session(30), |c: &(u32, i64)| c.1))
    ///         .count("clicks")
    ///         .map("row", |p| (p.key, p.window.start, p.window.end, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(1, 0, 75, 3), (1, 200, 230, 1), (2, 5, 35, 1)]);
    /// ```
    pub fn count(&self, name: &str) -> Stream<Pane<K, u64>>
    where
        K: StateData,
    {
        self.aggregate(name, Count::new())
    }

    extremum_methods!(
        Pane<K, Option<V>>,
        [
            K: StateData,
            V: Ord + StateData,
        ],
        /// The minimum of `value(record)` per window (the [`Min`] aggregate), for any
        /// `Ord + Clone` value; `None` for an empty pane (see the example of
        /// [`WindowedStream::max`]).
        min: Min;
        /// The maximum of `value(record)` per window (the [`Max`] aggregate), for any
        /// `Ord + Clone` value; `None` for an empty pane.
        ///
        /// ```
        /// # use rill_operators::doc_support::run_on_two_shards;
        /// use rill_operators::prelude::*;
        ///
        /// // (auction, price, event time in ms): the highest and lowest bid per auction and second.
        /// type Bid = (u32, u64, i64);
        /// let (high, low) = run_on_two_shards(|df| {
        ///     let windowed = df
        ///         .vec_source("bids", vec![(1, 30, 100), (1, 50, 700), (1, 20, 1500)])
        ///         .key_by(|b: &Bid| b.0)
        ///         .window(WindowSpec::event_time(Windows::tumbling(1000), |b: &Bid| b.2));
        ///     let high = windowed.max("high", |b: &Bid| b.1).map("row", |p| (p.window.start, p.value));
        ///     let low = windowed.min("low", |b: &Bid| b.1).map("row", |p| (p.window.start, p.value));
        ///     (high.collect("high"), low.collect("low"))
        /// });
        /// let (mut high, mut low) = (high.take(), low.take());
        /// high.sort();
        /// low.sort();
        /// assert_eq!(high, [(0, Some(50)), (1000, Some(20))]);
        /// assert_eq!(low, [(0, Some(30)), (1000, Some(20))]);
        /// ```
        max: Max;
    );

    /// Full-window processing: `f(key, window, records)` per pane (the [`Collect`]
    /// aggregate: the window keeps its records until it fires).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // The median latency per second, which needs all of a window's records.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("requests", vec![(1u32, 30i64, 10i64), (1, 10, 20), (1, 20, 30)])
    ///         .key_by(|r: &(u32, i64, i64)| r.0)
    ///         .window(WindowSpec::event_time(Windows::tumbling(1000), |r: &(u32, i64, i64)| r.2))
    ///         .process("median", |_key, _window, records: &[(u32, i64, i64)]| {
    ///             let mut latencies: Vec<i64> = records.iter().map(|r| r.1).collect();
    ///             latencies.sort();
    ///             latencies[latencies.len() / 2]
    ///         })
    ///         .map("value", |p| p.value)
    ///         .collect("out")
    /// });
    /// assert_eq!(out.take(), [20]);
    /// ```
    pub fn process<O>(
        &self,
        name: &str,
        f: impl Fn(&K, &Window, &[T]) -> O + Send + Sync + 'static,
    ) -> Stream<Pane<K, O>>
    where
        K: StateData,
        T: StateData,
        O: StateData,
    {
        self.aggregate(name, Collect::new(f))
    }
}
