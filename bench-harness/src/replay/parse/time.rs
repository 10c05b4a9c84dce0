//! Times (integer milliseconds, `HH:MM:SS[.mmm]`, `±inf`), durations and offsets.

use super::{all_digits, opt_err, Millis, ParseError};
pub use crate::duration::format_millis as format_duration;
use crate::duration::parse_millis;

pub(super) const SECOND: Millis = 1_000;
pub(super) const MINUTE: Millis = 60 * SECOND;
pub(super) const HOUR: Millis = 60 * MINUTE;

/// How times are written: detected from the input, used again for the output. Ordered by
/// precision, so the detected format is the maximum over all times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeFormat {
    /// Integer milliseconds.
    Millis,
    /// `HH:MM:SS`.
    Clock,
    /// `HH:MM:SS.mmm`.
    ClockMillis,
}

const TIME_EXPECTED: &str = "expected integer milliseconds or HH:MM:SS[.mmm]";

/// Parses a time: integer ms, `[-]H+:MM:SS[.f{1,3}]` or `±inf`. Also says which form it was
/// (`None` for the infinities, which do not count for format detection).
pub(super) fn parse_time(s: &str) -> Result<(Millis, Option<TimeFormat>), String> {
    match s {
        "-inf" => return Ok((i64::MIN, None)),
        "+inf" | "inf" => return Ok((i64::MAX, None)),
        _ => {}
    }
    if !s.contains(':') {
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        if !all_digits(digits) {
            return Err(TIME_EXPECTED.into());
        }
        return s
            .parse()
            .map(|t| (t, Some(TimeFormat::Millis)))
            .map_err(|_| "time out of range".into());
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let [h, m, rest] = parts[..] else {
        return Err(TIME_EXPECTED.into());
    };
    let (sec, frac) = match rest.split_once('.') {
        Some((sec, frac)) => (sec, Some(frac)),
        None => (rest, None),
    };
    let two = |p: &str| p.len() == 2 && all_digits(p);
    if !all_digits(h) || !two(m) || !two(sec) || frac.is_some_and(|f| f.len() > 3 || !all_digits(f))
    {
        return Err(TIME_EXPECTED.into());
    }
    let (m, sec): (Millis, Millis) = (m.parse().unwrap_or(99), sec.parse().unwrap_or(99));
    if m >= 60 || sec >= 60 {
        return Err("minutes and seconds must be below 60".into());
    }
    let ms = frac.map_or(0, |f| format!("{f:0<3}").parse().unwrap_or(0));
    let t = h
        .parse::<Millis>()
        .ok()
        .and_then(|h| h.checked_mul(HOUR))
        .and_then(|t| t.checked_add(m * MINUTE + sec * SECOND + ms))
        .ok_or("time out of range")?;
    let format = if frac.is_some() {
        TimeFormat::ClockMillis
    } else {
        TimeFormat::Clock
    };
    Ok((if neg { -t } else { t }, Some(format)))
}

/// Formats a time. `i64::MIN` / `i64::MAX` print as `-inf` / `+inf`; [`TimeFormat::Clock`]
/// still prints `.mmm` when the millisecond part is nonzero, so nothing is lost.
pub fn format_time(t: Millis, f: TimeFormat) -> String {
    match t {
        Millis::MIN => return "-inf".into(),
        Millis::MAX => return "+inf".into(),
        _ => {}
    }
    if f == TimeFormat::Millis {
        return t.to_string();
    }
    let sign = if t < 0 { "-" } else { "" };
    let a = t.unsigned_abs();
    let (h, m, s, ms) = (a / 3_600_000, a / 60_000 % 60, a / 1_000 % 60, a % 1_000);
    if f == TimeFormat::ClockMillis || ms != 0 {
        format!("{sign}{h:02}:{m:02}:{s:02}.{ms:03}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

pub(super) fn duration(s: &str) -> Result<Millis, String> {
    parse_millis(s).map_err(|e| e.to_string())
}

/// Parses a duration in the [shared grammar](crate::duration) (`500ms`, `10s`, `2m`,
/// `1h 30m`, or a bare integer: milliseconds); ≥ 0.
pub fn parse_duration(s: &str) -> Result<Millis, ParseError> {
    duration(s.trim()).map_err(|m| opt_err("duration", s, m))
}

/// An offset: a time (integer ms, `HH:MM:SS[.mmm]`, may be negative) or a duration,
/// optionally negated with a leading `-`.
pub(super) fn offset(s: &str) -> Result<Millis, String> {
    if s.contains(':') {
        return parse_time(s).map(|(t, _)| t);
    }
    match s.strip_prefix('-') {
        Some(rest) => duration(rest).map(|d| -d),
        None => duration(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parse::testing::err;
    use TimeFormat::{Clock, ClockMillis, Millis as Ms};

    #[test]
    fn times_in_all_forms() {
        let ok = [
            ("1500", 1500, Some(Ms)),
            ("-250", -250, Some(Ms)),
            ("01:02:03", 3_723_000, Some(Clock)),
            ("123:00:00", 123 * HOUR, Some(Clock)),
            ("-00:00:08", -8000, Some(Clock)),
            ("00:00:01.5", 1500, Some(ClockMillis)),
            ("00:00:01.05", 1050, Some(ClockMillis)),
            ("00:00:01.005", 1005, Some(ClockMillis)),
            ("-inf", i64::MIN, None),
            ("+inf", i64::MAX, None),
        ];
        for (s, t, f) in ok {
            assert_eq!(parse_time(s), Ok((t, f)), "{s}");
        }
        let bad = [
            "",
            "x",
            "1.5",
            "1s",
            "0:0:01",
            "00:00",
            "00:00:01.1234",
            "00:00:01.",
        ];
        for s in bad {
            assert_eq!(parse_time(s), Err(TIME_EXPECTED.into()), "{s:?}");
        }
        assert!(parse_time("00:60:00").unwrap_err().contains("below 60"));
        let huge = ["99999999999999999999", "9999999999999999:00:00"];
        assert!(huge
            .iter()
            .all(|s| parse_time(s).unwrap_err().contains("out of range")));
    }

    #[test]
    fn format_time_all_formats() {
        let cases = [
            (-1500, Ms, "-1500"),
            (3_723_000, Clock, "01:02:03"),
            (-8000, Clock, "-00:00:08"),
            (1005, Clock, "00:00:01.005"),
            (1000, ClockMillis, "00:00:01.000"),
            (-1050, ClockMillis, "-00:00:01.050"),
            (123 * HOUR, Clock, "123:00:00"),
        ];
        for (t, f, s) in cases {
            assert_eq!(format_time(t, f), s);
        }
        for f in [Ms, Clock, ClockMillis] {
            assert_eq!(format_time(i64::MIN, f), "-inf");
            assert_eq!(format_time(i64::MAX, f), "+inf");
            for t in [0, 1, -1, 59_999, -3_600_001, i64::MAX - 1, i64::MIN + 1] {
                assert_eq!(parse_time(&format_time(t, f)).unwrap().0, t, "{t} {f:?}");
            }
        }
    }

    #[test]
    fn durations() {
        for (s, d) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("2m", 120_000),
            (" 1h ", HOUR),
            ("1h 30m", 90 * MINUTE),
            ("1.5s", 1500),
            ("1 s", 1000),
        ] {
            assert_eq!(parse_duration(s), Ok(d));
        }
        assert_eq!(parse_duration("250"), Ok(250));
        for bad in ["", "-5s", "5x", "s", "1.5ms", "1 x", "99999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let e = err(parse_duration("-1"));
        assert_eq!(e, "duration \"-1\": durations must not be negative");
        for d in [0, 1, 1500, 10_000, 120_000, HOUR, 90 * MINUTE] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
