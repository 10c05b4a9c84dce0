//! Durations as text: one grammar for every flag of every command and for the replay
//! options (`--window fixed:10s`, `processing(delay=1m)`, ...).
//!
//! A duration is [humantime](https://docs.rs/humantime)'s grammar, a number and a unit,
//! several of them added up (`500ms`, `10s`, `1.5s`, `2m`, `1h`, `1h 30m`, `2min 5sec`),
//! or a bare integer meaning milliseconds (`250`). Units are humantime's: `ms`/`msec`,
//! `s`/`sec`/`seconds`, `m`/`min`/`minutes`, `h`/`hr`/`hours`, `d`/`days`, `w`/`weeks`,
//! `M`/`months` (30.44 days), `y`/`years` (365.25 days), and `us`, `ns` for parts of a
//! millisecond. Surrounding whitespace is ignored. Values are whole milliseconds, so a
//! sub-millisecond part (`1.5ms`) is an error, and so is a leading `-`.
//!
//! [`format_millis`] writes a duration in the largest unit that represents it exactly;
//! [`parse_millis`] reads it back.
//!
//! ```
//! use rill_bench::duration::{format_millis, parse_millis};
//!
//! assert_eq!(parse_millis("1h 30m"), Ok(5_400_000));
//! assert_eq!(parse_millis("1.5s"), Ok(1_500));
//! assert_eq!(parse_millis("250"), Ok(250));
//! assert_eq!(format_millis(5_400_000), "90m");
//! assert!(parse_millis("-1s").is_err());
//! ```

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// What a malformed duration is told it should look like.
pub const DURATION_EXPECTED: &str =
    "expected a non-negative duration such as 500ms, 10s, 2m, 1h 30m or plain milliseconds";

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// A leading `-`.
    #[error("durations must not be negative")]
    Negative,
    /// Not the grammar at all.
    #[error("{DURATION_EXPECTED} ({source})")]
    Malformed {
        /// humantime's reason.
        #[source]
        source: humantime::DurationError,
    },
    /// A part of a millisecond, e.g. `1.5ms`.
    #[error("durations are whole milliseconds")]
    SubMillisecond,
    /// More milliseconds than an `i64` holds.
    #[error("duration out of range")]
    OutOfRange,
}

/// Parses a duration (see the module docs) into milliseconds, ≥ 0.
pub fn parse_millis(s: &str) -> Result<i64, DurationError> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    // Bare milliseconds, and `<n>ms` beyond the ~584 years humantime holds in ms.
    let digits = s.strip_suffix("ms").unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse().map_err(|_| DurationError::OutOfRange);
    }
    let d = humantime::parse_duration(s).map_err(|source| match source {
        humantime::DurationError::NumberOverflow => DurationError::OutOfRange,
        source => DurationError::Malformed { source },
    })?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::SubMillisecond);
    }
    i64::try_from(d.as_millis()).map_err(|_| DurationError::OutOfRange)
}

/// Formats a duration in the largest unit that represents it exactly (`0ms`, `1500ms`,
/// `10s`, `2m`, `1h`); the inverse of [`parse_millis`] for non-negative values.
pub fn format_millis(d: i64) -> String {
    match d {
        0 => "0ms".into(),
        d if d % HOUR == 0 => format!("{}h", d / HOUR),
        d if d % MINUTE == 0 => format!("{}m", d / MINUTE),
        d if d % SECOND == 0 => format!("{}s", d / SECOND),
        d => format!("{d}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let ok = [
            ("0", 0),
            ("250", 250),
            ("0s", 0),
            ("0ms", 0),
            ("500ms", 500),
            ("10s", 10_000),
            (" 2m ", 2 * MINUTE),
            ("1h", HOUR),
            ("1h 30m", 90 * MINUTE),
            ("2min 5sec", 125_000),
            ("1.5s", 1_500),
            ("0.5m", 30_000),
            ("1 s", 1_000),
            ("1d", 24 * HOUR),
            ("2000us", 2),
            ("9223372036854775807ms", i64::MAX),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_millis(s), Ok(ms), "{s:?}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse_millis("-5s"), Err(DurationError::Negative));
        assert_eq!(parse_millis("-1"), Err(DurationError::Negative));
        assert_eq!(parse_millis("1.5ms"), Err(DurationError::SubMillisecond));
        for huge in ["99999999999999999999", "99999999999999999h"] {
            assert_eq!(parse_millis(huge), Err(DurationError::OutOfRange), "{huge}");
        }
        for bad in ["", "s", "5x", "10 parsecs", "1.", "soon"] {
            let e = parse_millis(bad).unwrap_err();
            assert!(
                matches!(e, DurationError::Malformed { .. }),
                "{bad:?}: {e:?}"
            );
            assert!(e.to_string().starts_with(DURATION_EXPECTED), "{e}");
        }
        let e = parse_millis("5x").unwrap_err().to_string();
        assert!(e.contains("unknown time unit \"x\""), "{e}");
    }

    #[test]
    fn format_round_trips() {
        let cases = [
            (0, "0ms"),
            (1500, "1500ms"),
            (10_000, "10s"),
            (90 * MINUTE, "90m"),
        ];
        for (ms, s) in cases {
            assert_eq!(format_millis(ms), s);
        }
        for ms in [0, 1, 999, 1500, 60_000, 61_000, HOUR, 25 * HOUR, i64::MAX] {
            assert_eq!(parse_millis(&format_millis(ms)), Ok(ms), "{ms}");
        }
    }
}
