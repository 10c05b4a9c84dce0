//! A window's last pane takes its accumulator (`Aggregate::finish`) instead of cloning it:
//! closing a tumbling window of many keys then touches neither the accumulators' heap
//! memory nor the allocator. Checked with an accumulator that counts its clones, against a
//! brute-force expectation of the panes, on 1 and 2 shards, and in the paths that may not
//! take it (accumulating panes that fire early keep their accumulator).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rill_operators::prelude::*;
use rill_operators::window::{Aggregate, Pane, Window};
use rill_runtime::{rkyv, Config, Dataflow, Runtime};

/// (key, name, event time)
type Ev = (u32, String, i64);

/// Clones of [`Names`] accumulators (one test runs at a time: see [`one_at_a_time`]).
static CLONES: AtomicU64 = AtomicU64::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A window's names (an accumulator that counts its clones).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
struct Names(Vec<String>);

impl Clone for Names {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::Relaxed);
        Names(self.0.clone())
    }
}

#[derive(Clone)]
struct CollectNames;

impl Aggregate<Ev, u32> for CollectNames {
    type Acc = Names;
    type Out = Vec<String>;
    fn create(&self) -> Names {
        Names(Vec::new())
    }
    fn add(&self, acc: &mut Names, e: &Ev) {
        acc.0.push(e.1.clone());
    }
    fn merge(&self, acc: &mut Names, mut other: Names) {
        acc.0.append(&mut other.0);
    }
    fn result(&self, _: &u32, _: &Window, acc: &Names) -> Vec<String> {
        acc.clone().0
    }
    fn finish(&self, _: &u32, _: &Window, acc: Names) -> Vec<String> {
        acc.0
    }
}

/// 20 keys, 5 records per key and second for 4 seconds, in time order.
fn events() -> Vec<Ev> {
    (0..400i64)
        .map(|i| ((i % 20) as u32, format!("n{i}"), i * 10))
        .collect()
}

/// Runs `spec` over [`events`] on `shards` shards; the panes as (key, window start, names
/// sorted) and how many times an accumulator was cloned.
fn run(shards: usize, spec: WindowSpec<Ev, u32>) -> (Vec<(u32, i64, Vec<String>)>, u64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = CLONES.load(Ordering::Relaxed);
    let mut df = Dataflow::new();
    let out = df
        .vec_source("events", events())
        .assign_watermarks("watermarks", WatermarkStrategy::ascending(|e: &Ev| e.2))
        .key_by(|e: &Ev| e.0)
        .window(spec)
        .aggregate("names", CollectNames)
        .collect("out");
    Runtime::new(Config::default().shards(shards).pin(false))
        .unwrap()
        .run(df)
        .unwrap();
    let mut panes: Vec<_> = out
        .take()
        .into_iter()
        .map(|p: Pane<u32, Vec<String>>| {
            let mut names = p.value;
            names.sort();
            (p.key, p.window.start, names)
        })
        .collect();
    panes.sort();
    (panes, CLONES.load(Ordering::Relaxed) - before)
}

/// Each key's names per tumbling window of `size` ms, by brute force.
fn expected(size: i64) -> Vec<(u32, i64, Vec<String>)> {
    let mut by: BTreeMap<(u32, i64), Vec<String>> = BTreeMap::new();
    for (k, name, t) in events() {
        by.entry((k, t - t.rem_euclid(size)))
            .or_default()
            .push(name);
    }
    by.into_iter()
        .map(|((k, start), mut names)| {
            names.sort();
            (k, start, names)
        })
        .collect()
}

#[test]
fn closing_a_tumbling_window_moves_its_accumulators_into_the_panes() {
    let time = |e: &Ev| e.2;
    for shards in [1, 2] {
        for spec in [
            // The on-time operator (fires once), and the general sliced one.
            WindowSpec::event_time(Windows::tumbling(1_000), time),
            WindowSpec::event_time(Windows::tumbling(1_000), time).allowed_lateness(500),
        ] {
            let (panes, clones) = run(shards, spec);
            assert_eq!(panes, expected(1_000), "{shards} shards");
            // The sliced operator merges a window's slices into a fresh accumulator,
            // cloning each slice's once (one per pane here); the on-time one clones none.
            assert!(
                clones <= panes.len() as u64,
                "{clones} clones for {} panes",
                panes.len()
            );
        }
        let on_time = WindowSpec::event_time(Windows::tumbling(1_000), time);
        let (_, clones) = run(shards, on_time);
        assert_eq!(
            clones, 0,
            "the on-time operator cloned accumulators ({shards} shards)"
        );
    }
}

#[test]
fn discarding_panes_take_their_accumulator_and_accumulating_ones_keep_it() {
    let time = |e: &Ev| e.2;
    // Early panes every 2 records, then the on-time one, on the per-window operator.
    let early = Trigger::after_watermark_with(Some(Trigger::AfterCount(2).repeatedly()), None);
    let spec = |accumulation| {
        WindowSpec::event_time(Windows::tumbling(1_000), time)
            .trigger(early.clone())
            .accumulation(accumulation)
            .per_window()
    };
    let (discarding, clones) = run(1, spec(Accumulation::Discarding));
    assert_eq!(clones, 0, "discarding panes cloned their accumulator");
    // The panes of a key and window, together, are its records.
    let mut merged: BTreeMap<(u32, i64), Vec<String>> = BTreeMap::new();
    for (k, start, names) in discarding {
        merged.entry((k, start)).or_default().extend(names);
    }
    let merged: Vec<_> = merged
        .into_iter()
        .map(|((k, s), mut n)| {
            n.sort();
            (k, s, n)
        })
        .collect();
    assert_eq!(merged, expected(1_000));
    let (accumulating, clones) = run(1, spec(Accumulation::Accumulating));
    assert!(clones > 0, "accumulating panes must keep their accumulator");
    let last: BTreeMap<(u32, i64), Vec<String>> = accumulating
        .into_iter()
        .map(|(k, s, n)| ((k, s), n))
        .fold(BTreeMap::new(), |mut m, (at, n)| {
            let e: &mut Vec<String> = m.entry(at).or_default();
            if n.len() > e.len() {
                *e = n;
            }
            m
        });
    let last: Vec<_> = last.into_iter().map(|((k, s), n)| (k, s, n)).collect();
    assert_eq!(last, expected(1_000));
}
