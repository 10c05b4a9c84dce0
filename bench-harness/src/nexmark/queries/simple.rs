//! Stateless queries: q0 passthrough, q1 currency conversion, q2 selection.

use rill_operators::{FlatMap, Map};
use rill_runtime::Stream;

use super::QueryContext;
use crate::nexmark::rows::{Q1Row, Q2Row};
use crate::nexmark::source::Timed;
use crate::nexmark::Event;

/// q0: every event, unchanged (measures the source, the runtime and the sink).
pub fn q0(events: &Stream<Timed>, _cx: &QueryContext) -> Stream<Timed> {
    events.map("q0 passthrough", |t: Timed| t)
}

/// q1: every bid with its price converted from dollars to euros (`price * 908 / 1000`).
pub fn q1(events: &Stream<Timed>, _cx: &QueryContext) -> Stream<Q1Row> {
    events.flat_map("q1 convert", |t: Timed| match t.event {
        Event::Bid(b) => Some(Q1Row {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price * 908 / 1000,
            date_time: b.date_time,
            ideal_ns: t.due_ns,
            polled_ns: t.polled_ns,
        }),
        _ => None,
    })
}

/// q2: the bids on auctions whose id is a multiple of 123.
pub fn q2(events: &Stream<Timed>, _cx: &QueryContext) -> Stream<Q2Row> {
    events.flat_map("q2 select", |t: Timed| match t.event {
        Event::Bid(b) if b.auction % 123 == 0 => Some(Q2Row {
            auction: b.auction,
            price: b.price,
            ideal_ns: t.due_ns,
            polled_ns: t.polled_ns,
        }),
        _ => None,
    })
}
