//! `--watermark`: where the watermark comes from.

use std::fmt;

use super::time::{duration, format_duration};
use super::{opt_err, Millis, ParseError};

/// `--watermark`: where the watermark comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatermarkSpec {
    /// `explicit`: only the input's `watermark` rows.
    Explicit,
    /// `perfect`: the smallest event time still to arrive (known from the whole input).
    Perfect,
    /// `bounded:<dur>`: the largest event time seen minus a bound.
    Bounded(Millis),
}

/// Parses `--watermark`.
pub fn parse_watermark(s: &str) -> Result<WatermarkSpec, ParseError> {
    let err = |m: String| opt_err("--watermark", s, m);
    match s.trim() {
        "explicit" => Ok(WatermarkSpec::Explicit),
        "perfect" => Ok(WatermarkSpec::Perfect),
        t => match t.strip_prefix("bounded:").map(str::trim) {
            Some(d) => duration(d)
                .map(WatermarkSpec::Bounded)
                .map_err(|m| err(format!("bad bound {d:?}: {m}"))),
            None => Err(err(
                "expected explicit, perfect or bounded:<duration>".into()
            )),
        },
    }
}

impl fmt::Display for WatermarkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatermarkSpec::Explicit => f.write_str("explicit"),
            WatermarkSpec::Perfect => f.write_str("perfect"),
            WatermarkSpec::Bounded(d) => write!(f, "bounded:{}", format_duration(*d)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parse::testing::err;

    #[test]
    fn watermarks() {
        assert_eq!("perfect".parse(), Ok(WatermarkSpec::Perfect));
        assert_eq!("bounded:2s".parse(), Ok(WatermarkSpec::Bounded(2000)));
        assert_eq!(WatermarkSpec::Bounded(1500).to_string(), "bounded:1500ms");
        assert!(err("bounded:-1s".parse::<WatermarkSpec>()).contains("must not be negative"));
    }
}
