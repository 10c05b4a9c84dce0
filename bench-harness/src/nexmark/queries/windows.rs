//! Windowed queries: q5 hot items (sliding), q7 highest bid (tumbling), q11 user sessions
//! (session windows) and q12 processing-time windows.

use rill_operators::prelude::*;
use rill_operators::window::{Pane, Window};
use rill_runtime::rkyv;
use std::collections::BTreeMap;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{KeyedState, Update};
use rill_runtime::{OpResult, Operator, Output, Partitioning, Stream, Timestamp};

use super::{QueryContext, TopPerWindow};
use crate::nexmark::rows::{BidderCount, Q5Row, Q7Row};
use crate::nexmark::source::Timed;
use crate::nexmark::Event;

/// The part of a bid the windowed queries keep.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct BidSummary {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Event time in ms.
    pub time: i64,
}

fn bid_summaries(events: &Stream<Timed>, name: &str) -> Stream<BidSummary> {
    events.flat_map(name, |t: Timed| match t.event {
        Event::Bid(b) => Some(BidSummary {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            time: b.date_time as i64,
        }),
        _ => None,
    })
}

/// The records with the top score per window over all shards: local candidates, an
/// exchange by window, then the merge.
fn top_per_window<T: rill_runtime::ExchangeData>(
    stream: &Stream<T>,
    name: &str,
    window: impl Fn(&T) -> Window + Clone + Send + Sync + 'static,
    score: impl Fn(&T) -> u64 + Clone + Send + Sync + 'static,
) -> Stream<T>
where
    (u32, T): rill_runtime::ExchangeData,
{
    let local = TopPerWindow::apply(
        stream,
        &format!("{name} (local)"),
        window.clone(),
        score.clone(),
    );
    let w = window.clone();
    let by_window = local.exchange(Partitioning::by_key(move |r: &T| w(r)));
    TopPerWindow::apply(&by_window, name, window, score)
}

/// A candidate for q5: an auction with the most bids of its window on one shard.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct HotItem {
    /// The window.
    pub window: Window,
    /// Auction id.
    pub auction: u64,
    /// Its bids in the window.
    pub count: u64,
}

/// One sliding window's running maximum on this shard: the most bids any auction has in
/// it, and the auctions at that count. Counts only grow, so the auctions at the maximum
/// are known at every moment without a scan.
#[derive(Default)]
struct WindowMax {
    max: u64,
    top: Vec<u64>,
}

/// q5's first phase, on auction-partitioned bids: per sliding window, the auctions with
/// the most bids on this shard, emitted when the watermark reaches the window's end.
/// (A keyed window count would emit one pane per auction and window, about one for every
/// 15 events, only for the next step to keep the maximum.)
///
/// The counts live in the runtime's keyed state, per auction (its windows' counts), so a
/// checkpoint writes only the auctions bid on since the previous one: a window that closes
/// leaves its counts in place (an auction's closed windows are dropped when it is next bid
/// on, and auctions with only closed windows are swept out when a window closes).
struct SlidingCounts {
    size: i64,
    slide: i64,
    /// Per auction: (window end, bids) for its windows, some possibly already closed.
    counts: KeyedState<u64, Vec<(Timestamp, u64)>>,
    windows: BTreeMap<Timestamp, WindowMax>,
    /// Windows up to this end are closed (released).
    released: Timestamp,
}

impl SlidingCounts {
    fn new(size: i64, slide: i64, track_changes: bool) -> Self {
        SlidingCounts {
            size,
            slide,
            counts: KeyedState::new(track_changes),
            windows: BTreeMap::new(),
            released: Timestamp::MIN,
        }
    }

    /// Counts one more bid for `auction` in the window ending at `end`.
    fn count(
        windows: &mut BTreeMap<Timestamp, WindowMax>,
        counts: &mut Vec<(Timestamp, u64)>,
        auction: u64,
        end: Timestamp,
        by: u64,
    ) {
        let c = match counts.iter_mut().find(|e| e.0 == end) {
            Some(e) => {
                e.1 += by;
                e.1
            }
            None => {
                counts.push((end, by));
                by
            }
        };
        let w = windows.entry(end).or_default();
        if c > w.max {
            w.max = c;
            w.top.clear();
        }
        if c == w.max {
            w.top.push(auction);
        }
    }

    fn release(&mut self, up_to: Timestamp, out: &mut Output<HotItem>) {
        let mut closed = false;
        while let Some(entry) = self.windows.first_entry() {
            let end = *entry.key();
            if end > up_to {
                break;
            }
            let w = entry.remove();
            let window = Window::new(end - self.size, end);
            for auction in w.top {
                out.give(HotItem {
                    window,
                    auction,
                    count: w.max,
                });
            }
            closed = true;
        }
        self.released = self.released.max(up_to);
        if closed {
            let released = self.released;
            self.counts.update_each(|_, c| {
                if c.iter().all(|e| e.0 <= released) {
                    Update::Remove
                } else {
                    Update::Keep
                }
            });
        }
    }
}

impl Operator<BidSummary> for SlidingCounts {
    type Out = Output<HotItem>;

    fn on_batch(&mut self, batch: &mut Vec<BidSummary>, _out: &mut Self::Out) -> OpResult {
        let (size, slide, released) = (self.size, self.slide, self.released);
        let per_auction = (size / slide) as usize + 1;
        for b in batch.drain(..) {
            let counts = self
                .counts
                .get_or_insert_with(b.auction, || Vec::with_capacity(per_auction));
            counts.retain(|e| e.0 > released);
            // Windows [s, s + size) with s a multiple of slide and s <= t < s + size.
            let mut start = b.time - b.time.rem_euclid(slide);
            while start > b.time - size {
                Self::count(&mut self.windows, counts, b.auction, start + size, 1);
                start -= slide;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        self.release(watermark, out);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.release(Timestamp::MAX, out);
        Ok(())
    }

    /// What is released (every shard restores the minimum), and the auctions' counts,
    /// incrementally.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        state.section("released", 1).put_shared(self.released)?;
        self.counts.snapshot(state.section("counts", 2))
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let released = state.section("released", 1)?.values::<Timestamp>()?;
        self.released = released.into_iter().min().unwrap_or(Timestamp::MIN);
        self.counts.restore(&state.section("counts", 2)?)?;
        let (windows, released) = (&mut self.windows, self.released);
        for (&auction, counts) in self.counts.iter() {
            for &(end, c) in counts.iter().filter(|e| e.0 > released) {
                Self::count(windows, &mut Vec::new(), auction, end, c);
            }
        }
        Ok(())
    }
}

/// q5: per sliding window, the auctions with the most bids.
pub fn q5(events: &Stream<Timed>, cx: &QueryContext) -> Stream<Q5Row> {
    let (size, slide) = (cx.window_ms, cx.slide_ms);
    let candidates = bid_summaries(events, "q5 bids")
        .exchange(Partitioning::by_key(|b: &BidSummary| b.auction))
        .unary("q5 bids per auction", move |ctx| {
            SlidingCounts::new(size, slide, ctx.tracks_state())
        });
    let by_window = candidates.exchange(Partitioning::by_key(|h: &HotItem| h.window));
    let cx = cx.clone();
    TopPerWindow::apply(
        &by_window,
        "q5 hottest",
        |h: &HotItem| h.window,
        |h| h.count,
    )
    .map("q5 rows", move |h: HotItem| Q5Row {
        window_start: h.window.start,
        window_end: h.window.end,
        auction: h.auction,
        count: h.count,
        ideal_ns: cx.event_time_ns(h.window.end),
    })
}

/// q7: per tumbling window, the bids with the highest price.
pub fn q7(events: &Stream<Timed>, cx: &QueryContext) -> Stream<Q7Row> {
    let size = cx.window_ms;
    let window = move |b: &BidSummary| {
        let start = b.time - b.time.rem_euclid(size);
        Window::new(start, start + size)
    };
    let cx = cx.clone();
    top_per_window(
        &bid_summaries(events, "q7 bids"),
        "q7 highest",
        window,
        |b| b.price,
    )
    .map("q7 rows", move |b: BidSummary| {
        let w = window(&b);
        Q7Row {
            window_start: w.start,
            window_end: w.end,
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            ideal_ns: cx.event_time_ns(w.end),
        }
    })
}

/// q11: bids per bidder session (gap `window_ms`).
pub fn q11(events: &Stream<Timed>, cx: &QueryContext) -> Stream<BidderCount> {
    let cx = cx.clone();
    bid_summaries(events, "q11 bids")
        .key_by(|b: &BidSummary| b.bidder)
        .window(WindowSpec::event_time(
            Windows::session(cx.window_ms),
            |b: &BidSummary| b.time,
        ))
        .count("q11 bids per session")
        .map("q11 rows", move |p: Pane<u64, i64>| BidderCount {
            bidder: p.key,
            bid_count: p.value as u64,
            window_start: p.window.start,
            window_end: p.window.end,
            ideal_ns: cx.event_time_ns(p.window.end),
        })
}

/// q12: bids per bidder in tumbling windows of processing time.
pub fn q12(events: &Stream<Timed>, cx: &QueryContext) -> Stream<BidderCount> {
    let cx = cx.clone();
    bid_summaries(events, "q12 bids")
        .key_by(|b: &BidSummary| b.bidder)
        .window(WindowSpec::processing_time(Windows::tumbling(cx.window_ms)))
        .count("q12 bids per window")
        .map("q12 rows", move |p: Pane<u64, i64>| BidderCount {
            bidder: p.key,
            bid_count: p.value as u64,
            window_start: p.window.start,
            window_end: p.window.end,
            ideal_ns: cx.epoch.from_unix_ms(p.window.end),
        })
}
