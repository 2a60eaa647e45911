//! Content-addressed blob files: hashing, atomic publish, verified reads, quarantine.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::faults::fail_point;
use crate::paths::{self, BlobFile, Layout, TEMP_PREFIX, hex, unix_ms};
use crate::{BlobId, StoreError};

/// Above this size hashing is spread over rayon's threads. Below it, waking the pool costs
/// more than a second core gains (2 cores: a 1 MiB disk hit took 260 us with 128 KiB here,
/// 159 us with 4 MiB; see BENCHMARKS.md).
const RAYON_THRESHOLD: usize = 1024 * 1024;

/// How many times a publish is retried when its temp file vanished under it (a concurrent
/// cleanup can take the temp file for dead in the instant between its creation and lock).
const PUBLISH_ATTEMPTS: usize = 3;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process-wide counter for unique temp names.
pub(crate) fn next_counter() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// blake3 of `bytes`, multi-threaded for large inputs.
pub(crate) fn hash_bytes(bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if bytes.len() > RAYON_THRESHOLD {
        h.update_rayon(bytes);
    } else {
        h.update(bytes);
    }
    *h.finalize().as_bytes()
}

/// blake3 and length of a file, read through a memory map for large files.
pub(crate) fn hash_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok((*h.finalize().as_bytes(), h.count()))
}

/// Writes `bytes` under `final_path` atomically: a locked temp file in the same
/// directory, fsync, rename, fsync of the directory.
pub(crate) fn publish(final_path: &Path, hash: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
    let dir = final_path
        .parent()
        .expect("a blob path always has a shard directory");
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match publish_once(dir, final_path, hash, bytes) {
            Err(Retry::Vanished(e)) if attempt < PUBLISH_ATTEMPTS => {
                tracing::debug!(error = %e, "temp blob file vanished before rename; retrying");
            }
            Err(Retry::Vanished(e)) | Err(Retry::Fatal(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
}

enum Retry {
    Vanished(StoreError),
    Fatal(StoreError),
}

fn publish_once(dir: &Path, final_path: &Path, hash: &[u8; 32], bytes: &[u8]) -> Result<(), Retry> {
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}-{}",
        hex(hash),
        std::process::id(),
        next_counter()
    ));
    fail_point!("store::blob-create", |e| Err(Retry::Fatal(StoreError::io(
        &tmp, e
    ))));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Retry::Fatal(StoreError::io(&tmp, e)))?;
    // The lock marks the temp file as owned by a live writer; the kernel drops it if this
    // process dies, which is how cleanup tells abandoned temp files apart.
    let fail = |e: StoreError| {
        let _ = fs::remove_file(&tmp);
        Retry::Fatal(e)
    };
    file.lock().map_err(|e| fail(StoreError::io(&tmp, e)))?;
    fail_point!("store::blob-write", |e| Err(fail(StoreError::io(&tmp, e))));
    write_content(&mut file, bytes).map_err(|e| fail(StoreError::io(&tmp, e)))?;
    // Never fsync twice: after a failed fsync the page cache may be clean but the data lost.
    fail_point!("store::blob-fsync", |source| Err(fail(StoreError::Sync {
        path: tmp.clone(),
        source,
    })));
    file.sync_all().map_err(|source| {
        fail(StoreError::Sync {
            path: tmp.clone(),
            source,
        })
    })?;
    fail_point!("store::blob-rename", |e| Err(fail(StoreError::io(
        final_path, e
    ))));
    match fs::rename(&tmp, final_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Retry::Vanished(StoreError::io(&tmp, e)));
        }
        Err(e) => return Err(fail(StoreError::io(final_path, e))),
    }
    fail_point!("store::blob-dir-fsync", |source| Err(Retry::Fatal(
        StoreError::Sync {
            path: dir.to_owned(),
            source,
        }
    )));
    paths::sync_dir(dir).map_err(Retry::Fatal)?;
    drop(file);
    Ok(())
}

/// Writes a blob's content to its temp file. With fail points compiled in, the content is
/// written in two halves with the point `store::blob-write-partial` between them, so a
/// test can stop the process with half a blob on disk.
fn write_content(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    let bytes = {
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        file.write_all(first)?;
        fail_point!("store::blob-write-partial", Err);
        rest
    };
    file.write_all(bytes)
}

/// Reads and verifies a blob: length, then blake3, before anything is returned.
pub(crate) fn read_verified(layout: &Layout, id: &BlobId) -> Result<Vec<u8>, StoreError> {
    let path = layout.blob_path(&id.hash);
    let hash_hex = hex(&id.hash);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::MissingBlob { hash_hex });
        }
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let meta = file.metadata().map_err(|e| StoreError::io(&path, e))?;
    let corrupt = |reason: String| {
        quarantine_file(layout, &path, &hash_hex, Some(&meta));
        StoreError::CorruptBlob {
            hash_hex: hash_hex.clone(),
            reason,
        }
    };
    if meta.len() != id.len {
        // A blob whose content still matches its name is intact and may serve other
        // records: the record that disagrees with it is what is wrong, and the blob stays.
        if matches!(hash_file(&path), Ok((h, _)) if h == id.hash) {
            return Err(StoreError::RecordMismatch {
                hash_hex,
                reason: format!("it says {} bytes, the blob has {}", id.len, meta.len()),
            });
        }
        return Err(corrupt(format!(
            "file is {} bytes, expected {}",
            meta.len(),
            id.len
        )));
    }
    let Ok(len) = usize::try_from(id.len) else {
        return Err(StoreError::CorruptBlob {
            hash_hex,
            reason: format!("length {} does not fit in memory", id.len),
        });
    };
    let mut buf = vec![0u8; len];
    if let Err(e) = file.read_exact(&mut buf) {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Err(corrupt("file shrank while being read".to_owned()));
        }
        return Err(StoreError::io(&path, e));
    }
    // The file must end exactly here; a longer file is corrupt even if its prefix matches.
    let mut probe = [0u8; 1];
    match file.read(&mut probe) {
        Ok(0) => {}
        Ok(_) => return Err(corrupt("file grew while being read".to_owned())),
        Err(e) => return Err(StoreError::io(&path, e)),
    }
    if hash_bytes(&buf) != id.hash {
        return Err(corrupt("blake3 of the content does not match".to_owned()));
    }
    Ok(buf)
}

/// Moves a corrupt blob file to `quarantine/<hex>.<unix_ms>`. Failures are logged, not
/// returned: the caller reports the corruption either way.
///
/// When `seen` is given, the file is only moved if the path still names that same file, so
/// a good copy published in the meantime by another process is left alone.
pub(crate) fn quarantine_file(
    layout: &Layout,
    path: &Path,
    name: &str,
    seen: Option<&fs::Metadata>,
) {
    if let Some(seen) = seen {
        match fs::metadata(path) {
            Ok(now) if same_file(seen, &now) => {}
            _ => return,
        }
    }
    let to = quarantine_target(layout, name);
    if let Err(e) = fs::create_dir_all(&layout.quarantine).and_then(|()| fs::rename(path, &to)) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(from = %path.display(), to = %to.display(), error = %e, "cannot move a corrupt blob to quarantine");
        }
    } else {
        tracing::warn!(blob = name, to = %to.display(), "moved a corrupt blob to quarantine");
    }
}

fn quarantine_target(layout: &Layout, name: &str) -> PathBuf {
    let stamp = unix_ms();
    let mut to = layout.quarantine.join(format!("{name}.{stamp}"));
    let mut n = 1;
    while to.exists() {
        to = layout.quarantine.join(format!("{name}.{stamp}.{n}"));
        n += 1;
    }
    to
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// A temp file is dead when its writer's lock can be taken. Returns the open, locked file
/// so that the caller can remove it while still holding the lock, or `None` when a live
/// writer holds it (or it is already gone).
pub(crate) fn take_dead_temp(path: &Path) -> Result<Option<File>, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::io(path, e)),
    }
}

/// Removes every temp file left behind by a dead writer. Returns how many were removed.
pub(crate) fn remove_dead_temps(layout: &Layout) -> Result<u64, StoreError> {
    let mut removed = 0;
    for (path, kind) in paths::walk_blobs(&layout.blobs)? {
        if kind != BlobFile::Temp {
            continue;
        }
        if let Some(locked) = take_dead_temp(&path)? {
            if paths::remove_if_exists(&path)? {
                removed += 1;
                tracing::debug!(path = %path.display(), "removed a temp file left by a dead writer");
            }
            drop(locked);
        }
    }
    Ok(removed)
}
