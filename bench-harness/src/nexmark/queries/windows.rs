//! Windowed queries: q5 hot items (sliding), q7 highest bid (tumbling), q11 user sessions
//! (session windows) and q12 processing-time windows.

use rill_operators::prelude::*;
use rill_operators::window::{Pane, Window};
use rill_runtime::rkyv;
use std::collections::BTreeMap;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::{hash_key, OpResult, Operator, Output, Partitioning, Stream, Timestamp};
use rustc_hash::FxHashMap;

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

/// Bids per auction in one sliding window, with the running maximum. Counts only grow,
/// so the auctions at the maximum are known at every moment without a scan.
#[derive(Default)]
struct WindowCounts {
    counts: FxHashMap<u64, u64>,
    max: u64,
    top: Vec<u64>,
}

/// q5's first phase, on auction-partitioned bids: per sliding window, the auctions with
/// the most bids on this shard, emitted when the watermark reaches the window's end.
/// (A keyed window count would emit one pane per auction and window, about one for every
/// 15 events, only for the next step to keep the maximum.)
struct SlidingCounts {
    size: i64,
    slide: i64,
    windows: BTreeMap<Timestamp, WindowCounts>,
    /// Tables of closed windows, cleared, for the next windows: a new window's table then
    /// never grows (and rehashes millions of entries) while windows are closing.
    spare: Vec<WindowCounts>,
    closed: Vec<WindowCounts>,
}

impl SlidingCounts {
    fn new(size: i64, slide: i64) -> Self {
        SlidingCounts {
            size,
            slide,
            windows: BTreeMap::new(),
            spare: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn release(&mut self, up_to: Timestamp, out: &mut Output<HotItem>) {
        while let Some(entry) = self.windows.first_entry() {
            let end = *entry.key();
            if end > up_to {
                break;
            }
            let mut w = entry.remove();
            let window = Window::new(end - self.size, end);
            for auction in w.top.drain(..) {
                out.give(HotItem {
                    window,
                    auction,
                    count: w.max,
                });
            }
            self.closed.push(w);
        }
    }

    /// Clears the closed windows' tables for reuse (after their results went out).
    fn recycle(&mut self) {
        for mut w in self.closed.drain(..) {
            w.counts.clear();
            w.max = 0;
            self.spare.push(w);
        }
    }
}

impl Operator<BidSummary> for SlidingCounts {
    type Out = Output<HotItem>;

    fn on_batch(&mut self, batch: &mut Vec<BidSummary>, _out: &mut Self::Out) -> OpResult {
        for b in batch.drain(..) {
            // Windows [s, s + size) with s a multiple of slide and s <= t < s + size.
            let mut start = b.time - b.time.rem_euclid(self.slide);
            while start > b.time - self.size {
                let spare = &mut self.spare;
                let w = self
                    .windows
                    .entry(start + self.size)
                    .or_insert_with(|| spare.pop().unwrap_or_default());
                let c = w.counts.entry(b.auction).or_insert(0);
                *c += 1;
                if *c > w.max {
                    w.max = *c;
                    w.top.clear();
                }
                if *c == w.max {
                    w.top.push(b.auction);
                }
                start -= self.slide;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        self.release(watermark, out);
        self.recycle();
        Ok(())
    }

    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.release(Timestamp::MAX, out);
        Ok(())
    }

    /// Every (window end, auction, count), keyed by auction like the input.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        state.put_keyed_all(self.windows.iter().flat_map(|(&end, w)| {
            w.counts
                .iter()
                .map(move |(&auction, &count)| (hash_key(&auction), (end, auction, count)))
        }))
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        for (end, auction, count) in state.keyed_values::<(Timestamp, u64, u64)>()? {
            let spare = &mut self.spare;
            let w = self
                .windows
                .entry(end)
                .or_insert_with(|| spare.pop().unwrap_or_default());
            w.counts.insert(auction, count);
            if count > w.max {
                w.max = count;
                w.top.clear();
            }
            if count == w.max {
                w.top.push(auction);
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
        .unary("q5 bids per auction", move |_| {
            SlidingCounts::new(size, slide)
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
