//! A transactional file sink: end-to-end exactly-once output with two-phase commit.
//!
//! Every shard writes its rows into one file per *epoch* (the rows between two checkpoint
//! barriers). Files in the output directory:
//!
//! ```text
//! OUT/part-<epoch:06>-<shard:03>.csv            committed: final, never changes again
//! OUT/.part-<epoch:06>-<shard:03>.csv.pending   pre-committed or in progress (hidden)
//! ```
//!
//! Each file starts with the header line, if one is given. Rows of epoch `e` go to the
//! pending file; when barrier `e` arrives the file is flushed and fsynced
//! (**pre-commit**); when checkpoint `e` is complete it is renamed to its final name
//! (**commit**). After a crash, [`PartFiles::before_start`] commits the pending files of
//! epochs up to the restored checkpoint (their checkpoint completed, the rename may not
//! have happened) and deletes the rest (**abort**): the restored job produces them again.
//! At the end of the job the last epoch is committed after the final manifest.
//!
//! - Exactly-once: the committed files hold every row once.
//! - At-least-once: the same protocol; rows can repeat because the state itself may have
//!   counted records twice.
//! - At-most-once: rows go straight to `part-<run>-<shard>.csv` (no pending files); a
//!   crash loses what was buffered.
//! - Without checkpoints: rows go straight to `part-000001-<shard>.csv`.
//!
//! Files written to epochs *after* the restored checkpoint are deleted at restart even if
//! committed: that happens only when the newest checkpoint was unusable (corrupt) and an
//! older one is restored; its replay writes those rows again.
//!
//! **Writing an idempotent sink instead.** A sink whose writes are keyed (an upsert by
//! primary key, a file named by its content's window) can write at once: a replay after
//! recovery rewrites the same keys with the same values, so the end state is exactly-once
//! without two-phase commit, though readers may see values that are later rewritten.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rill_runtime::checkpoint::{self, Guarantee, HookError, JobHook};
use rill_runtime::{Data, Failure, OpResult, ShardContext, Sink, Stream};

/// Rows buffered in memory before they are written to the epoch's file.
const FLUSH_BYTES: usize = 1 << 20;

/// The name of a committed part file.
///
/// ```
/// assert_eq!(rill_operators::file_sink::part_name(3, 1), "part-000003-001.csv");
/// ```
pub fn part_name(epoch: u64, shard: usize) -> String {
    format!("part-{epoch:06}-{shard:03}.csv")
}

fn pending_name(epoch: u64, shard: usize) -> String {
    format!(".{}.pending", part_name(epoch, shard))
}

/// Parses `part-E-S.csv` or `.part-E-S.csv.pending` into (epoch, shard, pending).
fn parse_name(name: &str) -> Option<(u64, usize, bool)> {
    let (body, pending) = match name.strip_prefix('.') {
        Some(rest) => (rest.strip_suffix(".pending")?, true),
        None => (name, false),
    };
    let body = body.strip_prefix("part-")?.strip_suffix(".csv")?;
    let (epoch, shard) = body.split_once('-')?;
    Some((epoch.parse().ok()?, shard.parse().ok()?, pending))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::caused_by(format!("{what} {}", path.display()), e)
}

/// The job-level side of the sink: resolves transactions left by an earlier run and
/// commits the last epoch at the end. [`write_part_files`] registers it (see its example);
/// a sink built on [`PartWriter`] registers it with `Stream::on_job`.
#[derive(Debug)]
pub struct PartFiles {
    dir: PathBuf,
}

impl PartFiles {
    /// The part files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PartFiles { dir: dir.into() }
    }

    /// Every part file: (epoch, shard, pending, path).
    fn list(&self) -> Result<Vec<(u64, usize, bool, PathBuf)>, Failure> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some((epoch, shard, pending)) = name.to_str().and_then(parse_name) {
                out.push((epoch, shard, pending, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Commits every pending file of an epoch up to `last`.
    pub fn commit_upto(&self, last: u64) -> Result<(), Failure> {
        let renames: Vec<(PathBuf, PathBuf)> = self
            .list()?
            .into_iter()
            .filter(|(epoch, _, pending, _)| *pending && *epoch <= last)
            .map(|(epoch, shard, _, path)| (path, self.dir.join(part_name(epoch, shard))))
            .collect();
        commit(&renames)
    }
}

/// Renames pending files to their final names, durably (see
/// [`rill_runtime::fs::commit_renames`]).
fn commit(renames: &[(PathBuf, PathBuf)]) -> Result<(), Failure> {
    rill_runtime::fs::commit_renames(renames).map_err(|e| Failure::caused_by("cannot commit", e))
}

impl JobHook for PartFiles {
    fn before_start(&self, restored: Option<u64>, _guarantee: Guarantee) -> Result<(), HookError> {
        fs::create_dir_all(&self.dir).map_err(|e| io_error("cannot create", &self.dir, e))?;
        let upto = restored.unwrap_or(0);
        self.commit_upto(upto)?;
        for (epoch, _, _, path) in self.list()? {
            if epoch > upto {
                fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, e))?;
            }
        }
        Ok(())
    }

    fn after_finish(&self, last: u64) -> Result<(), HookError> {
        Ok(self.commit_upto(last)?)
    }
}

#[derive(Debug)]
enum Mode {
    /// Two-phase commit per checkpoint epoch.
    Transactional,
    /// Straight to the final file name.
    Direct,
}

/// One shard's writer of part files, for sinks that format their own rows (see
/// [`FileSink`] for the common case, and [`write_part_files`] for how a sink is built on
/// it and registered together with [`PartFiles`]).
pub struct PartWriter {
    dir: PathBuf,
    shard: usize,
    header: Option<String>,
    mode: Mode,
    epoch: u64,
    buffer: Vec<u8>,
    file: Option<(File, PathBuf)>,
    /// Pre-committed epochs waiting for their checkpoint.
    pending: Vec<u64>,
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("dir", &self.dir)
            .field("shard", &self.shard)
            .field("header", &self.header)
            .field("mode", &self.mode)
            .field("epoch", &self.epoch)
            .field("buffered_bytes", &self.buffer.len())
            .field("file", &self.file.as_ref().map(|(_, path)| path))
            .field("pending", &self.pending)
            .finish()
    }
}

impl PartWriter {
    /// The writer of the shard `ctx` describes, in `dir`; call from the sink's factory with
    /// the context it receives (the job's checkpoint settings decide the mode).
    pub fn new(ctx: &ShardContext, dir: impl Into<PathBuf>, header: Option<String>) -> Self {
        let shard = ctx.index;
        let (mode, epoch) = match ctx.checkpoint() {
            Some(cx) if cx.guarantee == Guarantee::AtMostOnce => (Mode::Direct, cx.first_epoch),
            Some(cx) => (Mode::Transactional, cx.first_epoch),
            None => (Mode::Direct, 1),
        };
        PartWriter {
            dir: dir.into(),
            shard,
            header,
            mode,
            epoch,
            buffer: Vec::with_capacity(FLUSH_BYTES + 4096),
            file: None,
            pending: Vec::new(),
        }
    }

    /// Where rows are appended (whole lines); call [`PartWriter::written`] afterwards.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    /// Writes the buffer out once it is large.
    pub fn written(&mut self) -> OpResult {
        if self.buffer.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> OpResult {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let name = match self.mode {
                Mode::Transactional => pending_name(self.epoch, self.shard),
                Mode::Direct => part_name(self.epoch, self.shard),
            };
            let path = self.dir.join(name);
            fs::create_dir_all(&self.dir).map_err(|e| io_error("cannot create", &self.dir, e))?;
            let mut f = File::create(&path).map_err(|e| io_error("cannot create", &path, e))?;
            if let Some(h) = &self.header {
                writeln!(f, "{h}").map_err(|e| io_error("cannot write", &path, e))?;
            }
            self.file = Some((f, path));
        }
        let (f, path) = self.file.as_mut().expect("opened above");
        f.write_all(&self.buffer)
            .map_err(|e| io_error("cannot write", path, e))?;
        self.buffer.clear();
        Ok(())
    }

    /// Closes the epoch's file, durable (fsync).
    fn close(&mut self) -> OpResult {
        self.flush()?;
        if let Some((f, path)) = self.file.take() {
            f.sync_data()
                .map_err(|e| io_error("cannot sync", &path, e))?;
        }
        Ok(())
    }

    /// Barrier `checkpoint`: pre-commits the current epoch.
    pub fn pre_commit(&mut self, checkpoint: u64) -> OpResult {
        if let Mode::Transactional = self.mode {
            let had_file = self.file.is_some() || !self.buffer.is_empty();
            self.close()?;
            if had_file {
                self.pending.push(self.epoch);
            }
            self.epoch = checkpoint + 1;
        }
        Ok(())
    }

    /// Checkpoint `checkpoint` completed: commits the pre-committed epochs up to it.
    pub fn commit(&mut self, checkpoint: u64) -> OpResult {
        let due = self
            .pending
            .iter()
            .take_while(|&&e| e <= checkpoint)
            .count();
        let renames: Vec<(PathBuf, PathBuf)> = self
            .pending
            .drain(..due)
            .map(|epoch| {
                let from = self.dir.join(pending_name(epoch, self.shard));
                (from, self.dir.join(part_name(epoch, self.shard)))
            })
            .collect();
        commit(&renames)
    }

    /// The input ended: writes and syncs what is buffered (committed at the end of the
    /// job, or by the next checkpoint).
    pub fn end(&mut self) -> OpResult {
        self.close()
    }
}

/// A sink that formats each record as one line into transactional part files; made by
/// [`write_part_files`] (see its example).
pub struct FileSink<T, F> {
    writer: PartWriter,
    format: Arc<F>,
    _records: std::marker::PhantomData<fn(T)>,
}

impl<T, F> std::fmt::Debug for FileSink<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl<T, F: Fn(&T, &mut Vec<u8>)> Sink<T> for FileSink<T, F> {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        for r in batch.drain(..) {
            (self.format)(&r, self.writer.buffer());
        }
        self.writer.written()
    }
    fn on_end(&mut self) -> OpResult {
        self.writer.end()
    }
    fn snapshot(&mut self, checkpoint: u64, _state: &mut checkpoint::StateWriter) -> OpResult {
        self.writer.pre_commit(checkpoint)
    }
    fn on_checkpoint_complete(&mut self, checkpoint: u64) -> OpResult {
        self.writer.commit(checkpoint)
    }
}

/// Writes `stream` into part files in `dir` (see the module docs), one line per record as
/// `format` appends it (with its line break), each file starting with `header`.
///
/// ```
/// # use rill_operators::doc_support::run_on_two_shards;
/// use std::io::Write;
/// use rill_operators::file_sink::write_part_files;
///
/// let dir = std::env::temp_dir().join(format!("rill-doc-sink-{}", std::process::id()));
/// run_on_two_shards(|df| {
///     let rows = df.vec_source("rows", vec![(1u32, 10i64), (2, 20), (3, 30)]);
///     write_part_files(&rows, "csv", &dir, Some("id,value"), |r: &(u32, i64), out: &mut Vec<u8>| {
///         writeln!(out, "{},{}", r.0, r.1).unwrap();
///     });
/// });
/// // Without checkpoints every shard writes one committed file: part-000001-<shard>.csv.
/// let mut lines = Vec::new();
/// for entry in std::fs::read_dir(&dir).unwrap() {
///     let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
///     lines.extend(text.lines().skip(1).map(String::from)); // skip the header
/// }
/// lines.sort();
/// assert_eq!(lines, ["1,10", "2,20", "3,30"]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn write_part_files<T, F>(
    stream: &Stream<T>,
    name: &str,
    dir: impl Into<PathBuf>,
    header: Option<&str>,
    format: F,
) where
    T: Data,
    F: Fn(&T, &mut Vec<u8>) + Send + Sync + 'static,
{
    let dir = dir.into();
    stream.on_job(Arc::new(PartFiles::new(dir.clone())));
    let header = header.map(str::to_string);
    let format = Arc::new(format);
    stream.sink(name, move |shard| FileSink {
        writer: PartWriter::new(shard, dir.clone(), header.clone()),
        format: format.clone(),
        _records: std::marker::PhantomData,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&part_name(12, 3)), Some((12, 3, false)));
        assert_eq!(parse_name(&pending_name(7, 0)), Some((7, 0, true)));
        assert_eq!(parse_name("part-x-1.csv"), None);
        assert_eq!(parse_name("notes.txt"), None);
    }

    #[test]
    fn restart_commits_up_to_the_restored_checkpoint_and_aborts_the_rest() {
        let dir = std::env::temp_dir().join(format!("rill-parts-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (name, body) in [
            (part_name(1, 0), "a\n"),
            (pending_name(2, 0), "b\n"),
            (pending_name(2, 1), "c\n"),
            (pending_name(3, 0), "d\n"),
            (part_name(4, 1), "e\n"),
        ] {
            fs::write(dir.join(name), body).unwrap();
        }
        let files = PartFiles::new(&dir);
        files.before_start(Some(2), Guarantee::ExactlyOnce).unwrap();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![part_name(1, 0), part_name(2, 0), part_name(2, 1)]
        );
        // A fresh start removes every part file.
        files.before_start(None, Guarantee::ExactlyOnce).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
