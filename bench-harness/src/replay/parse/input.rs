//! The input log: its rows, read from and written as CSV.

use super::time::{format_time, parse_time, TimeFormat};
use super::{Millis, ParseError};
use crate::csv_format::{self, record_line};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parse::testing::{cases, err};
    use crate::replay::parse::time::HOUR;
    use TimeFormat::{Clock, ClockMillis, Millis as Ms};

    fn rows(text: &str) -> Vec<String> {
        let rows = parse_input(text).unwrap_or_else(|e| panic!("{e}")).rows;
        rows.iter()
            .map(|(l, r)| format!("{l}:{}", write_input_row(r, Ms)))
            .collect()
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
}
