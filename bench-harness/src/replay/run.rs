//! Running a replay: the recorded rows go through a rill dataflow on a simulated clock.
//!
//! The job is the library's: a source on every shard reads the rows in arrival order,
//! moving processing time to each row's arrival time first (in band). Each shard keeps the
//! events of the keys it owns (placed exactly as `key_by` would place them), so every
//! window operator has one input whose records, watermarks and clock ticks come in the
//! log's order, and the output does not depend on how fast the shards run. (With one
//! reader and a key exchange, a record behind a watermark on one channel could reach the
//! operator before the other channels let that watermark through, and be judged on
//! time.) The events are aggregated by the window operator of `rill-operators`. Watermarks come from `watermark` rows
//! (explicit), from the whole input (perfect: the smallest event time still to arrive),
//! or from the library's bounded-out-of-orderness generator. When the input ends the
//! runtime sends the final watermark, which closes every window.

use std::sync::Arc;

use rill_operators::prelude::*;
use rill_operators::window::{
    Aggregate, Count, Max, Min, Pane, ProcessingDelay, Sum, WindowMetrics, WindowSpec,
};
use rill_runtime::rkyv;
use rill_runtime::{
    shard_of_key, Clock, Config, Dataflow, Failure, Runtime, Source, SourceOutput, SourceStatus,
    Stream, Timestamp, MAX_WATERMARK,
};

use crate::replay::parse::{
    AccumulationSpec, AggregateSpec, Millis, Row, TriggerSpec, WatermarkSpec, WindowSpec as Win,
};

/// A recorded event, as it travels through the job.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct ReplayEvent {
    /// The key.
    pub key: String,
    /// The value.
    pub value: i64,
    /// Event time.
    pub event_time: Millis,
    /// Arrival (processing) time.
    pub arrival: Millis,
    /// A punctuation record.
    pub punct: bool,
    /// Position of the row in the input, to write late records back in order.
    pub row: u64,
    /// The key belongs to the shard that read the record.
    pub own: bool,
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayJob {
    /// The rows in arrival order.
    pub rows: Vec<Row>,
    /// `--window`.
    pub window: Win,
    /// `--trigger`.
    pub trigger: TriggerSpec,
    /// `--accumulation`.
    pub accumulation: AccumulationSpec,
    /// `--lateness` in ms.
    pub lateness: Millis,
    /// `--aggregate`.
    pub aggregate: AggregateSpec,
    /// `--watermark`.
    pub watermark: WatermarkSpec,
    /// `--shards`.
    pub shards: usize,
}

/// The result of a replay.
#[derive(Debug)]
pub struct ReplayOutput {
    /// Every pane in emission order (per key; keys interleave by emission time).
    pub panes: Vec<Pane<String, i64>>,
    /// Records dropped beyond the allowed lateness, in input order.
    pub late: Vec<ReplayEvent>,
    /// Records dropped because their window's trigger had finished.
    pub dropped_closed: u64,
}

/// The library trigger for a parsed `--trigger`.
pub fn trigger_of(spec: &TriggerSpec) -> Trigger {
    let all = |ts: &[TriggerSpec]| ts.iter().map(trigger_of).collect();
    match spec {
        TriggerSpec::Watermark { early, late } => Trigger::after_watermark_with(
            early.as_deref().map(trigger_of),
            late.as_deref().map(trigger_of),
        ),
        TriggerSpec::Count(n) => Trigger::AfterCount(*n),
        TriggerSpec::ProcessingDelay(d) => Trigger::AfterProcessingTime(ProcessingDelay::Delay(*d)),
        TriggerSpec::ProcessingAlign { period, offset } => {
            Trigger::AfterProcessingTime(ProcessingDelay::Aligned {
                period: *period,
                offset: *offset,
            })
        }
        TriggerSpec::Punctuation => Trigger::Punctuation,
        TriggerSpec::Repeat(t) => trigger_of(t).repeatedly(),
        TriggerSpec::All(ts) => Trigger::AfterAll(all(ts)),
        TriggerSpec::Any(ts) => Trigger::AfterFirst(all(ts)),
        TriggerSpec::Seq(ts) => Trigger::AfterEach(all(ts)),
        TriggerSpec::Until(t, u) => trigger_of(t).or_finally(trigger_of(u)),
    }
}

/// The library window policy for a parsed `--window`.
pub fn windows_of(spec: Win) -> Windows {
    match spec {
        Win::Fixed { size, offset } => Windows::Tumbling { size, offset },
        Win::Sliding { size, period } => Windows::sliding(size, period),
        Win::Session { gap } => Windows::session(gap),
        Win::Count { n } => Windows::count(n),
        Win::SlidingCount { n, step } => Windows::sliding_count(n, step),
        Win::Global => Windows::Global,
    }
}

/// Emits the rows, each after moving processing time to its arrival.
struct ReplaySource {
    rows: Arc<Vec<Row>>,
    shard: usize,
    shards: usize,
    /// Perfect watermark after row i: the smallest event time of the events after it.
    perfect: Option<Arc<Vec<Timestamp>>>,
    explicit: bool,
    next: usize,
    clock: Timestamp,
}

impl Source<ReplayEvent> for ReplaySource {
    fn poll(
        &mut self,
        out: &mut SourceOutput<ReplayEvent>,
        max: usize,
    ) -> Result<SourceStatus, Failure> {
        for _ in 0..max {
            let Some(row) = self.rows.get(self.next) else {
                return Ok(SourceStatus::Done);
            };
            let i = self.next;
            self.next += 1;
            if row.arrival() > self.clock {
                self.clock = row.arrival();
                out.processing_time(self.clock)?;
            }
            match row {
                Row::Event {
                    key,
                    value,
                    event_time,
                    arrival,
                    punct,
                } => {
                    out.give(ReplayEvent {
                        key: key.clone(),
                        value: *value,
                        event_time: *event_time,
                        arrival: *arrival,
                        punct: *punct,
                        row: i as u64,
                        own: shard_of_key(key, self.shards) == self.shard,
                    });
                    // One record per batch, so a generator downstream sees each alone.
                    out.flush()?;
                }
                Row::Watermark { event_time, .. } if self.explicit => {
                    out.watermark(*event_time)?;
                }
                _ => {}
            }
            if let Some(perfect) = &self.perfect {
                out.watermark(perfect[i])?;
            }
        }
        Ok(SourceStatus::Emitted)
    }
}

fn suffix_minimum(rows: &[Row]) -> Vec<Timestamp> {
    let mut after = vec![MAX_WATERMARK; rows.len()];
    let mut min = MAX_WATERMARK;
    for (i, row) in rows.iter().enumerate().rev() {
        after[i] = min;
        if let Row::Event { event_time, .. } = row {
            min = min.min(*event_time);
        }
    }
    after
}

/// Runs the replay.
pub fn replay(job: &ReplayJob) -> Result<ReplayOutput, rill_runtime::Error> {
    let mut df = Dataflow::new();
    let rows = Arc::new(job.rows.clone());
    let perfect =
        (job.watermark == WatermarkSpec::Perfect).then(|| Arc::new(suffix_minimum(&rows)));
    let explicit = job.watermark == WatermarkSpec::Explicit;
    let mut events: Stream<ReplayEvent> = df.source("replay", move |shard| ReplaySource {
        rows: rows.clone(),
        shard: shard.index,
        shards: shard.shards,
        perfect: perfect.clone(),
        explicit,
        next: 0,
        clock: Timestamp::MIN,
    });
    if let WatermarkSpec::Bounded(bound) = job.watermark {
        events = events.assign_watermarks(
            "bounded-watermarks",
            WatermarkStrategy::bounded(|e: &ReplayEvent| e.event_time, bound),
        );
    }
    let spec = WindowSpec::event_time(windows_of(job.window), |e: &ReplayEvent| e.event_time)
        .trigger(trigger_of(&job.trigger))
        .accumulation(match job.accumulation {
            AccumulationSpec::Discarding => Accumulation::Discarding,
            AccumulationSpec::Accumulating => Accumulation::Accumulating,
            AccumulationSpec::Retracting => Accumulation::Retracting,
        })
        .allowed_lateness(job.lateness)
        .punctuation(|e: &ReplayEvent| e.punct);
    let metrics = spec.metrics();
    let windowed = events
        .filter("own-keys", |e: &ReplayEvent| e.own)
        .assume_keyed_by(|e: &ReplayEvent| e.key.clone())
        .window(spec);
    let value = |e: &ReplayEvent| e.value;
    // The value column is an i64; an empty minimum (maximum) pane prints as the identity
    // i64::MAX (i64::MIN), as Beam's Min.ofLongs() (Max.ofLongs()) does.
    let (panes, late) = match job.aggregate {
        AggregateSpec::Sum => run_with(&windowed, Sum::new(value), |v| v),
        AggregateSpec::Count => run_with(&windowed, Count::new(), |n| n as i64),
        AggregateSpec::Min => run_with(&windowed, Min::new(value), |v| v.unwrap_or(i64::MAX)),
        AggregateSpec::Max => run_with(&windowed, Max::new(value), |v| v.unwrap_or(i64::MIN)),
    };
    let panes = panes.collect("panes");
    let late = late.collect("late");
    let config = Config::default()
        .shards(job.shards)
        .pin(false)
        .clock(Clock::Manual);
    Runtime::new(config)?.run(df)?;
    Ok(collect_output(panes, late, &metrics))
}

type Streams = (Stream<Pane<String, i64>>, Stream<ReplayEvent>);

/// Runs `agg` and turns its values into the replay's i64 column with `as_i64`.
fn run_with<G>(
    windowed: &rill_operators::window::WindowedStream<ReplayEvent, String>,
    agg: G,
    as_i64: fn(G::Out) -> i64,
) -> Streams
where
    G: Aggregate<ReplayEvent, String> + Send + Sync,
    G::Acc: rill_runtime::StateData,
    G::Out: rill_runtime::StateData,
{
    let (panes, late) = windowed.aggregate_with_late("window", agg);
    let panes = panes.map("value", move |p: Pane<String, G::Out>| Pane {
        key: p.key,
        window: p.window,
        value: as_i64(p.value),
        timing: p.timing,
        index: p.index,
        is_last: p.is_last,
        retraction: p.retraction,
        emit_time: p.emit_time,
    });
    (panes, late)
}

fn collect_output(
    panes: rill_runtime::Collected<Pane<String, i64>>,
    late: rill_runtime::Collected<ReplayEvent>,
    metrics: &WindowMetrics,
) -> ReplayOutput {
    // Each shard emits in time order; merging by emission time keeps every key's order.
    let mut all: Vec<(Timestamp, usize, usize, Pane<String, i64>)> = Vec::new();
    for (shard, list) in panes.take_per_shard().into_iter().enumerate() {
        all.extend(
            list.into_iter()
                .enumerate()
                .map(|(i, p)| (p.emit_time, shard, i, p)),
        );
    }
    all.sort_by_key(|(t, shard, i, _)| (*t, *shard, *i));
    let mut late = late.take();
    late.sort_by_key(|e| e.row);
    ReplayOutput {
        panes: all.into_iter().map(|(.., p)| p).collect(),
        late,
        dropped_closed: metrics.dropped_closed(),
    }
}
