//! The library's q5 (`top_count`) and q7 (`window_all` with `MaxBy`) against rill's
//! hand-written plans for the same queries (`SlidingCounts`, `TopPerWindow`), on the same
//! bids, 2 shards, the whole job (source, ascending watermarks, exchanges, windows,
//! discarding sink); bids with a 40-byte `String` (`string`) and without (`plain`). The
//! setup checks that each pair gives the same rows. What it isolates: the library's
//! window operators' own cost against operators written for the one query.
//!
//! `cargo bench -p rill-benches --bench library_vs_handwritten`
//! (`-- q5` or `-- plain` to pick; `RILL_BENCH_EVENTS` overrides the 8M bids).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill_benches::bids::{Bid, BidRecord, SmallBid, Workload};
use rill_benches::plans::{run, Plan};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SHARDS: usize = 2;

/// 8M bids (8 s of event time at 1M/s) unless `RILL_BENCH_EVENTS` says otherwise.
fn workload() -> Workload {
    let events = std::env::var("RILL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000_000);
    Workload::at_1m_per_s(events)
}

/// Panics unless the library's and the hand-written plan give the same rows (on a
/// shorter input: 3 s of event time, every window of q5 and q7 closing at least once).
fn check_same_rows<B: BidRecord>() {
    let n = Workload::at_1m_per_s(3_000_000);
    let lib = run::<B>(Plan::LibraryQ5, n, SHARDS, true);
    let hand = run::<B>(Plan::HandwrittenQ5, n, SHARDS, true);
    assert!(!lib.q5.is_empty());
    assert_eq!(lib.q5, hand.q5, "q5: library and hand-written rows differ");
    let lib = run::<B>(Plan::LibraryQ7, n, SHARDS, true);
    let hand = run::<B>(Plan::HandwrittenQ7, n, SHARDS, true);
    assert!(!lib.q7.is_empty());
    assert_eq!(lib.q7, hand.q7, "q7: library and hand-written rows differ");
}

fn bench<B: BidRecord>(c: &mut Criterion, record: &str) {
    check_same_rows::<B>();
    let work = workload();
    let mut g = c.benchmark_group(format!("library_vs_handwritten_{record}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(work.events));
    for plan in Plan::ALL {
        g.bench_function(plan.name(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run::<B>(plan, work, SHARDS, false).elapsed)
                    .sum()
            })
        });
    }
    g.finish();
}

fn string(c: &mut Criterion) {
    bench::<Bid>(c, "string");
}

fn plain(c: &mut Criterion) {
    bench::<SmallBid>(c, "plain");
}

criterion_group!(benches, string, plain);
criterion_main!(benches);
