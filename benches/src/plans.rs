//! q5 and q7 on the bid workload ([`crate::bids`]), each as the library writes it and as
//! rill's hand-written plan ([`crate::handwritten`]), and a runner for the whole job:
//! source, ascending watermarks, exchanges, windows, sink.
//!
//! - q5: bids per auction in sliding windows of 10 s every 2 s, then the auctions with the
//!   most bids per window. Library: `key_by(auction).window(sliding).top_count`.
//! - q7: the highest bids per tumbling window of 10 s. Library: `window_all(tumbling)`
//!   with `MaxBy(price)`.

use std::time::{Duration, Instant};

use rill_operators::prelude::*;
use rill_operators::window::{AllPane, MaxBy, TopPane, Window};
use rill_runtime::{Config, Dataflow, Partitioning, Runtime, Stream};

use crate::bids::{self, BidRecord, Workload};
use crate::handwritten::{HotItem, SlidingCounts, TopPerWindow};

/// Window size of both queries, ms.
pub const WINDOW_MS: i64 = 10_000;
/// q5's slide, ms.
pub const SLIDE_MS: i64 = 2_000;

/// A q5 result: (window start, window end, auction, bids).
pub type Q5Row = (i64, i64, u64, u64);
/// A q7 result: (window start, window end, auction, bidder, price).
pub type Q7Row = (i64, i64, u64, u64, u64);

/// Which query, and whose plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// q5 with `top_count`.
    LibraryQ5,
    /// q5 with `SlidingCounts` and `TopPerWindow`.
    HandwrittenQ5,
    /// q7 with `window_all` and `MaxBy`.
    LibraryQ7,
    /// q7 with `TopPerWindow` in two phases.
    HandwrittenQ7,
}

impl Plan {
    /// The four plans.
    pub const ALL: [Plan; 4] = [
        Plan::LibraryQ5,
        Plan::HandwrittenQ5,
        Plan::LibraryQ7,
        Plan::HandwrittenQ7,
    ];

    /// A short name: `q5_library`, `q5_handwritten`, ...
    pub fn name(self) -> &'static str {
        match self {
            Plan::LibraryQ5 => "q5_library",
            Plan::HandwrittenQ5 => "q5_handwritten",
            Plan::LibraryQ7 => "q7_library",
            Plan::HandwrittenQ7 => "q7_handwritten",
        }
    }
}

/// q5 on the library.
pub fn library_q5<B: BidRecord>(bids: &Stream<B>) -> Stream<Q5Row> {
    bids.key_by(|b: &B| b.auction())
        .window(WindowSpec::event_time(
            Windows::sliding(WINDOW_MS, SLIDE_MS),
            |b: &B| b.time(),
        ))
        .top_count("q5 hottest")
        .flat_map("q5 rows", |top: TopPane<u64, u64>| {
            let w = top.window;
            top.value
                .into_iter()
                .map(move |(auction, count)| (w.start, w.end, auction, count))
        })
}

/// q5 on the hand-written operators.
pub fn handwritten_q5<B: BidRecord>(bids: &Stream<B>) -> Stream<Q5Row> {
    let candidates = bids
        .exchange(Partitioning::by_key(|b: &B| b.auction()))
        .unary("q5 bids per auction", |_| {
            SlidingCounts::new(WINDOW_MS, SLIDE_MS)
        });
    let by_window = candidates.exchange(Partitioning::by_key(|h: &HotItem| h.window));
    TopPerWindow::apply(
        &by_window,
        "q5 hottest",
        |h: &HotItem| h.window,
        |h| h.count,
    )
    .map("q5 rows", |h: HotItem| {
        (h.window.start, h.window.end, h.auction, h.count)
    })
}

/// q7 on the library.
pub fn library_q7<B: BidRecord>(bids: &Stream<B>) -> Stream<Q7Row> {
    bids.window_all(WindowSpec::event_time(
        Windows::tumbling(WINDOW_MS),
        |b: &B| b.time(),
    ))
    .aggregate("q7 highest", MaxBy::new(|b: &B| b.price()))
    .flat_map("q7 rows", |top: AllPane<Vec<B>>| {
        let w = top.window;
        top.value
            .into_iter()
            .map(move |b| (w.start, w.end, b.auction(), b.bidder(), b.price()))
    })
}

/// q7 on the hand-written operators.
pub fn handwritten_q7<B: BidRecord>(bids: &Stream<B>) -> Stream<Q7Row> {
    let window = |b: &B| {
        let t = b.time();
        let start = t - t.rem_euclid(WINDOW_MS);
        Window::new(start, start + WINDOW_MS)
    };
    TopPerWindow::two_phase(bids, "q7 highest", window, |b: &B| b.price()).map(
        "q7 rows",
        move |b: B| {
            let w = window(&b);
            (w.start, w.end, b.auction(), b.bidder(), b.price())
        },
    )
}

/// What a run gives back: its rows, sorted, and the time the job took.
#[derive(Debug, Default)]
pub struct Outcome {
    /// q5 rows, sorted (empty for q7).
    pub q5: Vec<Q5Row>,
    /// q7 rows, sorted (empty for q5).
    pub q7: Vec<Q7Row>,
    /// From the runtime's start of the job to its end.
    pub elapsed: Duration,
}

/// Runs `plan` over the workload's bids of type `B` on `shards` shards; collects the rows
/// if `collect`, else discards them. With `RILL_BENCH_REPORT` set, prints the job report.
pub fn run<B: BidRecord>(plan: Plan, work: Workload, shards: usize, collect: bool) -> Outcome {
    let mut df = Dataflow::new();
    let input = bids::source::<B>(&mut df, work)
        .assign_watermarks("watermarks", WatermarkStrategy::ascending(|b: &B| b.time()));
    let (mut q5, mut q7) = (None, None);
    match plan {
        Plan::LibraryQ5 | Plan::HandwrittenQ5 => {
            let rows = if plan == Plan::LibraryQ5 {
                library_q5(&input)
            } else {
                handwritten_q5(&input)
            };
            if collect {
                q5 = Some(rows.collect("out"));
            } else {
                rows.discard("out");
            }
        }
        Plan::LibraryQ7 | Plan::HandwrittenQ7 => {
            let rows = if plan == Plan::LibraryQ7 {
                library_q7(&input)
            } else {
                handwritten_q7(&input)
            };
            if collect {
                q7 = Some(rows.collect("out"));
            } else {
                rows.discard("out");
            }
        }
    }
    let runtime = Runtime::new(Config::default().shards(shards).pin(false)).expect("runtime");
    let start = Instant::now();
    let report = runtime.run(df).expect("job");
    let elapsed = start.elapsed();
    if std::env::var_os("RILL_BENCH_REPORT").is_some() {
        eprintln!("{} in {elapsed:?}\n{report}", plan.name());
        for op in &report.operators {
            eprintln!("busy {:40} {:?}", op.name, op.busy);
        }
        for shard in &report.shards {
            eprintln!(
                "shard {} busy {:?} idle {:?} backpressured {:?}",
                shard.shard, shard.busy, shard.idle, shard.backpressured
            );
        }
    }
    let mut outcome = Outcome {
        elapsed,
        ..Outcome::default()
    };
    if let Some(rows) = q5 {
        outcome.q5 = rows.take();
        outcome.q5.sort_unstable();
    }
    if let Some(rows) = q7 {
        outcome.q7 = rows.take();
        outcome.q7.sort_unstable();
    }
    outcome
}
