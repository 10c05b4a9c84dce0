//! The keyed state backend's cost at a barrier: what a shard's loop spends on one
//! incremental snapshot of a large table (its changes plus a rotating eighth copied
//! whole), and on archiving the records afterwards (done in slices between batches).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rill_runtime::checkpoint::StateWriter;
use rill_runtime::state::KeyedState;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: u64 = 1_000_000;

fn table() -> KeyedState<u64, u64> {
    let mut t = KeyedState::new(true);
    for k in 0..KEYS {
        t.insert(k, k);
    }
    t.snapshot(StateWriter::default().section("t", 1)).unwrap();
    t
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
                    || {
                        let mut t = table();
                        for k in (0..KEYS)
                            .step_by((KEYS / changed.max(1)) as usize)
                            .take(changed as usize)
                        {
                            *t.get_mut(&k).unwrap() += 1;
                        }
                        t
                    },
                    |mut t| {
                        let mut w = StateWriter::incremental(3, 8);
                        t.snapshot(w.section("t", 1)).unwrap();
                        (t, w)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    g.bench_function("archive, 1M keys, 100000 changed, 1/8 copied", |b| {
        b.iter_batched(
            || {
                let mut t = table();
                for k in (0..KEYS).step_by(10).take(100_000) {
                    *t.get_mut(&k).unwrap() += 1;
                }
                let mut w = StateWriter::incremental(3, 8);
                t.snapshot(w.section("t", 1)).unwrap();
                w
            },
            |mut w| {
                w.archive().unwrap();
                w
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
