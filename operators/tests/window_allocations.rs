//! No heap allocation per record on the tumbling and sliding path: a counting allocator
//! around the job shows allocations proportional to keys and slices, not records.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

use rill_operators::prelude::*;
use rill_operators::window::Sum;
use rill_runtime::{Config, Dataflow, Runtime};

/// mimalloc, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to mimalloc, which upholds `GlobalAlloc`'s
// contract; the counter is a relaxed atomic with no effect on the allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on as given.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (key, value, event time)
type Ev = (u32, i64, i64);

/// Allocations of a one-shard job over `records` records of 100 keys, 100 records per ms,
/// through the key exchange (`key_by`, with pre-aggregation where the spec allows it) or
/// with none (`assume_keyed_by`); and whether it pre-aggregated.
fn allocations(records: u64, spec: WindowSpec<Ev, u32>, exchange: bool) -> (u64, bool) {
    let mut df = Dataflow::new();
    let events = df
        .iter_source("events", move |_| {
            (0..records).map(|i| ((i % 100) as u32, 1i64, (i / 100) as i64))
        })
        .assign_watermarks("watermarks", WatermarkStrategy::ascending(|e: &Ev| e.2));
    let keyed = if exchange {
        events.key_by(|e: &Ev| e.0)
    } else {
        events.assume_keyed_by(|e: &Ev| e.0)
    };
    keyed
        .window(spec)
        .aggregate("sum", Sum::new(|e: &Ev| e.1))
        .discard("out");
    let runtime = Runtime::new(Config::default().shards(1).pin(false)).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let report = runtime.run(df).unwrap();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let pre_aggregated = report.operator("sum (pre-aggregate)").is_some();
    (allocations, pre_aggregated)
}

/// The allocations of a run of 2M records minus those of a run of 1M: the cost of 1M more
/// records (each 100 keys x 10 more seconds of windows), without the runtime's setup; and
/// whether the job pre-aggregated.
fn per_million(spec: impl Fn() -> WindowSpec<Ev, u32>, exchange: bool) -> (u64, bool) {
    let (small, _) = allocations(1_000_000, spec(), exchange);
    let (large, pre_aggregated) = allocations(2_000_000, spec(), exchange);
    (large.saturating_sub(small), pre_aggregated)
}

type SpecFn = Box<dyn Fn() -> WindowSpec<Ev, u32>>;

#[test]
fn tumbling_and_sliding_windows_allocate_per_slice_not_per_record() {
    let time = |e: &Ev| e.2;
    let cases: [(&str, SpecFn); 3] = [
        (
            "tumbling",
            Box::new(move || WindowSpec::event_time(Windows::tumbling(1_000), time)),
        ),
        (
            "sliding",
            Box::new(move || WindowSpec::event_time(Windows::sliding(2_000, 500), time)),
        ),
        (
            "sliding with lateness",
            Box::new(move || {
                WindowSpec::event_time(Windows::sliding(2_000, 500), time).allowed_lateness(100)
            }),
        ),
    ];
    for (name, spec) in cases {
        // Through the key exchange (tumbling and sliding: pre-aggregated before it), and
        // without an exchange (the window operator alone).
        for exchange in [true, false] {
            let (extra, pre_aggregated) = per_million(&spec, exchange);
            assert_eq!(pre_aggregated, exchange && name != "sliding with lateness");
            // 1M records are 10 s of event time: 20 slices of 100 keys, 2,000 (key, slice)
            // accumulators and as many windows (measured: 260-570 allocations); allow a
            // few for each, and none per record.
            assert!(
                extra < 5_000,
                "{name}, exchange {exchange}: {extra} allocations for 1M more records"
            );
        }
    }
}
