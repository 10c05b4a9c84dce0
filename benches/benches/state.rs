//! The keyed state backend's cost at a barrier: what a shard's loop spends on one
//! incremental, copy-on-write snapshot of a large table (its changes plus a rotating eighth
//! copied whole) at the barrier, and on collecting and archiving the records afterwards
//! (done in slices between batches); and, for comparison, collecting them at the barrier
//! (a plain table's snapshot).
//!
//! `cargo bench -p rill-benches --bench state`

use std::cell::RefCell;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rill_runtime::checkpoint::StateWriter;
use rill_runtime::state::{KeyedState, SharedKeyedState};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: u64 = 1_000_000;

/// A table of `KEYS` keys after a full checkpoint, then `changed` of them changed.
fn table(changed: u64) -> SharedKeyedState<u64, u64> {
    let mut t = KeyedState::tracked();
    for k in 0..KEYS {
        t.insert(k, k);
    }
    t.snapshot(StateWriter::default().section("t", 1)).unwrap();
    for k in (0..KEYS)
        .step_by((KEYS / changed.max(1)) as usize)
        .take(changed as usize)
    {
        *t.get_mut(&k).unwrap() += 1;
    }
    Rc::new(RefCell::new(t))
}

/// The barrier: what the table does before the barrier moves on.
fn barrier(t: &SharedKeyedState<u64, u64>) -> StateWriter {
    let mut w = StateWriter::incremental(3, 8);
    KeyedState::snapshot_shared(t, w.section("t", 1)).unwrap();
    w
}

fn snapshots(c: &mut Criterion) {
    let mut g = c.benchmark_group("state");
    g.sample_size(10);
    g.throughput(Throughput::Elements(KEYS));
    for changed in [0u64, 10_000, 100_000] {
        g.bench_function(
            format!("barrier, 1M keys, {changed} changed, 1/8 copied"),
            |b| {
                b.iter_batched(
                    || table(changed),
                    |t| {
                        let w = barrier(&t);
                        (t, w)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    // A table the operator owns alone (`snapshot`): collected at the barrier.
    g.bench_function(
        "collect at the barrier, 1M keys, 100000 changed, 1/8 copied",
        |b| {
            b.iter_batched(
                || table(100_000),
                |t| {
                    let mut w = StateWriter::incremental(3, 8);
                    t.borrow_mut().snapshot(w.section("t", 1)).unwrap();
                    (t, w)
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.bench_function(
        "collect and archive after the barrier, 1M keys, 100000 changed, 1/8 copied",
        |b| {
            b.iter_batched(
                || {
                    let t = table(100_000);
                    let w = barrier(&t);
                    (t, w)
                },
                |(t, mut w)| {
                    w.archive().unwrap();
                    (t, w)
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
