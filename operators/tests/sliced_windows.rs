//! Tumbling and sliding windows on slices against the per-window operator
//! (`WindowSpec::per_window`, which updates each window of a record on its own) over random
//! scripts of records, watermarks and processing-time ticks: every trigger kind,
//! accumulation mode, allowed lateness, event and processing time, out-of-order and late
//! records, on 1, 2 and 4 shards. Panes (values, timing, index, last, retractions, emission
//! time), the late side output and the drop counters must be identical.

mod common;

use std::sync::Arc;

use common::{run_on, sums_with_late, Ev, Script, Step};
use proptest::prelude::*;
use rill_operators::prelude::*;
use rill_operators::window::{Pane, ProcessingDelay, Sum, Trigger, WindowMetrics};
use rill_runtime::{Clock, Config, Dataflow, Failure, Runtime, Source, SourceOutput, SourceStatus};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A pane as a sortable row: (key, start, end, index, retraction, value, timing, last,
/// emission time).
type Row = (u32, i64, i64, u64, bool, i64, &'static str, bool, i64);

#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    panes: Vec<Row>,
    late: Vec<Ev>,
    dropped_late: u64,
    dropped_closed: u64,
    panes_counted: u64,
}

/// Panes as sorted rows.
fn rows(panes: Vec<Pane<u32, i64>>) -> Vec<Row> {
    let mut rows: Vec<Row> = panes
        .into_iter()
        .map(|p| {
            let (w, timing) = (p.window, p.timing.as_str());
            let (i, r, v, last, at) = (p.index, p.retraction, p.value, p.is_last, p.emit_time);
            (p.key, w.start, w.end, i, r, v, timing, last, at)
        })
        .collect();
    rows.sort();
    rows
}

fn run(steps: &[Step], shards: usize, spec: WindowSpec<Ev, u32>) -> Outcome {
    let metrics: WindowMetrics = spec.metrics();
    let steps = Arc::new(steps.to_vec());
    let mut df = Dataflow::new();
    let windowed = df
        .source("script", move |s| Script::by_key(steps.clone(), s))
        .assume_keyed_by(|e: &Ev| e.0)
        .window(spec);
    let (panes, late) = sums_with_late(windowed);
    let config = Config::default()
        .shards(shards)
        .pin(false)
        .clock(Clock::Manual);
    Runtime::new(config).unwrap().run(df).unwrap();
    let mut late = late.take();
    late.sort();
    Outcome {
        panes: rows(panes.take()),
        late,
        dropped_late: metrics.dropped_late(),
        dropped_closed: metrics.dropped_closed(),
        panes_counted: metrics.panes(),
    }
}

/// Plays the script through `key_by` (a key exchange, or pre-aggregation before it where
/// the spec allows): every shard plays the watermarks and ticks, and record `i` is played
/// by shard `i % shards`, so the window operators' watermark is the minimum over the
/// shards. With `aggregate` (no late side output, so pre-aggregation applies) or with
/// `aggregate_with_late`. Returns the outcome, the job report's records across the
/// exchange and its operator names.
fn run_keyed(
    steps: &[Step],
    shards: usize,
    spec: WindowSpec<Ev, u32>,
    with_late: bool,
) -> (Outcome, u64, Vec<String>) {
    let metrics: WindowMetrics = spec.metrics();
    let steps = steps.to_vec();
    let mut df = Dataflow::new();
    let windowed = df
        .source("script", move |s| Script::round_robin(&steps, s))
        .key_by(|e: &Ev| e.0)
        .window(spec);
    let (panes, late) = if with_late {
        let (panes, late) = sums_with_late(windowed);
        (panes, Some(late))
    } else {
        let panes = windowed.aggregate("sum", Sum::new(|e: &Ev| e.1));
        (panes.collect("panes"), None)
    };
    let config = Config::default()
        .shards(shards)
        .pin(false)
        .clock(Clock::Manual);
    let report = Runtime::new(config).unwrap().run(df).unwrap();
    let crossed = report.channels.iter().map(|c| c.records).sum();
    let names = report.operators.iter().map(|o| o.name.clone()).collect();
    let mut late = late.map_or_else(Vec::new, |l| l.take());
    late.sort();
    let outcome = Outcome {
        panes: rows(panes.take()),
        late,
        dropped_late: metrics.dropped_late(),
        dropped_closed: metrics.dropped_closed(),
        panes_counted: metrics.panes(),
    };
    (outcome, crossed, names)
}

fn trigger(choice: usize, n: u64, d: i64) -> Trigger {
    let count = Trigger::AfterCount(n);
    let delay = Trigger::AfterProcessingTime(ProcessingDelay::Delay(d));
    let aligned = Trigger::AfterProcessingTime(ProcessingDelay::Aligned {
        period: d,
        offset: 1,
    });
    match choice {
        0 => Trigger::after_watermark(),
        1 => Trigger::after_watermark().repeatedly(),
        2 => Trigger::after_watermark_with(Some(count.repeatedly()), None),
        3 => Trigger::after_watermark_with(None, Some(count.repeatedly())),
        4 => Trigger::after_watermark_with(Some(delay.repeatedly()), Some(count)),
        5 => count.repeatedly(),
        6 => count,
        7 => aligned.repeatedly(),
        8 => Trigger::Punctuation.repeatedly(),
        9 => count.repeatedly().or_finally(Trigger::after_watermark()),
        10 => Trigger::AfterAll(vec![count, delay]).repeatedly(),
        11 => Trigger::AfterFirst(vec![count, Trigger::after_watermark()]).repeatedly(),
        12 => Trigger::AfterEach(vec![count, Trigger::after_watermark(), delay]),
        _ => Trigger::AfterFirst(vec![Trigger::after_watermark(), delay]),
    }
}

fn windows() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (1i64..20, 0i64..20).prop_map(|(size, off)| Windows::Tumbling {
            size,
            offset: off % size,
        }),
        (2i64..30, 1i64..12, 0i64..7).prop_map(|(size, period, offset)| Windows::Sliding {
            size,
            period,
            offset,
        }),
    ]
}

/// Records around a time that moves forward, some far behind it (late), with watermarks
/// that trail it and processing time that ticks.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0u8..20, 0u32..4, -3i64..12, 0i64..40, 0i64..8), 1..120).prop_map(
        |raw| {
            let (mut base, mut wm, mut now) = (0i64, i64::MIN, 0i64);
            let mut steps = Vec::new();
            for (kind, key, value, jitter, step) in raw {
                match kind {
                    0..=12 => {
                        base += step % 3;
                        let t = if kind == 0 {
                            base - jitter
                        } else {
                            base + jitter % 6
                        };
                        steps.push(Step::Record((key, value, t)));
                    }
                    13..=16 => {
                        let w = base - jitter % 10;
                        if w > wm {
                            wm = w;
                            steps.push(Step::Watermark(w));
                        }
                    }
                    _ => {
                        now += 1 + step;
                        steps.push(Step::Tick(now));
                    }
                }
            }
            steps
        },
    )
}

fn spec(
    windows: Windows,
    processing: bool,
    trigger: Trigger,
    accumulation: Accumulation,
    lateness: i64,
) -> WindowSpec<Ev, u32> {
    let spec = if processing {
        WindowSpec::processing_time(windows)
    } else {
        WindowSpec::event_time(windows, |e: &Ev| e.2)
    };
    spec.trigger(trigger)
        .accumulation(accumulation)
        .allowed_lateness(lateness)
        .punctuation(|e: &Ev| e.1 % 5 == 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn slices_give_the_panes_of_the_per_window_operator(
        steps in steps(),
        windows in windows(),
        processing in prop::bool::weighted(0.2),
        (choice, n, d) in (0usize..14, 1u64..4, 1i64..12),
        accumulation in accumulations(),
        lateness in prop_oneof![Just(0i64), 0i64..25],
    ) {
        // A new spec per run: a spec's counters are shared by its clones.
        let spec = || spec(windows, processing, trigger(choice, n, d), accumulation, lateness);
        let reference = run(&steps, 1, spec().per_window());
        for shards in [1, 2, 4] {
            let sliced = run(&steps, shards, spec());
            prop_assert_eq!(&sliced, &reference, "{} shards", shards);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Windows that fire once (a watermark trigger, no allowed lateness) take the
    /// operator that keeps only slices.
    #[test]
    fn windows_that_fire_once_give_the_panes_of_the_per_window_operator(
        steps in steps(),
        windows in windows(),
        processing in prop::bool::weighted(0.2),
        repeated in any::<bool>(),
        accumulation in prop_oneof![
            Just(Accumulation::Discarding),
            Just(Accumulation::Retracting),
        ],
    ) {
        let trigger = if repeated { 1 } else { 0 };
        let spec = || spec(windows, processing, trigger_of(trigger), accumulation, 0);
        let reference = run(&steps, 1, spec().per_window());
        for shards in [1, 2, 4] {
            prop_assert_eq!(&run(&steps, shards, spec()), &reference, "{} shards", shards);
        }
    }
}

/// True if the job pre-aggregated before the exchange.
fn pre_aggregated(names: &[String]) -> bool {
    names.iter().any(|n| n == "sum (pre-aggregate)")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Through a key exchange (`key_by`) with pre-aggregation: windows that fire once
    /// (watermark triggers, no lateness) in every accumulation mode, with out-of-order and
    /// late records. Identical panes and drop counters; `aggregate_with_late`, which does
    /// not pre-aggregate, gives the late side output too. One shard: with several
    /// producing shards whether a record is late depends on how far the other shards'
    /// watermarks got, with or without pre-aggregation (the next property).
    #[test]
    fn pre_aggregation_gives_the_per_window_panes_and_drops(
        steps in steps(),
        windows in windows(),
        repeated in any::<bool>(),
        accumulation in accumulations(),
    ) {
        let spec = || fires_once(windows, repeated, accumulation);
        let reference = run(&steps, 1, spec().per_window());
        let (got, _, names) = run_keyed(&steps, 1, spec(), false);
        prop_assert!(pre_aggregated(&names));
        prop_assert_eq!(&got, &Outcome { late: Vec::new(), ..reference.clone() });
        let (got, _, names) = run_keyed(&steps, 1, spec(), true);
        prop_assert!(!pre_aggregated(&names));
        prop_assert_eq!(&got, &reference, "with late output");
    }
}

/// Pre-aggregation is off where a partial could not stand for its records: triggers that
/// see elements or processing time, allowed lateness, processing-time windows, the late
/// side output, sessions, the per-window operator; and where there is no exchange.
#[test]
fn pre_aggregation_is_off_where_the_records_matter() {
    let steps: Vec<Step> = (0..20)
        .map(|i| Step::Record((i % 3, 1, i as i64)))
        .collect();
    let plain = || fires_once(Windows::tumbling(5), false, Accumulation::Discarding);
    let names = |spec, with_late| run_keyed(&steps, 2, spec, with_late).2;
    assert!(pre_aggregated(&names(plain(), false)));
    let retracting = fires_once(Windows::sliding(10, 5), true, Accumulation::Retracting);
    assert!(pre_aggregated(&names(retracting, false)));
    for choice in 2..14 {
        let counted = plain().trigger(trigger(choice, 2, 3));
        assert!(!pre_aggregated(&names(counted, false)), "trigger {choice}");
    }
    assert!(!pre_aggregated(&names(plain().allowed_lateness(1), false)));
    assert!(!pre_aggregated(&names(plain().per_window(), false)));
    assert!(!pre_aggregated(&names(plain().pre_aggregate(false), false)));
    assert!(!pre_aggregated(&names(plain(), true)));
    let processing = WindowSpec::processing_time(Windows::tumbling(5));
    assert!(!pre_aggregated(&names(processing, false)));
    let sessions = WindowSpec::event_time(Windows::session(5), |e: &Ev| e.2);
    assert!(!pre_aggregated(&names(sessions, false)));
    // Already partitioned: no exchange to save.
    assert!(!pre_aggregated(&operator_names(plain())));
}

/// The operators of a job windowing a stream declared keyed (`assume_keyed_by`).
fn operator_names(spec: WindowSpec<Ev, u32>) -> Vec<String> {
    let mut df = Dataflow::new();
    df.vec_source("events", vec![(1u32, 1i64, 1i64)])
        .assume_keyed_by(|e: &Ev| e.0)
        .window(spec)
        .aggregate("sum", Sum::new(|e: &Ev| e.1))
        .discard("out");
    let report = run_on(1, df).unwrap();
    report.operators.iter().map(|o| o.name.clone()).collect()
}

/// The script without the records that are behind the watermark when they are played.
fn without_late(steps: Vec<Step>) -> Vec<Step> {
    let mut watermark = i64::MIN;
    steps
        .into_iter()
        .filter(|step| match *step {
            Step::Watermark(w) => {
                watermark = w;
                true
            }
            Step::Record(e) => e.2 >= watermark,
            Step::Tick(_) => true,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Every shard pre-aggregates its share of the records (out of order, none behind the
    /// watermark when played: with several producers whether a record is late depends on
    /// how far the other shards got) in windows that fire once, in each accumulation mode.
    #[test]
    fn pre_aggregation_on_every_shard_gives_the_per_window_panes(
        steps in steps().prop_map(without_late),
        windows in windows(),
        repeated in any::<bool>(),
        accumulation in accumulations(),
    ) {
        let spec = || fires_once(windows, repeated, accumulation);
        let reference = run(&steps, 1, spec().per_window());
        for shards in [1, 2, 4] {
            let (got, _, names) = run_keyed(&steps, shards, spec(), false);
            prop_assert!(pre_aggregated(&names));
            prop_assert_eq!(&got, &reference, "{} shards", shards);
        }
    }
}

/// Records of a key repeat within a slice: the exchange carries one partial per key, slice
/// and shard, far fewer than the records; without pre-aggregation (a count trigger) every
/// record crosses it.
#[test]
fn the_exchange_carries_partials_not_records() {
    // 4 keys, 10 records per ms, 20 s of event time: 200,000 records in 20 slices of 1 s.
    let mut steps = Vec::new();
    for i in 0..200_000i64 {
        let t = i / 10;
        steps.push(Step::Record(((i % 4) as u32, 1, t)));
        if i % 1_000 == 999 {
            steps.push(Step::Watermark(t));
        }
    }
    let tumbling = || fires_once(Windows::tumbling(1_000), false, Accumulation::Discarding);
    let reference = run(&steps, 1, tumbling().per_window());
    for shards in [1, 2, 4] {
        let (got, crossed, names) = run_keyed(&steps, shards, tumbling(), false);
        assert!(pre_aggregated(&names));
        assert_eq!(got, reference);
        // At most one partial per key, slice and producing shard (a slice's partials go
        // out once, at the watermark past its end).
        assert!(
            crossed <= 4 * 20 * shards as u64,
            "{crossed} items crossed on {shards} shards"
        );
        assert!(crossed > 0);
        let counted = tumbling().trigger(Trigger::after_watermark_with(
            Some(Trigger::AfterCount(1_000_000).repeatedly()),
            None,
        ));
        let (_, crossed, names) = run_keyed(&steps, shards, counted, false);
        assert!(!pre_aggregated(&names));
        assert_eq!(crossed, 200_000);
        // Turned off in the spec: the records cross, the panes are the same.
        let (got, crossed, names) =
            run_keyed(&steps, shards, tumbling().pre_aggregate(false), false);
        assert!(!pre_aggregated(&names));
        assert_eq!(crossed, 200_000);
        assert_eq!(got, reference);
    }
}

/// More keys in a slice than a shard's table holds (65,536 entries): the table sends its
/// partials early, a key's slice arrives in several partials, and the panes are the same.
#[test]
fn a_full_table_sends_its_partials_early_with_the_same_panes() {
    // 70,000 keys, each about 3 times, in one slice of 1 s.
    let steps: Vec<Step> = (0..200_000i64)
        .map(|i| Step::Record(((i % 70_000) as u32, 1, i / 200)))
        .collect();
    let tumbling = || fires_once(Windows::tumbling(1_000), false, Accumulation::Discarding);
    let reference = run(&steps, 1, tumbling().per_window());
    assert_eq!(reference.panes.len(), 70_000);
    let (got, crossed, names) = run_keyed(&steps, 1, tumbling(), false);
    assert!(pre_aggregated(&names));
    assert_eq!(got, reference);
    // More partials than keys: the table sent some keys' partials before the slice ended.
    assert!(crossed > 70_000, "{crossed}");
}

/// Shard 0 sends records and a watermark, goes idle, and ends only well after shard 1
/// moved the watermark past the records' window and ended.
struct GoesIdle {
    shard: usize,
    step: usize,
    /// When shard 1 ended.
    other_done: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Source<Ev> for GoesIdle {
    fn poll(&mut self, out: &mut SourceOutput<Ev>, _: usize) -> Result<SourceStatus, Failure> {
        self.step += 1;
        match (self.shard, self.step) {
            (0, 1) => {
                for i in 0..30 {
                    out.give((i % 3, 1, 1 + i as i64 % 4));
                }
                out.watermark(5)?;
                out.idle()?;
            }
            (0, _) => {
                let done = *self.other_done.lock().unwrap();
                if !done.is_some_and(|at| at.elapsed() > std::time::Duration::from_millis(300)) {
                    return Ok(SourceStatus::Idle);
                }
                return Ok(SourceStatus::Done);
            }
            (_, 1) => out.watermark(100)?,
            _ => {
                *self.other_done.lock().unwrap() = Some(std::time::Instant::now());
                return Ok(SourceStatus::Done);
            }
        }
        Ok(SourceStatus::Emitted)
    }
}

/// A shard whose input goes idle sends its partials first: the other shard then moves the
/// final operator's watermark past their window, which fires with them (held back, they
/// would come after it and be dropped as late).
#[test]
fn an_idle_shard_sends_its_partials_before_its_idleness() {
    let spec = fires_once(Windows::tumbling(10), false, Accumulation::Discarding);
    let metrics = spec.metrics();
    let other_done = Arc::new(std::sync::Mutex::new(None));
    let mut df = Dataflow::new();
    let panes = df
        .source("goes idle", move |s| GoesIdle {
            shard: s.index,
            step: 0,
            other_done: other_done.clone(),
        })
        .key_by(|e: &Ev| e.0)
        .window(spec)
        .aggregate("sum", Sum::new(|e: &Ev| e.1))
        .collect("panes");
    let report = run_on(2, df).unwrap();
    assert!(report.operator("sum (pre-aggregate)").is_some());
    let mut sums: Vec<(u32, i64, i64)> = panes
        .take()
        .into_iter()
        .map(|p| (p.key, p.window.start, p.value))
        .collect();
    sums.sort();
    assert_eq!(sums, [(0, 0, 10), (1, 0, 10), (2, 0, 10)]);
    assert_eq!(metrics.dropped_late(), 0);
}

fn accumulations() -> impl Strategy<Value = Accumulation> {
    prop_oneof![
        Just(Accumulation::Discarding),
        Just(Accumulation::Accumulating),
        Just(Accumulation::Retracting),
    ]
}

/// Event-time windows that fire once: a watermark trigger, repeated or not, no lateness.
fn fires_once(windows: Windows, repeated: bool, accumulation: Accumulation) -> WindowSpec<Ev, u32> {
    spec(
        windows,
        false,
        trigger_of(repeated as usize),
        accumulation,
        0,
    )
}

fn trigger_of(choice: usize) -> Trigger {
    trigger(choice, 1, 1)
}

/// The test above can fail: a spec whose windows differ gives other panes.
#[test]
fn a_different_spec_gives_other_panes() {
    let steps: Vec<Step> = (0..40)
        .map(|i| Step::Record((i % 3, 1, i as i64)))
        .collect();
    let discarding = |windows| {
        spec(
            windows,
            false,
            Trigger::after_watermark(),
            Accumulation::Discarding,
            0,
        )
    };
    let a = run(&steps, 1, discarding(Windows::sliding(10, 5)));
    let b = run(&steps, 1, discarding(Windows::sliding(10, 2)).per_window());
    assert_ne!(a, b);
}
