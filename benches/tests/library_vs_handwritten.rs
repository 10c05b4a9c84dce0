//! The library's q5 (`top_count`) and q7 (`window_all` with `MaxBy`) give the same rows as
//! rill's hand-written plans on the bid workload, with and without the `String`, on 1 and
//! 2 shards (the comparison in `benches/library_vs_handwritten.rs` is of equal work).

use rill_benches::bids::{Bid, BidRecord, SmallBid, Workload};
use rill_benches::plans::{run, Plan};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 300,000 bids at 10 a ms: 30 s of event time, so q5's windows (10 s every 2 s) and q7's
/// (10 s) close while bids arrive; 1,000 auctions, so counts tie and grow.
fn same_rows<B: BidRecord>(shards: usize) {
    let events = Workload {
        events: 300_000,
        per_ms: 10,
        auctions: 1_000,
    };
    let lib = run::<B>(Plan::LibraryQ5, events, shards, true);
    let hand = run::<B>(Plan::HandwrittenQ5, events, shards, true);
    assert!(!lib.q5.is_empty());
    assert_eq!(lib.q5, hand.q5, "q5 on {shards} shards");
    let lib = run::<B>(Plan::LibraryQ7, events, shards, true);
    let hand = run::<B>(Plan::HandwrittenQ7, events, shards, true);
    assert!(!lib.q7.is_empty());
    assert_eq!(lib.q7, hand.q7, "q7 on {shards} shards");
}

#[test]
fn library_and_handwritten_plans_give_the_same_rows() {
    for shards in [1, 2] {
        same_rows::<Bid>(shards);
        same_rows::<SmallBid>(shards);
    }
}
