//! Non-keyed windows (`window_all`) against a from-scratch reference on 1, 2 and 4 shards,
//! and the job report showing that records stay on their shards (only partials per shard
//! and slice cross an exchange).

mod common;
mod oracle;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::run_on;
use proptest::prelude::*;
use rill_operators::prelude::*;
use rill_operators::window::{Aggregate, Count, Max, Sum, Window};
use rill_runtime::{Dataflow, JobReport};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (value, event time)
type Ev = (i64, i64);

/// Runs `agg` over `events` in `spec`'s windows: shard `i` of `shards` reads the events `j`
/// with `j % shards == i`, in time order, with ascending watermarks.
fn run<G>(
    events: &[Ev],
    shards: usize,
    spec: WindowSpec<Ev, ()>,
    agg: G,
) -> (Vec<(Window, G::Out)>, JobReport)
where
    G: Aggregate<Ev, ()> + Send + Sync,
    G::Out: rill_runtime::StateData + Ord + Send,
    (Window, G::Out): rill_runtime::Data,
    G::Acc: rill_runtime::StateData + rill_runtime::ExchangeData,
    rill_operators::window::Pane<(), G::Acc>: rill_runtime::ExchangeData + rill_runtime::StateData,
{
    let events = Arc::new(events.to_vec());
    let mut df = Dataflow::new();
    let out = df
        .iter_source("events", move |s| {
            let events = events.clone();
            (0..events.len())
                .filter(move |j| j % s.shards == s.index)
                .map(move |j| events[j])
        })
        .assign_watermarks("watermarks", WatermarkStrategy::ascending(|e: &Ev| e.1))
        .window_all(spec)
        .aggregate("agg", agg)
        .map("row", |p| (p.window, p.value))
        .collect("out");
    let report = run_on(shards, df).unwrap();
    let mut rows = out.take();
    rows.sort();
    (rows, report)
}

/// Windows of the events' time.
fn event_time(windows: Windows) -> WindowSpec<Ev, ()> {
    WindowSpec::event_time(windows, |e: &Ev| e.1)
}

/// Every window with records and its (sum, count, max), from scratch.
fn reference(events: &[Ev], windows: Windows) -> BTreeMap<Window, (i64, i64, i64)> {
    let mut out: BTreeMap<Window, (i64, i64, i64)> = BTreeMap::new();
    for &(v, t) in events {
        for w in oracle::windows_of(windows, t) {
            let e = out.entry(w).or_insert((0, 0, i64::MIN));
            e.0 += v;
            e.1 += 1;
            e.2 = e.2.max(v);
        }
    }
    out
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec((-50i64..100, 0i64..5), 1..300).prop_map(|steps| {
        let mut t = 0;
        steps
            .into_iter()
            .map(|(v, dt)| {
                t += dt;
                (v, t)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn window_all_equals_the_reference_on_any_shard_count(
        events in events(),
        sliding in any::<bool>(),
        size in 2i64..40,
        period in 1i64..20,
    ) {
        let windows = if sliding {
            Windows::sliding(size, period)
        } else {
            Windows::tumbling(size)
        };
        let expected = reference(&events, windows);
        fn column<V>(
            expected: &BTreeMap<Window, (i64, i64, i64)>,
            f: impl Fn(&(i64, i64, i64)) -> V,
        ) -> Vec<(Window, V)> {
            expected.iter().map(|(w, e)| (*w, f(e))).collect()
        }
        for shards in [1, 2, 4] {
            let (sums, _) = run(&events, shards, event_time(windows), Sum::new(|e: &Ev| e.0));
            prop_assert_eq!(&sums, &column(&expected, |e| e.0), "sums on {} shards", shards);
            let (counts, _) = run(&events, shards, event_time(windows), Count::new());
            prop_assert_eq!(&counts, &column(&expected, |e| e.1 as u64), "counts on {} shards", shards);
            let (maxima, _) = run(&events, shards, event_time(windows), Max::new(|e: &Ev| e.0));
            prop_assert_eq!(&maxima, &column(&expected, |e| Some(e.2)), "maxima on {} shards", shards);
        }
    }
}

/// The reference's sums per window.
fn reference_sums(events: &[Ev], windows: Windows) -> Vec<(Window, i64)> {
    reference(events, windows)
        .into_iter()
        .map(|(w, e)| (w, e.0))
        .collect()
}

/// Records stay on their shards: what crosses the exchange is one partial per shard and
/// window, far fewer than the records.
#[test]
fn no_shard_receives_every_record() {
    let events: Vec<Ev> = (0..100_000).map(|i| (i % 7, i / 10)).collect();
    let windows = Windows::tumbling(1_000);
    let (sums, report) = run(&events, 2, event_time(windows), Sum::new(|e: &Ev| e.0));
    let expected = reference_sums(&events, windows);
    assert_eq!(sums, expected);
    let crossed: u64 = report.channels.iter().map(|c| c.records).sum();
    // 10 windows, 2 shards: at most 20 partials (a shard sends to itself through its own
    // channel too).
    assert!(crossed <= 20, "{crossed} records crossed an exchange");
    assert!(
        !report.channels.is_empty(),
        "the partials cross an exchange"
    );
}

/// A spec that cannot run in two phases (allowed lateness) runs on one shard and gives
/// the same windows; all records then cross the exchange.
#[test]
fn other_specs_run_in_one_phase() {
    let events: Vec<Ev> = (0..1_000).map(|i| (i % 7, i / 10)).collect();
    let windows = Windows::tumbling(30);
    let spec = event_time(windows).allowed_lateness(5);
    let (sums, report) = run(&events, 2, spec, Sum::new(|e: &Ev| e.0));
    let expected = reference_sums(&events, windows);
    assert_eq!(sums, expected);
    let crossed: u64 = report.channels.iter().map(|c| c.records).sum();
    assert_eq!(crossed, 1_000);
    // Pre-aggregation turned off: one phase too, with the same sums.
    let spec = event_time(windows).pre_aggregate(false);
    let (sums, report) = run(&events, 2, spec, Sum::new(|e: &Ev| e.0));
    assert_eq!(sums, expected);
    let crossed: u64 = report.channels.iter().map(|c| c.records).sum();
    assert_eq!(crossed, 1_000);
}

/// Windows that cannot be built are the job's error, as for keyed windows (not a panic
/// while the dataflow is built).
#[test]
fn windows_that_cannot_be_built_are_a_clear_error() {
    let mut df = Dataflow::new();
    df.vec_source("events", vec![(1i64, 5i64)])
        .window_all(event_time(Windows::tumbling(0)))
        .sum("sums", |e: &Ev| e.0)
        .discard("sink");
    let err = run_on(2, df).unwrap_err();
    assert!(err.to_string().contains("window size must be > 0"), "{err}");
}
