//! Checkpoint files: per-shard state files, manifests, leases, and finding the latest
//! complete checkpoint.
//!
//! Layout of a checkpoint directory:
//!
//! ```text
//! DIR/chk-000042/shard-000.bin   one per shard: header + rkyv archive of its state
//! DIR/chk-000042/MANIFEST        written last (tmp, fsync, rename): the checkpoint is complete
//! DIR/damaged/chk-000043/        a checkpoint the latest recovery skipped, with SKIPPED (why)
//! DIR/leases/shard-000.bin       at-most-once only: source positions to resume after
//! ```
//!
//! A shard file starts with a 24-byte header: the magic `RILLCKP1`, the payload length
//! (u64 LE), the payload's CRC-32 (u32 LE) and the format version (u32 LE). Reading
//! validates the length and checksum, then the rkyv archive, before anything is used. State
//! in a shard file is found by operator id (see `GraphDesc::operator_ids`: a uid, or the
//! operator's name), not by the operator's position in the graph.
//!
//! A manifest or shard file of another format version is refused with a clear error, not
//! skipped like a damaged one: an older build's checkpoints are not silently passed over.

use std::fs;
use std::path::{Path, PathBuf};

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::scope::EntryScope;
use super::Guarantee;
use crate::error::Error;
use crate::fs::write_atomic;

const MAGIC: &[u8; 8] = b"RILLCKP1";
const HEADER: usize = 24;
pub(crate) const MANIFEST: &str = "MANIFEST";
/// The checkpoint format this build writes and reads: the manifest's first line says
/// `rill checkpoint v2`, and every shard file's header carries the number.
pub(crate) const FORMAT_VERSION: u32 = 3;
const MANIFEST_PREFIX: &str = "rill checkpoint v";

/// One shard's part of a checkpoint.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Default)]
pub(crate) struct ShardFile {
    pub checkpoint: u64,
    pub shard: u32,
    pub shards: u32,
    pub nodes: Vec<NodeState>,
}

/// The entries one operator wrote, under its operator id.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Default)]
pub(crate) struct NodeState {
    pub operator: String,
    pub entries: Vec<StateEntry>,
}

/// One piece of state, part of the operator's named state `name` written at `version` (see
/// [`StateWriter::section`](super::StateWriter::section)). The file holds its
/// [`EntryScope`] as `split` and `scope` (a key group or a split, `u32::MAX` for all): code
/// writes it through [`StateEntry::new`] and reads it with [`EntryScope::from_parts`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone)]
pub(crate) struct StateEntry {
    pub name: String,
    pub version: u32,
    pub split: bool,
    pub scope: u32,
    /// A keyed state table's changes (or, in a full checkpoint, all of it): recovery
    /// applies these from every checkpoint of a chain in order; other entries are read
    /// from the newest checkpoint only.
    pub changelog: bool,
    pub bytes: Vec<u8>,
}

impl StateEntry {
    /// An entry of section `name` at `version`, restored by the shards `scope` says.
    pub(crate) fn new(
        name: String,
        version: u32,
        scope: EntryScope,
        changelog: bool,
        bytes: Vec<u8>,
    ) -> Self {
        let (split, scope) = scope.to_parts();
        StateEntry {
            name,
            version,
            split,
            scope,
            changelog,
            bytes,
        }
    }
}

/// Serializes a shard file with its header.
pub(crate) fn encode(file: &ShardFile) -> Result<Vec<u8>, rancor::Error> {
    let mut out = Vec::new();
    encode_into(file, &mut Encoder::default(), &mut out)?;
    Ok(out)
}

/// Buffers the coordinator thread reuses from one shard file to the next (large buffers
/// allocated and freed each time would be mapped and unmapped, which stops every thread
/// of the process for a moment).
#[derive(Default)]
pub(crate) struct Encoder {
    payload: AlignedVec<16>,
}

/// Serializes a shard file with its header into `out` (cleared first).
pub(crate) fn encode_into(
    file: &ShardFile,
    encoder: &mut Encoder,
    out: &mut Vec<u8>,
) -> Result<(), rancor::Error> {
    let mut payload = std::mem::take(&mut encoder.payload);
    payload.clear();
    let payload = rkyv::api::high::to_bytes_in::<_, rancor::Error>(file, payload)?;
    out.clear();
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&payload);
    encoder.payload = payload;
    Ok(())
}

/// Checks a shard file's header, checksum and archive; returns the aligned payload.
pub(crate) fn decode(bytes: &[u8]) -> Result<AlignedVec<16>, String> {
    if bytes.len() < HEADER {
        return Err(format!(
            "truncated: {} bytes, shorter than the header",
            bytes.len()
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err("not a rill checkpoint file (bad magic)".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let version = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads version {FORMAT_VERSION}"
        ));
    }
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return Err(format!(
            "truncated or padded: payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch (corrupt)".into());
    }
    let mut aligned = AlignedVec::<16>::with_capacity(len);
    aligned.extend_from_slice(payload);
    rkyv::access::<ArchivedShardFile, rancor::Error>(&aligned)
        .map_err(|e| format!("invalid archive: {e}"))?;
    Ok(aligned)
}

/// Accesses a payload [`decode`] already validated.
pub(crate) fn archived(payload: &AlignedVec<16>) -> &ArchivedShardFile {
    // Validated again (cheap next to reading the file), so that no unchecked access is
    // needed.
    rkyv::access::<ArchivedShardFile, rancor::Error>(payload)
        .expect("payload validated when it was read")
}

/// What a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub id: u64,
    pub shards: usize,
    pub guarantee: Guarantee,
    /// True for the manifest written when the job completed: nothing is left to run.
    pub finished: bool,
    /// The full checkpoint this one's chain starts at (`id` itself for a full one): an
    /// incremental checkpoint needs every checkpoint from `base` to `id`.
    pub base: u64,
    pub nodes: Vec<String>,
    /// (file name, length, CRC-32 of the whole file)
    pub files: Vec<(String, u64, u32)>,
}

impl Manifest {
    fn render(&self) -> String {
        let mut s = format!(
            "{MANIFEST_PREFIX}{FORMAT_VERSION}\nid {}\nshards {}\nguarantee {}\nfinished {}\nbase {}\n",
            self.id, self.shards, self.guarantee, self.finished, self.base
        );
        for (i, name) in self.nodes.iter().enumerate() {
            s.push_str(&format!("node {i} {}\n", name.replace('\n', " ")));
        }
        for (name, len, crc) in &self.files {
            s.push_str(&format!("file {name} {len} {crc:08x}\n"));
        }
        let crc = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("crc {crc:08x}\n"));
        s
    }

    fn parse(text: &str) -> Result<Manifest, LoadError> {
        let body_end = text.rfind("crc ").ok_or("no checksum line (truncated?)")?;
        let (body, tail) = text.split_at(body_end);
        let want = u32::from_str_radix(tail.trim_start_matches("crc ").trim(), 16)
            .map_err(|_| "bad checksum line")?;
        if crc32fast::hash(body.as_bytes()) != want {
            return Err("checksum mismatch (corrupt)".into());
        }
        let mut lines = body.lines();
        let head = lines.next().unwrap_or("");
        match head.strip_prefix(MANIFEST_PREFIX).map(str::parse::<u32>) {
            Some(Ok(FORMAT_VERSION)) => {}
            Some(Ok(other)) => return Err(LoadError::Version(other)),
            _ => return Err(format!("not a rill manifest (first line '{head}')").into()),
        }
        let mut m = Manifest {
            id: 0,
            shards: 0,
            guarantee: Guarantee::ExactlyOnce,
            finished: false,
            base: u64::MAX,
            nodes: Vec::new(),
            files: Vec::new(),
        };
        for line in lines {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let bad = || format!("bad line '{line}'");
            match key {
                "id" => m.id = rest.parse().map_err(|_| bad())?,
                "shards" => m.shards = rest.parse().map_err(|_| bad())?,
                "guarantee" => {
                    m.guarantee = rest
                        .parse()
                        .map_err(|e: super::UnknownGuarantee| e.to_string())?
                }
                "finished" => m.finished = rest == "true",
                "base" => m.base = rest.parse().map_err(|_| bad())?,
                "node" => {
                    let (_, name) = rest.split_once(' ').unwrap_or((rest, ""));
                    m.nodes.push(name.to_string());
                }
                "file" => {
                    let mut parts = rest.split(' ');
                    let name = parts.next().ok_or_else(bad)?.to_string();
                    let len = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                    let crc = parts
                        .next()
                        .and_then(|p| u32::from_str_radix(p, 16).ok())
                        .ok_or_else(bad)?;
                    m.files.push((name, len, crc));
                }
                _ => return Err(bad().into()),
            }
        }
        if m.base > m.id {
            return Err(format!("base {} is missing or after the checkpoint", m.base).into());
        }
        if m.shards == 0 || (!m.finished && m.files.len() != m.shards) {
            return Err(format!(
                "lists {} shard files for {} shards",
                m.files.len(),
                m.shards
            )
            .into());
        }
        Ok(m)
    }
}

/// The directory of checkpoint `id`.
pub(crate) fn checkpoint_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("chk-{id:06}"))
}

/// The name of shard `shard`'s file.
pub(crate) fn shard_file_name(shard: usize) -> String {
    format!("shard-{shard:03}.bin")
}

/// Writes checkpoint `m.id`'s manifest, making it complete.
pub(crate) fn write_manifest(root: &Path, m: &Manifest) -> std::io::Result<()> {
    let dir = checkpoint_dir(root, m.id);
    write_atomic(&dir.join(MANIFEST), m.render().as_bytes())
}

/// The ids of every `chk-*` directory under `root`, ascending.
fn checkpoint_ids(root: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("chk-")?
                .parse::<u64>()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// A complete checkpoint read back and validated.
#[derive(Debug)]
pub(crate) struct LoadedCheckpoint {
    pub manifest: Manifest,
    /// One validated payload per shard of the run that wrote it, for every checkpoint of
    /// its chain, oldest (the base) first.
    pub files: Vec<AlignedVec<16>>,
}

/// What a job directory holds: the checkpoint to restore from, and any checkpoint that
/// was skipped because it is corrupt or incomplete (with the reason).
#[derive(Debug)]
pub struct Recovery {
    pub(crate) loaded: Option<LoadedCheckpoint>,
    /// Checkpoints that could not be used, newest first: `(directory, reason)`.
    pub skipped: Vec<(PathBuf, String)>,
    /// The newest complete checkpoint, if it was written in another format version:
    /// `(directory, version)`. Recovery stops there rather than pass over it.
    pub other_version: Option<(PathBuf, u32)>,
}

impl Recovery {
    /// The id of the checkpoint restored from, if any.
    pub fn checkpoint(&self) -> Option<u64> {
        self.loaded.as_ref().map(|l| l.manifest.id)
    }

    /// True if the checkpoint found is the one written when the job completed.
    pub fn finished(&self) -> bool {
        self.loaded.as_ref().is_some_and(|l| l.manifest.finished)
    }

    /// The shard count of the run that wrote the checkpoint.
    pub fn shards(&self) -> Option<usize> {
        self.loaded.as_ref().map(|l| l.manifest.shards)
    }
}

/// Why a checkpoint cannot be loaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// Damaged or incomplete: recovery falls back to an older checkpoint.
    Damaged(String),
    /// Written in another format version: recovery stops with an error.
    Version(u32),
}

impl From<String> for LoadError {
    fn from(reason: String) -> Self {
        LoadError::Damaged(reason)
    }
}

impl From<&str> for LoadError {
    fn from(reason: &str) -> Self {
        LoadError::Damaged(reason.to_string())
    }
}

fn load(root: &Path, id: u64) -> Result<Option<LoadedCheckpoint>, LoadError> {
    let dir = checkpoint_dir(root, id);
    let text = match fs::read(dir.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read its manifest: {e}").into()),
    };
    let text = String::from_utf8(text).map_err(|_| "manifest is not UTF-8 (corrupt)")?;
    let manifest = match Manifest::parse(&text) {
        Ok(m) => m,
        Err(LoadError::Damaged(e)) => return Err(format!("manifest: {e}").into()),
        Err(version) => return Err(version),
    };
    if manifest.id != id {
        return Err(format!(
            "manifest names checkpoint {} but lies in chk-{id:06}",
            manifest.id
        )
        .into());
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    for (name, len, crc) in &manifest.files {
        let bytes = fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        if bytes.len() as u64 != *len {
            return Err(format!(
                "{name}: {} bytes, the manifest says {len} (truncated?)",
                bytes.len()
            )
            .into());
        }
        if crc32fast::hash(&bytes) != *crc {
            return Err(format!("{name}: checksum mismatch (corrupt)").into());
        }
        let payload = decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
        let f = archived(&payload);
        if f.checkpoint.to_native() != id {
            return Err(format!("{name}: belongs to checkpoint {}", f.checkpoint).into());
        }
        files.push(payload);
    }
    Ok(Some(LoadedCheckpoint { manifest, files }))
}

/// Loads checkpoint `id` and, if it is incremental, every checkpoint of its chain (base
/// first). A missing or damaged link damages the whole chain.
fn load_chain(root: &Path, id: u64) -> Result<Option<LoadedCheckpoint>, LoadError> {
    let Some(top) = load(root, id)? else {
        return Ok(None);
    };
    let base = top.manifest.base;
    let mut files = Vec::new();
    for link in base..id {
        let in_chain = |reason: String| {
            LoadError::Damaged(format!(
                "its chain (from checkpoint {base}) needs chk-{link:06}: {reason}"
            ))
        };
        match load(root, link) {
            Ok(Some(l)) if !l.manifest.finished && l.manifest.shards == top.manifest.shards => {
                files.extend(l.files)
            }
            Ok(Some(_)) => return Err(in_chain("it is of another run".into())),
            Ok(None) => return Err(in_chain("missing or incomplete".into())),
            Err(LoadError::Damaged(reason)) => return Err(in_chain(reason)),
            Err(version) => return Err(version),
        }
    }
    files.extend(top.files);
    Ok(Some(LoadedCheckpoint {
        manifest: top.manifest,
        files,
    }))
}

/// Finds the latest complete, valid checkpoint under `root` (which need not exist): one
/// whose files, and the files of every checkpoint of its incremental chain, are intact.
pub fn find_latest(root: &Path) -> Recovery {
    let mut skipped = Vec::new();
    for id in checkpoint_ids(root).into_iter().rev() {
        match load_chain(root, id) {
            Ok(Some(loaded)) => {
                return Recovery {
                    loaded: Some(loaded),
                    skipped,
                    other_version: None,
                }
            }
            // No manifest: a checkpoint in progress when the job stopped; not an error.
            Ok(None) => {}
            Err(LoadError::Damaged(reason)) => skipped.push((checkpoint_dir(root, id), reason)),
            Err(LoadError::Version(version)) => {
                return Recovery {
                    loaded: None,
                    skipped,
                    other_version: Some((checkpoint_dir(root, id), version)),
                }
            }
        }
    }
    Recovery {
        loaded: None,
        skipped,
        other_version: None,
    }
}

/// Keeps the `retain` newest complete checkpoints up to `latest`, every checkpoint their
/// incremental chains need, and the fallback ([`fallback`]); deletes older checkpoint
/// directories, and incomplete ones older than `latest`.
pub(crate) fn prune(root: &Path, latest: u64, retain: usize) {
    let ids = checkpoint_ids(root);
    let complete: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&id| id <= latest && checkpoint_dir(root, id).join(MANIFEST).exists())
        .collect();
    let retained = &complete[complete.len().saturating_sub(retain.max(1))..];
    // A manifest that cannot be read keeps everything from its own id (it is not used,
    // but nothing a readable one needs is lost).
    let base = |id: u64| read_manifest(root, id).map_or(id, |m| m.base);
    let oldest_kept = retained.iter().map(|&id| base(id)).min().unwrap_or(latest);
    let fallback = complete
        .last()
        .and_then(|&newest| fallback(root, &complete, base(newest)));
    for id in ids {
        let complete = complete.binary_search(&id).is_ok();
        if Some(id) != fallback && (id < oldest_kept || (!complete && id < latest)) {
            let _ = fs::remove_dir_all(checkpoint_dir(root, id));
        }
    }
}

/// The fallback of a newest chain that starts at `newest_base`: the newest of the complete
/// checkpoints `complete` (ascending) that is self-contained (full: its chain is itself
/// alone) and older than `newest_base`, so that it shares no file with that chain. Recovery
/// reaches it when a damaged file leaves every newer checkpoint unusable.
fn fallback(root: &Path, complete: &[u64], newest_base: u64) -> Option<u64> {
    complete
        .iter()
        .rev()
        .copied()
        .filter(|&id| id < newest_base)
        .find(|&id| read_manifest(root, id).is_some_and(|m| m.base == m.id && !m.finished))
}

/// Checkpoint `id`'s manifest, if it can be read and is valid.
fn read_manifest(root: &Path, id: u64) -> Option<Manifest> {
    let text = fs::read_to_string(checkpoint_dir(root, id).join(MANIFEST)).ok()?;
    Manifest::parse(&text).ok()
}

/// Removes every checkpoint directory newer than `id` (left by a run that stopped in the
/// middle of a checkpoint, or unusable ones): the next run reuses their ids.
pub(crate) fn remove_after(root: &Path, id: u64) {
    for other in checkpoint_ids(root) {
        if other > id {
            let _ = fs::remove_dir_all(checkpoint_dir(root, other));
        }
    }
}

/// Where recovery keeps the checkpoints it skipped: `root/damaged`.
pub(crate) fn damaged_dir(root: &Path) -> PathBuf {
    root.join("damaged")
}

/// Moves the checkpoints recovery skipped (`(directory, reason)`, all newer than the one it
/// restores) into [`damaged_dir`], each with a file `SKIPPED` that says why, instead of
/// leaving [`remove_after`] to delete them (the next run reuses their ids): whoever looks
/// into the failure finds the damaged files there. What an earlier recovery left there is
/// deleted first, so that it holds one recovery's. Returns where each now lies (its old
/// place if it could not be moved; it is then deleted with the others).
pub(crate) fn set_aside(root: &Path, skipped: &[(PathBuf, String)]) -> Vec<(PathBuf, String)> {
    if skipped.is_empty() {
        return Vec::new();
    }
    let aside = damaged_dir(root);
    let _ = fs::remove_dir_all(&aside);
    let _ = fs::create_dir_all(&aside);
    skipped
        .iter()
        .map(|(dir, reason)| {
            let moved = dir.file_name().map(|name| aside.join(name));
            match moved {
                Some(to) if fs::rename(dir, &to).is_ok() => {
                    let _ = fs::write(to.join("SKIPPED"), format!("{reason}\n"));
                    (to, reason.clone())
                }
                _ => (dir.clone(), reason.clone()),
            }
        })
        .collect()
}

/// The at-most-once lease file of the source `node` on `shard`.
pub(crate) fn lease_path(root: &Path, shard: usize, node: usize) -> PathBuf {
    root.join("leases")
        .join(format!("shard-{shard:03}-node-{node:03}.bin"))
}

/// Reads every lease file (at-most-once): the run number of the previous run and the
/// validated files. A corrupt lease is an error (resuming without it could duplicate).
pub(crate) fn load_leases(root: &Path) -> Result<(u64, Vec<AlignedVec<16>>), Error> {
    let dir = root.join("leases");
    let mut files = Vec::new();
    let mut run = 0;
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    names.sort();
    for path in names {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(source) => {
                return Err(Error::CheckpointIo {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        let payload = match decode(&bytes) {
            Ok(p) => p,
            Err(problem) => return Err(Error::CheckpointCorrupt { path, problem }),
        };
        run = run.max(archived(&payload).checkpoint.to_native());
        files.push(payload);
    }
    Ok((run, files))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
