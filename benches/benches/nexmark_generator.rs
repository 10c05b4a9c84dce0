//! The NEXMark generator alone: building events from their positions (`GeneratorConfig::event`,
//! the per-event cost every NEXMark source pays before rill sees the event) and encoding
//! them as CSV lines one at a time (`Event::write_csv`, through the csv crate), and reading
//! such lines back (`Event::parse_csv`, what `run --kafka` does with each CSV record), and
//! reading binary records (`Event::parse` of `Event::write_binary`'s bytes: a magic byte
//! and an rkyv archive, what `run --kafka` does with `generate --kafka-format binary`).
//! Throughput is in events; the mix is NEXMark's 1 person : 3 auctions : 46 bids.
//!
//! `cargo bench -p rill-benches --bench nexmark_generator`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rill_bench::nexmark::{Event, GeneratorConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events per iteration: 200 epochs of 50.
const EVENTS: u64 = 10_000;

fn generator(c: &mut Criterion) {
    let config = GeneratorConfig::default();
    let mut g = c.benchmark_group("nexmark_generator");
    g.throughput(Throughput::Elements(EVENTS));
    let mut start = 0u64;
    g.bench_function("event", |b| {
        b.iter(|| {
            for position in start..start + EVENTS {
                black_box(config.event(position));
            }
            start += EVENTS;
        })
    });
    let bids: Vec<u64> = (0..EVENTS * 2)
        .filter(|n| n % 50 >= 4)
        .take(EVENTS as usize)
        .collect();
    g.bench_function("bid", |b| {
        b.iter(|| {
            for &n in &bids {
                black_box(config.event_for_number(n));
            }
        })
    });
    let events: Vec<Event> = (0..EVENTS).map(|p| config.event(p)).collect();
    let mut out = Vec::with_capacity(4 << 20);
    g.bench_function("write_csv", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                e.write_csv(&mut out);
            }
            black_box(out.len())
        })
    });
    let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    g.bench_function("parse_csv", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = black_box(Event::parse_csv(line));
            }
        })
    });
    let records: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut r = Vec::new();
            e.write_binary(&mut r);
            r
        })
        .collect();
    g.bench_function("parse_binary", |b| {
        b.iter(|| {
            for record in &records {
                let _ = black_box(Event::parse(record));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, generator);
criterion_main!(benches);
