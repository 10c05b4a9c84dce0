//! Query result rows: what each query emits, how it is written as CSV, and the moment it
//! could ideally have been produced (for latency; see docs/nexmark.md).

// The rows derive Debug (their archived forms too); rkyv's generated resolver types do not.
#![allow(missing_debug_implementations)]

use std::io;

use rill_runtime::rkyv;
use rill_runtime::Data;

use super::source::Timed;
use crate::csv_format::{line_writer, record_line, record_writer, Decimal};

/// A row's [`Row::polled_ns`] when its input's poll is not known (rill's part of its
/// latency is then not measured).
pub const NOT_POLLED: u64 = u64::MAX;

/// A query result row.
pub trait Row: Data {
    /// The CSV header line (without the line break).
    fn header() -> String;
    /// The moment the row could ideally have been produced, in ns after the run's epoch.
    fn ideal_ns(&self) -> u64;
    /// When the source read the input that made the row due (rill's part of its latency
    /// starts there), in ns after the run's epoch: from Kafka, the poll of the record, or
    /// for a window of the first record at or past its end; else the ideal time;
    /// [`NOT_POLLED`] if not known.
    fn polled_ns(&self) -> u64;
    /// Writes the row as one CSV record (fields quoted only where needed).
    fn write_record<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()>;
    /// Appends the row as one CSV line, with its line break.
    fn write_csv(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = self.write_record(&mut record_writer(out));
    }
}

/// Appends `rows` to `out`, one CSV line each.
pub fn write_rows<R: Row>(rows: &[R], out: &mut Vec<u8>) -> csv::Result<()> {
    let mut out = line_writer(out);
    for row in rows {
        row.write_record(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// A column value written as one CSV field.
trait Field {
    fn write_to<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()>;
}

impl Field for u64 {
    fn write_to<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()> {
        out.write_field(Decimal::new(*self))
    }
}

impl Field for i64 {
    fn write_to<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()> {
        out.write_field(Decimal::signed(*self))
    }
}

impl Field for String {
    fn write_to<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()> {
        out.write_field(self)
    }
}

/// q0's row is the event itself, written as `generate` writes it.
impl Row for Timed {
    fn header() -> String {
        "event".to_string()
    }
    fn ideal_ns(&self) -> u64 {
        self.due_ns
    }
    fn polled_ns(&self) -> u64 {
        self.polled_ns
    }
    fn write_record<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()> {
        self.event.write_record(out)
    }
    fn write_csv(&self, out: &mut Vec<u8>) {
        self.event.write_csv(out);
    }
}

/// Defines a row struct whose CSV columns are its fields in order, plus the hidden
/// `ideal_ns` and `polled_ns`.
macro_rules! row {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
        #[rkyv(crate = rkyv, derive(Debug))]
        pub struct $name {
            $(
                $(#[$fdoc])*
                #[doc = concat!("Column `", stringify!($field), "`.")]
                pub $field: $ty,
            )+
            /// When the row could ideally have been produced, in ns after the epoch.
            pub ideal_ns: u64,
            /// When the source read the input that made the row due ([`Row::polled_ns`]).
            pub polled_ns: u64,
        }

        impl Row for $name {
            fn header() -> String {
                record_line([$(stringify!($field)),+])
            }
            fn ideal_ns(&self) -> u64 {
                self.ideal_ns
            }
            fn polled_ns(&self) -> u64 {
                self.polled_ns
            }
            fn write_record<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()> {
                $( Field::write_to(&self.$field, out)?; )+
                out.write_record(None::<&[u8]>)
            }
        }
    };
}

row! {
    /// q1: a bid with its price converted (`price * 908 / 1000`).
    Q1Row { auction: u64, bidder: u64, price: u64, date_time: u64 }
}

row! {
    /// q2: a bid on a selected auction.
    Q2Row { auction: u64, price: u64 }
}

row! {
    /// q3: a seller in OR, ID or CA and one of their auctions in category 10.
    Q3Row { name: String, city: String, state: String, auction: u64 }
}

row! {
    /// q4: a category's average closing price after a sale.
    Q4Row { category: u64, avg_price: u64 }
}

row! {
    /// q5: an auction with the most bids in a sliding window.
    Q5Row { window_start: i64, window_end: i64, auction: u64, count: u64 }
}

row! {
    /// q6: a seller's average selling price over their last 10 sales, after a sale.
    Q6Row { seller: u64, avg_price: u64 }
}

row! {
    /// q7: a bid with the highest price of its tumbling window.
    Q7Row { window_start: i64, window_end: i64, auction: u64, bidder: u64, price: u64 }
}

row! {
    /// q8: a person who registered and created an auction in the same window.
    Q8Row { window_start: i64, window_end: i64, person: u64, name: String }
}

row! {
    /// q11 and q12: a bidder's number of bids in a window.
    BidderCount { bidder: u64, bid_count: u64, window_start: i64, window_end: i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_line_follow_the_fields() {
        assert_eq!(
            Q7Row::header(),
            "window_start,window_end,auction,bidder,price"
        );
        let mut line = Vec::new();
        Q7Row {
            window_start: 0,
            window_end: 10_000,
            auction: 1007,
            bidder: 1001,
            price: 55,
            ideal_ns: 9,
            polled_ns: 9,
        }
        .write_csv(&mut line);
        assert_eq!(line, b"0,10000,1007,1001,55\n");
        assert_eq!(
            BidderCount::header(),
            "bidder,bid_count,window_start,window_end"
        );
    }
}
