//! `--window`: how records are grouped into windows.

use super::time::{duration, offset};
use super::{all_digits, opt_err, Millis, ParseError};

/// `--window`: how records are grouped into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowSpec {
    /// `fixed:<size>[,offset=<offset>]`: tumbling event-time windows.
    Fixed {
        /// Window length (> 0).
        size: Millis,
        /// Start offset, normalised into `[0, size)`.
        offset: Millis,
    },
    /// `sliding:<size>,<period>`: overlapping event-time windows.
    Sliding {
        /// Window length (> 0).
        size: Millis,
        /// Distance between window starts (0 < period ≤ size).
        period: Millis,
    },
    /// `session:<gap>`: per-key sessions closed by a gap of inactivity.
    Session {
        /// Inactivity gap (> 0).
        gap: Millis,
    },
    /// `count:<n>`: tumbling windows of `n` records per key.
    Count {
        /// Records per window (> 0).
        n: u64,
    },
    /// `sliding-count:<n>,<step>`: windows of `n` records starting every `step` records.
    SlidingCount {
        /// Records per window (> 0).
        n: u64,
        /// Records between window starts (0 < step ≤ n).
        step: u64,
    },
    /// `global`: one window per key for all time.
    Global,
}

fn positive_duration(s: &str, what: &str) -> Result<Millis, String> {
    match duration(s) {
        Ok(0) => Err(format!("{what} must be positive")),
        Ok(d) => Ok(d),
        Err(m) => Err(format!("bad {what} {s:?}: {m}")),
    }
}

fn positive_int(s: &str, what: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 && all_digits(s) => Ok(n),
        _ => Err(format!("bad {what} {s:?}: expected a positive integer")),
    }
}

fn window(s: &str) -> Result<WindowSpec, String> {
    let (kind, args) = s
        .split_once(':')
        .map_or((s, None), |(k, a)| (k.trim(), Some(a)));
    let args: Vec<&str> = args.map_or(vec![], |a| a.split(',').map(str::trim).collect());
    let usage = match kind {
        "fixed" => "fixed:<size>[,offset=<offset>]",
        "sliding" => "sliding:<size>,<period>",
        "session" => "session:<gap>",
        "count" => "count:<n>",
        "sliding-count" => "sliding-count:<n>,<step>",
        "global" => "global without arguments",
        _ => {
            let kinds = "fixed, sliding, session, count, sliding-count or global";
            return Err(format!("unknown window kind {kind:?}: expected {kinds}"));
        }
    };
    let (dur, int) = (positive_duration, positive_int);
    Ok(match (kind, &args[..]) {
        ("fixed", [size]) => WindowSpec::Fixed {
            size: dur(size, "size")?,
            offset: 0,
        },
        ("fixed", [size, off]) => {
            let size = dur(size, "size")?;
            let o = off
                .strip_prefix("offset")
                .and_then(|r| r.trim_start().strip_prefix('='));
            let o = o.ok_or_else(|| format!("bad option {off:?}: expected offset=<offset>"))?;
            let o = offset(o.trim()).map_err(|m| format!("bad offset {:?}: {m}", o.trim()))?;
            WindowSpec::Fixed {
                size,
                offset: o.rem_euclid(size),
            }
        }
        ("sliding", [size, period]) => {
            let (size, period) = (dur(size, "size")?, dur(period, "period")?);
            if period > size {
                return Err("period must not exceed size".into());
            }
            WindowSpec::Sliding { size, period }
        }
        ("session", [gap]) => WindowSpec::Session {
            gap: dur(gap, "gap")?,
        },
        ("count", [n]) => WindowSpec::Count {
            n: int(n, "count")?,
        },
        ("sliding-count", [n, step]) => {
            let (n, step) = (int(n, "count")?, int(step, "step")?);
            if step > n {
                return Err("step must not exceed count".into());
            }
            WindowSpec::SlidingCount { n, step }
        }
        ("global", []) => WindowSpec::Global,
        _ => return Err(format!("expected {usage}")),
    })
}

/// Parses `--window`.
pub fn parse_window(s: &str) -> Result<WindowSpec, ParseError> {
    window(s.trim()).map_err(|m| opt_err("--window", s, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parse::testing::{cases, err};

    #[test]
    fn windows() {
        let ok = [
            "fixed:10s => Fixed { size: 10000, offset: 0 }",
            "fixed: 10s , offset = 12s => Fixed { size: 10000, offset: 2000 }",
            "fixed:1m,offset=-1s => Fixed { size: 60000, offset: 59000 }",
            "fixed:1h,offset=00:15:00 => Fixed { size: 3600000, offset: 900000 }",
            "sliding:10s,5s => Sliding { size: 10000, period: 5000 }",
            "sliding:10s,10s => Sliding { size: 10000, period: 10000 }",
            "session:500 => Session { gap: 500 }",
            "count:3 => Count { n: 3 }",
            "sliding-count:4,2 => SlidingCount { n: 4, step: 2 }",
            " global  => Global",
        ];
        for (s, want) in cases(&ok) {
            let w: WindowSpec = s.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(format!("{w:?}"), want);
        }
        let errors = [
            "fixed:0s => size must be positive",
            "fixed:10x => bad size \"10x\": expected a non-negative duration",
            "fixed:10s,start=1s => bad option \"start=1s\": expected offset=<offset>",
            "fixed => expected fixed:<size>[,offset=<offset>]",
            "fixed:1s,2s,3s => expected fixed:<size>[,offset=<offset>]",
            "sliding:5s,10s => period must not exceed size",
            "sliding:5s => expected sliding:<size>,<period>",
            "sliding:5s,0 => period must be positive",
            "session:0 => gap must be positive",
            "count:0 => bad count \"0\": expected a positive integer",
            "count:-1 => bad count \"-1\": expected a positive integer",
            "sliding-count:2,3 => step must not exceed count",
            "global: => expected global without arguments",
            "tumbling:1s => unknown window kind \"tumbling\": expected fixed, sliding",
        ];
        for (s, want) in cases(&errors) {
            let e = err(parse_window(s));
            assert!(e.starts_with(&format!("--window {s:?}: {want}")), "{e}");
        }
    }
}
