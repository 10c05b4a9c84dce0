//! Queries over closed auctions: q4 (average closing price per category) and q6 (average
//! selling price per seller over their last 10 sales).
//!
//! Stage one, keyed by auction, finds each auction's winning bid: the highest price among
//! the bids in `[date_time, expires)` at or above the reserve. It emits the sale once the
//! watermark reaches `expires`, when no valid bid can still come. Bids that arrive before
//! their auction (out-of-order groups) wait until the watermark passes them, since an
//! auction arriving after that starts later than the bid. Stage two, keyed by category
//! or seller, takes the sales in `(expires, auction)` order, so its running averages do
//! not depend on the order in which sales from different shards arrive.

use std::collections::VecDeque;

use rill_operators::prelude::*;
use rill_operators::{ProcessContext, ProcessFunction};
use rill_runtime::rkyv;
use rill_runtime::{Data, Stream, Timestamp};

use super::QueryContext;
use crate::nexmark::rows::{Q4Row, Q6Row};
use crate::nexmark::source::Timed;
use crate::nexmark::Event;

/// Stage one's input, keyed by auction id.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub enum AuctionOrBid {
    /// An auction opened.
    Auction(AuctionTerms),
    /// A bid: auction id, event time, price.
    Bid(u64, Timestamp, u64),
}

/// What stage one keeps of an auction.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct AuctionTerms {
    /// Auction id.
    pub id: u64,
    /// Opening time (ms).
    pub date_time: Timestamp,
    /// Closing time (ms).
    pub expires: Timestamp,
    /// Lowest price that sells.
    pub reserve: u64,
    /// Category.
    pub category: u64,
    /// Seller's person id.
    pub seller: u64,
}

/// A closed auction with a winning bid.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Sale {
    /// Auction id.
    pub auction: u64,
    /// Category.
    pub category: u64,
    /// Seller's person id.
    pub seller: u64,
    /// The winning price.
    pub price: u64,
    /// When the auction closed (ms).
    pub expires: Timestamp,
}

/// Stage one's state for one auction id.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, Default)]
#[rkyv(crate = rkyv)]
pub struct AuctionState {
    terms: Option<AuctionTerms>,
    best: Option<u64>,
    /// Bids that arrived before their auction: (event time, price).
    waiting: Vec<(Timestamp, u64)>,
}

impl AuctionTerms {
    fn accepts(&self, time: Timestamp, price: u64) -> bool {
        self.date_time <= time && time < self.expires && price >= self.reserve
    }
}

/// Stage one: each auction's winning bid.
pub struct WinningBids;

type WinContext<'a> = ProcessContext<'a, u64, AuctionState, Sale>;

impl ProcessFunction<u64, AuctionOrBid> for WinningBids {
    type State = AuctionState;
    type Out = Sale;

    fn process(&mut self, record: AuctionOrBid, cx: &mut WinContext<'_>) {
        match record {
            AuctionOrBid::Auction(terms) => {
                cx.set_event_timer(terms.expires);
                let state = cx.state();
                for (time, price) in state.waiting.drain(..) {
                    if terms.accepts(time, price) {
                        state.best = state.best.max(Some(price));
                    }
                }
                state.terms = Some(terms);
            }
            AuctionOrBid::Bid(_, time, price) => {
                let state = cx.state();
                match &state.terms {
                    Some(terms) => {
                        if terms.accepts(time, price) {
                            state.best = state.best.max(Some(price));
                        }
                    }
                    None => {
                        state.waiting.push((time, price));
                        cx.set_event_timer(time + 1);
                    }
                }
            }
        }
    }

    fn on_timer(&mut self, time: Timestamp, cx: &mut WinContext<'_>) {
        let watermark = cx.watermark();
        let state = cx.state();
        match &state.terms {
            Some(terms) if time >= terms.expires => {
                let sale = state.best.map(|price| Sale {
                    auction: terms.id,
                    category: terms.category,
                    seller: terms.seller,
                    price,
                    expires: terms.expires,
                });
                if let Some(sale) = sale {
                    cx.emit(sale);
                }
                cx.clear_state();
            }
            Some(_) => {}
            None => {
                // An auction still to come opens at or after the watermark, so bids before
                // it can never be valid.
                state.waiting.retain(|&(t, _)| t >= watermark);
                if state.waiting.is_empty() {
                    cx.clear_state();
                }
            }
        }
    }
}

/// The sales of a stream of events (stage one).
fn sales(events: &Stream<Timed>, name: &str) -> Stream<Sale> {
    events
        .flat_map(&format!("{name} auctions and bids"), |t: Timed| {
            match t.event {
                Event::Auction(a) => Some(AuctionOrBid::Auction(AuctionTerms {
                    id: a.id,
                    date_time: a.date_time as Timestamp,
                    expires: a.expires as Timestamp,
                    reserve: a.reserve,
                    category: a.category,
                    seller: a.seller,
                })),
                Event::Bid(b) => Some(AuctionOrBid::Bid(
                    b.auction,
                    b.date_time as Timestamp,
                    b.price,
                )),
                Event::Person(_) => None,
            }
        })
        .key_by(|r: &AuctionOrBid| match r {
            AuctionOrBid::Auction(a) => a.id,
            AuctionOrBid::Bid(auction, ..) => *auction,
        })
        .process(&format!("{name} winning bids"), |_| WinningBids)
}

/// Stage two's state for one category or seller.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, Default)]
#[rkyv(crate = rkyv)]
pub struct AverageState {
    pending: Vec<Sale>,
    sum: u64,
    count: u64,
    recent: VecDeque<u64>,
}

type MakeRow<R> = fn(key: u64, avg: u64, ideal_ns: u64, polled_ns: u64) -> R;

/// Stage two: a running average of sale prices, over all sales or the last `last`.
pub struct RunningAverage<R> {
    last: Option<usize>,
    row: MakeRow<R>,
    cx: QueryContext,
}

type AvgContext<'a, R> = ProcessContext<'a, u64, AverageState, R>;

impl<R: Data> ProcessFunction<u64, Sale> for RunningAverage<R> {
    type State = AverageState;
    type Out = R;

    fn process(&mut self, sale: Sale, cx: &mut AvgContext<'_, R>) {
        cx.set_event_timer(sale.expires);
        cx.state().pending.push(sale);
    }

    fn on_timer(&mut self, time: Timestamp, cx: &mut AvgContext<'_, R>) {
        let key = *cx.key();
        let mut due = std::mem::take(&mut cx.state().pending);
        due.sort_unstable_by_key(|s| (s.expires, s.auction));
        let split = due.partition_point(|s| s.expires <= time);
        cx.state().pending = due.split_off(split);
        for sale in due {
            let state = cx.state();
            let avg = match self.last {
                None => {
                    state.sum += sale.price;
                    state.count += 1;
                    state.sum / state.count
                }
                Some(n) => {
                    state.recent.push_back(sale.price);
                    if state.recent.len() > n {
                        state.recent.pop_front();
                    }
                    state.recent.iter().sum::<u64>() / state.recent.len() as u64
                }
            };
            let (ideal, polled) = (
                self.cx.event_time_ns(sale.expires),
                self.cx.polled_ns(sale.expires),
            );
            let row = (self.row)(key, avg, ideal, polled);
            cx.emit(row);
        }
    }
}

/// q4: after every sale, the average closing price of its category so far.
pub fn q4(events: &Stream<Timed>, cx: &QueryContext) -> Stream<Q4Row> {
    let cx = cx.clone();
    sales(events, "q4").key_by(|s: &Sale| s.category).process(
        "q4 average per category",
        move |_| RunningAverage {
            last: None,
            row: |category, avg_price, ideal_ns, polled_ns| Q4Row {
                category,
                avg_price,
                ideal_ns,
                polled_ns,
            },
            cx: cx.clone(),
        },
    )
}

/// q6: after every sale, the seller's average price over their last 10 sales.
pub fn q6(events: &Stream<Timed>, cx: &QueryContext) -> Stream<Q6Row> {
    let cx = cx.clone();
    sales(events, "q6")
        .key_by(|s: &Sale| s.seller)
        .process("q6 average per seller", move |_| RunningAverage {
            last: Some(10),
            row: |seller, avg_price, ideal_ns, polled_ns| Q6Row {
                seller,
                avg_price,
                ideal_ns,
                polled_ns,
            },
            cx: cx.clone(),
        })
}
