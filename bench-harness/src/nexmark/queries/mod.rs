//! The NEXMark queries, written with rill's public API (see docs/nexmark.md for each
//! query's semantics and columns).
//!
//! Every query takes the stream of [`Timed`](super::source::Timed) events and returns a stream of its
//! [rows](super::rows). Windows use the events' `date_time` as event time; the sources'
//! watermarks are exact, so results do not depend on the number of shards or on
//! scheduling (except q12, which windows by processing time).

mod joins;
mod sales;
mod simple;
mod windows;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rill_runtime::Timestamp;

pub use joins::{q3, q8};
pub use sales::{q4, q6};
pub use simple::{q0, q1, q2};
pub use windows::{q11, q12, q5, q7};

use super::kafka::EventClock;
use super::source::Epoch;

/// What a query needs besides its input: how to turn times into latency deadlines.
#[derive(Clone, Debug)]
pub struct QueryContext {
    /// Event time of event number 0, in ms (the generator's base time).
    pub base_ms: u64,
    /// The run's epoch (for processing-time windows).
    pub epoch: Epoch,
    /// Window size in ms (q5, q7, q8, q12) and session gap (q11); NEXMark's default is 10 s.
    pub window_ms: i64,
    /// Slide of q5's sliding windows in ms; default 2 s.
    pub slide_ms: i64,
    /// A run from Kafka: when event time reached each millisecond (else event time maps
    /// onto the generator's schedule).
    pub event_clock: Option<Arc<EventClock>>,
    /// A latency run from Kafka: when the source polled the first record of each
    /// millisecond of event time (rill's part of a window's latency starts there).
    pub poll_clock: Option<Arc<EventClock>>,
}

impl QueryContext {
    /// The defaults: 10 s windows sliding by 2 s.
    pub fn new(base_ms: u64, epoch: Epoch) -> Self {
        QueryContext {
            base_ms,
            epoch,
            window_ms: 10_000,
            slide_ms: 2_000,
            event_clock: None,
            poll_clock: None,
        }
    }

    /// The moment event time reaches `ms` in an open-loop run, in ns after the epoch
    /// (from Kafka: `u64::MAX` if it has not, which no latency figure counts).
    #[inline]
    pub fn event_time_ns(&self, ms: Timestamp) -> u64 {
        if let Some(clock) = &self.event_clock {
            return clock.reached(ms).unwrap_or(u64::MAX);
        }
        (ms.max(0) as u64)
            .saturating_sub(self.base_ms)
            .saturating_mul(1_000_000)
    }

    /// When the source polled the first record at or past event time `ms`, in a latency
    /// run from Kafka (`u64::MAX` if none came yet); else [`QueryContext::event_time_ns`].
    #[inline]
    pub fn polled_ns(&self, ms: Timestamp) -> u64 {
        match &self.poll_clock {
            Some(clock) => clock.reached(ms).unwrap_or(u64::MAX),
            None => self.event_time_ns(ms),
        }
    }
}

/// The queries `run` and `sweep` know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Query {
    /// Passthrough.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Local item suggestion (incremental join).
    Q3,
    /// Average closing price per category.
    Q4,
    /// Hot items (sliding windows).
    Q5,
    /// Average selling price by seller.
    Q6,
    /// Highest bid (tumbling windows).
    Q7,
    /// New users (windowed join).
    Q8,
    /// User sessions (session windows).
    Q11,
    /// Processing-time windows.
    Q12,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 11] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q6,
        Query::Q7,
        Query::Q8,
        Query::Q11,
        Query::Q12,
    ];

    /// True if its rows are window results (latency is window-result latency).
    pub fn is_windowed(self) -> bool {
        matches!(
            self,
            Query::Q5 | Query::Q7 | Query::Q8 | Query::Q11 | Query::Q12
        )
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self {
            Query::Q0 => 0,
            Query::Q1 => 1,
            Query::Q2 => 2,
            Query::Q3 => 3,
            Query::Q4 => 4,
            Query::Q5 => 5,
            Query::Q6 => 6,
            Query::Q7 => 7,
            Query::Q8 => 8,
            Query::Q11 => 11,
            Query::Q12 => 12,
        };
        write!(f, "q{n}")
    }
}

impl FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Query::ALL
            .into_iter()
            .find(|q| q.to_string().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown query '{s}': expected one of {}",
                    Query::ALL.map(|q| q.to_string()).join(", ")
                )
            })
    }
}
