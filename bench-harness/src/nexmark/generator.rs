//! The NEXMark event generator, after Beam's `NexmarkGenerator` and `GeneratorConfig`.
//!
//! Every event is a pure function of the seed and its *event number* `n`: `n % 50` picks
//! the kind (0 a person, 1..=3 an auction, 4..=49 a bid), `n / 50` the ids, and a small
//! RNG seeded from `(seed, n)` everything random. Any shard can therefore generate any
//! subset of positions, in any order, and the set of events never depends on how the
//! positions are split. Event time advances by `inter_event_ns` per event number.
//!
//! Positions and event numbers differ only with out-of-order groups: position `p` emits
//! event number `(p / G) * G + (p * 953) % G`, which shuffles events within groups of `G`
//! (a permutation of each group when `G` is not a multiple of 953, which is prime). The
//! watermark after position `p` is the event time of its group's first number, never more
//! than the event time of any later position.
//!
//! Ids and references follow Beam: a bid goes to the latest auction rounded down to a
//! multiple of `hot_auction_ratio` (probability `1 - 1/ratio`) or else to one of the last
//! `num_in_flight_auctions` auctions, up to 10 ahead (ids not generated yet); bidders and
//! sellers likewise among the last `num_active_people` people. The `extra` field pads the
//! CSV line (newline included) to the configured average size, give or take 20 % of the
//! padding. See `docs/nexmark.md`.
//!
//! ```
//! use rill_bench::nexmark::{Event, GeneratorConfig};
//!
//! let config = GeneratorConfig::default();
//! let Event::Person(p) = config.event(0) else { unreachable!() };
//! assert_eq!((p.id, p.date_time), (1000, 1_436_918_400_000));
//! assert!(matches!(config.event(1), Event::Auction(a) if a.id == 1000));
//! assert!(matches!(config.event(4), Event::Bid(_)));
//! assert_eq!(config.event(12_345), config.event(12_345));
//! ```

use crate::nexmark::model::{decimal_len, push_u64, Auction, Bid, Event, Person};

/// The first person's id.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction's id.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category; categories are `FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + CATEGORIES`.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// Number of categories.
pub const CATEGORIES: u64 = 5;

/// People per `TOTAL_PROPORTION` events.
const PERSON_PROPORTION: u64 = 1;
/// Auctions per `TOTAL_PROPORTION` events.
const AUCTION_PROPORTION: u64 = 3;
/// Events per epoch (one person, three auctions, 46 bids).
const TOTAL_PROPORTION: u64 = 50;
/// How far past the latest person a bidder or seller may be.
const PERSON_ID_LEAD: u64 = 10;
/// How far past the latest auction a bid may be.
const AUCTION_ID_LEAD: u64 = 10;
/// Distinct non-hot channels.
const CHANNELS: u64 = 10_000;
/// One bid in this many comes from a non-hot channel.
const HOT_CHANNELS_RATIO: u64 = 2;
/// Hot channels and their urls.
const HOT_CHANNELS: [(&str, &str); 4] = [
    ("Google", "https://nexmark.com/google"),
    ("Facebook", "https://nexmark.com/facebook"),
    ("Baidu", "https://nexmark.com/baidu"),
    ("Apple", "https://nexmark.com/apple"),
];
/// Non-hot channel `c` is `channel-<c>` at this url followed by `<c>`.
const CHANNEL_URL: &str = "https://nexmark.com/item.htm?channel=";
/// The out-of-order shuffle's multiplier (Beam's).
const SHUFFLE_MULTIPLIER: u128 = 953;

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

/// What to generate: the seed, event time and Beam's shape parameters.
///
/// [`Default`] gives Beam's defaults (`docs/nexmark.md`); override fields with struct
/// update syntax: `GeneratorConfig { seed: 7, ..GeneratorConfig::default() }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Seed for everything random (default 42).
    pub seed: u64,
    /// Event time of event number 0, ms since the Unix epoch (default 1436918400000,
    /// 2015-07-15T00:00:00Z).
    pub base_time_ms: u64,
    /// Event time between consecutive event numbers, ns (default 100,000: 10,000 events/s).
    pub inter_event_ns: u64,
    /// Out-of-order group size `G`; 1 (the default) emits in order, 0 counts as 1.
    pub out_of_order_group: u64,
    /// A bid goes to the hot auction with probability `1 - 1/ratio` (default 2).
    pub hot_auction_ratio: u64,
    /// A bidder is hot with probability `1 - 1/ratio` (default 4).
    pub hot_bidders_ratio: u64,
    /// A seller is hot with probability `1 - 1/ratio` (default 4).
    pub hot_sellers_ratio: u64,
    /// Non-hot bidders and sellers are among this many latest people (default 1000).
    pub num_active_people: u64,
    /// Non-hot bids go to one of this many latest auctions (default 100); also sets how
    /// long auctions run.
    pub num_in_flight_auctions: u64,
    /// Average CSV line size of a person, bytes (default 200).
    pub avg_person_size: u64,
    /// Average CSV line size of an auction, bytes (default 500).
    pub avg_auction_size: u64,
    /// Average CSV line size of a bid, bytes (default 100).
    pub avg_bid_size: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            base_time_ms: 1_436_918_400_000,
            inter_event_ns: 100_000,
            out_of_order_group: 1,
            hot_auction_ratio: 2,
            hot_bidders_ratio: 4,
            hot_sellers_ratio: 4,
            num_active_people: 1000,
            num_in_flight_auctions: 100,
            avg_person_size: 200,
            avg_auction_size: 500,
            avg_bid_size: 100,
        }
    }
}

impl GeneratorConfig {
    /// The event number emitted at `position`: `(p / G) * G + (p * 953) % G`.
    #[inline]
    pub fn event_number(&self, position: u64) -> u64 {
        let g = self.group();
        if g == 1 {
            return position;
        }
        let offset = (u128::from(position) * SHUFFLE_MULTIPLIER) % u128::from(g);
        // `offset < g`, so it fits in a u64.
        (position / g * g).saturating_add(offset as u64)
    }

    /// Event time of event number `number`: `base + floor(number * inter_event_ns / 10^6)`
    /// ms, exact (integer arithmetic in 128 bits), saturating at `u64::MAX`.
    #[inline]
    pub fn timestamp_ms(&self, number: u64) -> u64 {
        let offset = match number.checked_mul(self.inter_event_ns) {
            Some(ns) => ns / 1_000_000,
            None => {
                let ms = u128::from(number) * u128::from(self.inter_event_ns) / 1_000_000;
                u64::try_from(ms).unwrap_or(u64::MAX)
            }
        };
        self.base_time_ms.saturating_add(offset)
    }

    /// The watermark after emitting `position`: the event time of the first number of its
    /// out-of-order group, `(position / G) * G`. No later position has an earlier event.
    #[inline]
    pub fn watermark_ms(&self, position: u64) -> u64 {
        let g = self.group();
        self.timestamp_ms(position / g * g)
    }

    /// The event emitted at `position`.
    #[inline]
    pub fn event(&self, position: u64) -> Event {
        self.event_for_number(self.event_number(position))
    }

    /// The event with event number `number` (whatever position emits it).
    pub fn event_for_number(&self, number: u64) -> Event {
        let mut rng = Rng::new(self.seed, number);
        let date_time = self.timestamp_ms(number);
        let rem = number % TOTAL_PROPORTION;
        if rem < PERSON_PROPORTION {
            Event::Person(self.person(number, date_time, &mut rng))
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            Event::Auction(self.auction(number, date_time, &mut rng))
        } else {
            Event::Bid(self.bid(number, date_time, &mut rng))
        }
    }

    fn group(&self) -> u64 {
        self.out_of_order_group.max(1)
    }

    fn person(&self, number: u64, date_time: u64, rng: &mut Rng) -> Person {
        let id = last_base0_person_id(number) + FIRST_PERSON_ID;
        let first = pick(rng, &FIRST_NAMES);
        let last = pick(rng, &LAST_NAMES);
        let mut name = String::with_capacity(first.len() + 1 + last.len());
        name.push_str(first);
        name.push(' ');
        name.push_str(last);
        let email = email(rng);
        let credit_card = credit_card(rng);
        let city = pick(rng, &US_CITIES).to_owned();
        let state = pick(rng, &US_STATES).to_owned();
        // `person,` + 7 more commas + newline.
        let size = 7
            + 7
            + 1
            + decimal_len(id)
            + name.len()
            + email.len()
            + credit_card.len()
            + city.len()
            + state.len()
            + decimal_len(date_time);
        let extra = next_extra(rng, size, self.avg_person_size);
        Person {
            id,
            name,
            email,
            credit_card,
            city,
            state,
            date_time,
            extra,
        }
    }

    fn auction(&self, number: u64, date_time: u64, rng: &mut Rng) -> Auction {
        let id = last_base0_auction_id(number) + FIRST_AUCTION_ID;
        let seller = if is_hot(rng, self.hot_sellers_ratio) {
            round_down(last_base0_person_id(number), self.hot_sellers_ratio)
        } else {
            self.next_base0_person_id(number, rng)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + rng.below(CATEGORIES);
        let initial_bid = next_price(rng);
        let reserve = initial_bid.saturating_add(next_price(rng));
        let expires = date_time.saturating_add(self.auction_length_ms(number, date_time, rng));
        let item_name = next_string(rng, 20);
        let description = next_string(rng, 100);
        // `auction,` + 9 more commas + newline.
        let size = 8
            + 9
            + 1
            + decimal_len(id)
            + item_name.len()
            + description.len()
            + decimal_len(initial_bid)
            + decimal_len(reserve)
            + decimal_len(date_time)
            + decimal_len(expires)
            + decimal_len(seller)
            + decimal_len(category);
        let extra = next_extra(rng, size, self.avg_auction_size);
        Auction {
            id,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time,
            expires,
            seller,
            category,
            extra,
        }
    }

    fn bid(&self, number: u64, date_time: u64, rng: &mut Rng) -> Bid {
        let auction = if is_hot(rng, self.hot_auction_ratio) {
            round_down(last_base0_auction_id(number), self.hot_auction_ratio)
        } else {
            self.next_base0_auction_id(number, rng)
        } + FIRST_AUCTION_ID;
        let bidder = if is_hot(rng, self.hot_bidders_ratio) {
            round_down(last_base0_person_id(number), self.hot_bidders_ratio)
        } else {
            self.next_base0_person_id(number, rng)
        } + FIRST_PERSON_ID;
        let price = next_price(rng);
        let (channel, url) = if rng.below(HOT_CHANNELS_RATIO) > 0 {
            let (channel, url) = pick(rng, &HOT_CHANNELS);
            (channel.to_owned(), url.to_owned())
        } else {
            channel_and_url(rng.below(CHANNELS))
        };
        // `bid,` + 6 more commas + newline.
        let size = 4
            + 6
            + 1
            + decimal_len(auction)
            + decimal_len(bidder)
            + decimal_len(price)
            + decimal_len(date_time)
            + channel.len()
            + url.len();
        let extra = next_extra(rng, size, self.avg_bid_size);
        Bid {
            auction,
            bidder,
            price,
            date_time,
            channel,
            url,
            extra,
        }
    }

    /// A person among the last `num_active_people`, or up to `PERSON_ID_LEAD` ahead.
    fn next_base0_person_id(&self, number: u64, rng: &mut Rng) -> u64 {
        let people = last_base0_person_id(number) + 1;
        let active = people.min(self.num_active_people);
        people - active + rng.below(active + PERSON_ID_LEAD)
    }

    /// An auction among the last `num_in_flight_auctions`, or up to `AUCTION_ID_LEAD`
    /// ahead.
    fn next_base0_auction_id(&self, number: u64, rng: &mut Rng) -> u64 {
        let max = last_base0_auction_id(number);
        let min = max.saturating_sub(self.num_in_flight_auctions);
        min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
    }

    /// `1 + uniform(0, 2 * horizon)` ms, where the horizon is how much event time passes
    /// while `num_in_flight_auctions` more auctions are generated.
    fn auction_length_ms(&self, number: u64, date_time: u64, rng: &mut Rng) -> u64 {
        let events =
            self.num_in_flight_auctions.saturating_mul(TOTAL_PROPORTION) / AUCTION_PROPORTION;
        let horizon = self
            .timestamp_ms(number.saturating_add(events))
            .saturating_sub(date_time);
        1 + rng.below(horizon.saturating_mul(2).max(1))
    }
}

/// The base-0 id of the latest person generated at or before event number `number` (one
/// person per epoch, its first event).
fn last_base0_person_id(number: u64) -> u64 {
    number / TOTAL_PROPORTION * PERSON_PROPORTION
}

/// The base-0 id of the latest auction generated at or before event number `number`
/// (0 before the first auction).
fn last_base0_auction_id(number: u64) -> u64 {
    let epoch = number / TOTAL_PROPORTION;
    let offset = number % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        // The previous epoch's last auction.
        (epoch * AUCTION_PROPORTION).saturating_sub(1)
    } else {
        epoch * AUCTION_PROPORTION + (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1)
    }
}

/// True with probability `1 - 1/ratio` (never for a ratio of 0 or 1).
#[inline]
fn is_hot(rng: &mut Rng, ratio: u64) -> bool {
    rng.below(ratio.max(1)) > 0
}

#[inline]
fn round_down(id: u64, ratio: u64) -> u64 {
    let ratio = ratio.max(1);
    id / ratio * ratio
}

#[inline]
fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    // `below(len) < len`.
    items[rng.below(items.len() as u64) as usize]
}

/// A log-uniform price in cents: `round(10^(u * 6) * 100)`, `u` uniform in [0, 1).
#[inline]
fn next_price(rng: &mut Rng) -> u64 {
    ((rng.unit() * 6.0 * std::f64::consts::LN_10).exp() * 100.0).round() as u64
}

/// `channel-<c>` and its url.
fn channel_and_url(c: u64) -> (String, String) {
    let mut digits = Vec::with_capacity(20);
    push_u64(&mut digits, c);
    let mut channel = String::with_capacity(8 + digits.len());
    channel.push_str("channel-");
    channel.extend(digits.iter().map(|&d| char::from(d)));
    let mut url = String::with_capacity(CHANNEL_URL.len() + digits.len());
    url.push_str(CHANNEL_URL);
    url.extend(digits.iter().map(|&d| char::from(d)));
    (channel, url)
}

/// `local@domain.com`: 3..=6 and 3..=4 lowercase letters.
fn email(rng: &mut Rng) -> String {
    let local = 3 + rng.below(4) as usize;
    let domain = 3 + rng.below(2) as usize;
    let mut s = Vec::with_capacity(local + domain + 5);
    push_text(rng, &mut s, local, false);
    s.push(b'@');
    push_text(rng, &mut s, domain, false);
    s.extend_from_slice(b".com");
    ascii(s)
}

/// Four groups of four digits separated by spaces.
fn credit_card(rng: &mut Rng) -> String {
    let mut s = Vec::with_capacity(19);
    let mut fraction = rng.next_u64();
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            s.push(b' ');
        }
        // The 64 random bits as a fraction in [0, 1): times 10, the integer part is a
        // uniform digit and the fractional part the bits for the next ones.
        let wide = u128::from(fraction) * 10;
        s.push(b'0' + (wide >> 64) as u8);
        fraction = wide as u64;
    }
    ascii(s)
}

/// Beam's `nextString`: 3 to `max_len - 1` lowercase letters and occasional single
/// spaces, starting and ending with a letter.
fn next_string(rng: &mut Rng, max_len: u64) -> String {
    let len = (3 + rng.below(max_len.saturating_sub(3).max(1))) as usize;
    let mut s = Vec::with_capacity(len);
    push_text(rng, &mut s, len, true);
    ascii(s)
}

/// Beam's `nextExtra`: lowercase letters padding a `current`-byte line to `average` bytes
/// on average, within 20 % of the padding.
fn next_extra(rng: &mut Rng, current: usize, average: u64) -> String {
    let Some(padding) = average.checked_sub(current as u64).filter(|&p| p > 0) else {
        return String::new();
    };
    let delta = (padding + 2) / 5;
    let len = padding - delta + if delta > 0 { rng.below(2 * delta) } else { 0 };
    let mut s = Vec::with_capacity(len as usize);
    push_text(rng, &mut s, len as usize, false);
    ascii(s)
}

/// Appends `len` random lowercase letters, eight per random word; with `spaces`, about
/// one in 16 of the inner characters is a space instead (never the first or last).
fn push_text(rng: &mut Rng, out: &mut Vec<u8>, len: usize, spaces: bool) {
    let start = out.len();
    let mut left = len;
    while left > 0 {
        let n = left.min(8);
        let word = rng.next_u64();
        let letters = letters(word).to_le_bytes();
        if spaces {
            let random = word.to_le_bytes();
            out.extend(
                random[..n]
                    .iter()
                    .zip(&letters)
                    .map(|(&r, &l)| if r & 0x0f == 0 { b' ' } else { l }),
            );
        } else {
            out.extend_from_slice(&letters[..n]);
        }
        left -= n;
    }
    if spaces && len > 0 {
        let text = &mut out[start..];
        for i in [0, len - 1] {
            if text[i] == b' ' {
                text[i] = b'e';
            }
        }
    }
}

/// Maps each byte `b` of `word` to the letter `'a' + b * 26 / 256`, all eight at once:
/// even and odd bytes are multiplied in 16-bit lanes, whose products (< 2^16) never carry
/// into the next lane.
#[inline]
fn letters(word: u64) -> u64 {
    const LANES: u64 = 0x00ff_00ff_00ff_00ff;
    let even = (((word & LANES) * 26) >> 8) & LANES;
    let odd = ((((word >> 8) & LANES) * 26) >> 8) & LANES;
    (even | (odd << 8)) + 0x6161_6161_6161_6161
}

/// The bytes (ASCII by construction) as a `String`, without validating them again: the
/// check cost 7 % of q1's time.
fn ascii(bytes: Vec<u8>) -> String {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller fills `bytes` only with ASCII letters, digits, spaces and
    // fixed ASCII strings (see `push_text`, `push_u64` and the word lists), and ASCII is
    // valid UTF-8.
    unsafe { String::from_utf8_unchecked(bytes) }
}

/// wyrand, seeded by mixing the generator's seed with the event number.
struct Rng(u64);

impl Rng {
    #[inline]
    fn new(seed: u64, number: u64) -> Rng {
        Rng(splitmix(
            splitmix(seed ^ 0x6a09_e667_f3bc_c908).wrapping_add(number),
        ))
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    }

    /// Uniform in `0..bound` (multiply-shift; `bound` 0 gives 0).
    #[inline]
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[inline]
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GeneratorConfig {
        GeneratorConfig::default()
    }

    fn kind(e: &Event) -> usize {
        match e {
            Event::Person(_) => 0,
            Event::Auction(_) => 1,
            Event::Bid(_) => 2,
        }
    }

    #[test]
    fn letters_map_each_byte() {
        let mut rng = Rng::new(1, 2);
        for word in (0..1000).map(|_| rng.next_u64()).chain([0, u64::MAX]) {
            let expected = word
                .to_le_bytes()
                .map(|b| b'a' + ((u32::from(b) * 26) >> 8) as u8);
            assert_eq!(letters(word).to_le_bytes(), expected);
        }
    }

    #[test]
    fn proportions() {
        let c = config();
        let mut counts = [0u64; 3];
        for p in 0..50_000 {
            counts[kind(&c.event(p))] += 1;
        }
        assert_eq!(counts, [1_000, 3_000, 46_000]);
    }

    #[test]
    fn ids_follow_the_formulas() {
        let c = config();
        for n in (0..20_000).chain(1_000_000_000..1_000_000_200) {
            let epoch = n / 50;
            match c.event_for_number(n) {
                Event::Person(p) => {
                    assert_eq!(n % 50, 0);
                    assert_eq!(p.id, 1000 + epoch);
                }
                Event::Auction(a) => {
                    assert!((1..=3).contains(&(n % 50)));
                    assert_eq!(a.id, 1000 + 3 * epoch + (n % 50 - 1));
                    assert!((10..=14).contains(&a.category));
                }
                Event::Bid(_) => assert!(n % 50 >= 4),
            }
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let c = config();
        let other = GeneratorConfig { seed: 7, ..c };
        let mut differ = 0;
        for p in (0..2_000).chain([u64::MAX / 3]) {
            assert_eq!(c.event(p), c.event(p));
            assert_eq!(c.event(p), c.clone().event(p));
            if c.event(p) != other.event(p) {
                differ += 1;
            }
        }
        assert!(differ > 1_990, "{differ}");
    }

    #[test]
    fn timestamps() {
        let c = config();
        assert_eq!(c.timestamp_ms(0), 1_436_918_400_000);
        assert_eq!(c.timestamp_ms(9), 1_436_918_400_000);
        assert_eq!(c.timestamp_ms(10), 1_436_918_400_001);
        assert_eq!(c.timestamp_ms(10_000), 1_436_918_401_000);
        let mut last = 0;
        for n in 0..10_000 {
            let t = c.timestamp_ms(n);
            assert!(t >= last);
            assert_eq!(c.event_for_number(n).date_time(), t);
            last = t;
        }
        // One event per 3 ns: floor(n * 3 / 10^6), exact for large n.
        let fast = GeneratorConfig {
            inter_event_ns: 3,
            base_time_ms: 0,
            ..c
        };
        assert_eq!(fast.timestamp_ms(1_000_000_000_000), 3_000_000);
        assert_eq!(fast.timestamp_ms(333_333), 0);
        assert_eq!(fast.timestamp_ms(333_334), 1);
        let huge = GeneratorConfig {
            inter_event_ns: u64::MAX,
            ..c
        };
        assert_eq!(huge.timestamp_ms(u64::MAX), u64::MAX);
    }

    #[test]
    fn out_of_order_groups_are_permutations() {
        for g in [0, 1, 2, 7, 10, 100, 1_000] {
            let c = GeneratorConfig {
                out_of_order_group: g,
                ..config()
            };
            let g = g.max(1);
            let groups = 5;
            for start in (0..groups).map(|k| k * g) {
                let mut numbers: Vec<u64> = (start..start + g).map(|p| c.event_number(p)).collect();
                numbers.sort_unstable();
                assert_eq!(numbers, (start..start + g).collect::<Vec<_>>(), "G = {g}");
            }
            if g == 1 {
                assert!((0..1000).all(|p| c.event_number(p) == p));
            }
        }
    }

    #[test]
    fn watermark_never_passes_a_later_event() {
        for g in [1, 3, 50, 1_000] {
            let c = GeneratorConfig {
                out_of_order_group: g,
                inter_event_ns: 1_000_000,
                ..config()
            };
            let positions = 5_000;
            let times: Vec<u64> = (0..positions).map(|p| c.event(p).date_time()).collect();
            let mut later_min = u64::MAX;
            for p in (0..positions).rev() {
                later_min = later_min.min(times[p as usize]);
                assert!(c.watermark_ms(p) <= later_min, "G = {g}, position {p}");
            }
            let shuffled = (0..positions).filter(|&p| c.event_number(p) != p).count();
            assert_eq!(shuffled == 0, g == 1, "G = {g}");
        }
    }

    #[test]
    fn fields_never_hold_commas_or_line_breaks() {
        let c = config();
        let mut line = Vec::new();
        for p in 0..100_000 {
            let e = c.event(p);
            line.clear();
            e.write_csv(&mut line);
            let commas = line.iter().filter(|&&b| b == b',').count();
            let expected = match e {
                Event::Person(_) => 8,
                Event::Auction(_) => 10,
                Event::Bid(_) => 7,
            };
            assert_eq!(commas, expected, "{e}");
            assert_eq!(
                line.iter().position(|&b| b == b'\n' || b == b'\r'),
                Some(line.len() - 1)
            );
            if p % 997 == 0 {
                let text = std::str::from_utf8(&line).unwrap();
                assert_eq!(Event::parse_csv(text), Ok(e));
            }
        }
    }

    #[test]
    fn average_sizes_near_targets() {
        for base in [0, 5_000_000_000] {
            let c = config();
            let (mut bytes, mut counts) = ([0usize; 3], [0usize; 3]);
            let mut line = Vec::new();
            for n in base..base + 100_000 {
                let e = c.event_for_number(n);
                line.clear();
                e.write_csv(&mut line);
                bytes[kind(&e)] += line.len();
                counts[kind(&e)] += 1;
            }
            for (k, target) in [200.0, 500.0, 100.0].into_iter().enumerate() {
                let avg = bytes[k] as f64 / counts[k] as f64;
                assert!((avg - target).abs() <= 0.2 * target, "kind {k}: {avg}");
                assert!((avg - target).abs() <= 0.05 * target, "kind {k}: {avg}");
            }
        }
    }

    #[test]
    fn references_exist_or_lead_by_at_most_ten() {
        let c = config();
        let (mut hot_auction, mut hot_bidder, mut bids) = (0, 0, 0);
        for n in 0..200_000 {
            let people = 1000 + n / 50 + 1; // ids below this exist
            match c.event_for_number(n) {
                Event::Person(p) => {
                    assert!(US_STATES.contains(&p.state.as_str()));
                    assert_eq!(p.credit_card.len(), 19);
                    assert!(p.email.ends_with(".com") && p.email.contains('@'));
                }
                Event::Auction(a) => {
                    assert!(a.expires > a.date_time);
                    assert_eq!(a.item_name.trim(), a.item_name);
                    assert_eq!(a.description.trim(), a.description);
                    assert!((3..20).contains(&a.item_name.len()));
                    assert!(a.reserve >= a.initial_bid);
                    assert!((100..=100_000_000).contains(&a.initial_bid));
                    assert!(a.seller >= 1000 && a.seller < people + 10, "{a:?}");
                }
                Event::Bid(b) => {
                    bids += 1;
                    let auctions = 1000 + 3 * (n / 50) + 3;
                    assert!(b.auction >= 1000 && b.auction < auctions + 10, "{b:?}");
                    assert!(b.auction + 100 + 1 >= auctions, "{b:?}");
                    assert!(b.bidder >= 1000 && b.bidder < people + 10, "{b:?}");
                    assert!((100..=100_000_000).contains(&b.price));
                    hot_auction +=
                        usize::from(b.auction % 2 == 0 && b.auction == (auctions - 1) / 2 * 2);
                    hot_bidder += usize::from(b.bidder == (people - 1) / 4 * 4);
                }
            }
        }
        // Hot with probability 1/2 and 3/4, plus the non-hot draws that hit them.
        let (a, b) = (
            hot_auction as f64 / bids as f64,
            hot_bidder as f64 / bids as f64,
        );
        assert!((0.49..0.52).contains(&a), "{a}");
        assert!((0.74..0.77).contains(&b), "{b}");
    }

    #[test]
    fn auctions_run_about_twice_the_in_flight_horizon() {
        let c = config();
        let mut total = 0;
        let mut count = 0;
        for n in (0..100_000).filter(|n| (1..=3).contains(&(n % 50))) {
            let Event::Auction(a) = c.event_for_number(n) else {
                unreachable!()
            };
            let length = a.expires - a.date_time;
            // 1666 events of 0.1 ms: a horizon of 166 ms.
            assert!((1..=333).contains(&length), "{length}");
            total += length;
            count += 1;
        }
        let avg = total as f64 / count as f64;
        assert!((150.0..184.0).contains(&avg), "{avg}");
    }
}
