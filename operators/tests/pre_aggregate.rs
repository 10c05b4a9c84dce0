//! Pre-aggregation before the key exchange sends all its partials when its table holds
//! more entries than the spec's `pre_aggregate_capacity`: with a small capacity that flush
//! happens after every batch, and the panes are still those of a computation from scratch.

mod common;

use std::collections::BTreeMap;

use common::{run_on, Ev};
use rill_operators::prelude::*;
use rill_operators::window::Sum;
use rill_runtime::{Dataflow, JobReport};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: u32 = 40;

fn events() -> Vec<Ev> {
    (0..20_000i64)
        .map(|i| ((i % KEYS as i64) as u32, i % 7, (i * 13) % 1_000))
        .collect()
}

/// Every (key, window start)'s sum, from scratch (tumbling windows of 100 ms).
fn reference(events: &[Ev]) -> BTreeMap<(u32, i64), i64> {
    let mut sums = BTreeMap::new();
    for &(k, v, t) in events {
        *sums.entry((k, t - t % 100)).or_insert(0) += v;
    }
    sums
}

/// The sums per (key, window start), and the job's report.
fn run(capacity: Option<usize>) -> (BTreeMap<(u32, i64), i64>, JobReport) {
    let mut df = Dataflow::new();
    let mut spec = WindowSpec::event_time(Windows::tumbling(100), |e: &Ev| e.2);
    if let Some(entries) = capacity {
        spec = spec.pre_aggregate_capacity(entries);
    }
    let panes = df
        .vec_source("events", events())
        .key_by(|e: &Ev| e.0)
        .window(spec)
        .aggregate("sum", Sum::new(|e: &Ev| e.1))
        .collect("panes");
    let report = run_on(2, df).unwrap();
    let mut sums = BTreeMap::new();
    for p in panes.take() {
        assert!(p.is_last && !p.retraction, "{p:?}");
        let old = sums.insert((p.key, p.window.start), p.value);
        assert!(old.is_none(), "two panes for {p:?}");
    }
    (sums, report)
}

/// The partials the final operator received.
fn partials(report: &JobReport) -> u64 {
    report
        .operator("sum")
        .expect("the final operator")
        .records
        .iter()
        .sum()
}

#[test]
fn a_full_pre_aggregation_table_sends_its_partials_and_the_panes_stay_right() {
    let want = reference(&events());
    let (roomy, roomy_report) = run(None);
    let (small, small_report) = run(Some(8));
    assert!(roomy_report.operator("sum (pre-aggregate)").is_some());
    assert_eq!(roomy, want);
    assert_eq!(small, want);
    // With room for every entry a shard sends one partial per (key, slice) it saw (the
    // input ends before any watermark); a table of 8 entries goes out after every batch,
    // so keys repeat across partials.
    let pairs = want.len() as u64;
    assert!(
        partials(&roomy_report) <= 2 * pairs,
        "{}",
        partials(&roomy_report)
    );
    assert!(
        partials(&small_report) > 2 * pairs,
        "{} partials for {pairs} (key, window) pairs",
        partials(&small_report)
    );
}
