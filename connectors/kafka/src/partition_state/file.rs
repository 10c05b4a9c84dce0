//! Partition-state files: one file per (topic, partition, offset), holding the state of a
//! partition after every record before that offset, in a directory every process of the
//! job can read.
//!
//! Layout: `<dir>/<source name>/<topic>/<partition>/<offset, 20 digits>.state`, so that a
//! partition's files sort by offset. A file is written with `rill_runtime::fs::write_atomic`
//! (a temporary file of a name no other writer uses, fsync, rename into place, fsync of the
//! directory), so a reader sees a whole file or none. Its content:
//!
//! ```text
//! magic "RILLPST\0" | format u32 | crc32 u32 of what follows |
//! state version u32 | offset i64 | partition i32 | topic length u32 | topic |
//! state length u64 | state (an rkyv archive, as rill writes state)
//! ```
//!
//! (integers little-endian). A file whose magic, format, checksum or header does not
//! match is an error naming the file, never state read wrongly.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rill_runtime::rkyv::ser::allocator::Arena;
use rill_runtime::{BatchBytes, ExchangeData};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"RILLPST\0";
/// The file format this build writes and reads.
pub(crate) const FORMAT: u32 = 1;
const SUFFIX: &str = ".state";

/// The partition-state files of one source.
#[derive(Debug, Clone)]
pub(crate) struct StateFiles {
    root: PathBuf,
    /// The user's state version, written into every file and checked on reading.
    version: u32,
}

/// A name made safe for a path component.
fn component(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    match safe.as_str() {
        "" | "." | ".." => format!("_{safe}"),
        _ => safe,
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::StateIo {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl StateFiles {
    /// The files of source `source` under `dir`.
    pub(crate) fn new(dir: &Path, source: &str, version: u32) -> Self {
        StateFiles {
            root: dir.join(component(source)),
            version,
        }
    }

    /// The directory of the source's files.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one partition's files.
    pub(crate) fn dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root.join(component(topic)).join(partition.to_string())
    }

    /// The file of `topic`/`partition` at `offset`.
    pub(crate) fn path(&self, topic: &str, partition: i32, offset: i64) -> PathBuf {
        self.dir(topic, partition)
            .join(format!("{:020}{SUFFIX}", offset.max(0)))
    }

    /// The offsets of the partition's files.
    pub(crate) fn list(&self, topic: &str, partition: i32) -> Result<BTreeSet<i64>> {
        let dir = self.dir(topic, partition);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        let mut offsets = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(io("list", &dir))?;
            let name = entry.file_name();
            let Some(offset) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            offsets.insert(offset);
        }
        Ok(offsets)
    }

    /// Writes `state` as the partition's state at `offset`, atomically and durably;
    /// `arena` is scratch space for the serializer.
    pub(crate) fn write<S: ExchangeData>(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        state: &S,
        arena: &mut Arena,
    ) -> Result<PathBuf> {
        let path = self.path(topic, partition, offset);
        let payload = S::write_batch(
            std::slice::from_ref(state),
            BatchBytes::new(),
            arena.acquire(),
        )
        .map_err(|e| Error::CorruptState {
            path: path.clone(),
            reason: format!("the state does not serialize: {e}"),
        })?;
        let bytes = self.encode(topic, partition, offset, &payload);
        rill_runtime::fs::write_atomic(&path, &bytes).map_err(io("write", &path))?;
        Ok(path)
    }

    fn encode(&self, topic: &str, partition: i32, offset: i64, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(32 + topic.len() + payload.len());
        body.extend_from_slice(&self.version.to_le_bytes());
        body.extend_from_slice(&offset.to_le_bytes());
        body.extend_from_slice(&partition.to_le_bytes());
        body.extend_from_slice(&(topic.len() as u32).to_le_bytes());
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        body.extend_from_slice(payload);
        let mut bytes = Vec::with_capacity(16 + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Reads the partition's state at `offset`: `None` if there is no such file.
    pub(crate) fn read<S: ExchangeData>(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<S>> {
        let path = self.path(topic, partition, offset);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let corrupt = |reason: String| Error::CorruptState {
            path: path.clone(),
            reason,
        };
        let payload = self
            .decode(&bytes, topic, partition, offset)
            .map_err(corrupt)?;
        let mut aligned = BatchBytes::new();
        aligned.extend_from_slice(payload);
        let mut states: Vec<S> = Vec::with_capacity(1);
        S::read_batch(&aligned, &mut states).map_err(|e| {
            corrupt(format!(
                "the state does not match the job's state type (a different job, or a changed \
                 type without a new state version?): {e}"
            ))
        })?;
        match (states.pop(), states.is_empty()) {
            (Some(s), true) => Ok(Some(s)),
            _ => Err(corrupt("the file does not hold exactly one state".into())),
        }
    }

    /// Checks the file's framing and header; the state's bytes.
    fn decode<'a>(
        &self,
        bytes: &'a [u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> std::result::Result<&'a [u8], String> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err("not a rill partition-state file (no magic number)".into());
        }
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let format = u32_at(bytes, 8);
        if format != FORMAT {
            return Err(format!(
                "written in file format {format}, this build reads format {FORMAT}"
            ));
        }
        let body = &bytes[16..];
        let (stored, actual) = (u32_at(bytes, 12), crc32fast::hash(body));
        if stored != actual {
            return Err(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the file is \
                 corrupt or truncated"
            ));
        }
        let short = || "the file is shorter than its header says".to_string();
        if body.len() < 20 {
            return Err(short());
        }
        let version = u32_at(body, 0);
        let file_offset = i64::from_le_bytes(body[4..12].try_into().unwrap());
        let file_partition = i32::from_le_bytes(body[12..16].try_into().unwrap());
        let topic_len = u32_at(body, 16) as usize;
        let rest = &body[20..];
        if rest.len() < topic_len + 8 {
            return Err(short());
        }
        let file_topic = String::from_utf8_lossy(&rest[..topic_len]);
        if file_topic != topic || file_partition != partition || file_offset != offset {
            return Err(format!(
                "holds the state of {file_topic}/{file_partition} at offset {file_offset}, not \
                 of {topic}/{partition} at offset {offset}"
            ));
        }
        if version != self.version {
            return Err(format!(
                "written with state version {version}, the job reads state version {}",
                self.version
            ));
        }
        let rest = &rest[topic_len..];
        let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
        let payload = &rest[8..];
        if payload.len() != len {
            return Err(format!(
                "the state is {} bytes, its header says {len}",
                payload.len()
            ));
        }
        Ok(payload)
    }

    /// Removes the partition's file at `offset` (gone already: fine).
    pub(crate) fn remove(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let path = self.path(topic, partition, offset);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }
}

/// The files of a partition that retention removes: all but the newest `retain`, and of
/// those only the ones below the offset the group acknowledged as committed (`committed`)
/// when offsets are committed to a group (`commits`): a member that takes the partition
/// over starts there.
pub(crate) fn expired(
    files: &BTreeSet<i64>,
    retain: usize,
    commits: bool,
    committed: Option<i64>,
) -> Vec<i64> {
    let old = files.len().saturating_sub(retain.max(1));
    files
        .iter()
        .take(old)
        .copied()
        .filter(|&o| !commits || committed.is_some_and(|c| o < c))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rill-kafka-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    type Counts = BTreeMap<String, u64>;

    #[test]
    fn a_state_round_trips_through_its_file() {
        let dir = scratch("round-trip");
        let files = StateFiles::new(&dir, "my source", 3);
        let mut arena = Arena::new();
        let state: Counts = [("a".to_string(), 7), ("b".to_string(), 1)].into();
        let path = files.write("clicks", 2, 1234, &state, &mut arena).unwrap();
        assert_eq!(
            path,
            dir.join("my_source/clicks/2/00000000000000001234.state")
        );
        assert_eq!(
            files.read::<Counts>("clicks", 2, 1234).unwrap(),
            Some(state)
        );
        assert_eq!(files.read::<Counts>("clicks", 2, 1235).unwrap(), None);
        assert_eq!(files.list("clicks", 2).unwrap(), [1234].into());
        assert!(files.list("clicks", 3).unwrap().is_empty());
        // Only the file is left: the temporary one was renamed.
        let names: Vec<_> = fs::read_dir(files.dir("clicks", 2)).unwrap().collect();
        assert_eq!(names.len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_a_clear_error() {
        let dir = scratch("corrupt");
        let files = StateFiles::new(&dir, "s", 1);
        let mut arena = Arena::new();
        let path = files.write("t", 0, 10, &7u64, &mut arena).unwrap();
        let good = fs::read(&path).unwrap();
        let error = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            files.read::<u64>("t", 0, 10).unwrap_err().to_string()
        };
        // A flipped bit in the state.
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let e = error(&flipped);
        assert!(
            e.contains("checksum mismatch") && e.contains("00000000000000000010.state"),
            "{e}"
        );
        // Truncated.
        let e = error(&good[..good.len() - 3]);
        assert!(e.contains("checksum mismatch"), "{e}");
        // Not ours.
        let e = error(b"hello, world, this is a text file");
        assert!(e.contains("not a rill partition-state file"), "{e}");
        // A later format.
        let mut later = good.clone();
        later[8..12].copy_from_slice(&2u32.to_le_bytes());
        let e = error(&later);
        assert!(e.contains("file format 2"), "{e}");
        // Another partition's file under this name.
        fs::write(&path, &good).unwrap();
        let other = files.path("t", 1, 10);
        fs::create_dir_all(other.parent().unwrap()).unwrap();
        fs::copy(&path, &other).unwrap();
        let e = files.read::<u64>("t", 1, 10).unwrap_err().to_string();
        assert!(e.contains("not of t/1 at offset 10"), "{e}");
        // Another state version.
        let e = StateFiles::new(&dir, "s", 2)
            .read::<u64>("t", 0, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("state version 1"), "{e}");
        // (Another state type under the same version is not always detectable: rkyv may
        // validate it as a different value. That is what the state version is for.)
        assert_eq!(files.read::<u64>("t", 0, 10).unwrap(), Some(7));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn retention_keeps_the_newest_files_and_those_at_or_above_the_committed_offset() {
        let files: BTreeSet<i64> = [0, 10, 20, 30, 40, 50].into();
        // No group: the newest `retain`.
        assert_eq!(expired(&files, 2, false, None), [0, 10, 20, 30]);
        // A group: nothing before it acknowledged a commit.
        assert!(expired(&files, 2, true, None).is_empty());
        // Only below the committed offset, and never the newest `retain`.
        assert_eq!(expired(&files, 2, true, Some(30)), [0, 10, 20]);
        assert_eq!(expired(&files, 2, true, Some(60)), [0, 10, 20, 30]);
        assert_eq!(expired(&files, 9, true, Some(60)), Vec::<i64>::new());

        let dir = scratch("retention");
        let state = StateFiles::new(&dir, "s", 1);
        let mut arena = Arena::new();
        for &o in &files {
            state.write("t", 0, o, &(o as u64), &mut arena).unwrap();
        }
        for o in expired(&files, 2, true, Some(30)) {
            state.remove("t", 0, o).unwrap();
        }
        state.remove("t", 0, 0).unwrap(); // already gone: fine
        assert_eq!(state.list("t", 0).unwrap(), [30, 40, 50].into());
        let _ = fs::remove_dir_all(&dir);
    }
}
