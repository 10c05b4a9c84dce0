//! Windowed queries: q5 hot items (sliding), q7 highest bid (tumbling), q11 user sessions
//! (session windows) and q12 processing-time windows.

use rill_operators::prelude::*;
use rill_operators::window::{AllPane, MaxBy, Pane, TopPane};
use rill_runtime::rkyv;
use rill_runtime::Stream;

use super::QueryContext;
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

/// q5: per sliding window, the auctions with the most bids: a Window Top-N by count
/// (`top_count`), which keeps each window's largest count and its auctions up to date as
/// bids arrive, so a window's close emits its top auctions instead of a pane per auction.
pub fn q5(events: &Stream<Timed>, cx: &QueryContext) -> Stream<Q5Row> {
    let (size, slide) = (cx.window_ms, cx.slide_ms);
    let cx = cx.clone();
    bid_summaries(events, "q5 bids")
        .key_by(|b: &BidSummary| b.auction)
        .window(WindowSpec::event_time(
            Windows::sliding(size, slide),
            |b: &BidSummary| b.time,
        ))
        .top_count("q5 hottest")
        .flat_map("q5 rows", move |top: TopPane<u64, u64>| {
            let (w, cx) = (top.window, cx.clone());
            top.value.into_iter().map(move |(auction, count)| Q5Row {
                window_start: w.start,
                window_end: w.end,
                auction,
                count,
                ideal_ns: cx.event_time_ns(w.end),
                polled_ns: cx.polled_ns(w.end),
            })
        })
}

/// q7: per tumbling window, the bids with the highest price (over all shards, in two
/// phases: see `window_all`).
pub fn q7(events: &Stream<Timed>, cx: &QueryContext) -> Stream<Q7Row> {
    let cx = cx.clone();
    bid_summaries(events, "q7 bids")
        .window_all(WindowSpec::event_time(
            Windows::tumbling(cx.window_ms),
            |b: &BidSummary| b.time,
        ))
        .aggregate("q7 highest", MaxBy::new(|b: &BidSummary| b.price))
        .flat_map("q7 rows", move |top: AllPane<Vec<BidSummary>>| {
            let (w, cx) = (top.window, cx.clone());
            top.value.into_iter().map(move |b| Q7Row {
                window_start: w.start,
                window_end: w.end,
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                ideal_ns: cx.event_time_ns(w.end),
                polled_ns: cx.polled_ns(w.end),
            })
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
        .map("q11 rows", move |p: Pane<u64, u64>| BidderCount {
            bidder: p.key,
            bid_count: p.value,
            window_start: p.window.start,
            window_end: p.window.end,
            ideal_ns: cx.event_time_ns(p.window.end),
            polled_ns: cx.polled_ns(p.window.end),
        })
}

/// q12: bids per bidder in tumbling windows of processing time.
pub fn q12(events: &Stream<Timed>, cx: &QueryContext) -> Stream<BidderCount> {
    let cx = cx.clone();
    bid_summaries(events, "q12 bids")
        .key_by(|b: &BidSummary| b.bidder)
        .window(WindowSpec::processing_time(Windows::tumbling(cx.window_ms)))
        .count("q12 bids per window")
        .map("q12 rows", move |p: Pane<u64, u64>| {
            let ideal_ns = cx.epoch.from_unix_ms(p.window.end);
            BidderCount {
                bidder: p.key,
                bid_count: p.value,
                window_start: p.window.start,
                window_end: p.window.end,
                ideal_ns,
                polled_ns: ideal_ns,
            }
        })
}
