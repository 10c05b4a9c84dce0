//! Window Top-N (`WindowedStream::top_by`, `top_count`) against a recomputation from
//! scratch (sharing no code with the operator) and against the two-stage plan it replaces
//! (a keyed window aggregate, then `window_all` with `MaxBy` over its panes), over random
//! scripts of records and watermarks: tumbling and sliding windows, records out of order,
//! late records (dropped and counted), counts, sums (of non-negative values, and of any
//! values: a value at the top can shrink), maxima, on 1, 2 and 4 shards.

mod common;
mod oracle;

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{run_on, scratch, Ev, Script, Step};
use proptest::prelude::*;
use rill_operators::prelude::*;
use rill_operators::window::{AllPane, Count, Max, MaxBy, Pane, Sum, Window, WindowMetrics};
use rill_runtime::checkpoint::Checkpointing;
use rill_runtime::{Config, Dataflow, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Per window, its top keys and their value (as `i64`), keys sorted.
type Rows = Vec<(Window, Vec<(u32, i64)>)>;

#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    rows: Rows,
    dropped_late: u64,
    dropped_closed: u64,
}

#[derive(Debug, Clone, Copy)]
enum Agg {
    Count,
    /// A sum of non-negative values (the record's value's absolute value).
    SumUp,
    /// A sum of any values: not monotone.
    Sum,
    Max,
}

/// Every shard plays the watermarks; record `i` is played by shard `i % shards`, so the
/// operator's watermark is the minimum over the shards.
fn source(df: &mut Dataflow, steps: &[Step]) -> rill_runtime::Stream<Ev> {
    let steps = steps.to_vec();
    df.source("script", move |s| Script::round_robin(&steps, s))
}

fn sorted(mut rows: Rows) -> Rows {
    for (_, keys) in &mut rows {
        keys.sort();
    }
    rows.sort();
    rows
}

/// Runs the top (`two_stage` false) or the two-stage plan, in a job that takes no
/// checkpoints (the top's windows keep plain maps).
fn run(steps: &[Step], shards: usize, windows: Windows, agg: Agg, two_stage: bool) -> Outcome {
    run_in(steps, shards, windows, agg, two_stage, None)
}

/// Runs the top in a job that checkpoints every millisecond into a scratch directory (the
/// top's windows keep tables that track their changes).
fn run_checkpointed(steps: &[Step], shards: usize, windows: Windows, agg: Agg) -> Outcome {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let dir = scratch(&format!("top-{}", RUNS.fetch_add(1, Ordering::Relaxed)));
    let every = Checkpointing::new(&dir).interval(Some(Duration::from_millis(1)));
    let outcome = run_in(steps, shards, windows, agg, false, Some(every));
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn run_in(
    steps: &[Step],
    shards: usize,
    windows: Windows,
    agg: Agg,
    two_stage: bool,
    checkpoints: Option<Checkpointing>,
) -> Outcome {
    let spec = WindowSpec::event_time(windows, |e: &Ev| e.2);
    let metrics: WindowMetrics = spec.metrics();
    let mut df = Dataflow::new();
    let windowed = source(&mut df, steps).key_by(|e: &Ev| e.0).window(spec);
    let (_, period, _) = windows.grid().unwrap();
    macro_rules! plan {
        ($agg:expr, $out:ty, $v:expr) => {{
            let v = $v;
            if two_stage {
                windowed
                    .aggregate("agg", $agg)
                    .window_all(WindowSpec::timestamped(Windows::tumbling(period)))
                    .aggregate("max", MaxBy::new(|p: &Pane<u32, $out>| p.value.clone()))
                    .flat_map("rows", move |p: AllPane<Vec<Pane<u32, $out>>>| {
                        let w = p.value.first().map(|f| f.window);
                        w.map(|w| (w, p.value.iter().map(|p| (p.key, v(&p.value))).collect()))
                    })
                    .collect("out")
            } else {
                windowed
                    .top_by("top", $agg)
                    .map("rows", move |p| {
                        let keys = p.value.iter().map(|(k, x)| (*k, v(x))).collect();
                        (p.window, keys)
                    })
                    .collect("out")
            }
        }};
    }
    let out = match agg {
        Agg::Count => plan!(Count::new(), u64, |c: &u64| *c as i64),
        Agg::SumUp => plan!(Sum::new(|e: &Ev| e.1.abs()), i64, |s: &i64| *s),
        Agg::Sum => plan!(Sum::new(|e: &Ev| e.1), i64, |s: &i64| *s),
        Agg::Max => plan!(Max::new(|e: &Ev| e.1), Option<i64>, |m: &Option<i64>| m
            .unwrap()),
    };
    let mut config = Config::default().shards(shards).pin(false);
    if let Some(checkpoints) = checkpoints {
        config = config.checkpointing(checkpoints);
    }
    Runtime::new(config).unwrap().run(df).unwrap();
    Outcome {
        rows: sorted(out.take()),
        dropped_late: metrics.dropped_late(),
        dropped_closed: metrics.dropped_closed(),
    }
}

/// From scratch: a record is on time for the windows that hold it and end after the last
/// watermark before it; it is late if every window holding it ended, and dropped as for
/// a closed window if none holds it. Per window, every key's value, then the largest.
fn reference(steps: &[Step], windows: Windows, agg: Agg) -> Outcome {
    let mut watermark = i64::MIN;
    let mut values: BTreeMap<Window, BTreeMap<u32, Vec<i64>>> = BTreeMap::new();
    let (mut dropped_late, mut dropped_closed) = (0, 0);
    for step in steps {
        match *step {
            Step::Watermark(w) => watermark = watermark.max(w),
            Step::Tick(_) => {}
            Step::Record((key, value, t)) => {
                let all = oracle::windows_of(windows, t);
                if all.is_empty() {
                    dropped_closed += 1;
                } else if all.iter().all(|w| w.end <= watermark) {
                    dropped_late += 1;
                }
                for w in all.into_iter().filter(|w| w.end > watermark) {
                    values
                        .entry(w)
                        .or_default()
                        .entry(key)
                        .or_default()
                        .push(value);
                }
            }
        }
    }
    let rows = values
        .into_iter()
        .map(|(w, keys)| {
            let of_key: Vec<(u32, i64)> = keys
                .into_iter()
                .map(|(k, vs)| {
                    let v = match agg {
                        Agg::Count => vs.len() as i64,
                        Agg::SumUp => vs.iter().map(|v| v.abs()).sum(),
                        Agg::Sum => vs.iter().sum(),
                        Agg::Max => *vs.iter().max().unwrap(),
                    };
                    (k, v)
                })
                .collect();
            let best = of_key.iter().map(|&(_, v)| v).max().unwrap();
            (w, of_key.into_iter().filter(|&(_, v)| v == best).collect())
        })
        .collect();
    Outcome {
        rows: sorted(rows),
        dropped_late,
        dropped_closed,
    }
}

/// Records with times in `0..60` and few keys (ties are common), in any order, with
/// watermarks between them; `late` lets a watermark pass records still to come.
fn script(late: bool) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => (0u32..6, -4i64..8, 0i64..60).prop_map(|(k, v, t)| Step::Record((k, v, t))),
        1 => (0i64..70).prop_map(Step::Watermark),
    ];
    prop::collection::vec(step, 1..120).prop_map(move |mut steps| {
        if !late {
            // Each watermark at most the earliest time still to come.
            let mut earliest = i64::MAX;
            for step in steps.iter_mut().rev() {
                match step {
                    Step::Record(e) => earliest = earliest.min(e.2),
                    Step::Watermark(w) => *w = (*w).min(earliest),
                    Step::Tick(_) => {}
                }
            }
        }
        steps
    })
}

fn windows() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (1i64..25).prop_map(Windows::tumbling),
        (1i64..25, 1i64..12).prop_map(|(size, period)| Windows::sliding(size, period)),
    ]
}

fn agg() -> impl Strategy<Value = Agg> {
    prop_oneof![
        Just(Agg::Count),
        Just(Agg::SumUp),
        Just(Agg::Sum),
        Just(Agg::Max)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Out-of-order records, none late: the top equals the reference and the two-stage
    /// plan on 1, 2 and 4 shards.
    #[test]
    fn the_top_equals_the_reference_on_any_shard_count(
        steps in script(false),
        windows in windows(),
        agg in agg(),
    ) {
        let want = reference(&steps, windows, agg);
        for shards in [1, 2, 4] {
            let top = run(&steps, shards, windows, agg, false);
            prop_assert_eq!(&top, &want, "top on {} shards", shards);
        }
        let two_stage = run(&steps, 2, windows, agg, true);
        prop_assert_eq!(&two_stage.rows, &want.rows, "two-stage plan");
        let tracked = run_checkpointed(&steps, 2, windows, agg);
        prop_assert_eq!(&tracked, &want, "top with checkpoints");
    }

    /// Late records too (on one shard, where which records are late is certain): dropped
    /// and counted as the reference and the two-stage plan count them.
    #[test]
    fn late_records_are_dropped_and_counted(
        steps in script(true),
        windows in windows(),
        agg in agg(),
    ) {
        let want = reference(&steps, windows, agg);
        let top = run(&steps, 1, windows, agg, false);
        prop_assert_eq!(&top, &want);
        let two_stage = run(&steps, 1, windows, agg, true);
        prop_assert_eq!(&two_stage, &want, "two-stage plan");
    }

    /// The same records in any arrival order (watermarks only at the start and the end)
    /// give the same tops.
    #[test]
    fn arrival_order_does_not_matter(
        steps in script(false),
        windows in windows(),
        seed in any::<u64>(),
    ) {
        let mut records: Vec<Step> =
            steps.into_iter().filter(|s| matches!(s, Step::Record(_))).collect();
        let want = run(&records, 2, windows, Agg::Count, false);
        // A Fisher-Yates shuffle driven by a small LCG from the seed.
        let mut state = seed | 1;
        for i in (1..records.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            records.swap(i, (state >> 33) as usize % (i + 1));
        }
        for shards in [1, 3] {
            prop_assert_eq!(&run(&records, shards, windows, Agg::Count, false), &want);
        }
    }
}

/// A tie across shards keeps every key at the maximum; a window's state is freed when it
/// fires.
#[test]
fn ties_across_shards_are_kept_and_windows_are_freed() {
    let steps: Vec<Step> = (0..400u32)
        .map(|i| Step::Record((i % 8, 1, i64::from(i / 4))))
        .collect();
    let want = reference(&steps, Windows::sliding(20, 5), Agg::Count);
    assert!(want.rows.iter().any(|(_, keys)| keys.len() > 1));
    for shards in [1, 2, 4] {
        let spec = WindowSpec::event_time(Windows::sliding(20, 5), |e: &Ev| e.2);
        let metrics = spec.metrics();
        let mut df = Dataflow::new();
        let out = source(&mut df, &steps)
            .key_by(|e: &Ev| e.0)
            .window(spec)
            .top_count("top")
            .map("rows", |p| {
                let keys = p.value.iter().map(|&(k, c)| (k, c as i64)).collect();
                (p.window, keys)
            })
            .collect("out");
        run_on(shards, df).unwrap();
        assert_eq!(sorted(out.take()), want.rows, "{shards} shards");
        assert_eq!(metrics.live_windows(), 0, "{shards} shards");
        assert!(metrics.max_live_windows() > 0);
    }
}

/// What a top cannot run is refused when the job starts, with a message saying why.
#[test]
fn specs_a_top_cannot_run_are_refused() {
    let specs: Vec<WindowSpec<Ev, u32>> = vec![
        WindowSpec::event_time(Windows::session(5), |e: &Ev| e.2),
        WindowSpec::event_time(Windows::tumbling(5), |e: &Ev| e.2).allowed_lateness(3),
        WindowSpec::event_time(Windows::tumbling(5), |e: &Ev| e.2)
            .trigger(Trigger::AfterCount(2).repeatedly()),
        WindowSpec::processing_time(Windows::tumbling(5)),
        WindowSpec::event_time(Windows::tumbling(0), |e: &Ev| e.2),
    ];
    for spec in specs {
        let mut df = Dataflow::new();
        df.vec_source("events", vec![(1u32, 1i64, 1i64)])
            .key_by(|e: &Ev| e.0)
            .window(spec)
            .top_count("top")
            .discard("out");
        let err = run_on(2, df).unwrap_err();
        assert!(err.to_string().contains("fire once"), "{err}");
    }
}
