//! Window operator against a from-scratch reference, over random inputs: 1 vs N shards,
//! arrival-order permutations under a perfect watermark, accumulation modes, retractions,
//! and bounded state after the allowed lateness.

mod common;
mod oracle;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{perfect_watermarks, run_on, sums_with_late, Ev, Script, Step};
use proptest::prelude::*;
use rill_operators::prelude::*;
use rill_operators::window::{Pane, Sum, Timing, WindowMetrics};
use rill_runtime::{Config, Dataflow, Runtime, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(
    events: &[Ev],
    shards: usize,
    spec: WindowSpec<Ev, u32>,
) -> (Vec<Pane<u32, i64>>, WindowMetrics) {
    let metrics = spec.metrics();
    let mut df = Dataflow::new();
    // Each event on shard 0, followed by the perfect watermark.
    let steps = Arc::new(perfect_watermarks(events));
    let panes = df
        .source("events", move |s| Script::on_first_shard(steps.clone(), s))
        .key_by(|e: &Ev| e.0)
        .window(spec)
        .aggregate("sum", Sum::new(|e: &Ev| e.1))
        .collect("panes");
    run_on(shards, df).unwrap();
    (panes.take(), metrics)
}

/// The reference: every window's total per key, computed from scratch.
fn reference(events: &[Ev], windows: Windows) -> BTreeMap<(u32, i64, i64), i64> {
    let mut out = BTreeMap::new();
    match windows {
        Windows::Session { gap } => {
            let mut by_key: BTreeMap<u32, Vec<(i64, i64)>> = BTreeMap::new();
            for &(k, v, t) in events {
                by_key.entry(k).or_default().push((t, v));
            }
            for (k, mut list) in by_key {
                list.sort();
                let mut current: Option<(i64, i64, i64)> = None;
                for (t, v) in list {
                    current = match current {
                        Some((s, e, sum)) if t < e => Some((s, e.max(t + gap), sum + v)),
                        Some((s, e, sum)) => {
                            out.insert((k, s, e), sum);
                            Some((t, t + gap, v))
                        }
                        None => Some((t, t + gap, v)),
                    };
                }
                if let Some((s, e, sum)) = current {
                    out.insert((k, s, e), sum);
                }
            }
        }
        _ => {
            for &(k, v, t) in events {
                for w in oracle::windows_of(windows, t) {
                    *out.entry((k, w.start, w.end)).or_insert(0) += v;
                }
            }
        }
    }
    out
}

fn final_values(panes: &[Pane<u32, i64>]) -> BTreeMap<(u32, i64, i64), i64> {
    let mut out = BTreeMap::new();
    for p in panes.iter().filter(|p| p.is_last && !p.retraction) {
        let old = out.insert((p.key, p.window.start, p.window.end), p.value);
        assert!(old.is_none(), "two last panes for {p:?}");
    }
    out
}

fn windows_strategy() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (1i64..50).prop_map(Windows::tumbling),
        (1i64..8, 1i64..40).prop_map(|(p, k)| Windows::sliding(p * k.max(1), p)),
        (1i64..30).prop_map(Windows::session),
    ]
}

fn events_strategy() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec((0u32..6, -20i64..20, 0i64..300), 0..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With the default trigger and a perfect watermark, every window emits exactly one
    /// on-time, last pane holding its total; any arrival order and any shard count agree.
    #[test]
    fn on_time_panes_match_the_reference(
        events in events_strategy(),
        windows in windows_strategy(),
        seed in any::<u64>(),
        shards in 1usize..4,
    ) {
        let expected = reference(&events, windows);
        let mut shuffled = events.clone();
        shuffle(&mut shuffled, seed);
        for (input, n) in [(&events, 1), (&shuffled, shards)] {
            let (panes, metrics) = run(input, n, WindowSpec::event_time(windows, |e: &Ev| e.2));
            prop_assert!(panes.iter().all(|p| p.timing == Timing::OnTime && p.index == 0));
            prop_assert_eq!(panes.len(), expected.len());
            prop_assert_eq!(final_values(&panes), expected.clone());
            prop_assert_eq!(metrics.live_windows(), 0);
            prop_assert_eq!(metrics.dropped_late(), 0);
        }
    }

    /// Early firings every few records: discarding panes add up to the window total,
    /// accumulating panes end at it, and a downstream sum over retracting panes ends at it.
    #[test]
    fn accumulation_modes_agree(
        events in events_strategy(),
        windows in windows_strategy(),
        every in 1u64..4,
        seed in any::<u64>(),
    ) {
        let expected = reference(&events, windows);
        let mut shuffled = events.clone();
        shuffle(&mut shuffled, seed);
        let trigger = Trigger::after_watermark_with(Some(Trigger::AfterCount(every)), None);
        let spec = |acc| WindowSpec::event_time(windows, |e: &Ev| e.2)
            .trigger(trigger.clone())
            .accumulation(acc);

        let (discarding, _) = run(&shuffled, 2, spec(Accumulation::Discarding));
        let mut sums = BTreeMap::new();
        for p in &discarding {
            *sums.entry((p.key, p.window.start, p.window.end)).or_insert(0) += p.value;
        }
        // Sessions: early panes of windows later merged away are not in the reference.
        if !windows.is_merging() {
            prop_assert_eq!(&sums, &expected);
        }

        let (accumulating, _) = run(&shuffled, 2, spec(Accumulation::Accumulating));
        prop_assert_eq!(final_values(&accumulating), expected.clone());

        let (retracting, _) = run(&shuffled, 3, spec(Accumulation::Retracting));
        prop_assert_eq!(final_values(&retracting), expected.clone());
        let mut per_key: BTreeMap<u32, i64> = BTreeMap::new();
        for p in &retracting {
            let v = if p.retraction { -p.value } else { p.value };
            *per_key.entry(p.key).or_insert(0) += v;
        }
        let mut totals: BTreeMap<u32, i64> = BTreeMap::new();
        for ((k, ..), v) in &expected {
            *totals.entry(*k).or_insert(0) += v;
        }
        per_key.retain(|_, v| *v != 0);
        totals.retain(|_, v| *v != 0);
        prop_assert_eq!(per_key, totals);
    }
}

/// A deterministic Fisher-Yates shuffle.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

/// An endless-looking input: window state stays bounded by the allowed lateness, and
/// records beyond it are dropped and counted.
#[test]
fn state_is_bounded_by_allowed_lateness() {
    // 200,000 records, 100 keys, event time rising by 1 ms per record, with every 50th
    // record 5 s late. 100 ms windows, 1 s lateness.
    let events: Vec<Ev> = (0..200_000i64)
        .map(|i| {
            let late = if i % 50 == 0 { 5_000 } else { 0 };
            ((i % 100) as u32, 1, i - late)
        })
        .collect();
    let spec = WindowSpec::event_time(Windows::tumbling(100), |e: &Ev| e.2).allowed_lateness(1_000);
    let metrics = spec.metrics();
    let mut df = Dataflow::new();
    // One shard: with more, an empty source on another shard that starts late holds the
    // watermark back while records flow, and live state then depends on scheduling.
    df.iter_source("events", move |s| {
        if s.index == 0 {
            events.clone()
        } else {
            Vec::new()
        }
    })
    .assign_watermarks("wm", WatermarkStrategy::ascending(|e: &Ev| e.2))
    .key_by(|e: &Ev| e.0)
    .window(spec)
    .aggregate("sum", Sum::new(|e: &Ev| e.1))
    .discard("out");
    run_on(1, df).unwrap();
    // Live windows at any time: 100 keys x (1 s lateness + the 1,024 ms of event time a
    // source batch spans before its watermark) / 100 ms, plus slack; the input makes
    // 200,000 windows in all.
    let bound = 100 * ((1_000 + 1_024) / 100 + 3);
    assert!(
        metrics.max_live_windows() <= bound,
        "{} live windows, bound {bound}",
        metrics.max_live_windows()
    );
    assert_eq!(metrics.live_windows(), 0);
    // Every 50th record is 5 s behind a watermark that trails by at most a batch.
    assert!(metrics.dropped_late() > 3_000, "{}", metrics.dropped_late());
}

/// A pane as a script's test compares it: (start, end, value, timing, last).
type PaneRow = (i64, i64, i64, Timing, bool);

/// Runs `script` of records (`Ok`) and watermarks (`Err`) through `spec`'s sum per key on
/// one shard: every pane, and the late side output.
fn scripted(
    script: Vec<Result<Ev, Timestamp>>,
    spec: WindowSpec<Ev, u32>,
) -> (Vec<PaneRow>, Vec<Ev>) {
    let mut df = Dataflow::new();
    let steps: Vec<Step> = script
        .into_iter()
        .map(|step| step.map_or_else(Step::Watermark, Step::Record))
        .collect();
    let steps = Arc::new(steps);
    let windowed = df
        .source("script", move |s| Script::on_first_shard(steps.clone(), s))
        .key_by(|e: &Ev| e.0)
        .window(spec);
    let (panes, late) = sums_with_late(windowed);
    run_on(1, df).unwrap();
    let panes = panes
        .take()
        .into_iter()
        .map(|p| (p.window.start, p.window.end, p.value, p.timing, p.is_last))
        .collect();
    (panes, late.take())
}

/// A late record that bridges two live sessions merges them (Flink's rule); one whose
/// merged window is past the lateness is dropped to the side output.
#[test]
fn late_records_and_session_merging() {
    let script = vec![
        Ok((1, 1, 0)),  // session [0, 10)
        Ok((1, 2, 15)), // session [15, 25)
        Err(12),        // [0, 10) is late, lateness 5 keeps it until 15
        Ok((1, 4, 8)),  // late, bridges into [0, 25)? [8,18) overlaps both
        Err(40),        // closes [0, 25)
        Ok((1, 8, 1)),  // [1, 11): expired -> side output
    ];
    let spec = WindowSpec::event_time(Windows::session(10), |e: &Ev| e.2)
        .allowed_lateness(5)
        .trigger(Trigger::after_watermark_with(
            None,
            Some(Trigger::AfterCount(1)),
        ))
        .accumulation(Accumulation::Accumulating);
    let (panes, late) = scripted(script, spec);
    // The watermark at 12 passed [0, 10): its on-time pane (1), not last (lateness 5).
    // The bridging record makes a new window [0, 25) holding everything, which fires
    // once when the watermark jumps past both its end and its garbage-collection time.
    assert_eq!(
        panes,
        vec![
            (0, 10, 1, Timing::OnTime, false),
            (0, 25, 7, Timing::OnTime, true)
        ]
    );
    assert_eq!(late, vec![(1, 8, 1)]);
}

/// A session extended again and again fires once, at its final end: the timer of an
/// earlier end that passes meanwhile does not fire it (it is set again at the session's
/// end), also when one watermark passes several of those ends at once.
#[test]
fn a_growing_session_fires_once_at_its_final_end() {
    let script = vec![
        Ok((1, 1, 0)), // [0, 10)
        Err(5),
        Ok((1, 1, 7)),  // [0, 17)
        Err(11),        // passes 10, the first end
        Ok((1, 1, 14)), // [0, 24)
        Err(20),        // passes 17
        Ok((1, 1, 21)), // [0, 31)
        Ok((2, 5, 21)), // another key: [21, 31)
        Err(30),
        Ok((1, 1, 29)),  // [0, 39)
        Err(100),        // passes 24, 31 and 39 at once
        Ok((1, 3, 200)), // [200, 210), fired at the end of the input
    ];
    let spec = WindowSpec::event_time(Windows::session(10), |e: &Ev| e.2);
    let (panes, late) = scripted(script, spec);
    assert_eq!(
        panes,
        vec![
            (21, 31, 5, Timing::OnTime, true),
            (0, 39, 5, Timing::OnTime, true),
            (200, 210, 3, Timing::OnTime, true),
        ]
    );
    assert!(late.is_empty());
}

/// The live-window counters follow session merges: a merge of n sessions leaves one
/// live window, an extension leaves the count as it is, and the end closes them all.
#[test]
fn session_merges_keep_the_live_window_count() {
    let script = vec![
        Ok((1, 1, 0)),  // [0, 10)
        Ok((1, 1, 20)), // [20, 30)
        Ok((1, 1, 35)), // [35, 45): three live
        Ok((1, 1, 12)), // [12, 22) extends [20, 30) at its start: [12, 30)
        Ok((1, 1, 5)),  // [5, 15) bridges: [0, 30)
        Ok((1, 1, 28)), // [28, 38) bridges: [0, 45), one live
        Ok((1, 1, 40)), // [40, 50) extends at its end: [0, 50)
        Ok((2, 1, 60)), // key 2: [60, 70)
        Ok((2, 1, 80)),
        Ok((2, 1, 100)), // four live
    ];
    let spec = WindowSpec::event_time(Windows::session(10), |e: &Ev| e.2);
    let metrics = spec.metrics();
    let (panes, _) = scripted(script, spec);
    assert_eq!(
        panes,
        vec![
            (0, 50, 7, Timing::OnTime, true),
            (60, 70, 1, Timing::OnTime, true),
            (80, 90, 1, Timing::OnTime, true),
            (100, 110, 1, Timing::OnTime, true),
        ]
    );
    assert_eq!(metrics.max_live_windows(), 4);
    assert_eq!(metrics.live_windows(), 0);
}

/// Processing-time windows over records that arrive before any processing time does (a
/// manual clock that never moves): they are held, not assigned at the minimum timestamp
/// (which overflowed), and counted at time 0 when the input ends.
#[test]
fn processing_time_windows_before_any_processing_time() {
    let mut df = Dataflow::new();
    let out = df
        .vec_source("in", (0..100u32).collect::<Vec<_>>())
        .key_by(|r: &u32| r % 3)
        .window(WindowSpec::processing_time(Windows::tumbling(10)))
        .count("count")
        .collect("out");
    let config = Config::default()
        .shards(2)
        .pin(false)
        .clock(rill_runtime::Clock::Manual);
    Runtime::new(config).unwrap().run(df).unwrap();
    let mut got: Vec<(u32, i64, i64, u64)> = out
        .take()
        .into_iter()
        .map(|p: Pane<u32, u64>| (p.key, p.window.start, p.window.end, p.value))
        .collect();
    got.sort();
    assert_eq!(got, vec![(0, 0, 10, 34), (1, 0, 10, 33), (2, 0, 10, 33)]);
}

/// The error of a job counting `events` per key in `spec`'s windows (operator `name`) on
/// two shards.
fn count_error(
    events: Vec<(u32, i64)>,
    spec: WindowSpec<(u32, i64), u32>,
    name: &str,
) -> rill_runtime::Error {
    let mut df = Dataflow::new();
    df.vec_source("events", events)
        .key_by(|e: &(u32, i64)| e.0)
        .window(spec)
        .count(name)
        .discard("sink");
    run_on(2, df).unwrap_err()
}

#[test]
fn windows_that_cannot_be_built_are_a_clear_error() {
    // Fixed windows: refused before any shard starts.
    let spec = WindowSpec::event_time(Windows::tumbling(0), |e: &(u32, i64)| e.1);
    let err = count_error(vec![(1, 5)], spec, "counts");
    assert!(
        matches!(&err, rill_runtime::Error::InvalidOperator { operator, .. } if operator == "counts"),
        "{err:?}"
    );
    assert!(err.to_string().contains("window size must be > 0"), "{err}");
    // Windows chosen per key: the job fails when a key's windows are built.
    let spec = WindowSpec::event_time(Windows::session(10), |e: &(u32, i64)| e.1)
        .per_key(|k: &u32| Windows::session(if *k == 2 { 0 } else { 10 }));
    let err = count_error(vec![(1, 5), (2, 6)], spec, "sessions");
    assert!(
        matches!(&err, rill_runtime::Error::OperatorFailed { operator, .. } if operator == "sessions"),
        "{err:?}"
    );
    assert!(err.to_string().contains("session gap must be > 0"), "{err}");
}
