//! [`WindowSpec`]: the configuration of a window operator (which windows, in which time,
//! when they fire, how panes relate, how long they wait for late records), and its live
//! counters ([`WindowMetrics`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_runtime::state::TimeDomain;
use rill_runtime::{DroppedRecords, ShardContext, Timestamp};

use super::assigner::Windows;
use super::pane::Window;
use super::slices;
use super::trigger::{Trigger, TriggerProgram};

/// The default of [`WindowSpec::pre_aggregate_capacity`]: 65,536 entries. 4,096 would
/// flush the 10,000-key slices of the `windows` benchmark before any key repeats.
pub(crate) const PRE_AGGREGATE_ENTRIES: usize = 1 << 16;

/// How successive panes of one window relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accumulation {
    /// Each pane holds the records since the previous firing.
    #[default]
    Discarding,
    /// Each pane holds every record of the window so far.
    Accumulating,
    /// Accumulating, and each pane is preceded by the retraction of the previous one.
    Retracting,
}

pub(crate) type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;
type PunctuationFn<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;
type WindowsFn<K> = Arc<dyn Fn(&K) -> Windows + Send + Sync>;

/// The configuration of a window operator.
pub struct WindowSpec<T, K> {
    pub(crate) windows: WindowsFn<K>,
    /// The windows of every key, unless they are chosen per key.
    pub(crate) fixed: Option<Windows>,
    pub(crate) domain: TimeDomain,
    pub(crate) timestamp: TimestampFn<T>,
    pub(crate) trigger: Trigger,
    pub(crate) accumulation: Accumulation,
    pub(crate) lateness: i64,
    pub(crate) punctuation: Option<PunctuationFn<T>>,
    pub(crate) metrics: WindowMetrics,
    /// Tumbling and sliding windows are computed on slices (see [`WindowSpec::per_window`]).
    pub(crate) sliced: bool,
    /// Eligible windows are pre-aggregated before the key exchange (see
    /// [`WindowSpec::pre_aggregate`]).
    pub(crate) pre_aggregate: bool,
    /// The most (key, slice) entries a shard's pre-aggregation holds before it sends them
    /// all (see [`WindowSpec::pre_aggregate_capacity`]).
    pub(crate) pre_aggregate_entries: usize,
}

impl<T, K> std::fmt::Debug for WindowSpec<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowSpec")
            .field("domain", &self.domain)
            .field("trigger", &self.trigger)
            .field("accumulation", &self.accumulation)
            .field("lateness", &self.lateness)
            .field("punctuation", &self.punctuation.is_some())
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl<T, K> Clone for WindowSpec<T, K> {
    fn clone(&self) -> Self {
        WindowSpec {
            windows: self.windows.clone(),
            fixed: self.fixed,
            domain: self.domain,
            timestamp: self.timestamp.clone(),
            trigger: self.trigger.clone(),
            accumulation: self.accumulation,
            lateness: self.lateness,
            punctuation: self.punctuation.clone(),
            metrics: self.metrics.clone(),
            sliced: self.sliced,
            pre_aggregate: self.pre_aggregate,
            pre_aggregate_entries: self.pre_aggregate_entries,
        }
    }
}

impl<T, K> WindowSpec<T, K> {
    /// When time window `w` is garbage-collected: its end plus the allowed lateness (the
    /// one place every window operator takes it from).
    #[inline]
    pub(crate) fn gc_time(&self, w: Window) -> Timestamp {
        w.end.saturating_add(self.lateness)
    }

    /// The spec of one operator instance: its counters also count drops in the
    /// instance's shard's report.
    pub(crate) fn on_shard(&self, shard: &ShardContext) -> Self {
        let mut spec = self.clone();
        spec.metrics = spec.metrics.reporting_to(shard.dropped_records());
        spec
    }

    /// This spec over records of another type, timed by `timestamp` (the counters are
    /// shared; no punctuation).
    pub(crate) fn timed_by<U>(
        &self,
        timestamp: impl Fn(&U) -> Timestamp + Send + Sync + 'static,
    ) -> WindowSpec<U, K> {
        WindowSpec {
            windows: self.windows.clone(),
            fixed: self.fixed,
            domain: self.domain,
            timestamp: Arc::new(timestamp),
            trigger: self.trigger.clone(),
            accumulation: self.accumulation,
            lateness: self.lateness,
            punctuation: None,
            metrics: self.metrics.clone(),
            sliced: self.sliced,
            pre_aggregate: self.pre_aggregate,
            pre_aggregate_entries: self.pre_aggregate_entries,
        }
    }

    /// The slicing on which these windows can be aggregated in two phases (partials per
    /// shard and slice, merged after an exchange): tumbling or sliding windows in event
    /// time that fire once, with pre-aggregation not turned off.
    pub(crate) fn two_phase_slicing(&self) -> Option<slices::Slicing> {
        let eligible =
            self.pre_aggregate && self.domain == TimeDomain::EventTime && self.fires_once();
        self.fixed
            .filter(|_| eligible)
            .and_then(slices::Slicing::of)
    }

    /// True if every window fires exactly once, when the watermark passes its end: no
    /// allowed lateness, and a trigger that ignores elements and is not ready before the
    /// end (the default trigger, and compositions of watermark triggers).
    pub(crate) fn fires_once(&self) -> bool {
        self.lateness == 0 && TriggerProgram::new(&self.trigger).waits_for_end()
    }

    /// Event-time windows over `timestamp(record)`, with the `AfterWatermark` trigger, discarding
    /// panes and no allowed lateness (see the examples of
    /// [`KeyedStream::window`](crate::KeyedStream::window) and of the window functions of
    /// [`WindowedStream`](crate::window::WindowedStream)).
    pub fn event_time(
        windows: Windows,
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        WindowSpec {
            windows: Arc::new(move |_| windows),
            fixed: Some(windows),
            domain: TimeDomain::EventTime,
            timestamp: Arc::new(timestamp),
            trigger: Trigger::after_watermark(),
            accumulation: Accumulation::Discarding,
            lateness: 0,
            punctuation: None,
            metrics: WindowMetrics::default(),
            sliced: true,
            pre_aggregate: true,
            pre_aggregate_entries: PRE_AGGREGATE_ENTRIES,
        }
    }

    /// Processing-time windows: a record falls in the windows of its arrival time.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // Arrival times vary from run to run, so only the total is certain.
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("events", (0..100u32).collect())
    ///         .key_by(|e: &u32| e % 3)
    ///         .window(WindowSpec::processing_time(Windows::tumbling(1000)))
    ///         .count("per second")
    ///         .collect("out")
    /// });
    /// assert_eq!(out.take().iter().map(|p| p.value).sum::<u64>(), 100);
    /// ```
    pub fn processing_time(windows: Windows) -> Self {
        let mut spec = Self::event_time(windows, |_| 0);
        spec.domain = TimeDomain::ProcessingTime;
        spec
    }

    /// A policy chosen per key (e.g. a per-key session gap).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // Key 1's sessions end after 10 ms of silence, key 2's after 100 ms.
    /// let spec = WindowSpec::event_time(Windows::session(10), |c: &(u32, i64)| c.1)
    ///     .per_key(|key: &u32| Windows::session(if *key == 1 { 10 } else { 100 }));
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("clicks", vec![(1u32, 0i64), (1, 50), (2, 0), (2, 50)])
    ///         .key_by(|c: &(u32, i64)| c.0)
    ///         .window(spec)
    ///         .count("clicks")
    ///         .map("row", |p| (p.key, p.window.start, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(1, 0, 1), (1, 50, 1), (2, 0, 2)]);
    /// ```
    pub fn per_key(mut self, windows: impl Fn(&K) -> Windows + Send + Sync + 'static) -> Self {
        self.windows = Arc::new(windows);
        self.fixed = None;
        self
    }

    /// The trigger (default: [`Trigger::after_watermark`]).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // An early pane after every 2 records, then the on-time pane; panes accumulate.
    /// let spec = WindowSpec::event_time(Windows::tumbling(1000), |r: &(u32, i64)| r.1)
    ///     .trigger(Trigger::after_watermark_with(Some(Trigger::AfterCount(2)), None))
    ///     .accumulation(Accumulation::Accumulating);
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("events", vec![(1u32, 100i64), (1, 200), (1, 300)])
    ///         .key_by(|r: &(u32, i64)| r.0)
    ///         .window(spec)
    ///         .count("count")
    ///         .map("row", |p| (p.index, p.timing.as_str(), p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(0, "EARLY", 2), (1, "ON_TIME", 3)]);
    /// ```
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// How panes accumulate (default: discarding); see the example of
    /// [`WindowSpec::trigger`].
    pub fn accumulation(mut self, accumulation: Accumulation) -> Self {
        self.accumulation = accumulation;
        self
    }

    /// How long after the watermark passed its end a window still takes records, in ms. With
    /// `allowed_lateness(500)` the record `(2, 500)` of the example of
    /// [`WindowedStream::aggregate_with_late`](crate::window::WindowedStream::aggregate_with_late)
    /// would still count: its window is kept until the watermark reaches 1500, and a late pane
    /// updates it.
    pub fn allowed_lateness(mut self, lateness: i64) -> Self {
        self.lateness = lateness.max(0);
        self
    }

    /// Marks records as punctuation (for [`Trigger::Punctuation`]).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_runtime::shard_of_key;
    ///
    /// // A pane whenever a '.' arrives. The shard owning key 7 reads every record, in order,
    /// // and there is no exchange, so the panes are certain.
    /// let spec = WindowSpec::event_time(Windows::Global, |_: &(u32, char)| 0)
    ///     .trigger(Trigger::Punctuation.repeatedly())
    ///     .punctuation(|r: &(u32, char)| r.1 == '.');
    /// let out = run_on_two_shards(|df| {
    ///     df.iter_source("chars", |shard| {
    ///         let owner = shard_of_key(&7u32, shard.shards) == shard.index;
    ///         let chars = if owner { "ab.c.".chars().collect() } else { Vec::new() };
    ///         chars.into_iter().map(|c| (7u32, c))
    ///     })
    ///     .assume_keyed_by(|r: &(u32, char)| r.0)
    ///     .window(spec)
    ///     .count("chars")
    ///     .map("row", |p| (p.index, p.value))
    ///     .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(0, 3), (1, 2)]);
    /// ```
    pub fn punctuation(
        mut self,
        is_punctuation: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.punctuation = Some(Arc::new(is_punctuation));
        self
    }

    /// Computes every window on its own instead of on slices: a record updates each of
    /// its windows' accumulators. Panes are the same either way (this is the reference
    /// the sliced operator is tested against); slicing is faster for sliding windows and
    /// no slower for tumbling ones, so this is for comparison and debugging. Only
    /// tumbling and sliding windows are sliced; the others are always per window.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let spec = WindowSpec::event_time(Windows::sliding(10, 5), |c: &(u32, i64)| c.1);
    /// let counts = |spec: WindowSpec<(u32, i64), u32>| {
    ///     let out = run_on_two_shards(|df| {
    ///         df.vec_source("clicks", vec![(1u32, 3i64), (1, 7), (1, 12)])
    ///             .key_by(|c: &(u32, i64)| c.0)
    ///             .window(spec)
    ///             .count("clicks")
    ///             .map("row", |p| (p.window.start, p.value))
    ///             .collect("out")
    ///     });
    ///     let mut got = out.take();
    ///     got.sort();
    ///     got
    /// };
    /// assert_eq!(counts(spec.clone()), counts(spec.per_window()));
    /// ```
    pub fn per_window(mut self) -> Self {
        self.sliced = false;
        self
    }

    /// Whether [`WindowedStream::aggregate`](crate::window::WindowedStream::aggregate) may
    /// pre-aggregate these windows before the key exchange where it can (the default: `true`), and
    /// whether [`window_all`](crate::window::WindowAll::window_all) may aggregate in two phases
    /// (else every record goes to one shard). Turn it off where a key's records rarely repeat
    /// within a slice on one shard: then the partials are as many as the records and the per-shard
    /// table is work for nothing. The panes are the same either way.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let spec = WindowSpec::event_time(Windows::tumbling(10), |t: &i64| *t);
    /// let counts = |spec: WindowSpec<i64, i64>| {
    ///     let out = run_on_two_shards(|df| {
    ///         df.vec_source("times", vec![1i64, 2, 15, 17, 37])
    ///             .key_by(|t: &i64| t % 2)
    ///             .window(spec)
    ///             .count("count")
    ///             .map("row", |p| (p.key, p.window.start, p.value))
    ///             .collect("out")
    ///     });
    ///     let mut got = out.take();
    ///     got.sort();
    ///     got
    /// };
    /// assert_eq!(counts(spec.clone()), counts(spec.pre_aggregate(false)));
    /// ```
    pub fn pre_aggregate(mut self, on: bool) -> Self {
        self.pre_aggregate = on;
        self
    }

    /// The most (key, slice) entries each shard's pre-aggregation holds before it sends
    /// them all across the exchange (default 65,536, about 2.5 MB for a `u32` key and a
    /// `u64` accumulator). Records combine only while their key's entry is in the table,
    /// so the bound should exceed the keys a shard sees in its open slices; a smaller one
    /// bounds the memory for many keys at the cost of more partials (the panes are the
    /// same). At least 1.
    pub fn pre_aggregate_capacity(mut self, entries: usize) -> Self {
        self.pre_aggregate_entries = entries.max(1);
        self
    }

    /// Counters this operator updates (shared by its instances on every shard).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let spec = WindowSpec::event_time(Windows::tumbling(10), |t: &i64| *t);
    /// let metrics = spec.metrics();
    /// run_on_two_shards(|df| {
    ///     df.vec_source("times", vec![1i64, 2, 15, 37])
    ///         .key_by(|_: &i64| 0u32)
    ///         .window(spec)
    ///         .count("count")
    ///         .discard("out")
    /// });
    /// assert_eq!(metrics.panes(), 3);
    /// assert_eq!(metrics.max_live_windows(), 3);
    /// assert_eq!(metrics.live_windows(), 0); // all closed at the end of the input
    /// ```
    pub fn metrics(&self) -> WindowMetrics {
        self.metrics.clone()
    }
}

/// Live counters of a window operator, summed over its shards. The records it drops are
/// also in the job report, per shard
/// ([`OperatorReport::dropped`](rill_runtime::OperatorReport::dropped)).
///
/// The second field is an instance's counter in the job report (none until the operator
/// is built on a shard).
#[derive(Debug, Clone, Default)]
pub struct WindowMetrics(Arc<MetricsInner>, Option<DroppedRecords>);

#[derive(Debug, Default)]
struct MetricsInner {
    live_windows: AtomicU64,
    max_live_windows: AtomicU64,
    dropped_late: AtomicU64,
    dropped_closed: AtomicU64,
    panes: AtomicU64,
}

impl WindowMetrics {
    /// Windows holding state now.
    pub fn live_windows(&self) -> u64 {
        self.0.live_windows.load(Ordering::Relaxed)
    }
    /// The most windows that held state at once.
    pub fn max_live_windows(&self) -> u64 {
        self.0.max_live_windows.load(Ordering::Relaxed)
    }
    /// Records dropped because every window they belong to was garbage-collected.
    pub fn dropped_late(&self) -> u64 {
        self.0.dropped_late.load(Ordering::Relaxed)
    }
    /// Records dropped because their window's trigger had finished (the window closed).
    pub fn dropped_closed(&self) -> u64 {
        self.0.dropped_closed.load(Ordering::Relaxed)
    }
    /// Panes emitted (retractions included).
    pub fn panes(&self) -> u64 {
        self.0.panes.load(Ordering::Relaxed)
    }

    pub(crate) fn window_created(&self) {
        let live = self.0.live_windows.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.max_live_windows.fetch_max(live, Ordering::Relaxed);
    }
    /// `n` windows created at once (one update of the shared counters).
    pub(crate) fn windows_created(&self, n: u64) {
        if n > 0 {
            let live = self.0.live_windows.fetch_add(n, Ordering::Relaxed) + n;
            self.0.max_live_windows.fetch_max(live, Ordering::Relaxed);
        }
    }
    pub(crate) fn window_removed(&self) {
        self.windows_removed(1);
    }
    pub(crate) fn windows_removed(&self, n: u64) {
        self.0.live_windows.fetch_sub(n, Ordering::Relaxed);
    }
    /// These counters, also counting drops in `report` (one instance's counter).
    fn reporting_to(&self, report: DroppedRecords) -> Self {
        WindowMetrics(self.0.clone(), Some(report))
    }
    pub(crate) fn add_late(&self, n: u64) {
        self.0.dropped_late.fetch_add(n, Ordering::Relaxed);
        self.1.iter().for_each(|r| r.add(n));
    }
    pub(crate) fn add_closed(&self, n: u64) {
        self.0.dropped_closed.fetch_add(n, Ordering::Relaxed);
        self.1.iter().for_each(|r| r.add(n));
    }
    pub(crate) fn add_panes(&self, n: u64) {
        self.0.panes.fetch_add(n, Ordering::Relaxed);
    }
}
