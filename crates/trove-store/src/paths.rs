//! The on-disk layout and small filesystem helpers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use trove_fingerprint::{from_hex, hex};

use crate::StoreError;

/// The name of the versioned directory under the store root; this code never touches
/// other `vN` directories.
pub const FORMAT_DIR: &str = "v1";

/// The prefix of in-flight blob files.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// The directory under `blobs/` where streamed objects are written before they are
/// hashed and renamed into their shard. It is walked like a shard, so its `.tmp-` files
/// are recognised as temp files (by older troves too) and nothing else in it is a blob.
pub(crate) const TEMP_DIR: &str = "tmp";

pub(crate) const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by trove.\n\
# For information about cache directory tags, see:\n\
#\thttps://bford.info/cachedir/\n";

/// The store's own `.gitignore`: everything in the directory, itself included, is
/// ignored (as pytest's cache does), so a store inside a repository never shows in
/// `git status`.
pub(crate) const GITIGNORE: &str =
    "# Created by trove automatically: the store is a cache, not source.\n*\n";

/// Writes `dir/name` with `content` unless it exists. Written under a unique name and
/// renamed, so a concurrent reader never sees a half-written file.
fn write_if_missing(dir: &Path, name: &str, content: &str) -> Result<(), StoreError> {
    let path = dir.join(name);
    if path.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.trim_start_matches('.'),
        std::process::id(),
        next_counter()
    ));
    fs::write(&tmp, content).map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        StoreError::io(&path, e)
    })
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process-wide counter for unique temp names.
pub(crate) fn next_counter() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Parses 64 lowercase hex digits (the only spelling the store writes: a name in any
/// other is not one of its files).
pub(crate) fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    from_hex(s)?.try_into().ok()
}

/// Every path of the store, derived from its root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) index: PathBuf,
    /// The index's write-ahead log, `index.sqlite-wal`.
    pub(crate) wal: PathBuf,
    pub(crate) blobs: PathBuf,
    /// `blobs/tmp`: streamed objects in flight.
    pub(crate) temps: PathBuf,
    pub(crate) locks: PathBuf,
    pub(crate) quarantine: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        let dir = root.join(FORMAT_DIR);
        Layout {
            root: root.to_owned(),
            index: dir.join("index.sqlite"),
            wal: dir.join("index.sqlite-wal"),
            blobs: dir.join("blobs"),
            temps: dir.join("blobs").join(TEMP_DIR),
            locks: dir.join("locks"),
            quarantine: dir.join("quarantine"),
            dir,
        }
    }

    /// Creates the directories, the cache directory tag and the `.gitignore` that keeps
    /// the store out of git. A missing tag or `.gitignore` is written again on every open
    /// (stores made before the `.gitignore` get one); an existing one is left as it is, so
    /// a user who empties the `.gitignore` to commit the store keeps that choice.
    pub(crate) fn create(&self) -> Result<(), StoreError> {
        for d in [
            &self.root,
            &self.dir,
            &self.blobs,
            &self.locks,
            &self.quarantine,
        ] {
            fs::create_dir_all(d).map_err(|e| StoreError::io(d, e))?;
        }
        write_if_missing(&self.root, "CACHEDIR.TAG", CACHEDIR_TAG)?;
        write_if_missing(&self.root, ".gitignore", GITIGNORE)?;
        Ok(())
    }

    pub(crate) fn blob_path(&self, hash: &[u8; 32]) -> PathBuf {
        let h = hex(hash);
        self.blobs.join(&h[..2]).join(h)
    }

    pub(crate) fn lock_path(&self, key: &[u8; 32]) -> PathBuf {
        let h = hex(key);
        self.locks.join(&h[..2]).join(format!("{h}.lock"))
    }
}

/// What a file in `blobs/` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobFile {
    /// A published blob named by its blake3.
    Final([u8; 32]),
    /// An in-flight (or abandoned) temp file.
    Temp,
    /// Anything else.
    Stray,
}

/// Lists every file under `blobs/<shard>/`, classified by name only (no `stat`).
pub(crate) fn walk_blobs(blobs: &Path) -> Result<Vec<(PathBuf, BlobFile)>, StoreError> {
    let mut out = Vec::new();
    let shards = match fs::read_dir(blobs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io(blobs, e)),
    };
    for shard in shards {
        let shard = shard.map_err(|e| StoreError::io(blobs, e))?;
        let shard_path = shard.path();
        let is_dir = shard.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir {
            out.push((shard_path, BlobFile::Stray));
            continue;
        }
        let shard_name = shard.file_name().to_string_lossy().into_owned();
        let entries = match fs::read_dir(&shard_path) {
            Ok(rd) => rd,
            // The shard may have been removed by another process in the meantime.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&shard_path, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&shard_path, e))?;
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = if name.starts_with(TEMP_PREFIX) {
                BlobFile::Temp
            } else {
                match parse_hex32(&name) {
                    Some(hash) if name[..2] == shard_name => BlobFile::Final(hash),
                    _ => BlobFile::Stray,
                }
            };
            out.push((entry.path(), kind));
        }
    }
    Ok(out)
}

/// Fsyncs a directory so that a rename into it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let d = fs::File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    d.sync_all().map_err(|source| StoreError::Sync {
        path: dir.to_owned(),
        source,
    })
}

/// Removes a file, treating "already gone" as success. Returns whether it removed it.
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}
