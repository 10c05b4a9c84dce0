//! Each NEXMark query's hot path on one shard, without the generator: 500,000 events are
//! generated once, then every iteration feeds a copy of them through a vector source, an
//! ascending watermark on `date_time`, the query and a discarding sink. Exchanges inside
//! the queries run over one ring. Compare with `rill-bench run --query qN`, which also
//! pays for generating the events.
//!
//! `cargo bench -p rill-benches --bench nexmark_queries`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rill_bench::nexmark::queries::{self, Query, QueryContext};
use rill_bench::nexmark::source::{Epoch, Timed};
use rill_bench::nexmark::GeneratorConfig;
use rill_operators::prelude::*;
use rill_runtime::{Config, Dataflow, Runtime, Stream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: u64 = 500_000;

fn discard<R: rill_runtime::Data>(s: Stream<R>) {
    s.discard("out");
}

fn run(query: Query, events: Vec<Timed>, base_ms: u64) -> Duration {
    let mut df = Dataflow::new();
    let input = df.vec_source("events", events).assign_watermarks(
        "watermarks",
        WatermarkStrategy::ascending(|t: &Timed| t.event.date_time() as i64),
    );
    let cx = QueryContext::new(base_ms, Epoch::default());
    match query {
        Query::Q0 => discard(queries::q0(&input, &cx)),
        Query::Q1 => discard(queries::q1(&input, &cx)),
        Query::Q2 => discard(queries::q2(&input, &cx)),
        Query::Q3 => discard(queries::q3(&input, &cx)),
        Query::Q4 => discard(queries::q4(&input, &cx)),
        Query::Q5 => discard(queries::q5(&input, &cx)),
        Query::Q6 => discard(queries::q6(&input, &cx)),
        Query::Q7 => discard(queries::q7(&input, &cx)),
        Query::Q8 => discard(queries::q8(&input, &cx)),
        Query::Q11 => discard(queries::q11(&input, &cx)),
        Query::Q12 => discard(queries::q12(&input, &cx)),
    }
    let runtime = Runtime::new(Config::default().shards(1).pin(false)).unwrap();
    let start = Instant::now();
    runtime.run(df).unwrap();
    start.elapsed()
}

fn queries(c: &mut Criterion) {
    let config = GeneratorConfig::default();
    let events: Vec<Timed> = (0..EVENTS)
        .map(|n| Timed {
            due_ns: n * config.inter_event_ns,
            polled_ns: n * config.inter_event_ns,
            event: config.event(n),
        })
        .collect();
    let mut group = c.benchmark_group("nexmark query, 1 shard");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    for query in Query::ALL {
        group.bench_with_input(BenchmarkId::from_parameter(query), &query, |b, &q| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run(q, events.clone(), config.base_time_ms))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
