//! Event time and watermark generators.

use std::sync::Arc;

use rill_runtime::{
    Data, OpResult, Operator, OperatorState, SourceOutput, Stream, Timestamp, MAX_WATERMARK,
    MIN_WATERMARK,
};

type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;
type PunctuationFn<T> = Arc<dyn Fn(&T) -> Option<Timestamp> + Send + Sync>;

enum Kind<T> {
    Bounded(i64),
    Punctuated(PunctuationFn<T>),
}

impl<T> Clone for Kind<T> {
    fn clone(&self) -> Self {
        match self {
            Kind::Bounded(b) => Kind::Bounded(*b),
            Kind::Punctuated(f) => Kind::Punctuated(f.clone()),
        }
    }
}

/// How watermarks are derived from the records of a stream.
pub struct WatermarkStrategy<T> {
    timestamp: TimestampFn<T>,
    kind: Kind<T>,
    idle_after: Option<i64>,
}

impl<T> std::fmt::Debug for WatermarkStrategy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("WatermarkStrategy");
        match &self.kind {
            Kind::Bounded(bound) => d.field("bound", bound),
            Kind::Punctuated(_) => d.field("punctuated", &true),
        };
        d.field("idle_after", &self.idle_after)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            timestamp: self.timestamp.clone(),
            kind: self.kind.clone(),
            idle_after: self.idle_after,
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// For input ordered by event time: the watermark is the latest timestamp (used like
    /// [`WatermarkStrategy::bounded`] in the example of
    /// [`AssignWatermarks::assign_watermarks`]).
    pub fn ascending(timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        Self::bounded(timestamp, 0)
    }

    /// For input at most `bound` ms out of order: max timestamp seen minus `bound` (see
    /// the example of [`AssignWatermarks::assign_watermarks`]).
    pub fn bounded(
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
        bound: i64,
    ) -> Self {
        WatermarkStrategy {
            timestamp: Arc::new(timestamp),
            kind: Kind::Bounded(bound.max(0)),
            idle_after: None,
        }
    }

    /// Watermarks carried by records: `watermark(record)` is `Some(w)` for a record that
    /// announces `w`.
    ///
    /// ```
    /// use rill_operators::WatermarkStrategy;
    ///
    /// // (event time, Some(w) for a progress marker)
    /// let strategy = WatermarkStrategy::punctuated(|r: &(i64, Option<i64>)| r.0, |r| r.1);
    /// assert_eq!(strategy.timestamp_of(&(42, None)), 42);
    /// ```
    pub fn punctuated(
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
        watermark: impl Fn(&T) -> Option<Timestamp> + Send + Sync + 'static,
    ) -> Self {
        WatermarkStrategy {
            timestamp: Arc::new(timestamp),
            kind: Kind::Punctuated(Arc::new(watermark)),
            idle_after: None,
        }
    }

    /// Marks the input idle after `ms` of processing time without records.
    ///
    /// ```
    /// use rill_operators::WatermarkStrategy;
    ///
    /// // A partition that may go quiet must not hold back everyone's watermark.
    /// let strategy = WatermarkStrategy::bounded(|r: &(u32, i64)| r.1, 100).idle_after(5_000);
    /// # let _ = strategy;
    /// ```
    pub fn idle_after(mut self, ms: i64) -> Self {
        self.idle_after = Some(ms);
        self
    }

    /// The event time of a record.
    pub fn timestamp_of(&self, record: &T) -> Timestamp {
        (self.timestamp)(record)
    }
}

/// Puts a watermark generator on a stream.
///
/// A watermark `W` claims that no more records with an event time below `W` will follow.
/// [`AssignWatermarks::assign_watermarks`] puts a generator after a source: it reads each
/// record's event time and emits watermarks in band with the records. It replaces the
/// watermarks coming from upstream, except the final one (`MAX_WATERMARK`) that a bounded
/// source ends with.
///
/// - [`WatermarkStrategy::ascending`]: timestamps never decrease, so `W` is the latest
///   timestamp (a perfect watermark for ordered input).
/// - [`WatermarkStrategy::bounded`]: records are at most `bound` ms out of order, so
///   `W = max timestamp seen - bound` (heuristic: a record later than that is late).
/// - [`WatermarkStrategy::punctuated`]: some records carry a watermark.
/// - Explicit watermarks come from the source itself (`out.watermark(w)`), with no
///   generator.
///
/// A watermark is emitted after each batch of records in which it advanced. With
/// [`WatermarkStrategy::idle_after`], an input that saw no record for that long in
/// processing time is marked idle, so that it stops holding back the watermark of the
/// operators downstream; its next record makes it active again.
pub trait AssignWatermarks<T> {
    /// Emits watermarks derived from the records as `strategy` says.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // (key, event time in ms), at most 50 ms out of order. The windows close as the
    /// // watermark passes their end, not only when the input ends.
    /// type E = (u32, i64);
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("events", vec![(1, 10), (1, 990), (1, 960), (1, 1010), (1, 2500)])
    ///         .assign_watermarks("watermarks", WatermarkStrategy::bounded(|e: &E| e.1, 50))
    ///         .key_by(|e: &E| e.0)
    ///         .window(WindowSpec::event_time(Windows::tumbling(1000), |e: &E| e.1))
    ///         .count("count")
    ///         .map("row", |p| (p.window.start, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(0, 3), (1000, 1), (2000, 1)]);
    /// ```
    fn assign_watermarks(&self, name: &str, strategy: WatermarkStrategy<T>) -> Stream<T>;
}

impl<T: Data> AssignWatermarks<T> for Stream<T> {
    fn assign_watermarks(&self, name: &str, strategy: WatermarkStrategy<T>) -> Stream<T> {
        self.watermark_generator(name, move |_| WatermarkGenerator {
            strategy: strategy.clone(),
            max_seen: MIN_WATERMARK,
            emitted: MIN_WATERMARK,
            last_record: MIN_WATERMARK,
            now: MIN_WATERMARK,
            idle: false,
        })
    }
}

struct WatermarkGenerator<T> {
    strategy: WatermarkStrategy<T>,
    max_seen: Timestamp,
    emitted: Timestamp,
    /// Processing time of the latest record.
    last_record: Timestamp,
    now: Timestamp,
    idle: bool,
}

impl<T: Data> Operator<T> for WatermarkGenerator<T> {
    type Out = SourceOutput<T>;
    const STATE: OperatorState = OperatorState::Stateless;

    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut SourceOutput<T>) -> OpResult {
        let mut next = self.emitted;
        for r in batch.iter() {
            let t = (self.strategy.timestamp)(r);
            match &self.strategy.kind {
                Kind::Bounded(bound) => {
                    self.max_seen = self.max_seen.max(t);
                    next = next.max(self.max_seen.saturating_sub(*bound));
                }
                Kind::Punctuated(f) => {
                    if let Some(w) = f(r) {
                        next = next.max(w);
                    }
                }
            }
        }
        self.last_record = self.now;
        out.give_vec(batch);
        if next > self.emitted || (self.idle && next > MIN_WATERMARK) {
            self.emitted = next;
            self.idle = false;
            out.watermark(next)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut SourceOutput<T>) -> OpResult {
        // The input's final watermark goes on (the runtime forwards it); others are
        // replaced by this generator's own.
        if watermark == MAX_WATERMARK {
            self.emitted = MAX_WATERMARK;
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut SourceOutput<T>) -> OpResult {
        self.now = now;
        if self.last_record == MIN_WATERMARK {
            self.last_record = now;
        }
        if let Some(idle_after) = self.strategy.idle_after {
            if !self.idle && now.saturating_sub(self.last_record) >= idle_after {
                self.idle = true;
                out.idle()?;
            }
        }
        Ok(())
    }
}
