//! The exchange path allocates nothing per record: the allocations of a job grow by far
//! less than one per thousand extra records (buffers are pooled and handed back).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

use common::{records, runtime, Rec};
use rill_runtime::{Dataflow, Partitioning};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to mimalloc, which upholds GlobalAlloc's contract;
// the counter has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from mimalloc, with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from mimalloc with `layout`; forwarded unchanged.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_for(per_shard: u64) -> u64 {
    let mut df = Dataflow::new();
    df.iter_source("gen", move |s| records(s.index, per_shard, 10_000))
        .exchange(Partitioning::by_key(|r: &Rec| r.key))
        .exchange(Partitioning::Rebalance)
        .discard("sink");
    let rt = runtime(2);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let report = rt.run(df).expect("job succeeds");
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(report.operator("sink").unwrap().total(), 2 * per_shard);
    after - before
}

#[test]
fn no_allocation_per_record_on_the_exchange_path() {
    let small = allocations_for(50_000);
    let large = allocations_for(550_000);
    let extra_records = 2 * 500_000;
    let extra = large.saturating_sub(small);
    eprintln!("allocations: {small} for 100K records, {large} for 1.1M records");
    assert!(
        extra * 1000 < extra_records,
        "{extra} more allocations for {extra_records} more records"
    );
}
