//! Windowed queries: q5 hot items (sliding), q7 highest bid (tumbling), q11 user sessions
//! (session windows) and q12 processing-time windows.

use rill_operators::prelude::*;
use rill_operators::window::{Pane, Window};
use rill_runtime::rkyv;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::keys::key_group;
use rill_runtime::state::{KeyedState, SharedKeyedState};
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

/// A slice's bids per auction, keyed by (slice start, auction) and placed by the auction
/// (shared with the checkpoint being collected after its barrier: copy-on-write).
type SliceTable = SharedKeyedState<(Timestamp, u64), u64>;

fn slice_table(track: bool) -> SliceTable {
    Rc::new(RefCell::new(KeyedState::grouped_by(
        track,
        |k: &(Timestamp, u64)| key_group(hash_key(&k.1)),
    )))
}

/// q5's first phase, on auction-partitioned bids: per sliding window, the auctions with
/// the most bids on this shard, emitted when the watermark reaches the window's end.
/// (A keyed window count would emit one pane per auction and window, about one for every
/// 15 events, only for the next step to keep the maximum.)
///
/// Bids are counted per slice of `slide` (the windows' panes, as in stream slicing): a bid
/// updates one count, and a window's counts are the sums of its slices' when it closes.
/// The slices are the runtime's keyed state, so a checkpoint writes the counts bid on since
/// the previous one (and a rotating part of the rest); a slice no open window covers is
/// dropped whole (a restore skips what checkpoints still hold of it).
struct SlidingCounts {
    size: i64,
    slide: i64,
    /// Per slice start, its bids per auction.
    slices: BTreeMap<Timestamp, SliceTable>,
    /// Windows up to this end are emitted.
    released: Timestamp,
    track: bool,
    /// Scratch: a closing window's counts per auction.
    merged: FxHashMap<u64, u64>,
}

impl SlidingCounts {
    fn new(size: i64, slide: i64, track: bool) -> Self {
        SlidingCounts {
            size,
            slide,
            slices: BTreeMap::new(),
            released: Timestamp::MIN,
            track,
            merged: FxHashMap::default(),
        }
    }

    /// The smallest multiple of `slide` at or after `t`.
    fn align_up(&self, t: Timestamp) -> Timestamp {
        t + (self.slide - t.rem_euclid(self.slide)) % self.slide
    }

    /// Emits every window whose end is in `(released, up_to]`, then drops the slices no
    /// later window covers.
    fn release(&mut self, up_to: Timestamp, out: &mut Output<HotItem>) {
        let (Some(&first), Some(&last)) = (self.slices.keys().next(), self.slices.keys().last())
        else {
            self.released = self.released.max(up_to);
            return;
        };
        // Windows [st, st + size), st a multiple of slide: the first that holds a bid, or
        // the first not emitted yet.
        let mut start = self.align_up(first - self.size + 1);
        if self.released != Timestamp::MIN {
            start = start.max(self.align_up(self.released - self.size + 1));
        }
        while start <= last && start.saturating_add(self.size) <= up_to {
            let end = start + self.size;
            self.merged.clear();
            for table in self.slices.range(start..end).map(|(_, t)| t) {
                for (&(_, auction), &bids) in table.borrow().iter() {
                    *self.merged.entry(auction).or_insert(0) += bids;
                }
            }
            if let Some(&max) = self.merged.values().max() {
                let mut top: Vec<u64> = self
                    .merged
                    .iter()
                    .filter(|(_, &c)| c == max)
                    .map(|(&a, _)| a)
                    .collect();
                top.sort_unstable();
                let window = Window::new(start, end);
                for auction in top {
                    out.give(HotItem {
                        window,
                        auction,
                        count: max,
                    });
                }
            }
            start += self.slide;
        }
        self.released = self.released.max(up_to);
        // Slice s is in windows ending up to s + size.
        let (size, released) = (self.size, self.released);
        self.slices
            .retain(|&s, _| s.saturating_add(size) > released);
    }
}

impl Operator<BidSummary> for SlidingCounts {
    type Out = Output<HotItem>;

    fn on_batch(&mut self, batch: &mut Vec<BidSummary>, _out: &mut Self::Out) -> OpResult {
        let (slide, track) = (self.slide, self.track);
        let mut current: Option<(Timestamp, SliceTable)> = None;
        for b in batch.drain(..) {
            let slice = b.time - b.time.rem_euclid(slide);
            // Bids come in time order mostly: one slice lookup per run of them.
            if current.as_ref().map_or(true, |(s, _)| *s != slice) {
                let t = self
                    .slices
                    .entry(slice)
                    .or_insert_with(|| slice_table(track));
                current = Some((slice, t.clone()));
            }
            let (_, table) = current.as_ref().expect("set above");
            *table
                .borrow_mut()
                .get_or_insert_with((slice, b.auction), || 0) += 1;
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

    /// How far windows are emitted (every shard restores the minimum), and the bids per
    /// (slice, auction), incrementally.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        state.section("released", 1).put_shared(self.released)?;
        for table in self.slices.values() {
            KeyedState::snapshot_shared(table, state.section("slices", 2))?;
        }
        Ok(())
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let released = state.section("released", 1)?.values::<Timestamp>()?;
        self.released = released.into_iter().min().unwrap_or(Timestamp::MIN);
        let all = slice_table(false);
        all.borrow_mut().restore(&state.section("slices", 2)?)?;
        let (size, released, track) = (self.size, self.released, self.track);
        for (&(slice, auction), &bids) in all.borrow().iter() {
            if slice.saturating_add(size) > released {
                self.slices
                    .entry(slice)
                    .or_insert_with(|| slice_table(track))
                    .borrow_mut()
                    .insert((slice, auction), bids);
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
