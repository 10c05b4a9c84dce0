//! rkyv batch buffers: serializing a batch of 1024 40-byte records (one archived vector)
//! into a reused aligned buffer, and validating + reading them back in place. Isolates the
//! per-record serialization cost of an exchange.
//!
//! `cargo bench -p rill-benches --bench batch`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rill_bench::synthetic::Event;
use rill_runtime::exchange::batch::BatchBuf;
use rill_runtime::rkyv::ser::allocator::Arena;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 1024;

fn events() -> Vec<Event> {
    (0..RECORDS as u64)
        .map(|i| Event {
            key: i * 31 % 10_000,
            intended_ns: i,
            a: i,
            b: !i,
            c: 0,
        })
        .collect()
}

fn batch(c: &mut Criterion) {
    let events = events();
    let mut g = c.benchmark_group("batch_1024_x_40B");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let mut buf = BatchBuf::with_capacity(64 * 1024);
    let mut arena = Arena::new();
    g.bench_function("write", |b| {
        b.iter(|| {
            buf.write_all(&events, &mut arena).unwrap();
            black_box(buf.byte_len())
        })
    });
    buf.write_all(&events, &mut arena).unwrap();
    let mut out: Vec<Event> = Vec::with_capacity(RECORDS);
    g.bench_function("validate_and_read", |b| {
        b.iter(|| {
            out.clear();
            buf.read_into(&mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
