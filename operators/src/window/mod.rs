//! Windows: grouping an unbounded keyed stream into finite panes, in event time or
//! processing time — the Beam model.
//!
//! A window operator is configured by a [`WindowSpec`]: which windows a record belongs to
//! ([`Windows`]), when a window emits a pane ([`Trigger`]), how successive panes of a
//! window relate ([`Accumulation`]), and how long a window waits for late records
//! (allowed lateness). A pane's value comes from an [`Aggregate`].
//!
//! ```
//! use rill_operators::prelude::*;
//! use rill_operators::window::{Sum, WindowSpec, Windows};
//! use rill_runtime::{Config, Dataflow, Runtime};
//!
//! // (key, value, event time in ms)
//! type E = (u32, i64, i64);
//! let events: Vec<E> = vec![(1, 1, 100), (1, 2, 900), (2, 5, 1500), (1, 4, 1200)];
//! let mut df = Dataflow::new();
//! let panes = df
//!     .vec_source("events", events)
//!     .key_by(|e: &E| e.0)
//!     .window(WindowSpec::event_time(Windows::tumbling(1000), |e: &E| e.2))
//!     .aggregate("sum", Sum::new(|e: &E| e.1))
//!     .collect("out");
//! Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
//! let mut got: Vec<_> = panes.take().into_iter().map(|p| (p.key, p.window.start, p.value)).collect();
//! got.sort();
//! assert_eq!(got, vec![(1, 0, 3), (1, 1000, 4), (2, 1000, 5)]);
//! ```
//!
//! ## Semantics
//!
//! - A watermark `W` says no more records with event time `< W` will come. A window is
//!   late once `W >= end` and garbage-collected once `W >= end + lateness`: its state is
//!   dropped, and later records for it are dropped and counted (or sent to the late side
//!   output of [`WindowedStream::aggregate_with_late`]). For session windows the window a
//!   record is judged by is its own `[t, t + gap)` merged with the live sessions it
//!   overlaps, so a late record that bridges into a live session is kept (Flink's rule).
//! - Pane timing: `EARLY` if fired while `W < end`; otherwise `ON_TIME` if the window is
//!   holding, else `LATE`. A window starts holding when a record is added while
//!   `W < end` and stops when it emits a non-early pane; a merged window holds if any of
//!   its parts did. Panes are numbered from 0 per window; a merged window is a new window.
//! - The on-time firing of [`Trigger::AfterWatermark`] happens even when no record arrived
//!   since the previous pane (the pane carries the aggregate of nothing). Other firings
//!   emit only when records arrived since the previous pane. At garbage collection a
//!   final pane fires only if records arrived since the previous firing. The pane fired
//!   at garbage collection, or when the trigger finishes, is marked last.
//! - Accumulation: discarding panes hold the records since the previous firing;
//!   accumulating panes hold all of them; retracting panes are accumulating and are
//!   preceded by the retraction of the window's previous value (and, for the first pane of
//!   a merged window, of the last values of the windows merged into it).
//! - Where Beam and Flink differ, rill follows Beam, except for the late-bridging session
//!   rule above. Differences from Beam: the on-time pane is guaranteed for
//!   `AfterWatermark` only (Beam also emits an empty `ON_TIME` pane at garbage
//!   collection for other triggers); count windows exist (as in Flink), and a partial
//!   count window fires when the input ends.
//! - The operator forwards its input watermark; panes are not held back by it, so a
//!   late pane may be late for a downstream event-time operator too.
//!
//! ## Cascaded windows: panes carry event time
//!
//! A pane's event time is the last instant of its window, [`Pane::timestamp`] =
//! `window.end - 1` (Flink's rule). [`WindowSpec::timestamped`] windows records by the
//! time they carry ([`Timestamped`], which panes implement), so a window over the panes
//! of another one, e.g. a count per key per window and then the largest count per window
//! (NEXMark q5), needs no time picked by hand and never finds an on-time pane late, on
//! any number of shards. Placing a pane at `window.start` instead would put it in a
//! downstream window that closed long before (see the example of
//! [`WindowSpec::timestamped`]).

mod aggregate;
mod all;
mod assigner;
mod max_by;
mod on_time;
mod operator;
mod pre_aggregate;
mod sliced;
mod slices;
mod state;
mod timestamped;
mod trigger;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_runtime::rkyv;
use rill_runtime::{Data, DroppedRecords, ShardContext, StateData, Stream, Timestamp};

use crate::key_by::KeyedStream;

pub use aggregate::{Aggregate, Collect, Count, Max, Min, Sum, Summable};
pub use all::{AllWindowedStream, WindowAll};
pub use assigner::{InvalidWindows, Windows};
pub use max_by::MaxBy;
pub use rill_runtime::state::TimeDomain;
pub use timestamped::Timestamped;
pub use trigger::{ProcessingDelay, Trigger, TriggerContext, TriggerProgram};

/// A half-open interval `[start, end)` of time in milliseconds (for count windows, of
/// record ordinals). The global window is `[Timestamp::MIN, Timestamp::MAX)`.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[rkyv(crate = rkyv)]
pub struct Window {
    /// First instant in the window.
    pub start: Timestamp,
    /// First instant after the window.
    pub end: Timestamp,
}

impl Window {
    /// The window spanning all time.
    pub const GLOBAL: Window = Window {
        start: Timestamp::MIN,
        end: Timestamp::MAX,
    };

    /// `[start, end)`.
    pub const fn new(start: Timestamp, end: Timestamp) -> Window {
        Window { start, end }
    }

    /// True if the windows share an instant (touching windows do not overlap).
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest window covering both.
    pub fn span(&self, other: &Window) -> Window {
        Window::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// When a pane fired relative to the watermark.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash,
)]
#[rkyv(crate = rkyv)]
pub enum Timing {
    /// Before the watermark passed the end of the window.
    Early,
    /// The first non-early pane of a holding window.
    OnTime,
    /// After the on-time pane, or for a window that only got late records.
    Late,
}

impl Timing {
    /// The timing of a pane fired with the watermark past the window's end or not, by a
    /// window that is holding or not (the rule of the [module docs](self)).
    pub(crate) fn of(past_end: bool, holding: bool) -> Timing {
        if !past_end {
            Timing::Early
        } else if holding {
            Timing::OnTime
        } else {
            Timing::Late
        }
    }

    /// `EARLY`, `ON_TIME` or `LATE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Timing::Early => "EARLY",
            Timing::OnTime => "ON_TIME",
            Timing::Late => "LATE",
        }
    }
}

/// One output of a window operator: a window's value at a firing, or (in retracting
/// mode) the retraction of a value emitted before.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Pane<K, V> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// The value (or the value being retracted).
    pub value: V,
    /// Early, on time or late.
    pub timing: Timing,
    /// The pane's number within its window, from 0.
    pub index: u64,
    /// True for the window's final pane.
    pub is_last: bool,
    /// True if this retracts `value`, emitted earlier for `window`.
    pub retraction: bool,
    /// Processing time of the firing.
    pub emit_time: Timestamp,
}

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

type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;
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
    fn on_shard(&self, shard: &ShardContext) -> Self {
        let mut spec = self.clone();
        spec.metrics = spec.metrics.reporting_to(shard.dropped_records());
        spec
    }

    /// This spec over records of another type, timed by `timestamp` (the counters are
    /// shared; no punctuation).
    fn timed_by<U>(
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

    /// Event-time windows over `timestamp(record)`, with the `AfterWatermark` trigger,
    /// discarding panes and no allowed lateness (see the examples of
    /// [`KeyedStream::window`] and of the window functions of [`WindowedStream`]).
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

    /// How long after the watermark passed its end a window still takes records, in ms.
    /// With `allowed_lateness(500)` the record `(2, 500)` of the example of
    /// [`WindowedStream::aggregate_with_late`] would still count: its window is kept
    /// until the watermark reaches 1500, and a late pane updates it.
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

    /// Whether [`WindowedStream::aggregate`] may pre-aggregate these windows before the
    /// key exchange where it can (the default: `true`), and whether
    /// [`window_all`](crate::window::WindowAll::window_all) may aggregate in two phases
    /// (else every record goes to one shard). Turn it off where a key's records
    /// rarely repeat within a slice on one shard: then the partials are as many as the
    /// records and the per-shard table is work for nothing. The panes are the same either
    /// way.
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
        if let Some(Err(e)) = spec.fixed.map(|w| w.validate()) {
            // Refused before the job starts (windows chosen per key are checked per key).
            self.keyed.input().invalid(name, e.to_string());
        }
        let slicing = spec
            .fixed
            .filter(|_| spec.sliced)
            .and_then(slices::Slicing::of);
        if let Some(slicing) = slicing.filter(|_| spec.fires_once()) {
            let codec: on_time::OnTimeCodec<K, G::Acc> = state::codec(state::SLICE_ACCUMULATORS);
            return self.keyed.stream().unary_split(name, move |shard| {
                state::Windowed::new(on_time::OnTimeWindowOperator::new(
                    spec.on_shard(shard),
                    slicing,
                    key.clone(),
                    agg.clone(),
                    codec.clone(),
                    shard.tracks_state(),
                    |_| 1,
                ))
            });
        }
        if let Some(slicing) = slicing {
            let codecs: sliced::SlicedCodecs<K, G::Acc, G::Out> = (
                state::codec(state::SLICED_WINDOWS),
                state::codec(state::SLICES),
            );
            return self.keyed.stream().unary_split(name, move |shard| {
                state::Windowed::new(sliced::SlicedWindowOperator::new(
                    spec.on_shard(shard),
                    slicing,
                    key.clone(),
                    agg.clone(),
                    codecs.clone(),
                    shard.tracks_state(),
                ))
            });
        }
        let codec = state::codec(state::WINDOWS);
        self.keyed.stream().unary_split(name, move |shard| {
            state::Windowed::new(operator::WindowOperator::new(
                spec.on_shard(shard),
                key.clone(),
                agg.clone(),
                codec.clone(),
                shard.tracks_state(),
            ))
        })
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

    /// The minimum of `value(record)` per window (the [`Min`] aggregate), for any
    /// `Ord + Clone` value; `None` for an empty pane (see the example of
    /// [`WindowedStream::max`]).
    pub fn min<V>(
        &self,
        name: &str,
        value: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Stream<Pane<K, Option<V>>>
    where
        K: StateData,
        V: Ord + StateData,
    {
        self.aggregate(name, Min::new(value))
    }

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
    pub fn max<V>(
        &self,
        name: &str,
        value: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Stream<Pane<K, Option<V>>>
    where
        K: StateData,
        V: Ord + StateData,
    {
        self.aggregate(name, Max::new(value))
    }

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
