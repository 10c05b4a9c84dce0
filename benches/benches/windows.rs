//! Keyed windowed sum on one shard, 10,000 keys: tumbling (1 s), sliding (10 s every 2 s)
//! and session (gap 1 s) windows with the default trigger. The whole job runs: a source
//! generating records in event-time order, an ascending watermark generator, the key-hash
//! exchange (one shard: one ring) and the window operator; so the figure is a lower bound
//! on the window operator alone; `exchange_only` runs the job without the window operator
//! (its ceiling). 100 records per ms of event time: 10 per key per second.
//!
//! `cargo bench -p rill-benches --bench windows`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill_operators::prelude::*;
use rill_operators::window::Sum;
use rill_runtime::{Config, Dataflow, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: u64 = 4_000_000;
const KEYS: u64 = 10_000;

/// (key, value, event time in ms)
type Ev = (u32, i64, i64);

/// Runs the job with `windows`, or without a window operator (the key exchange feeding a
/// discarding sink: the ceiling for the window operator's job).
fn run(windows: Option<Windows>) -> Duration {
    let mut df = Dataflow::new();
    let keyed = df
        .iter_source("events", |shard| {
            let n = if shard.index == 0 { RECORDS } else { 0 };
            (0..n).map(|i| ((i % KEYS) as u32, 1i64, (i / 100) as i64))
        })
        .assign_watermarks("watermarks", WatermarkStrategy::ascending(|e: &Ev| e.2))
        .key_by(|e: &Ev| e.0);
    match windows {
        Some(windows) => keyed
            .window(WindowSpec::event_time(windows, |e: &Ev| e.2))
            .aggregate("sum", Sum::new(|e: &Ev| e.1))
            .discard("out"),
        None => keyed.stream().discard("out"),
    }
    let runtime = Runtime::new(Config::default().shards(1).pin(false)).unwrap();
    let start = Instant::now();
    runtime.run(df).unwrap();
    start.elapsed()
}

fn windows(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed_window_sum_1_shard_10k_keys");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS));
    for (name, w) in [
        ("exchange_only", None),
        ("tumbling_1s", Some(Windows::tumbling(1_000))),
        ("sliding_10s_2s", Some(Windows::sliding(10_000, 2_000))),
        ("session_1s", Some(Windows::session(1_000))),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(w)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, windows);
criterion_main!(benches);
