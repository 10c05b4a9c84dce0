//! Tumbling and sliding windows on slices against the per-window operator
//! (`WindowSpec::per_window`, which updates each window of a record on its own) over random
//! scripts of records, watermarks and processing-time ticks: every trigger kind,
//! accumulation mode, allowed lateness, event and processing time, out-of-order and late
//! records, on 1, 2 and 4 shards. Panes (values, timing, index, last, retractions, emission
//! time), the late side output and the drop counters must be identical.

use std::sync::Arc;

use proptest::prelude::*;
use rill_operators::prelude::*;
use rill_operators::window::{ProcessingDelay, Sum, Trigger, WindowMetrics};
use rill_runtime::{
    shard_of_key, Clock, Config, Dataflow, Failure, Runtime, Source, SourceOutput, SourceStatus,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (key, value, event time)
type Ev = (u32, i64, i64);

#[derive(Debug, Clone, Copy)]
enum Step {
    Record(Ev),
    Watermark(i64),
    Tick(i64),
}

/// Plays the script on every shard, each giving only the records of the keys it owns (as
/// the replay CLI does): every window operator then sees the script's watermarks and
/// processing times in the script's order, so processing-time firings are certain on any
/// shard count.
struct Script {
    steps: Arc<Vec<Step>>,
    next: usize,
    shard: usize,
    shards: usize,
}

impl Source<Ev> for Script {
    fn poll(&mut self, out: &mut SourceOutput<Ev>, max: usize) -> Result<SourceStatus, Failure> {
        for _ in 0..max {
            let Some(&step) = self.steps.get(self.next) else {
                return Ok(SourceStatus::Done);
            };
            self.next += 1;
            match step {
                Step::Record(e) if shard_of_key(&e.0, self.shards) == self.shard => out.give(e),
                Step::Record(_) => {}
                Step::Watermark(w) => out.watermark(w)?,
                Step::Tick(t) => out.processing_time(t)?,
            }
        }
        Ok(SourceStatus::Emitted)
    }
}

/// A pane as a sortable row: (key, start, end, index, retraction, value, timing, last,
/// emission time).
type Row = (u32, i64, i64, u64, bool, i64, &'static str, bool, i64);

#[derive(Debug, PartialEq)]
struct Outcome {
    panes: Vec<Row>,
    late: Vec<Ev>,
    dropped_late: u64,
    dropped_closed: u64,
    panes_counted: u64,
}

fn run(steps: &[Step], shards: usize, spec: WindowSpec<Ev, u32>) -> Outcome {
    let metrics: WindowMetrics = spec.metrics();
    let steps = Arc::new(steps.to_vec());
    let mut df = Dataflow::new();
    let (panes, late) = df
        .source("script", move |s| Script {
            steps: steps.clone(),
            next: 0,
            shard: s.index,
            shards: s.shards,
        })
        .assume_keyed_by(|e: &Ev| e.0)
        .window(spec)
        .aggregate_with_late("sum", Sum::new(|e: &Ev| e.1));
    let (panes, late) = (panes.collect("panes"), late.collect("late"));
    let config = Config::default()
        .shards(shards)
        .pin(false)
        .clock(Clock::Manual);
    Runtime::new(config).unwrap().run(df).unwrap();
    let mut panes: Vec<Row> = panes
        .take()
        .into_iter()
        .map(|p| {
            let (w, timing) = (p.window, p.timing.as_str());
            let (i, r, v, last, at) = (p.index, p.retraction, p.value, p.is_last, p.emit_time);
            (p.key, w.start, w.end, i, r, v, timing, last, at)
        })
        .collect();
    panes.sort();
    let mut late = late.take();
    late.sort();
    Outcome {
        panes,
        late,
        dropped_late: metrics.dropped_late(),
        dropped_closed: metrics.dropped_closed(),
        panes_counted: metrics.panes(),
    }
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
        accumulation in prop_oneof![
            Just(Accumulation::Discarding),
            Just(Accumulation::Accumulating),
            Just(Accumulation::Retracting),
        ],
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

fn trigger_of(choice: usize) -> Trigger {
    trigger(choice, 1, 1)
}

/// The test above can fail: a spec whose windows differ gives other panes.
#[test]
fn a_different_spec_gives_other_panes() {
    let steps: Vec<Step> = (0..40)
        .map(|i| Step::Record((i % 3, 1, i as i64)))
        .collect();
    let a = run(
        &steps,
        1,
        spec(
            Windows::sliding(10, 5),
            false,
            Trigger::after_watermark(),
            Accumulation::Discarding,
            0,
        ),
    );
    let b = run(
        &steps,
        1,
        spec(
            Windows::sliding(10, 2),
            false,
            Trigger::after_watermark(),
            Accumulation::Discarding,
            0,
        )
        .per_window(),
    );
    assert_ne!(a, b);
}
