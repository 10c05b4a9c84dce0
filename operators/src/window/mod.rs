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

mod aggregate;
mod assigner;
mod operator;
mod trigger;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_runtime::rkyv;
use rill_runtime::{Data, Stream, Timestamp};

use crate::key_by::KeyedStream;

pub use aggregate::{Aggregate, Collect, Count, Max, Min, Sum};
pub use assigner::Windows;
pub use operator::{WindowKeyRecord, WindowRecord};
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

/// Which clock windows are measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// Record timestamps; windows close when the watermark passes their end.
    EventTime,
    /// Arrival (processing) time; windows close when processing time passes their end,
    /// and when the input ends.
    ProcessingTime,
}

type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;
type PunctuationFn<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;
type WindowsFn<K> = Arc<dyn Fn(&K) -> Windows + Send + Sync>;

/// The configuration of a window operator.
pub struct WindowSpec<T, K> {
    pub(crate) windows: WindowsFn<K>,
    pub(crate) domain: TimeDomain,
    pub(crate) timestamp: TimestampFn<T>,
    pub(crate) trigger: Trigger,
    pub(crate) accumulation: Accumulation,
    pub(crate) lateness: i64,
    pub(crate) punctuation: Option<PunctuationFn<T>>,
    pub(crate) metrics: WindowMetrics,
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
            domain: self.domain,
            timestamp: self.timestamp.clone(),
            trigger: self.trigger.clone(),
            accumulation: self.accumulation,
            lateness: self.lateness,
            punctuation: self.punctuation.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<T, K> WindowSpec<T, K> {
    /// Event-time windows over `timestamp(record)`, with the `AfterWatermark` trigger,
    /// discarding panes and no allowed lateness.
    pub fn event_time(
        windows: Windows,
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        WindowSpec {
            windows: Arc::new(move |_| windows),
            domain: TimeDomain::EventTime,
            timestamp: Arc::new(timestamp),
            trigger: Trigger::after_watermark(),
            accumulation: Accumulation::Discarding,
            lateness: 0,
            punctuation: None,
            metrics: WindowMetrics::default(),
        }
    }

    /// Processing-time windows: a record falls in the windows of its arrival time.
    pub fn processing_time(windows: Windows) -> Self {
        let mut spec = Self::event_time(windows, |_| 0);
        spec.domain = TimeDomain::ProcessingTime;
        spec
    }

    /// A policy chosen per key (e.g. a per-key session gap).
    pub fn per_key(mut self, windows: impl Fn(&K) -> Windows + Send + Sync + 'static) -> Self {
        self.windows = Arc::new(windows);
        self
    }

    /// The trigger (default: [`Trigger::after_watermark`]).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// How panes accumulate (default: discarding).
    pub fn accumulation(mut self, accumulation: Accumulation) -> Self {
        self.accumulation = accumulation;
        self
    }

    /// How long after the watermark passed its end a window still takes records, in ms.
    pub fn allowed_lateness(mut self, lateness: i64) -> Self {
        self.lateness = lateness.max(0);
        self
    }

    /// Marks records as punctuation (for [`Trigger::Punctuation`]).
    pub fn punctuation(
        mut self,
        is_punctuation: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.punctuation = Some(Arc::new(is_punctuation));
        self
    }

    /// Counters this operator updates (shared by its instances on every shard).
    pub fn metrics(&self) -> WindowMetrics {
        self.metrics.clone()
    }
}

/// Live counters of a window operator, summed over its shards.
#[derive(Debug, Clone, Default)]
pub struct WindowMetrics(Arc<MetricsInner>);

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
    pub(crate) fn window_removed(&self) {
        self.0.live_windows.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn add_late(&self, n: u64) {
        self.0.dropped_late.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_closed(&self, n: u64) {
        self.0.dropped_closed.fetch_add(n, Ordering::Relaxed);
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
    /// Windows this keyed stream as `spec` says.
    pub fn window(&self, spec: WindowSpec<T, K>) -> WindowedStream<T, K> {
        WindowedStream {
            keyed: self.clone(),
            spec,
        }
    }
}

impl<T: Data, K: Data + std::hash::Hash + Eq> WindowedStream<T, K> {
    /// Aggregates each window with `agg`; late records are dropped and counted.
    pub fn aggregate<G: Aggregate<T, K> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> Stream<Pane<K, G::Out>> {
        self.aggregate_with_late(name, agg).0
    }

    /// Aggregates each window with `agg`; records dropped as too late (every window they
    /// belong to was garbage-collected) go to the second stream.
    pub fn aggregate_with_late<G: Aggregate<T, K> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> (Stream<Pane<K, G::Out>>, Stream<T>) {
        self.aggregate_with(name, agg, None)
    }

    fn aggregate_with<G: Aggregate<T, K> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
        codec: Option<operator::WindowCodec<K, G::Acc, G::Out>>,
    ) -> (Stream<Pane<K, G::Out>>, Stream<T>) {
        let spec = self.spec.clone();
        let key = self.keyed.key_fn();
        self.keyed.stream().unary_split(name, move |_| {
            operator::WindowOperator::new(spec.clone(), key.clone(), agg.clone(), codec.clone())
        })
    }

    /// Like [`WindowedStream::aggregate`], and the windows (accumulators, pane and
    /// trigger state) and timers of every key are written to checkpoints and restored,
    /// onto any shard count (see `rill_runtime::checkpoint`). Needs rkyv-serializable
    /// keys, accumulators and results.
    pub fn aggregate_checkpointed<G: Aggregate<T, K> + Send + Sync>(
        &self,
        name: &str,
        agg: G,
    ) -> Stream<Pane<K, G::Out>>
    where
        (u32, WindowKeyRecord<K, G::Acc, G::Out>): rill_runtime::ExchangeData,
    {
        self.aggregate_with(name, agg, Some(Arc::new(crate::RkyvRecords)))
            .0
    }

    /// [`WindowedStream::count`] whose state takes part in checkpoints.
    pub fn count_checkpointed(&self, name: &str) -> Stream<Pane<K, i64>>
    where
        (u32, WindowKeyRecord<K, i64, i64>): rill_runtime::ExchangeData,
    {
        self.aggregate_checkpointed(name, Count::new())
    }

    /// The sum of `value(record)` per window.
    pub fn sum(
        &self,
        name: &str,
        value: impl Fn(&T) -> i64 + Send + Sync + 'static,
    ) -> Stream<Pane<K, i64>> {
        self.aggregate(name, Sum::new(value))
    }

    /// The number of records per window.
    pub fn count(&self, name: &str) -> Stream<Pane<K, i64>> {
        self.aggregate(name, Count::new())
    }

    /// Full-window processing: `f(key, window, records)` per pane.
    pub fn process<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, &Window, &[T]) -> O + Send + Sync + 'static,
    ) -> Stream<Pane<K, O>> {
        self.aggregate(name, Collect::new(f))
    }
}
