//! Windowed queries: q5 hot items (sliding), q7 highest bid (tumbling), q11 user sessions
//! (session windows) and q12 processing-time windows.

use rill_operators::prelude::*;
use rill_operators::window::{Pane, Window};
use rill_runtime::rkyv;
use std::collections::BTreeMap;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::keys::key_group;
use rill_runtime::state::{KeyedState, Update};
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

impl WindowCounts {
    fn add(&mut self, auction: u64, by: u64) {
        let c = self.counts.entry(auction).or_insert(0);
        *c += by;
        if *c > self.max {
            self.max = *c;
            self.top.clear();
        }
        if *c == self.max {
            self.top.push(auction);
        }
    }
}

/// q5's first phase, on auction-partitioned bids: per sliding window, the auctions with
/// the most bids on this shard, emitted when the watermark reaches the window's end.
/// (A keyed window count would emit one pane per auction and window, about one for every
/// 15 events, only for the next step to keep the maximum.)
///
/// With checkpoints the bids are also counted per (auction, slice of `slide`) in the
/// runtime's keyed state, each entry its own changelog record: a bid changes one entry
/// (not the auction's five windows), so a checkpoint writes little more than the entries
/// bid on since the previous one; a restore rebuilds the windows from the slices. Slices
/// no open window covers are removed when a window closes.
struct SlidingCounts {
    size: i64,
    slide: i64,
    windows: BTreeMap<Timestamp, WindowCounts>,
    /// Tables of closed windows, cleared, for the next windows: a new window's table then
    /// never grows (and rehashes millions of entries) while windows are closing.
    spare: Vec<WindowCounts>,
    closed: Vec<WindowCounts>,
    /// (auction, slice start) -> bids, only when the job takes checkpoints.
    slices: Option<KeyedState<(u64, Timestamp), u64>>,
    /// Windows up to this end are closed.
    released: Timestamp,
}

impl SlidingCounts {
    fn new(size: i64, slide: i64, checkpointed: bool) -> Self {
        SlidingCounts {
            size,
            slide,
            windows: BTreeMap::new(),
            spare: Vec::new(),
            closed: Vec::new(),
            slices: checkpointed.then(|| {
                KeyedState::grouped_by(true, |k: &(u64, Timestamp)| key_group(hash_key(&k.0)))
            }),
            released: Timestamp::MIN,
        }
    }

    /// Counts `by` bids of `auction` at `time` in each of its windows.
    fn add(&mut self, auction: u64, time: Timestamp, by: u64) {
        // Windows [s, s + size) with s a multiple of slide and s <= t < s + size.
        let mut start = time - time.rem_euclid(self.slide);
        while start > time - self.size {
            let spare = &mut self.spare;
            self.windows
                .entry(start + self.size)
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .add(auction, by);
            start -= self.slide;
        }
    }

    fn release(&mut self, up_to: Timestamp, out: &mut Output<HotItem>) {
        let mut closed = false;
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
            closed = true;
        }
        self.released = self.released.max(up_to);
        // A slice starting at s is in windows ending up to s + size: once one closes, sweep
        // the slices no open window covers (a pass over the table, once per slide).
        if closed {
            let (size, released) = (self.size, self.released);
            if let Some(slices) = &mut self.slices {
                slices.update_each(|&(_, start), _| {
                    if start.saturating_add(size) <= released {
                        Update::Remove
                    } else {
                        Update::Keep
                    }
                });
            }
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
            if let Some(slices) = &mut self.slices {
                let slice = b.time - b.time.rem_euclid(self.slide);
                *slices.get_or_insert_with((b.auction, slice), || 0) += 1;
            }
            self.add(b.auction, b.time, 1);
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

    /// How far windows are released (every shard restores the minimum), and the bids per
    /// (auction, slice), incrementally.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        state.section("released", 1).put_shared(self.released)?;
        match &mut self.slices {
            Some(slices) => slices.snapshot(state.section("slices", 1)),
            None => Err(rill_runtime::Failure::new(
                "q5's counts were built for a job without checkpoints",
            )),
        }
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let released = state.section("released", 1)?.values::<Timestamp>()?;
        self.released = released.into_iter().min().unwrap_or(Timestamp::MIN);
        let mut slices = self
            .slices
            .take()
            .ok_or_else(|| rill_runtime::Failure::new("restoring q5 without checkpoints"))?;
        slices.restore(&state.section("slices", 1)?)?;
        let (size, released) = (self.size, self.released);
        for (&(auction, start), &bids) in slices.iter() {
            // The slice's bids count in each of its windows that is still open.
            let mut ws = start;
            while ws > start - size {
                if ws + size > released {
                    let spare = &mut self.spare;
                    self.windows
                        .entry(ws + size)
                        .or_insert_with(|| spare.pop().unwrap_or_default())
                        .add(auction, bids);
                }
                ws -= self.slide;
            }
        }
        self.slices = Some(slices);
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
