//! Durable file writes: the one way rill writes a file that must survive a crash whole or
//! not at all (checkpoint shard files, manifests, at-most-once leases, a sink's committed
//! output).

use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably: into a temporary file beside it,
/// fsync, rename over `path`, fsync of the directory. After a crash `path` holds either
/// its previous content or `bytes`, never a mix. Creates missing parent directories.
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
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Makes a directory's entries (a file created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
