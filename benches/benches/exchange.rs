//! End to end through the runtime on 2 shards: key-hash exchange throughput with 40-byte
//! records (unthrottled), and one exchange hop's latency at a moderate open-loop rate
//! (HdrHistogram percentiles printed to stderr).
//!
//! `cargo bench -p rill-benches --bench exchange`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill_bench::latency::fmt_ns;
use rill_bench::synthetic::{run_exchange, Workload};
use rill_runtime::{available_cores, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: u64 = 10_000_000;

fn config() -> Config {
    let pin = available_cores() >= 2;
    Config::default().shards(2).pin(pin)
}

fn exchange(c: &mut Criterion) {
    let mut g = c.benchmark_group("exchange_2_shards");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("key_hash_40B_unthrottled", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let w = Workload {
                        events: EVENTS,
                        keys: 10_000,
                        rate: None,
                    };
                    run_exchange(config(), &w).unwrap().report.elapsed
                })
                .sum()
        })
    });
    g.finish();

    // Hop latency at 1M events/s: criterion times the run; the percentiles are what matter.
    let mut g = c.benchmark_group("hop_latency_2_shards");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("key_hash_1M_per_s_open_loop", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let w = Workload {
                    events: 500_000,
                    keys: 10_000,
                    rate: Some(1_000_000),
                };
                let r = run_exchange(config(), &w).unwrap();
                let l = r.latency.unwrap();
                eprintln!(
                    "hop latency: p50 {} p95 {} p99 {} p99.9 {} max {}",
                    fmt_ns(l.p50),
                    fmt_ns(l.p95),
                    fmt_ns(l.p99),
                    fmt_ns(l.p999),
                    fmt_ns(l.max)
                );
                total += r.report.elapsed;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, exchange);
criterion_main!(benches);
