//! Joins of people and auctions: q3 (incremental join on the seller, kept for the whole
//! run) and q8 (people and their auctions in the same tumbling window).

use rill_operators::prelude::*;
use rill_operators::window::{Aggregate, Pane, Window};
use rill_operators::{ProcessContext, ProcessFunction};
use rill_runtime::rkyv;
use rill_runtime::{Stream, Timestamp};

use super::QueryContext;
use crate::nexmark::rows::{Q3Row, Q8Row, NOT_POLLED};
use crate::nexmark::source::Timed;
use crate::nexmark::Event;

/// Where a q3 seller lives (kept only for the states q3 selects).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Place {
    /// The person's name.
    pub name: String,
    /// City.
    pub city: String,
    /// State.
    pub state: String,
}

/// q3's input, keyed by person id: a person, or an auction of theirs in category 10.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub enum SellerEvent {
    /// A person; `place` only if they live in OR, ID or CA.
    Person {
        /// Person id.
        id: u64,
        /// Where they live, if selected.
        place: Option<Place>,
        /// Due time of the event.
        due_ns: u64,
    },
    /// An auction in category 10.
    Auction {
        /// Auction id.
        id: u64,
        /// The seller's person id.
        seller: u64,
        /// Due time of the event.
        due_ns: u64,
    },
}

/// What q3 knows about one person id.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub enum SellerState {
    /// The person has not arrived: their auctions wait (id, due time).
    Unknown(Vec<(u64, u64)>),
    /// The person arrived; `Some` if selected.
    Known(Option<Place>, u64),
}

impl Default for SellerState {
    fn default() -> Self {
        SellerState::Unknown(Vec::new())
    }
}

/// q3's incremental join.
pub struct LocalItems;

type Q3Context<'a> = ProcessContext<'a, u64, SellerState, Q3Row>;

fn q3_row(place: &Place, auction: u64, ideal_ns: u64) -> Q3Row {
    Q3Row {
        name: place.name.clone(),
        city: place.city.clone(),
        state: place.state.clone(),
        auction,
        ideal_ns,
        // The join keeps its inputs' due times in its state, not their polls: rill's part
        // of q3's latency is not measured.
        polled_ns: NOT_POLLED,
    }
}

impl ProcessFunction<u64, SellerEvent> for LocalItems {
    type State = SellerState;
    type Out = Q3Row;

    fn process(&mut self, event: SellerEvent, cx: &mut Q3Context<'_>) {
        match event {
            SellerEvent::Person { place, due_ns, .. } => {
                let state = std::mem::take(cx.state());
                if let (SellerState::Unknown(waiting), Some(p)) = (&state, &place) {
                    for &(auction, auction_due) in waiting {
                        cx.emit(q3_row(p, auction, auction_due.max(due_ns)));
                    }
                }
                *cx.state() = SellerState::Known(place, due_ns);
            }
            SellerEvent::Auction { id, due_ns, .. } => match cx.state() {
                SellerState::Unknown(waiting) => waiting.push((id, due_ns)),
                SellerState::Known(Some(p), person_due) => {
                    let row = q3_row(p, id, due_ns.max(*person_due));
                    cx.emit(row);
                }
                SellerState::Known(None, _) => {}
            },
        }
    }

    fn on_timer(&mut self, _time: Timestamp, _cx: &mut Q3Context<'_>) {}
}

/// q3: sellers in OR, ID or CA with their auctions in category 10.
pub fn q3(events: &Stream<Timed>, _cx: &QueryContext) -> Stream<Q3Row> {
    events
        .flat_map("q3 people and auctions", |t: Timed| match t.event {
            Event::Person(p) => Some(SellerEvent::Person {
                id: p.id,
                place: matches!(p.state.as_str(), "OR" | "ID" | "CA").then(|| Place {
                    name: p.name,
                    city: p.city,
                    state: p.state,
                }),
                due_ns: t.due_ns,
            }),
            Event::Auction(a) if a.category == 10 => Some(SellerEvent::Auction {
                id: a.id,
                seller: a.seller,
                due_ns: t.due_ns,
            }),
            _ => None,
        })
        .key_by(|e: &SellerEvent| match e {
            SellerEvent::Person { id, .. } => *id,
            SellerEvent::Auction { seller, .. } => *seller,
        })
        .process("q3 join", |_| LocalItems)
}

/// q8's input, keyed by person id: a registration (with the name) or an auction's seller.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Activity {
    /// Person id (the seller, for an auction).
    pub person: u64,
    /// Event time in ms.
    pub time: i64,
    /// The name, for a registration; `None` for an auction.
    pub name: Option<String>,
}

/// Per window and person: the name if they registered, and whether they sold.
#[derive(Clone)]
pub struct NewSeller;

impl Aggregate<Activity, u64> for NewSeller {
    type Acc = (Option<String>, bool);
    type Out = Option<String>;
    fn create(&self) -> Self::Acc {
        (None, false)
    }
    fn add(&self, acc: &mut Self::Acc, a: &Activity) {
        match &a.name {
            Some(name) => acc.0 = Some(name.clone()),
            None => acc.1 = true,
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 = acc.0.take().or(other.0);
        acc.1 |= other.1;
    }
    fn result(&self, _key: &u64, _window: &Window, acc: &Self::Acc) -> Option<String> {
        acc.0.clone().filter(|_| acc.1)
    }
    fn finish(&self, _key: &u64, _window: &Window, acc: Self::Acc) -> Option<String> {
        acc.0.filter(|_| acc.1)
    }
}

/// q8: people who registered and opened an auction in the same tumbling window.
pub fn q8(events: &Stream<Timed>, cx: &QueryContext) -> Stream<Q8Row> {
    let cx = cx.clone();
    events
        .flat_map("q8 people and sellers", |t: Timed| match t.event {
            Event::Person(p) => Some(Activity {
                person: p.id,
                time: p.date_time as i64,
                name: Some(p.name),
            }),
            Event::Auction(a) => Some(Activity {
                person: a.seller,
                time: a.date_time as i64,
                name: None,
            }),
            Event::Bid(_) => None,
        })
        .key_by(|a: &Activity| a.person)
        .window(WindowSpec::event_time(
            Windows::tumbling(cx.window_ms),
            |a: &Activity| a.time,
        ))
        .aggregate("q8 new sellers", NewSeller)
        .flat_map("q8 rows", move |p: Pane<u64, Option<String>>| {
            p.value.map(|name| Q8Row {
                window_start: p.window.start,
                window_end: p.window.end,
                person: p.key,
                name,
                ideal_ns: cx.event_time_ns(p.window.end),
                polled_ns: cx.polled_ns(p.window.end),
            })
        })
}
