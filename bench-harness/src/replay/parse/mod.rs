//! Parsing and formatting for `rill-bench replay`: the input CSV, times, durations and the
//! window / trigger / accumulation / aggregate / watermark options, as plain data.
//!
//! Input rows, one per line, in arrival order (blank lines and `#` comments are skipped):
//! `event,<key>,<value>,<event_time>,<arrival_time>[,punct]`,
//! `watermark,<event_time>,<arrival_time>` and `advance,<arrival_time>`. Fields are CSV: a
//! key holding a comma or a quote is written in quotes (`"a,b"`, quotes inside doubled),
//! the opening quote right after the comma; whitespace around fields is ignored. Times are
//! integer milliseconds or `HH:MM:SS[.mmm]`; `-inf` / `+inf` stand for `i64::MIN` /
//! `i64::MAX`. Durations follow the [shared grammar](crate::duration).
//!
//! One parser per file: `input` (the rows), `time` (times, durations and offsets),
//! `window`, `trigger` (a recursive-descent parser), `options` (the keyword options) and
//! `watermark`; everything public is re-exported here. Each option type also implements
//! [`FromStr`] through its `parse_*` function.

use std::str::FromStr;

mod input;
mod options;
mod time;
mod trigger;
mod watermark;
mod window;

pub use input::{parse_input, write_input_row, Input, Row};
pub use options::{parse_accumulation, parse_aggregate, AccumulationSpec, AggregateSpec};
pub use time::{format_duration, format_time, parse_duration, TimeFormat};
pub use trigger::{parse_trigger, TriggerSpec};
pub use watermark::{parse_watermark, WatermarkSpec};
pub use window::{parse_window, WindowSpec};

/// A time or a duration in milliseconds.
pub type Millis = i64;

/// An error parsing the input file or an option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A malformed input row.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A malformed option value.
    #[error("{what} {value:?}: {message}")]
    Option {
        /// The option, e.g. `--trigger`.
        what: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong.
        message: String,
    },
}

fn opt_err(what: &'static str, value: &str, message: impl Into<String>) -> ParseError {
    ParseError::Option {
        what,
        value: value.to_string(),
        message: message.into(),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

macro_rules! from_str {
    ($($ty:ty => $parse:ident),* $(,)?) => {$(
        impl FromStr for $ty {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                $parse(s)
            }
        }
    )*};
}

from_str! {
    WindowSpec => parse_window,
    TriggerSpec => parse_trigger,
    AccumulationSpec => parse_accumulation,
    AggregateSpec => parse_aggregate,
    WatermarkSpec => parse_watermark,
}

#[cfg(test)]
mod testing {
    use std::fmt;

    use super::ParseError;

    /// Splits table cases written as `"input => expected"`.
    pub(super) fn cases<'a>(table: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        table
            .iter()
            .map(|c| c.split_once(" => ").expect("case has ' => '"))
            .collect()
    }

    pub(super) fn err(r: Result<impl fmt::Debug, ParseError>) -> String {
        r.map(|v| panic!("expected an error, got {v:?}"))
            .unwrap_err()
            .to_string()
    }
}
