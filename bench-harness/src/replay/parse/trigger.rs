//! `--trigger`: when a window's pane is emitted, as a small expression language read by a
//! recursive-descent parser.

use std::fmt;

use super::time::{duration, format_duration, offset};
use super::{all_digits, opt_err, Millis, ParseError};

/// Deepest trigger nesting accepted (guards the recursive-descent parser's stack).
const MAX_DEPTH: usize = 200;

/// `--trigger`: when a window's pane is emitted. [`Display`](fmt::Display) prints the
/// canonical form, which parses back to the same value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TriggerSpec {
    /// `watermark[(early=<t>, late=<t>)]`: when the watermark passes the window end, with
    /// optional early (before) and late (after) firings.
    Watermark {
        /// Trigger for early firings.
        early: Option<Box<TriggerSpec>>,
        /// Trigger for late firings.
        late: Option<Box<TriggerSpec>>,
    },
    /// `count(<n>)`: after `n` records (n ≥ 1).
    Count(u64),
    /// `processing(delay=<dur>)`: a processing-time delay after the first record.
    ProcessingDelay(Millis),
    /// `processing(align=<dur>[, offset=<time>])`: at processing times aligned to a period.
    ProcessingAlign {
        /// Alignment period (> 0).
        period: Millis,
        /// Alignment offset, normalised into `[0, period)`.
        offset: Millis,
    },
    /// `punctuation`: on a punctuation record.
    Punctuation,
    /// `repeat(<t>)`: the inner trigger, again and again.
    Repeat(Box<TriggerSpec>),
    /// `all(<t>, ...)`: when all have fired.
    All(Vec<TriggerSpec>),
    /// `any(<t>, ...)`: when any has fired.
    Any(Vec<TriggerSpec>),
    /// `seq(<t>, ...)`: each in turn.
    Seq(Vec<TriggerSpec>),
    /// `until(<t>, <stop>)`: the first until the second fires.
    Until(Box<TriggerSpec>, Box<TriggerSpec>),
}

/// A recursive-descent parser over a trigger expression; columns are 1-based characters.
struct TriggerParser {
    chars: Vec<char>,
    pos: usize,
}

impl TriggerParser {
    fn peek(&mut self) -> Option<char> {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
        self.chars.get(self.pos).copied()
    }

    fn expected(&self, what: &str) -> String {
        format!("expected {what} at column {}", self.pos + 1)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.pos += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.eat(c) {
            true => Ok(()),
            false => Err(self.expected(&format!("'{c}'"))),
        }
    }

    /// The longest run of characters matching `accept` after whitespace, with its column.
    fn token(&mut self, accept: impl Fn(char) -> bool) -> (String, usize) {
        self.peek();
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(|&c| accept(c)) {
            self.pos += 1;
        }
        (self.chars[start..self.pos].iter().collect(), start + 1)
    }

    fn ident(&mut self) -> (String, usize) {
        self.token(|c| c.is_ascii_alphabetic() || c == '_')
    }

    /// A number, time or duration: up to whitespace, `,`, `(`, `)` or `=`.
    fn value(&mut self) -> (String, usize) {
        self.token(|c| !c.is_whitespace() && !",()=".contains(c))
    }

    /// `name=<value>, ...)` after an opening parenthesis; `arg` parses each value.
    fn named_args(
        &mut self,
        names: &str,
        mut arg: impl FnMut(&mut Self, &str, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let (name, col) = self.ident();
            if name.is_empty() {
                return Err(self.expected(names));
            }
            self.expect('=')?;
            arg(self, &name, col)?;
            if self.eat(')') {
                return Ok(());
            }
            if !self.eat(',') {
                return Err(self.expected("',' or ')'"));
            }
        }
    }

    /// `(<t>, ...)`: exactly `n` arguments, or at least one if `n` is `None`.
    fn args(&mut self, depth: usize, n: Option<usize>) -> Result<Vec<TriggerSpec>, String> {
        self.expect('(')?;
        let mut items = vec![self.trigger(depth + 1)?];
        while !n.is_some_and(|n| items.len() >= n) {
            if !self.eat(',') {
                if n.is_some() {
                    return Err(self.expected("','"));
                }
                break;
            }
            items.push(self.trigger(depth + 1)?);
        }
        match self.eat(')') {
            true => Ok(items),
            false if n.is_some() => Err(self.expected("')'")),
            false => Err(self.expected("',' or ')'")),
        }
    }

    fn trigger(&mut self, depth: usize) -> Result<TriggerSpec, String> {
        let (name, col) = self.ident();
        if depth > MAX_DEPTH {
            return Err(format!(
                "nesting deeper than {MAX_DEPTH} levels at column {col}"
            ));
        }
        let boxed = |mut v: Vec<TriggerSpec>| Box::new(v.remove(0));
        Ok(match name.as_str() {
            "watermark" => self.watermark(depth)?,
            "punctuation" => {
                if self.eat('(') {
                    self.expect(')')?;
                }
                TriggerSpec::Punctuation
            }
            "count" => {
                self.expect('(')?;
                let (tok, col) = self.value();
                let n = tok
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0 && all_digits(&tok));
                let n = n.ok_or_else(|| format!("expected a positive integer at column {col}"))?;
                self.expect(')')?;
                TriggerSpec::Count(n)
            }
            "processing" => self.processing()?,
            "repeat" => TriggerSpec::Repeat(boxed(self.args(depth, Some(1))?)),
            "all" => TriggerSpec::All(self.args(depth, None)?),
            "any" => TriggerSpec::Any(self.args(depth, None)?),
            "seq" => TriggerSpec::Seq(self.args(depth, None)?),
            "until" => {
                let mut v = self.args(depth, Some(2))?;
                let stop = boxed(v.split_off(1));
                TriggerSpec::Until(boxed(v), stop)
            }
            _ => {
                let kinds =
                    "watermark, count, processing, punctuation, repeat, all, any, seq or until";
                let found = match name.is_empty() {
                    true => String::new(),
                    false => format!(" (found {name:?})"),
                };
                return Err(format!(
                    "expected a trigger ({kinds}) at column {col}{found}"
                ));
            }
        })
    }

    fn watermark(&mut self, depth: usize) -> Result<TriggerSpec, String> {
        let (mut early, mut late) = (None, None);
        if self.eat('(') && !self.eat(')') {
            self.named_args("early= or late=", |p, name, col| {
                let slot = match name {
                    "early" => &mut early,
                    "late" => &mut late,
                    _ => return Err(format!("expected early= or late= at column {col}")),
                };
                if slot.is_some() {
                    return Err(format!("duplicate {name}= at column {col}"));
                }
                *slot = Some(Box::new(p.trigger(depth + 1)?));
                Ok(())
            })?;
        }
        Ok(TriggerSpec::Watermark { early, late })
    }

    fn processing(&mut self) -> Result<TriggerSpec, String> {
        self.expect('(')?;
        let (mut delay, mut align, mut off) = (None, None, None);
        self.named_args("delay=, align= or offset=", |p, name, col| {
            let (tok, vcol) = p.value();
            let bad = |m: String| format!("bad {name} {tok:?} at column {vcol}: {m}");
            let (slot, v) = match name {
                "delay" => (&mut delay, duration(&tok).map_err(bad)?),
                "align" => match duration(&tok).map_err(bad)? {
                    0 => return Err(format!("align period must be positive at column {vcol}")),
                    period => (&mut align, period),
                },
                "offset" => (&mut off, offset(&tok).map_err(bad)?),
                _ => {
                    return Err(format!(
                        "expected delay=, align= or offset= at column {col}"
                    ))
                }
            };
            match slot.replace(v) {
                Some(_) => Err(format!("duplicate {name}= at column {col}")),
                None => Ok(()),
            }
        })?;
        match (delay, align, off) {
            (Some(d), None, None) => Ok(TriggerSpec::ProcessingDelay(d)),
            (Some(_), _, _) => Err("delay= cannot be combined with align= or offset=".into()),
            (None, Some(period), off) => {
                let offset = off.unwrap_or(0).rem_euclid(period);
                Ok(TriggerSpec::ProcessingAlign { period, offset })
            }
            (None, None, _) => Err("offset= needs align=".into()),
        }
    }
}

/// Parses `--trigger`.
pub fn parse_trigger(s: &str) -> Result<TriggerSpec, ParseError> {
    let mut p = TriggerParser {
        chars: s.chars().collect(),
        pos: 0,
    };
    let t = p.trigger(0).map_err(|m| opt_err("--trigger", s, m))?;
    match p.peek() {
        Some(_) => Err(opt_err("--trigger", s, p.expected("end of input"))),
        None => Ok(t),
    }
}

fn join<'a>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    items: impl IntoIterator<Item = &'a TriggerSpec>,
) -> fmt::Result {
    write!(f, "{name}(")?;
    for (i, t) in items.into_iter().enumerate() {
        write!(f, "{}{t}", if i > 0 { ", " } else { "" })?;
    }
    f.write_str(")")
}

impl fmt::Display for TriggerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = format_duration;
        match self {
            TriggerSpec::Watermark {
                early: None,
                late: None,
            } => f.write_str("watermark"),
            TriggerSpec::Watermark { early, late } => {
                let early = early.as_ref().map(|e| format!("early={e}"));
                let late = late.as_ref().map(|l| format!("late={l}"));
                let parts: Vec<String> = early.into_iter().chain(late).collect();
                write!(f, "watermark({})", parts.join(", "))
            }
            TriggerSpec::Count(n) => write!(f, "count({n})"),
            TriggerSpec::ProcessingDelay(delay) => write!(f, "processing(delay={})", d(*delay)),
            TriggerSpec::ProcessingAlign { period, offset: 0 } => {
                write!(f, "processing(align={})", d(*period))
            }
            TriggerSpec::ProcessingAlign { period, offset } => {
                write!(f, "processing(align={}, offset={})", d(*period), d(*offset))
            }
            TriggerSpec::Punctuation => f.write_str("punctuation"),
            TriggerSpec::Repeat(t) => write!(f, "repeat({t})"),
            TriggerSpec::All(ts) => join(f, "all", ts),
            TriggerSpec::Any(ts) => join(f, "any", ts),
            TriggerSpec::Seq(ts) => join(f, "seq", ts),
            TriggerSpec::Until(a, b) => join(f, "until", [&**a, &**b]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parse::testing::{cases, err};

    #[test]
    fn trigger_grammar_and_nesting() {
        use TriggerSpec::*;
        let parse = |s: &str| parse_trigger(s).unwrap_or_else(|e| panic!("{e}"));
        let wm = |early: Option<TriggerSpec>, late: Option<TriggerSpec>| {
            let (early, late) = (early.map(Box::new), late.map(Box::new));
            Watermark { early, late }
        };
        assert_eq!(parse("watermark ( )"), wm(None, None));
        let both = parse("watermark(late=count(1), early=punctuation)");
        assert_eq!(both, wm(Some(Punctuation), Some(Count(1))));
        let align = parse("processing(offset=-5000,align=1m)");
        assert_eq!(
            align,
            ProcessingAlign {
                period: 60_000,
                offset: 55_000
            }
        );
        let until = Until(
            Box::new(Repeat(Box::new(Count(2)))),
            Box::new(wm(None, None)),
        );
        assert_eq!(parse("until(repeat(count(2)),watermark)"), until);
        let nested = " watermark ( early = repeat ( any ( count ( 100 ) , processing ( delay = \
                      1s ) ) ) ,\n\tlate = seq(all(count(1)), punctuation()) ) ";
        let early = Repeat(Box::new(Any(vec![Count(100), ProcessingDelay(1000)])));
        let late = Seq(vec![All(vec![Count(1)]), Punctuation]);
        assert_eq!(parse(nested), wm(Some(early), Some(late)));
        let deep = |n| format!("{}count(1){}", "repeat(".repeat(n), ")".repeat(n));
        assert!(parse_trigger(&deep(50)).is_ok());
        assert!(err(parse_trigger(&deep(500))).contains("nesting deeper than 200 levels"));
    }

    #[test]
    fn trigger_display_round_trips() {
        let table = [
            "watermark() => watermark",
            "watermark(late=count(1),early=processing(delay=1500)) => \
             watermark(early=processing(delay=1500ms), late=count(1))",
            "watermark( late = punctuation ) => watermark(late=punctuation)",
            "processing(align=60000, offset=-1s) => processing(align=1m, offset=59s)",
            "processing(align=1h,offset=00:00:01.5) => processing(align=1h, offset=1500ms)",
            "processing(delay=0) => processing(delay=0ms)",
            "repeat(any(count(5),processing(delay=2m))) => \
             repeat(any(count(5), processing(delay=2m)))",
            "until(seq(count(1),all(punctuation,count(2))),watermark) => \
             until(seq(count(1), all(punctuation, count(2))), watermark)",
        ];
        for (input, canonical) in cases(&table) {
            let t: TriggerSpec = input.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.to_string(), canonical);
            assert_eq!(parse_trigger(canonical), Ok(t));
        }
    }

    #[test]
    fn trigger_errors() {
        let table = [
            "count(x) => expected a positive integer at column 7",
            "count(0) => expected a positive integer at column 7",
            "count 3 => expected '(' at column 7",
            "count(3 => expected ')' at column 8",
            " => expected a trigger (watermark, count, processing, punctuation, repeat, all, \
             any, seq or until) at column 1",
            "  sometimes => expected a trigger (watermark, count, processing, punctuation, \
             repeat, all, any, seq or until) at column 3 (found \"sometimes\")",
            "count(1) count(2) => expected end of input at column 10",
            "all() => expected a trigger",
            "any(count(1) count(2)) => expected ',' or ')' at column 14",
            "until(count(1)) => expected ',' at column 15",
            "until(count(1), count(2), count(3)) => expected ')' at column 25",
            "repeat(count(1), count(2)) => expected ')' at column 16",
            "watermark(soon=count(1)) => expected early= or late= at column 11",
            "watermark(early=count(1), early=count(2)) => duplicate early= at column 27",
            "watermark(early count(1)) => expected '=' at column 17",
            "processing() => expected delay=, align= or offset= at column 12",
            "processing(delay=soon) => bad delay \"soon\" at column 18: expected a non-negative",
            "processing(align=0s) => align period must be positive at column 18",
            "processing(delay=1s, align=1s) => delay= cannot be combined with align=",
            "processing(offset=1s) => offset= needs align=",
            "processing(align=1s, align=2s) => duplicate align= at column 22",
        ];
        for (s, want) in cases(&table) {
            let e = err(parse_trigger(s));
            assert!(e.starts_with(&format!("--trigger {s:?}: {want}")), "{e}");
        }
    }
}
