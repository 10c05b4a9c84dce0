//! The NEXMark event model: people register, open auctions and bid on them.
//!
//! An [`Event`] is one of a [`Person`], an [`Auction`] or a [`Bid`]. Events travel between
//! shards as rkyv archives and are written one per line as CSV (the format of
//! `docs/nexmark.md`; the generator puts no comma, quote or line break in a field, so
//! nothing is quoted in practice, but a field holding one is quoted as CSV quotes it and
//! read back unquoted):
//!
//! ```text
//! person,<id>,<name>,<email>,<credit_card>,<city>,<state>,<date_time_ms>,<extra>
//! auction,<id>,<item_name>,<description>,<initial_bid>,<reserve>,<date_time_ms>,<expires_ms>,<seller>,<category>,<extra>
//! bid,<auction>,<bidder>,<price>,<date_time_ms>,<channel>,<url>,<extra>
//! ```
//!
//! [`Display`](fmt::Display) writes that line; [`Event::write_csv`] appends it (and a
//! newline) to a byte buffer, [`Event::write_record`] to a [`csv::Writer`];
//! [`Event::parse_csv`] reads it back.
//!
//! ```
//! use rill_bench::nexmark::{Bid, Event};
//!
//! let bid = Event::Bid(Bid {
//!     auction: 1000,
//!     bidder: 1001,
//!     price: 250,
//!     date_time: 1436918400000,
//!     channel: "Google".into(),
//!     url: "https://nexmark.com/google".into(),
//!     extra: String::new(),
//! });
//! let line = bid.to_string();
//! assert_eq!(line, "bid,1000,1001,250,1436918400000,Google,https://nexmark.com/google,");
//! assert_eq!(Event::parse_csv(&line), Ok(bid));
//! ```

use std::fmt;
use std::io;

use rill_runtime::rkyv;

use crate::csv_format::{fields, push_fields, CsvLineError, Decimal};

/// A person registering to buy or sell.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Person {
    /// Person id (the first is 1000).
    pub id: u64,
    /// First and last name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// City.
    pub city: String,
    /// US state, two letters.
    pub state: String,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
    /// Padding to the average person size.
    pub extra: String,
}

/// An item put up for auction.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Auction {
    /// Auction id (the first is 1000).
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Initial bid, cents.
    pub initial_bid: u64,
    /// Reserve price, cents: bids below it cannot win.
    pub reserve: u64,
    /// Event time (when the auction opens), ms since the Unix epoch.
    pub date_time: u64,
    /// When the auction closes, ms since the Unix epoch; always after `date_time`.
    pub expires: u64,
    /// The seller's person id.
    pub seller: u64,
    /// Category, 10..=14.
    pub category: u64,
    /// Padding to the average auction size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// Price, cents.
    pub price: u64,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
    /// Where the bid came from (e.g. `Google`, `channel-1234`).
    pub channel: String,
    /// The page the bid was made on.
    pub url: String,
    /// Padding to the average bid size.
    pub extra: String,
}

/// One NEXMark event.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

/// Why a CSV line is not an [`Event`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ParseEventError {
    /// The first field is not `person`, `auction` or `bid`.
    #[error("unknown event kind `{kind}` (expected person, auction or bid)")]
    UnknownKind {
        /// The first field as found.
        kind: String,
    },
    /// The line has the wrong number of fields for its kind.
    #[error("a {kind} line has {expected} fields, found {found}")]
    FieldCount {
        /// The event kind.
        kind: &'static str,
        /// Fields a line of this kind has, the kind included.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A numeric field is not an unsigned decimal integer that fits in 64 bits.
    #[error("field `{field}`: `{value}` is not an unsigned integer")]
    BadInteger {
        /// The field's name, as in `docs/nexmark.md`.
        field: &'static str,
        /// The field as found.
        value: String,
    },
    /// The record is neither binary nor UTF-8 text.
    #[error("not UTF-8")]
    NotUtf8,
    /// The line is not one CSV record.
    #[error(transparent)]
    Csv(#[from] CsvLineError),
    /// A record in the binary encoding ([`BINARY_MAGIC`] first) that is not a valid
    /// event archive.
    #[error("not a valid binary event ({bytes} bytes)")]
    Binary {
        /// The record's length.
        bytes: usize,
    },
}

/// The first byte of an event in the binary encoding ([`Event::write_binary`]): no CSV
/// line starts with it (a line starts with its kind's name), so both encodings can share
/// a topic.
pub const BINARY_MAGIC: u8 = 0xB1;

const PERSON_FIELDS: usize = 9;
const AUCTION_FIELDS: usize = 11;
const BID_FIELDS: usize = 8;

impl Event {
    /// The event time, ms since the Unix epoch.
    #[inline]
    pub fn date_time(&self) -> u64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// Appends the event's CSV line and a `'\n'` to `out`; the bytes are exactly those of
    /// [`Display`](fmt::Display) plus the newline (written without a csv writer unless a
    /// field needs quoting: [`push_fields`]).
    pub fn write_csv(&self, out: &mut Vec<u8>) {
        self.with_fields(|fields| push_fields(out, fields));
    }

    /// Appends the event in the binary encoding: [`BINARY_MAGIC`], then the event's rkyv
    /// archive (what the exchanges carry). [`Event::parse`] reads it back, validating
    /// every byte.
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        out.push(BINARY_MAGIC);
        // Serializing into memory fails only where allocating does (which aborts): the
        // error type has no value.
        match rkyv::to_bytes::<rkyv::rancor::Panic>(self) {
            Ok(archive) => out.extend_from_slice(&archive),
            Err(never) => match never {},
        }
    }

    /// Parses a record in either encoding: binary if it starts with [`BINARY_MAGIC`], else
    /// a CSV line ([`Event::parse_csv`]).
    pub fn parse(bytes: &[u8]) -> Result<Event, ParseEventError> {
        match bytes.split_first() {
            Some((&BINARY_MAGIC, archive)) => {
                // rkyv reads archives in place from aligned memory: copy the bytes (about
                // a hundred) to an aligned buffer.
                let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(archive.len());
                aligned.extend_from_slice(archive);
                rkyv::from_bytes::<Event, rkyv::rancor::Error>(&aligned)
                    .map_err(|_| ParseEventError::Binary { bytes: bytes.len() })
            }
            _ => {
                let line = std::str::from_utf8(bytes).map_err(|_| ParseEventError::NotUtf8)?;
                Event::parse_csv(line)
            }
        }
    }

    /// Writes the event as one CSV record (fields quoted only where needed).
    pub fn write_record<W: io::Write>(&self, out: &mut csv::Writer<W>) -> csv::Result<()> {
        self.with_fields(|fields| out.write_record(fields))
    }

    /// Calls `f` with the event's CSV fields.
    fn with_fields<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let n = Decimal::new;
        match self {
            Event::Person(p) => f(&[
                b"person",
                n(p.id).as_ref(),
                p.name.as_bytes(),
                p.email.as_bytes(),
                p.credit_card.as_bytes(),
                p.city.as_bytes(),
                p.state.as_bytes(),
                n(p.date_time).as_ref(),
                p.extra.as_bytes(),
            ]),
            Event::Auction(a) => f(&[
                b"auction",
                n(a.id).as_ref(),
                a.item_name.as_bytes(),
                a.description.as_bytes(),
                n(a.initial_bid).as_ref(),
                n(a.reserve).as_ref(),
                n(a.date_time).as_ref(),
                n(a.expires).as_ref(),
                n(a.seller).as_ref(),
                n(a.category).as_ref(),
                a.extra.as_bytes(),
            ]),
            Event::Bid(b) => f(&[
                b"bid",
                n(b.auction).as_ref(),
                n(b.bidder).as_ref(),
                n(b.price).as_ref(),
                n(b.date_time).as_ref(),
                b.channel.as_bytes(),
                b.url.as_bytes(),
                b.extra.as_bytes(),
            ]),
        }
    }

    /// Parses one CSV line as written by [`Display`](fmt::Display) or
    /// [`write_csv`](Event::write_csv) (a trailing `\n` or `\r\n` is ignored; quoted fields
    /// are unquoted).
    pub fn parse_csv(line: &str) -> Result<Event, ParseEventError> {
        let body = line
            .strip_suffix("\r\n")
            .or_else(|| line.strip_suffix('\n'))
            .unwrap_or(line);
        if memchr::memchr3(b'"', b'\n', b'\r', body.as_bytes()).is_some() {
            // Quoted fields, or more than one line: the CSV reader's way.
            let owned = fields(line)?;
            let f: Vec<&str> = owned.iter().map(String::as_str).collect();
            return Event::from_fields(&f, f.len());
        }
        // The common case, the same result: the comma-separated parts, borrowed (only the
        // event's own strings are allocated).
        let mut f = [""; AUCTION_FIELDS];
        let mut found = 0;
        let mut start = 0;
        let ends = memchr::memchr_iter(b',', body.as_bytes()).chain([body.len()]);
        for end in ends {
            if let Some(slot) = f.get_mut(found) {
                // (A comma is ASCII: both ends are character boundaries.)
                *slot = &body[start..end];
            }
            found += 1;
            start = end + 1;
        }
        Event::from_fields(&f[..found.min(f.len())], found)
    }

    /// The event of a line's fields `f` (the first `f.len()` of `found`).
    fn from_fields(f: &[&str], found: usize) -> Result<Event, ParseEventError> {
        let (kind, expected) = match f[0] {
            "person" => ("person", PERSON_FIELDS),
            "auction" => ("auction", AUCTION_FIELDS),
            "bid" => ("bid", BID_FIELDS),
            other => {
                return Err(ParseEventError::UnknownKind {
                    kind: other.to_owned(),
                })
            }
        };
        if found != expected {
            return Err(ParseEventError::FieldCount {
                kind,
                expected,
                found,
            });
        }
        // The kind is read; the count is checked, so every field is there.
        let mut f = f.iter().skip(1).copied();
        let mut next = || f.next().unwrap_or_default();
        Ok(match kind {
            "person" => Event::Person(Person {
                id: int("id", next())?,
                name: next().to_owned(),
                email: next().to_owned(),
                credit_card: next().to_owned(),
                city: next().to_owned(),
                state: next().to_owned(),
                date_time: int("date_time", next())?,
                extra: next().to_owned(),
            }),
            "auction" => Event::Auction(Auction {
                id: int("id", next())?,
                item_name: next().to_owned(),
                description: next().to_owned(),
                initial_bid: int("initial_bid", next())?,
                reserve: int("reserve", next())?,
                date_time: int("date_time", next())?,
                expires: int("expires", next())?,
                seller: int("seller", next())?,
                category: int("category", next())?,
                extra: next().to_owned(),
            }),
            _ => Event::Bid(Bid {
                auction: int("auction", next())?,
                bidder: int("bidder", next())?,
                price: int("price", next())?,
                date_time: int("date_time", next())?,
                channel: next().to_owned(),
                url: next().to_owned(),
                extra: next().to_owned(),
            }),
        })
    }
}

impl fmt::Display for Event {
    /// The event's CSV line, without a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = Vec::new();
        self.write_csv(&mut line);
        line.pop();
        f.write_str(&String::from_utf8_lossy(&line))
    }
}

/// Parses an unsigned decimal integer (digits only: no sign, no spaces).
fn int(field: &'static str, value: &str) -> Result<u64, ParseEventError> {
    let bad = || ParseEventError::BadInteger {
        field,
        value: value.to_owned(),
    };
    // Digits only (no sign, unlike `str::parse`), at most u64::MAX: one pass.
    if value.is_empty() {
        return Err(bad());
    }
    value
        .bytes()
        .try_fold(0u64, |n, b| {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            n.checked_mul(10)?.checked_add(u64::from(digit))
        })
        .ok_or_else(bad)
}

/// Appends `n` in decimal.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(Decimal::new(n).as_ref());
}

/// Number of decimal digits of `n`.
#[inline]
pub(crate) fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fast path's fields are the CSV reader's: the same event or the same error
        /// for lines of any kind and field count, with or without a line ending.
        #[test]
        fn parse_csv_agrees_with_the_csv_reader(
            kind in prop_oneof!["bid", "auction", "person", "sale", ""],
            values in proptest::collection::vec(
                prop_oneof![4 => "[0-9]{1,19}", 1 => "[a-z0-9 +-]{0,8}", 1 => "[0-9]{20,21}"],
                0..12,
            ),
            ending in prop_oneof!["", "\n", "\r\n"],
        ) {
            let line = format!("{kind},{}{ending}", values.join(","));
            let slow: Vec<String> = fields(&line).unwrap();
            let slow: Vec<&str> = slow.iter().map(String::as_str).collect();
            prop_assert_eq!(Event::parse_csv(&line), Event::from_fields(&slow, slow.len()));
        }

        /// An integer field is its digits' value: `str::parse` where every byte is a
        /// digit (it also takes a sign, which a field may not have), else an error;
        /// more than u64::MAX is an error.
        #[test]
        fn integers_are_digits_only(value in "[0-9]{0,22}|[0-9+ a-]{0,4}|1844674407370955161[0-9]") {
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            let expected = digits.then(|| value.parse::<u64>().ok()).flatten();
            prop_assert_eq!(int("id", &value).ok(), expected);
        }
    }

    fn person() -> Event {
        Event::Person(Person {
            id: 1000,
            name: "Peter Jones".into(),
            email: "abc@xyz.com".into(),
            credit_card: "1234 0005 0000 9999".into(),
            city: "Boise".into(),
            state: "ID".into(),
            date_time: 1_436_918_400_000,
            extra: "padding padding".into(),
        })
    }

    fn auction() -> Event {
        Event::Auction(Auction {
            id: 1001,
            item_name: "a thing".into(),
            description: "a thing to sell".into(),
            initial_bid: 100,
            reserve: 0,
            date_time: 1_436_918_400_001,
            expires: 1_436_918_400_099,
            seller: 1000,
            category: 10,
            extra: String::new(),
        })
    }

    fn bid() -> Event {
        Event::Bid(Bid {
            auction: 1001,
            bidder: 1000,
            price: u64::MAX,
            date_time: 0,
            channel: "channel-42".into(),
            url: "https://nexmark.com/item?channel=42".into(),
            extra: "x".into(),
        })
    }

    #[test]
    fn the_binary_encoding_reads_back_and_refuses_damage() {
        for event in [person(), auction(), bid()] {
            let mut bytes = Vec::new();
            event.write_binary(&mut bytes);
            assert_eq!(bytes[0], BINARY_MAGIC);
            assert_eq!(Event::parse(&bytes), Ok(event.clone()));
            // Cut short, or a length field pointing outside: an error, not a panic.
            let cut = &bytes[..bytes.len() - 3];
            assert_eq!(
                Event::parse(cut),
                Err(ParseEventError::Binary { bytes: cut.len() })
            );
            // The CSV line still parses through the same function.
            assert_eq!(Event::parse(event.to_string().as_bytes()), Ok(event));
        }
        let mut bytes = Vec::new();
        bid().write_binary(&mut bytes);
        for b in &mut bytes[1..] {
            *b = 0xFF;
        }
        assert!(matches!(
            Event::parse(&bytes),
            Err(ParseEventError::Binary { .. })
        ));
        assert_eq!(Event::parse(&[0xFF, 0xFE]), Err(ParseEventError::NotUtf8));
    }

    #[test]
    fn display_is_the_documented_line() {
        assert_eq!(
            person().to_string(),
            "person,1000,Peter Jones,abc@xyz.com,1234 0005 0000 9999,Boise,ID,1436918400000,padding padding"
        );
        assert_eq!(
            auction().to_string(),
            "auction,1001,a thing,a thing to sell,100,0,1436918400001,1436918400099,1000,10,"
        );
        assert_eq!(
            bid().to_string(),
            "bid,1001,1000,18446744073709551615,0,channel-42,https://nexmark.com/item?channel=42,x"
        );
    }

    #[test]
    fn round_trip() {
        for e in [person(), auction(), bid()] {
            let mut out = Vec::new();
            e.write_csv(&mut out);
            assert_eq!(out, format!("{e}\n").into_bytes());
            let line = String::from_utf8(out).unwrap();
            assert_eq!(Event::parse_csv(&line), Ok(e.clone()));
            assert_eq!(Event::parse_csv(&e.to_string()), Ok(e.clone()));
            assert_eq!(Event::parse_csv(&format!("{e}\r\n")), Ok(e));
        }
    }

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        let Event::Bid(mut b) = bid() else {
            unreachable!()
        };
        b.channel = "a,b".into();
        b.extra = "say \"hi\"".into();
        let e = Event::Bid(b);
        let line = "bid,1001,1000,18446744073709551615,0,\"a,b\",\
                    https://nexmark.com/item?channel=42,\"say \"\"hi\"\"\"";
        assert_eq!(e.to_string(), line);
        assert_eq!(Event::parse_csv(line), Ok(e));
        let two = Event::parse_csv("bid,1,2,3,4,c,u,e\nbid,1,2,3,4,c,u,e");
        assert_eq!(two, Err(ParseEventError::Csv(CsvLineError::SeveralRecords)));
    }

    #[test]
    fn date_time() {
        assert_eq!(person().date_time(), 1_436_918_400_000);
        assert_eq!(auction().date_time(), 1_436_918_400_001);
        assert_eq!(bid().date_time(), 0);
    }

    #[test]
    fn integers() {
        let mut out = Vec::new();
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::MAX / 7, u64::MAX] {
            out.clear();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }

    #[test]
    fn errors() {
        use ParseEventError::*;
        assert_eq!(Event::parse_csv(""), Err(UnknownKind { kind: "".into() }));
        assert_eq!(
            Event::parse_csv("sale,1,2"),
            Err(UnknownKind {
                kind: "sale".into()
            })
        );
        assert_eq!(
            Event::parse_csv("bid,1,2,3,4,c,u"),
            Err(FieldCount {
                kind: "bid",
                expected: 8,
                found: 7
            })
        );
        assert_eq!(
            Event::parse_csv("bid,1,2,3,4,c,u,e,f,g,h,i,j"),
            Err(FieldCount {
                kind: "bid",
                expected: 8,
                found: 13
            })
        );
        assert_eq!(
            Event::parse_csv("person,1,n,e,c,c,s,t"),
            Err(FieldCount {
                kind: "person",
                expected: 9,
                found: 8
            })
        );
        assert_eq!(
            Event::parse_csv("bid,1,2,-3,4,c,u,e"),
            Err(BadInteger {
                field: "price",
                value: "-3".into()
            })
        );
        assert_eq!(
            Event::parse_csv("bid,1,2,3,+4,c,u,e"),
            Err(BadInteger {
                field: "date_time",
                value: "+4".into()
            })
        );
        assert_eq!(
            Event::parse_csv("auction,1,n,d,1,2,3,4,5,18446744073709551616,e"),
            Err(BadInteger {
                field: "category",
                value: "18446744073709551616".into()
            })
        );
        assert_eq!(
            Event::parse_csv("person,,n,e,c,c,s,1,x"),
            Err(BadInteger {
                field: "id",
                value: "".into()
            })
        );
        let e = Event::parse_csv("bid,1,2,x,4,c,u,e").unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `price`: `x` is not an unsigned integer"
        );
    }
}
