//! The bid workload of the library-against-hand-written comparison: bids with and without
//! a 40-byte `String`, generated the same way on every run, split over the shards.
//!
//! Event `g` (counted over all shards) has event time `g / per_ms` ms ([`Workload`]). As in
//! NEXMark, 3 auctions open every 50 events and a bid goes to the newest auction half the
//! time, otherwise to one of the 100 before it; auction ids wrap at `auctions`, so a
//! window holds at most that many auctions (NEXMark's own ids do not wrap: at 1M events/s
//! a 10 s window would hold 600,000 auctions, and the tables' cache misses would hide the
//! operators' own cost). Bidders and prices are pseudo-random (splitmix64 of `g`). Shard `s` of `n` generates the events `g = s, s + n, s + 2n, ...`,
//! in event-time order.

use rill_runtime::rkyv;
use rill_runtime::{Dataflow, ExchangeData, ShardInfo, StateData, Stream};

/// How many bids, and how many per millisecond of event time.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Bids over all shards.
    pub events: u64,
    /// Bids per ms of event time (1,000: 1M events/s, as `rill-bench run --rate 1000000`).
    pub per_ms: u64,
    /// Auction ids wrap at this many.
    pub auctions: u64,
}

impl Workload {
    /// `events` bids at 1M per second of event time over 10,000 auctions (the benchmark's).
    pub fn at_1m_per_s(events: u64) -> Self {
        Workload {
            events,
            per_ms: 1_000,
            auctions: 10_000,
        }
    }
}

/// The filler of a [`Bid`]'s `extra` field: 40 bytes.
pub const EXTRA: &str = "channel=web;url=https://rill.example/b/1";

/// What the queries read of a bid, for both record types.
pub trait BidRecord: ExchangeData + StateData + Send {
    /// Makes the record of a bid.
    fn make(auction: u64, bidder: u64, price: u64, time: i64) -> Self;
    /// Auction id.
    fn auction(&self) -> u64;
    /// Bidder id.
    fn bidder(&self) -> u64;
    /// Price in cents.
    fn price(&self) -> u64;
    /// Event time in ms.
    fn time(&self) -> i64;
}

/// A bid with a 40-byte `String` (one allocation per record, and per clone).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Bid {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Event time in ms.
    pub time: i64,
    /// 40 bytes of text ([`EXTRA`]).
    pub extra: String,
}

/// A bid without the `String`: plain data.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct SmallBid {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Event time in ms.
    pub time: i64,
}

impl BidRecord for Bid {
    fn make(auction: u64, bidder: u64, price: u64, time: i64) -> Self {
        Bid {
            auction,
            bidder,
            price,
            time,
            extra: EXTRA.to_string(),
        }
    }
    fn auction(&self) -> u64 {
        self.auction
    }
    fn bidder(&self) -> u64 {
        self.bidder
    }
    fn price(&self) -> u64 {
        self.price
    }
    fn time(&self) -> i64 {
        self.time
    }
}

impl BidRecord for SmallBid {
    fn make(auction: u64, bidder: u64, price: u64, time: i64) -> Self {
        SmallBid {
            auction,
            bidder,
            price,
            time,
        }
    }
    fn auction(&self) -> u64 {
        self.auction
    }
    fn bidder(&self) -> u64 {
        self.bidder
    }
    fn price(&self) -> u64 {
        self.price
    }
    fn time(&self) -> i64 {
        self.time
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Bid number `g` of the workload.
pub fn bid<B: BidRecord>(g: u64, work: Workload) -> B {
    let r = splitmix64(g);
    let newest = g * 3 / 50;
    let auction = if r & 1 == 0 {
        newest
    } else {
        newest.saturating_sub((r >> 1) % 100)
    } % work.auctions;
    let bidder = (r >> 8) % 10_000;
    let price = 100 + (r >> 24) % 1_000_000;
    B::make(auction, bidder, price, (g / work.per_ms) as i64)
}

/// Shard `shard`'s part of the workload's bids.
pub fn shard_bids<B: BidRecord>(shard: ShardInfo, work: Workload) -> impl Iterator<Item = B> {
    (shard.index as u64..work.events)
        .step_by(shard.shards)
        .map(move |g| bid::<B>(g, work))
}

/// A source of the workload's bids, split over the shards, in event-time order on each.
pub fn source<B: BidRecord>(df: &mut Dataflow, work: Workload) -> Stream<B> {
    df.iter_source("bids", move |shard| shard_bids::<B>(shard, work))
}
