//! Cascaded windows: a count per key per sliding window, then the largest count per
//! window over the panes of the first (NEXMark q5's shape), on 1, 2 and 4 shards with
//! ascending watermarks. Placed at their timestamps (`WindowSpec::timestamped`), no pane
//! is late and the result equals a from-scratch reference; placed at `window.start`,
//! panes are dropped as late and the result is wrong, so the check can fail.

mod oracle;

use std::collections::BTreeMap;

use rill_operators::prelude::*;
use rill_operators::window::{Max, Pane, Window, WindowMetrics};
use rill_runtime::{Config, Dataflow, Runtime, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (key, event time in ms)
type Ev = (u32, Timestamp);
type Counted = Pane<u32, u64>;

const SIZE: i64 = 10_000;
const SLIDE: i64 = 2_000;

/// Random-ish events in time order (a seeded linear congruential generator): skewed keys,
/// bursts and gaps in time, several events at one instant.
fn events(seed: u64, n: usize) -> Vec<Ev> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut t = 0;
    (0..n)
        .map(|_| {
            t += match next() % 10 {
                0 => 1_500 + (next() % 4_000) as i64, // a gap
                1..=4 => 0,                           // same instant
                _ => (next() % 40) as i64,
            };
            let r = next() % 100;
            let key = if r < 30 {
                (r % 3) as u32
            } else {
                (r % 37) as u32
            };
            (key, t)
        })
        .collect()
}

/// The largest count per key of every sliding window that has records, from scratch.
fn reference(events: &[Ev]) -> BTreeMap<Window, u64> {
    let mut counts: BTreeMap<(Window, u32), u64> = BTreeMap::new();
    for &(key, t) in events {
        for w in oracle::windows_of(Windows::sliding(SIZE, SLIDE), t) {
            *counts.entry((w, key)).or_insert(0) += 1;
        }
    }
    let mut max: BTreeMap<Window, u64> = BTreeMap::new();
    for ((w, _), n) in counts {
        let m = max.entry(w).or_insert(0);
        *m = (*m).max(n);
    }
    max
}

struct Outcome {
    /// The largest count per upstream window, as the second window reported it.
    max: BTreeMap<Window, u64>,
    first: WindowMetrics,
    second: WindowMetrics,
}

/// Runs the cascade; `second` is the spec of the window over the panes.
fn run(events: &[Ev], shards: usize, second: WindowSpec<Counted, Window>) -> Outcome {
    let first = WindowSpec::event_time(Windows::sliding(SIZE, SLIDE), |e: &Ev| e.1);
    let (first_metrics, second_metrics) = (first.metrics(), second.metrics());
    let mut df = Dataflow::new();
    let out = df
        // Shard i emits events i, i + shards, ...: each shard's part is in time order.
        .vec_source("events", events.to_vec())
        .assign_watermarks("ascending", WatermarkStrategy::ascending(|e: &Ev| e.1))
        .key_by(|e: &Ev| e.0)
        .window(first)
        .count("count per key")
        // The second window holds exactly the panes of one upstream window per key.
        .key_by(|p: &Counted| p.window)
        .window(second)
        .aggregate("max per window", Max::new(|p: &Counted| p.value))
        .collect("out");
    Runtime::new(Config::default().shards(shards).pin(false))
        .unwrap()
        .run(df)
        .unwrap();
    let mut max = BTreeMap::new();
    for p in out.take() {
        assert!(!p.retraction);
        let value = p.value.expect("a pane over at least one upstream pane");
        assert!(max.insert(p.key, value).is_none(), "one pane per window");
    }
    Outcome {
        max,
        first: first_metrics,
        second: second_metrics,
    }
}

#[test]
fn panes_placed_at_their_timestamp_are_never_late() {
    for (seed, shards) in [(1, 1), (2, 2), (3, 4), (4, 4)] {
        let events = events(seed, 20_000);
        let expected = reference(&events);
        let got = run(
            &events,
            shards,
            WindowSpec::timestamped(Windows::tumbling(SLIDE)),
        );
        assert_eq!(got.first.dropped_late(), 0, "{shards} shards");
        assert_eq!(got.second.dropped_late(), 0, "{shards} shards");
        assert_eq!(got.second.dropped_closed(), 0, "{shards} shards");
        assert_eq!(got.max, expected, "{shards} shards, seed {seed}");
    }
}

#[test]
fn panes_placed_at_their_window_start_are_dropped_as_late() {
    let events = events(5, 20_000);
    let expected = reference(&events);
    for shards in [1, 2] {
        let got = run(
            &events,
            shards,
            WindowSpec::event_time(Windows::tumbling(SLIDE), |p: &Counted| p.window.start),
        );
        assert_eq!(got.first.dropped_late(), 0);
        assert!(got.second.dropped_late() > 0, "{shards} shards");
        assert_ne!(got.max, expected, "{shards} shards");
    }
}
