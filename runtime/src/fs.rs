//! Durable file writes: the one way rill writes a file that must survive a crash whole or
//! not at all (checkpoint shard files, manifests, at-most-once leases), and the one way a
//! sink commits files it wrote before (renames made durable).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers the temporary files of [`write_atomic`] within this process.
static TEMP: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically and durably: into a temporary file beside it,
/// fsync, rename over `path`, fsync of the directory. After a crash `path` holds either
/// its previous content or `bytes`, never a mix. Creates missing parent directories. The
/// temporary file's name is this call's own (process id and a counter), so writers of one
/// path in several threads or processes (a directory shared by processes) do not write
/// into each other's; it is removed if the write fails.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("rill-doc-fs-{}", std::process::id()));
/// let path = dir.join("state.bin");
/// rill_runtime::fs::write_atomic(&path, b"v1").unwrap();
/// rill_runtime::fs::write_atomic(&path, b"v2").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"v2");
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Makes a directory's entries (a file created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// A file operation that failed, with what was being done and where.
#[derive(Debug, thiserror::Error)]
#[error("could not {action} {}: {source}", path.display())]
pub struct FsError {
    /// What was being done (`rename`, `sync`).
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

/// Commits files that were written and synced before: renames each `(from, to)`, then
/// fsyncs each target directory once, so that after a crash every rename either happened
/// or did not (a two-phase-commit sink's commit).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("rill-doc-commit-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("part-1.pending"), b"rows").unwrap();
/// rill_runtime::fs::commit_renames(&[(dir.join("part-1.pending"), dir.join("part-1"))]).unwrap();
/// assert_eq!(std::fs::read(dir.join("part-1")).unwrap(), b"rows");
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn commit_renames(renames: &[(PathBuf, PathBuf)]) -> Result<(), FsError> {
    let mut dirs: Vec<&Path> = Vec::new();
    for (from, to) in renames {
        fs::rename(from, to).map_err(|source| FsError {
            action: "rename",
            path: from.clone(),
            source,
        })?;
        let dir = to.parent().unwrap_or(Path::new("."));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        sync_dir(dir).map_err(|source| FsError {
            action: "sync",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}
