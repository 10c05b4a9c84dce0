//! CSV as the harness writes and reads it, on the `csv` crate: one record per line, `\n`
//! line ends, fields quoted only where they must be (a comma, a quote or a line break in
//! them), records of any length, and no header row unless the caller writes one. A line
//! whose fields need no quoting is exactly its fields joined by commas, so ordinary output
//! is the same bytes as a plain `join(",")`.
//!
//! ```
//! use rill_bench::csv_format::{fields, line_writer};
//!
//! let mut out = Vec::new();
//! let mut w = line_writer(&mut out);
//! w.write_record(["event", "a,b", "1"]).unwrap();
//! drop(w);
//! assert_eq!(out, b"event,\"a,b\",1\n");
//! assert_eq!(fields("event,\"a,b\",1"), Ok(vec!["event".into(), "a,b".into(), "1".into()]));
//! ```

use std::io;

/// A CSV writer with the harness's settings (see the module docs), for many records.
pub fn line_writer<W: io::Write>(out: W) -> csv::Writer<W> {
    builder().from_writer(out)
}

/// A CSV writer with the harness's settings for one record (or a few): its buffer is
/// small, where [`line_writer`]'s default of 8 KiB, zeroed when the writer is made, cost
/// a fifth of `generate --kafka`'s time when made once per event. Longer records are
/// written whole all the same (the writer flushes its buffer as it fills).
pub fn record_writer<W: io::Write>(out: W) -> csv::Writer<W> {
    builder().buffer_capacity(RECORD_BUFFER).from_writer(out)
}

/// [`record_writer`]'s buffer, in bytes: a NEXMark event's line is about 125.
const RECORD_BUFFER: usize = 256;

fn builder() -> csv::WriterBuilder {
    let mut b = csv::WriterBuilder::new();
    b.flexible(true)
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Necessary);
    b
}

/// Appends one record and its `\n` to `out`.
pub fn push_record<I, T>(out: &mut Vec<u8>, record: I)
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    // Writing into a Vec cannot fail.
    let _ = record_writer(out).write_record(record);
}

/// Appends one record of `fields` and its `\n` to `out`: the same bytes as
/// [`push_record`], without a csv writer where no field needs quoting (the record is then
/// its fields joined by commas: see the module docs).
pub fn push_fields(out: &mut Vec<u8>, fields: &[&[u8]]) {
    let start = out.len();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(field);
    }
    // Plain if no field holds a quote, a line break or a comma of its own (every comma
    // written is a separator). A record that would be an empty line (no field, or one
    // empty field) is left to the csv writer, which writes it so that it reads back.
    let line = &out[start..];
    let plain = !line.is_empty()
        && memchr::memchr3(b'"', b'\n', b'\r', line).is_none()
        && memchr::memchr_iter(b',', line).count() + 1 == fields.len();
    if plain {
        out.push(b'\n');
    } else {
        out.truncate(start);
        push_record(out, fields);
    }
}

/// Removes the line break (`\n`, `\r`) at the end of `line`: a record as one Kafka value.
pub fn trim_line_end(line: &mut Vec<u8>) {
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
}

/// One record as a line without its `\n`.
pub fn record_line<I, T>(record: I) -> String
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut out = Vec::new();
    push_record(&mut out, record);
    out.pop();
    // Every field came in as bytes of the caller's strings; quoting adds only ASCII.
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a line is not one CSV record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvLineError {
    /// The text holds more than one record (a line break outside quotes).
    #[error("more than one CSV record on the line")]
    SeveralRecords,
    /// The csv reader rejected the text.
    #[error("malformed CSV: {message}")]
    Malformed {
        /// The reader's message.
        message: String,
    },
}

/// The fields of one CSV line (a trailing `\n` or `\r\n` is allowed), unquoted. An empty
/// line is one empty field.
pub fn fields(line: &str) -> Result<Vec<String>, CsvLineError> {
    // Fast path, the same result: a line without quotes or inner line breaks is its
    // comma-separated parts (building a csv reader costs ~100x more than the split).
    let body = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    if !body.contains(['"', '\n', '\r']) {
        return Ok(body.split(',').map(str::to_owned).collect());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let malformed = |e: csv::Error| CsvLineError::Malformed {
        message: e.to_string(),
    };
    let mut record = csv::StringRecord::new();
    if !reader.read_record(&mut record).map_err(malformed)? {
        return Ok(vec![String::new()]);
    }
    let first: Vec<String> = record.iter().map(str::to_owned).collect();
    match reader.read_record(&mut record).map_err(malformed)? {
        true => Err(CsvLineError::SeveralRecords),
        false => Ok(first),
    }
}

/// An integer as the bytes of one field, formatted on the stack.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    /// `n` in decimal.
    #[inline]
    pub fn new(mut n: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start }
    }

    /// `n` in decimal, with a `-` if negative.
    #[inline]
    pub fn signed(n: i64) -> Self {
        let mut d = Decimal::new(n.unsigned_abs());
        if n < 0 {
            d.start -= 1;
            d.buf[d.start] = b'-';
        }
        d
    }
}

impl AsRef<[u8]> for Decimal {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `push_fields` writes what the csv writer writes, for fields with and without
        /// commas, quotes and line breaks, empty ones, and any count of them.
        #[test]
        fn push_fields_writes_what_the_csv_writer_writes(
            fields in proptest::collection::vec("[a-c]{0,3}|[a-c,\"\r\n]{0,3}", 0..6),
        ) {
            let fields: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
            let mut fast = b"before".to_vec();
            push_fields(&mut fast, &fields);
            let mut csv = b"before".to_vec();
            push_record(&mut csv, &fields);
            prop_assert_eq!(fast, csv);
        }
    }

    #[test]
    fn a_record_longer_than_the_record_writers_buffer_is_written_whole() {
        let long = format!(
            "{},\"{}",
            "x".repeat(3 * RECORD_BUFFER),
            "y".repeat(RECORD_BUFFER)
        );
        let mut out = Vec::new();
        push_record(&mut out, ["a", long.as_str(), "b"]);
        let line = std::str::from_utf8(&out).unwrap();
        assert!(line.ends_with('\n') && line.len() > 4 * RECORD_BUFFER);
        assert_eq!(
            fields(line.trim_end()),
            Ok(vec!["a".into(), long.clone(), "b".into()])
        );
        let mut many = Vec::new();
        line_writer(&mut many)
            .write_record(["a", long.as_str(), "b"])
            .unwrap();
        assert_eq!(many, out);
    }

    #[test]
    fn plain_fields_are_joined_quoted_ones_escaped() {
        let mut out = Vec::new();
        push_record(&mut out, ["a", "b c", "", "1"]);
        push_record(&mut out, ["x,y", "say \"hi\"", "two\nlines"]);
        push_record(&mut out, ["only"]);
        let want = "a,b c,,1\n\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\"\nonly\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!(record_line(["k", "1,5"]), "k,\"1,5\"");
    }

    #[test]
    fn fields_read_back_what_was_written() {
        let record = ["x,y", "say \"hi\"", "", " padded "];
        assert_eq!(fields(&record_line(record)).unwrap(), record);
        assert_eq!(fields("a,b\r\n").unwrap(), ["a", "b"]);
        assert_eq!(fields("").unwrap(), [""]);
        assert_eq!(fields("a\nb"), Err(CsvLineError::SeveralRecords));
    }

    #[test]
    fn decimals() {
        for n in [0, 1, 9, 10, 12345, u64::MAX] {
            assert_eq!(Decimal::new(n).as_ref(), n.to_string().as_bytes());
        }
        for n in [0, -1, 42, i64::MIN, i64::MAX] {
            assert_eq!(Decimal::signed(n).as_ref(), n.to_string().as_bytes());
        }
    }
}
