//! A replayable source of lines from a file.
//!
//! The file is one split, read by one shard (shard 0 on a fresh start); its position in
//! checkpoints is the byte offset of the next line, so a restored job seeks there and
//! reads every line after it exactly once more. Each line (without its line break) goes
//! through `parse`; a line that does not parse is never fatal: it is counted and sent, with
//! its offset and the parser's message, to the bad-lines stream. Empty lines are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rill_runtime::checkpoint::SplitPosition;
use rill_runtime::{
    Data, Dataflow, Failure, OpResult, Operator, OperatorState, Output, Source, SourceOutput,
    SourceStatus, Stream,
};

/// A line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Byte offset of the line in the file.
    pub offset: u64,
    /// The line.
    pub line: String,
    /// Why it did not parse.
    pub error: String,
}

/// What the source emits before the split into good records and bad lines.
#[derive(Debug, Clone)]
pub enum Line<T> {
    /// A parsed record.
    Record(T),
    /// A line that did not parse.
    Bad(BadLine),
}

type ParseFn<T> = Arc<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// One shard's instance of the file source.
pub struct FileLines<T> {
    path: PathBuf,
    parse: ParseFn<T>,
    reader: Option<BufReader<File>>,
    /// Offset of the next line.
    offset: u64,
    /// Whether this instance reads the file (owns split 0).
    owns: bool,
    bad: Arc<AtomicU64>,
    line: String,
}

impl<T> std::fmt::Debug for FileLines<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLines")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("owns", &self.owns)
            .field("open", &self.reader.is_some())
            .field("bad", &self.bad.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> FileLines<T> {
    fn open(&mut self) -> Result<&mut BufReader<File>, Failure> {
        if self.reader.is_none() {
            let fail = |e: std::io::Error| Failure::new(format!("{}: {e}", self.path.display()));
            let file = File::open(&self.path).map_err(fail)?;
            let len = file.metadata().map_err(fail)?.len();
            if self.offset > len {
                return Err(Failure::new(format!(
                    "{}: the checkpoint's offset {} lies past the end of the file ({len} \
                     bytes): the file changed",
                    self.path.display(),
                    self.offset
                )));
            }
            let mut reader = BufReader::new(file);
            if self.offset > 0 {
                // A lease (at-most-once) need not fall on a line start: go to the next one.
                reader
                    .seek(SeekFrom::Start(self.offset - 1))
                    .map_err(fail)?;
                let mut skipped = Vec::new();
                let n = reader.read_until(b'\n', &mut skipped).map_err(fail)?;
                self.offset += n as u64 - 1;
            }
            self.reader = Some(reader);
        }
        Ok(self.reader.as_mut().expect("opened above"))
    }
}

impl<T: Data> Source<Line<T>> for FileLines<T> {
    fn poll(
        &mut self,
        out: &mut SourceOutput<Line<T>>,
        max: usize,
    ) -> Result<SourceStatus, Failure> {
        if !self.owns {
            return Ok(SourceStatus::Done);
        }
        let path = self.path.clone();
        for _ in 0..max {
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            let reader = self.open()?;
            let n = reader
                .read_line(&mut line)
                .map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
            if n == 0 {
                return Ok(SourceStatus::Done);
            }
            let offset = self.offset;
            self.offset += n as u64;
            let text = line.trim_end_matches(['\n', '\r']);
            if !text.is_empty() {
                match (self.parse)(text) {
                    Ok(record) => out.give(Line::Record(record)),
                    Err(error) => {
                        self.bad.fetch_add(1, Ordering::Relaxed);
                        out.give(Line::Bad(BadLine {
                            offset,
                            line: text.to_string(),
                            error,
                        }));
                    }
                }
            }
            self.line = line;
        }
        Ok(SourceStatus::Emitted)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(if self.owns {
            vec![SplitPosition {
                split: 0,
                of: 1,
                position: self.offset,
            }]
        } else {
            Vec::new()
        })
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        self.owns = false;
        for p in splits {
            if p.split != 0 || p.of != 1 {
                return Err(Failure::new(format!(
                    "a file source has one split, not split {} of {}",
                    p.split, p.of
                )));
            }
            self.owns = true;
            self.offset = p.position;
        }
        self.reader = None;
        Ok(())
    }

    fn lease_ahead(&self) -> u64 {
        64 << 20
    }
}

/// Splits parsed records from bad lines.
struct SplitLines;

impl<T: Data> Operator<Line<T>> for SplitLines {
    type Out = (Output<T>, Output<BadLine>);
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<Line<T>>, out: &mut Self::Out) -> OpResult {
        for line in batch.drain(..) {
            match line {
                Line::Record(r) => out.0.give(r),
                Line::Bad(b) => out.1.give(b),
            }
        }
        Ok(())
    }
}

/// The streams of a file source.
pub struct FileSource<T> {
    /// The parsed records.
    pub records: Stream<T>,
    /// Lines that did not parse.
    pub bad_lines: Stream<BadLine>,
    /// How many lines did not parse (over all runs of this process).
    pub bad_count: Arc<AtomicU64>,
}

impl<T> std::fmt::Debug for FileSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("records", &self.records)
            .field("bad_lines", &self.bad_lines)
            .field("bad_count", &self.bad_count.load(Ordering::Relaxed))
            .finish()
    }
}

/// Reads `path` line by line, parsing each with `parse` (see the module docs); a parse
/// error's message is kept with the bad line.
///
/// ```
/// # use rill_operators::doc_support::run_on_two_shards;
/// use rill_operators::file_source::file_source;
///
/// let path = std::env::temp_dir().join(format!("rill-doc-source-{}.txt", std::process::id()));
/// std::fs::write(&path, "1\n2\n\nthree\n4\n").unwrap();
/// let (records, bad) = run_on_two_shards(|df| {
///     let parse = |l: &str| l.parse::<i64>(); // any error that displays
///     let lines = file_source(df, "numbers", &path, parse);
///     (lines.records.collect("records"), lines.bad_lines.collect("bad"))
/// });
/// let mut got = records.take();
/// got.sort();
/// assert_eq!(got, [1, 2, 4]); // the empty line is skipped
/// let bad = bad.take();
/// assert_eq!((bad[0].offset, bad[0].line.as_str()), (5, "three"));
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn file_source<T, E, F>(
    df: &mut Dataflow,
    name: &str,
    path: impl Into<PathBuf>,
    parse: F,
) -> FileSource<T>
where
    T: Data,
    E: std::fmt::Display,
    F: Fn(&str) -> Result<T, E> + Send + Sync + 'static,
{
    let path = path.into();
    let parse: ParseFn<T> = Arc::new(move |line| parse(line).map_err(|e| e.to_string()));
    let bad = Arc::new(AtomicU64::new(0));
    let counter = bad.clone();
    let lines = df.source(name, move |shard| FileLines {
        path: path.clone(),
        parse: parse.clone(),
        reader: None,
        offset: 0,
        owns: shard.index == 0,
        bad: counter.clone(),
        line: String::new(),
    });
    let (records, bad_lines) = lines.unary_split(&format!("{name} (parse)"), |_| SplitLines);
    FileSource {
        records,
        bad_lines,
        bad_count: bad,
    }
}
