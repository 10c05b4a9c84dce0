//! Parsing and formatting for `rill-bench replay`: the input CSV, times, durations and the
//! window / trigger / accumulation / aggregate / watermark options, as plain data.
//!
//! Input rows, one per line, in arrival order (blank lines and `#` comments are skipped):
//! `event,<key>,<value>,<event_time>,<arrival_time>[,punct]`,
//! `watermark,<event_time>,<arrival_time>` and `advance,<arrival_time>`. Fields are CSV: a
//! key holding a comma or a quote is written in quotes (`"a,b"`, quotes inside doubled),
//! the opening quote right after the comma; whitespace around fields is ignored. Times are
//! integer milliseconds or `HH:MM:SS[.mmm]`; `-inf` / `+inf` stand for `i64::MIN` /
//! `i64::MAX`.

use std::fmt;
use std::str::FromStr;

use crate::csv_format::{self, record_line};
pub use crate::duration::format_millis as format_duration;
use crate::duration::parse_millis;

/// A time or a duration in milliseconds.
pub type Millis = i64;

const SECOND: Millis = 1_000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
/// Deepest trigger nesting accepted (guards the recursive-descent parser's stack).
const MAX_DEPTH: usize = 200;

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

/// One input row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Row {
    /// A keyed value with its event time.
    Event {
        /// The key (non-empty, no surrounding whitespace, no line breaks; quoted in the
        /// CSV when it holds a comma or a quote).
        key: String,
        /// The value.
        value: i64,
        /// Event time.
        event_time: Millis,
        /// Arrival (processing) time.
        arrival: Millis,
        /// Whether this is a punctuation record.
        punct: bool,
    },
    /// An explicit watermark.
    Watermark {
        /// The watermark's event time.
        event_time: Millis,
        /// Arrival (processing) time.
        arrival: Millis,
    },
    /// Processing time advances without data.
    Advance {
        /// Arrival (processing) time.
        arrival: Millis,
    },
}

impl Row {
    /// The row's arrival time.
    pub fn arrival(&self) -> Millis {
        match self {
            Row::Event { arrival, .. }
            | Row::Watermark { arrival, .. }
            | Row::Advance { arrival } => *arrival,
        }
    }
}

/// A parsed input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The rows with their 1-based line numbers, in arrival order.
    pub rows: Vec<(usize, Row)>,
    /// The time format the input used.
    pub format: TimeFormat,
}

const TIME_EXPECTED: &str = "expected integer milliseconds or HH:MM:SS[.mmm]";

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a time: integer ms, `[-]H+:MM:SS[.f{1,3}]` or `±inf`. Also says which form it was
/// (`None` for the infinities, which do not count for format detection).
fn parse_time(s: &str) -> Result<(Millis, Option<TimeFormat>), String> {
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

fn duration(s: &str) -> Result<Millis, String> {
    parse_millis(s).map_err(|e| e.to_string())
}

/// Parses a duration in the [shared grammar](crate::duration) (`500ms`, `10s`, `2m`,
/// `1h 30m`, or a bare integer: milliseconds); ≥ 0.
pub fn parse_duration(s: &str) -> Result<Millis, ParseError> {
    duration(s.trim()).map_err(|m| opt_err("duration", s, m))
}

/// An offset: a time (integer ms, `HH:MM:SS[.mmm]`, may be negative) or a duration,
/// optionally negated with a leading `-`.
fn offset(s: &str) -> Result<Millis, String> {
    if s.contains(':') {
        return parse_time(s).map(|(t, _)| t);
    }
    match s.strip_prefix('-') {
        Some(rest) => duration(rest).map(|d| -d),
        None => duration(s),
    }
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

fn parse_row(line: &str) -> Result<(Row, Vec<Option<TimeFormat>>), String> {
    let fields = csv_format::fields(line).map_err(|e| e.to_string())?;
    let fields: Vec<&str> = fields.iter().map(|f| f.trim()).collect();
    let mut formats = Vec::new();
    let mut time = |i: usize, what: &str| {
        let s = fields[i];
        let (t, f) = parse_time(s).map_err(|m| format!("bad {what} {s:?}: {m}"))?;
        formats.push(f);
        Ok::<_, String>(t)
    };
    let count_err = |kind: &str, expected: &str| {
        format!(
            "{kind} row has {} fields, expected {expected}",
            fields.len()
        )
    };
    let row = match fields[0] {
        "event" => {
            if !(5..=6).contains(&fields.len()) {
                return Err(count_err("event", "5 or 6"));
            }
            let key = fields[1];
            if key.is_empty() {
                return Err("empty key".into());
            }
            let value = fields[2]
                .parse()
                .map_err(|_| format!("bad value {:?}: expected a signed integer", fields[2]))?;
            let punct = match fields.get(5) {
                None => false,
                Some(&"punct") => true,
                Some(other) => return Err(format!("bad 6th field {other:?}: expected \"punct\"")),
            };
            Row::Event {
                key: key.to_string(),
                value,
                event_time: time(3, "event time")?,
                arrival: time(4, "arrival time")?,
                punct,
            }
        }
        "watermark" => {
            if fields.len() != 3 {
                return Err(count_err("watermark", "3"));
            }
            Row::Watermark {
                event_time: time(1, "event time")?,
                arrival: time(2, "arrival time")?,
            }
        }
        "advance" => {
            if fields.len() != 2 {
                return Err(count_err("advance", "2"));
            }
            Row::Advance {
                arrival: time(1, "arrival time")?,
            }
        }
        other => {
            return Err(format!(
                "unknown row kind {other:?}: expected event, watermark or advance"
            ))
        }
    };
    Ok((row, formats))
}

/// Parses the input CSV. Rows keep their 1-based line numbers; the detected format is
/// [`TimeFormat::ClockMillis`] if any time had a fractional part, else
/// [`TimeFormat::Clock`] if any used `HH:MM:SS`, else [`TimeFormat::Millis`].
pub fn parse_input(text: &str) -> Result<Input, ParseError> {
    let mut rows = Vec::new();
    let mut format = TimeFormat::Millis;
    let mut prev: Option<(usize, Millis)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (row, formats) =
            parse_row(trimmed).map_err(|message| ParseError::Line { line, message })?;
        let arrival = row.arrival();
        if let Some((prev_line, prev_arrival)) = prev {
            if arrival < prev_arrival {
                let message = format!(
                    "arrival time {} is earlier than the previous row's arrival time {} (line \
                     {prev_line}); arrival times must be non-decreasing",
                    format_time(arrival, TimeFormat::Millis),
                    format_time(prev_arrival, TimeFormat::Millis),
                );
                return Err(ParseError::Line { line, message });
            }
        }
        prev = Some((line, arrival));
        format = formats.into_iter().flatten().fold(format, TimeFormat::max);
        rows.push((line, row));
    }
    Ok(Input { rows, format })
}

/// Writes a row in the input CSV format (no trailing newline; a key holding a comma or a
/// quote is quoted); [`parse_input`] reads it back as the same row (keys must not have
/// surrounding whitespace or line breaks).
pub fn write_input_row(row: &Row, f: TimeFormat) -> String {
    let t = |t: Millis| format_time(t, f);
    match row {
        Row::Event {
            key,
            value,
            event_time,
            arrival,
            punct,
        } => {
            let fields = [&value.to_string(), &t(*event_time), &t(*arrival)];
            let punct = punct.then_some("punct");
            let fields = fields.into_iter().map(String::as_str);
            record_line(["event", key].into_iter().chain(fields).chain(punct))
        }
        Row::Watermark {
            event_time,
            arrival,
        } => record_line(["watermark", &t(*event_time), &t(*arrival)]),
        Row::Advance { arrival } => record_line(["advance", &t(*arrival)]),
    }
}

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

/// Defines a keyword option: the enum, its `parse_*` function and `Display`.
macro_rules! keyword_option {
    ($(#[$doc:meta])* $name:ident, $parse:ident, $opt:literal,
     { $($(#[$vdoc:meta])* $variant:ident = $kw:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        #[doc = concat!("Parses `", $opt, "`.")]
        pub fn $parse(s: &str) -> Result<$name, ParseError> {
            match s.trim() {
                $($kw => Ok($name::$variant),)+
                _ => Err(opt_err($opt, s, concat!("expected one of" $(, " ", $kw)+))),
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($name::$variant => $kw),+ })
            }
        }
    };
}

keyword_option!(
    /// `--accumulation`: how successive panes of a window relate.
    AccumulationSpec, parse_accumulation, "--accumulation", {
        /// Each pane holds only what arrived since the previous one.
        Discarding = "discarding",
        /// Each pane holds everything so far.
        Accumulating = "accumulating",
        /// Each pane holds everything so far and retracts the previous pane.
        Retracting = "retracting",
    }
);

keyword_option!(
    /// `--aggregate`: the per-window aggregation of the values.
    AggregateSpec, parse_aggregate, "--aggregate", {
        /// Sum of the values.
        Sum = "sum",
        /// Number of records.
        Count = "count",
        /// Smallest value.
        Min = "min",
        /// Largest value.
        Max = "max",
    }
);

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
mod tests {
    use super::*;
    use TimeFormat::{Clock, ClockMillis, Millis as Ms};

    /// Splits table cases written as `"input => expected"`.
    fn cases<'a>(table: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        table
            .iter()
            .map(|c| c.split_once(" => ").expect("case has ' => '"))
            .collect()
    }

    fn err(r: Result<impl fmt::Debug, ParseError>) -> String {
        r.map(|v| panic!("expected an error, got {v:?}"))
            .unwrap_err()
            .to_string()
    }

    fn rows(text: &str) -> Vec<String> {
        let rows = parse_input(text).unwrap_or_else(|e| panic!("{e}")).rows;
        rows.iter()
            .map(|(l, r)| format!("{l}:{}", write_input_row(r, Ms)))
            .collect()
    }

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

    #[test]
    fn every_row_kind() {
        let text = "# log\n\n  event , a b ,-5, 10 ,20\nevent,k,7,-3,20, punct \n\
                    watermark,15,30\r\n   # indented comment\nadvance,40\n";
        let want = ["3:event,a b,-5,10,20", "4:event,k,7,-3,20,punct"];
        assert_eq!(
            rows(text),
            [&want[..], &["5:watermark,15,30", "7:advance,40"]].concat()
        );
        assert_eq!(
            rows("event,k,1,00:00:01.5,00:00:02"),
            ["1:event,k,1,1500,2000"]
        );
        let want = ["1:watermark,-inf,-1000", "2:advance,+inf"];
        assert_eq!(rows("watermark,-inf,-00:00:01\nadvance,+inf"), want);
        assert!(rows("").is_empty() && rows("\n# only comments\n").is_empty());
    }

    #[test]
    fn quoted_keys_hold_commas_and_quotes() {
        let text = "event,\"a,b\",1,2,3\nevent,\"say \"\"hi\"\"\" ,4,5,6\n";
        let keys: Vec<String> = parse_input(text)
            .unwrap()
            .rows
            .into_iter()
            .map(|(_, row)| match row {
                Row::Event { key, .. } => key,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, ["a,b", "say \"hi\""]);
        assert_eq!(
            rows(text),
            ["1:event,\"a,b\",1,2,3", "2:event,\"say \"\"hi\"\"\",4,5,6"]
        );
    }

    #[test]
    fn format_detection() {
        let format = |text: &str| parse_input(text).unwrap().format;
        assert_eq!(format(""), Ms);
        assert_eq!(format("advance,-5\nwatermark,1,2"), Ms);
        assert_eq!(format("advance,00:00:01\nadvance,2000"), Clock);
        assert_eq!(
            format("advance,5\nwatermark,00:00:01.5,00:00:02"),
            ClockMillis
        );
        assert_eq!(
            format("advance,00:00:01.000\nadvance,00:00:02"),
            ClockMillis
        );
        assert_eq!(format("advance,-inf\nadvance,+inf"), Ms);
    }

    #[test]
    fn row_errors_carry_line_numbers() {
        let table = [
            "advance,1\n\nevent,k,x,1,2 => line 3: bad value \"x\": expected a signed integer",
            "flush,1 => line 1: unknown row kind \"flush\": expected event, watermark or advance",
            "# c\nevent,k,1,2 => line 2: event row has 4 fields, expected 5 or 6",
            "event,k,1,2,3,punct,x => line 1: event row has 7 fields, expected 5 or 6",
            "watermark,1 => line 1: watermark row has 2 fields, expected 3",
            "advance,1,2 => line 1: advance row has 3 fields, expected 2",
            "event,k,1,2,3,late => line 1: bad 6th field \"late\": expected \"punct\"",
            "event, ,1,2,3 => line 1: empty key",
            "advance,1\nwatermark,1:00,5 => line 2: bad event time \"1:00\": expected integer",
            "event,k,1,2,x => line 1: bad arrival time \"x\": expected integer milliseconds",
            "advance,00:61:00 => line 1: bad arrival time \"00:61:00\": minutes and seconds",
        ];
        for (text, want) in cases(&table) {
            let e = err(parse_input(text));
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn decreasing_arrival_is_an_error() {
        let e = err(parse_input(
            "advance,1000\n# gap\nevent,k,1,5,1000\nwatermark,0,900",
        ));
        let want = "line 4: arrival time 900 is earlier than the previous row's arrival time 1000 \
                    (line 3); arrival times must be non-decreasing";
        assert_eq!(e, want);
    }

    #[test]
    fn write_input_row_round_trips() {
        let event = |key: &str, value, event_time, arrival, punct| {
            let key = key.to_string();
            Row::Event {
                key,
                value,
                event_time,
                arrival,
                punct,
            }
        };
        let rows = [
            event("user-1", -42, 1005, 2000, false),
            event("k", i64::MAX, -8000, 3000, true),
            Row::Watermark {
                event_time: i64::MAX,
                arrival: 3000,
            },
            Row::Advance { arrival: HOUR },
        ];
        let line = write_input_row(&rows[1], Clock);
        assert_eq!(line, "event,k,9223372036854775807,-00:00:08,00:00:03,punct");
        assert_eq!(write_input_row(&rows[2], Ms), "watermark,+inf,3000");
        for f in [Ms, Clock, ClockMillis] {
            let text: Vec<String> = rows.iter().map(|r| write_input_row(r, f)).collect();
            let back = parse_input(&text.join("\n")).unwrap().rows;
            assert_eq!(back.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), rows);
        }
    }

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

    #[test]
    fn simple_options() {
        assert_eq!("retracting".parse(), Ok(AccumulationSpec::Retracting));
        assert_eq!(
            parse_accumulation(" discarding"),
            Ok(AccumulationSpec::Discarding)
        );
        assert_eq!("max".parse(), Ok(AggregateSpec::Max));
        assert_eq!(AggregateSpec::Count.to_string(), "count");
        assert_eq!("perfect".parse(), Ok(WatermarkSpec::Perfect));
        assert_eq!("bounded:2s".parse(), Ok(WatermarkSpec::Bounded(2000)));
        assert_eq!(WatermarkSpec::Bounded(1500).to_string(), "bounded:1500ms");
        let e = err("avg".parse::<AggregateSpec>());
        assert_eq!(e, "--aggregate \"avg\": expected one of sum count min max");
        assert!(err("bounded:-1s".parse::<WatermarkSpec>()).contains("must not be negative"));
        assert!("sometimes".parse::<AccumulationSpec>().is_err());
    }

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
