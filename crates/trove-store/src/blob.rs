//! Content-addressed blob files: hashing, atomic publish, verified reads, quarantine.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use trove_fingerprint::{hex, now_ms};

use crate::faults::fail_point;
use crate::paths::{self, BlobFile, Layout, TEMP_PREFIX};
use crate::{BlobId, StoreError};

/// Above this size a file is hashed on rayon's threads, as `Digest::of_bytes` hashes
/// bytes. Below it, waking the pool costs more than a second core gains (2 cores: a 1 MiB
/// disk hit took 260 us with 128 KiB here, 159 us with 4 MiB; see BENCHMARKS.md).
const RAYON_THRESHOLD: usize = 1024 * 1024;

/// Blobs up to this size are read without asking the file's length first (see
/// [`read_verified`]).
const FAST_READ_MAX: u64 = 1024 * 1024;

/// How many times a publish is retried when its temp file vanished under it (a concurrent
/// cleanup can take the temp file for dead in the instant between its creation and lock).
const PUBLISH_ATTEMPTS: usize = 3;

/// blake3 of `bytes`, multi-threaded for large inputs: `Digest::of_bytes`, the one
/// home of hashing bytes (with the same threshold as `RAYON_THRESHOLD`).
pub(crate) fn hash_bytes(bytes: &[u8]) -> [u8; 32] {
    trove_fingerprint::Digest::of_bytes(bytes).0
}

/// How much of a file is read at a time to hash it. Blobs are hashed by reading, never by
/// mapping them: a mapped page counts in the process's resident set until the kernel
/// reclaims it, so hashing a 1 GiB blob through a map could grow a process by 1 GiB. One
/// buffer of this size is the whole memory a hash of any size takes.
pub(crate) const HASH_CHUNK: usize = 1024 * 1024;

/// blake3 and length of a file, streamed through one [`HASH_CHUNK`] buffer.
pub(crate) fn hash_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    hash_open(&File::open(path)?)
}

/// blake3 and length of an open file from offset 0 to its end, read with positional reads
/// (the file's own offset is neither used nor moved, so other readers of the same open
/// file are undisturbed). The chunks of a file larger than [`RAYON_THRESHOLD`] are hashed
/// on rayon's threads, as [`hash_bytes`] does for bytes.
pub(crate) fn hash_open(file: &File) -> io::Result<([u8; 32], u64)> {
    let len = file.metadata()?.len();
    let parallel = len > RAYON_THRESHOLD as u64;
    let mut h = blake3::Hasher::new();
    // No bigger than the file (plus a byte, to see it grow): a 1 MiB buffer zeroed for a
    // 6 KiB object cost a small hit more than its hash (256 fresh pages).
    let mut buf = vec![0u8; (len as usize).saturating_add(1).min(HASH_CHUNK)];
    let mut offset = 0u64;
    loop {
        let filled = read_full_at(file, &mut buf, offset)?;
        if filled == 0 {
            break;
        }
        if parallel {
            h.update_rayon(&buf[..filled]);
        } else {
            h.update(&buf[..filled]);
        }
        offset += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    Ok((*h.finalize().as_bytes(), offset))
}

/// Fills `buf` from `offset` with positional reads (independent of the file's cursor);
/// fewer bytes only at the end of the file. Shared with the engine's `Blob` readers.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_at(file, &mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// One read from offset 0, retried only when interrupted.
fn read_once_at(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match read_at(file, buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// One positional read (`pread`; `seek_read` on Windows).
#[cfg(unix)]
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// One positional read (`pread`; `seek_read` on Windows).
#[cfg(windows)]
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
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
        paths::next_counter()
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
    make_read_only(&file).map_err(|e| fail(StoreError::io(&tmp, e)))?;
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

/// The mode a published blob file has: read-only for everyone. Nothing in trove writes a
/// blob in place (a blob is a temp file renamed into place; gc unlinks; quarantine
/// renames), and a served object may be a memory map of the file (the Python package's
/// large arrays), whose values a write into the file would change: the mode keeps an
/// accidental writer (an editor, a script, another user) out. Root, or the owner after a
/// `chmod`, can still write; ARCHITECTURE.md, "The Python package", states that residue.
pub(crate) const READ_ONLY: u32 = 0o444;

/// Sets a blob file's mode to [`READ_ONLY`] through its open descriptor (the writer's own
/// descriptor stays writable; it is dropped right after the publish).
pub(crate) fn make_read_only(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(READ_ONLY))
    }
    // Elsewhere (Windows) a read-only file could not be renamed over nor removed by gc.
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
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

/// An open blob file whose length matched its record, not yet hashed.
pub(crate) struct Opened {
    pub(crate) file: File,
    path: PathBuf,
    meta: fs::Metadata,
}

/// Opens a blob and checks its length against the record. A length mismatch is told apart:
/// a blob that still hashes to its name is intact (the record is wrong), anything else is
/// corrupt and goes to quarantine.
pub(crate) fn open_checked(layout: &Layout, id: &BlobId) -> Result<Opened, StoreError> {
    let path = layout.blob_path(&id.hash);
    let hash_hex = hex(&id.hash);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::MissingBlob { hash_hex });
        }
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let meta = file.metadata().map_err(|e| StoreError::io(&path, e))?;
    if meta.len() != id.len {
        // A blob whose content still matches its name is intact and may serve other
        // records: the record that disagrees with it is what is wrong, and the blob stays.
        if matches!(hash_open(&file), Ok((h, _)) if h == id.hash) {
            return Err(StoreError::RecordMismatch {
                hash_hex,
                reason: format!("it says {} bytes, the blob has {}", id.len, meta.len()),
            });
        }
        quarantine_file(layout, &path, &hash_hex, Some(&meta));
        return Err(StoreError::CorruptBlob {
            hash_hex,
            reason: format!("file is {} bytes, expected {}", meta.len(), id.len),
        });
    }
    Ok(Opened { file, path, meta })
}

impl Opened {
    /// Quarantines the file (if the path still names it) and says why.
    fn corrupt(&self, layout: &Layout, id: &BlobId, reason: &str) -> StoreError {
        let hash_hex = hex(&id.hash);
        quarantine_file(layout, &self.path, &hash_hex, Some(&self.meta));
        StoreError::CorruptBlob {
            hash_hex,
            reason: reason.to_owned(),
        }
    }
}

/// Reads and verifies a blob: length, then blake3, before anything is returned.
///
/// A blob of up to [`FAST_READ_MAX`] bytes costs three system calls: open, one read of
/// the record's length, close. What is returned is exactly the `id.len` bytes that hashed
/// to `id.hash`, so the file's own length need not be asked first; a file that turns out
/// shorter, or whose bytes do not hash to its name, is examined again by the careful path
/// (its length checked, a longer one told apart, a corrupt one quarantined). Larger blobs
/// take the careful path directly: the buffer is only allocated once the file's length
/// agreed with the record (a forged length must not allocate), and a stat is nothing
/// next to reading them.
pub(crate) fn read_verified(layout: &Layout, id: &BlobId) -> Result<Vec<u8>, StoreError> {
    if id.len <= FAST_READ_MAX
        && let Ok(len) = usize::try_from(id.len)
    {
        let path = layout.blob_path(&id.hash);
        if let Ok(file) = File::open(&path) {
            // One byte more than the record says: a single read that fills exactly `len`
            // found the end of the file (a regular file's read is only short at its end),
            // and one that fills `len + 1` found a longer file, which the careful path
            // reports. Either way only the `len` bytes that hash to the name are served.
            let mut buf = vec![0u8; len + 1];
            if read_once_at(&file, &mut buf).is_ok_and(|n| n == len) {
                buf.truncate(len);
                if hash_bytes(&buf) == id.hash {
                    return Ok(buf);
                }
            }
        }
    }
    read_verified_slow(layout, id)
}

/// [`read_verified`] with every check in order: length (stat), the content, a probe for a
/// file longer than its record, blake3; what fails is diagnosed and quarantined.
fn read_verified_slow(layout: &Layout, id: &BlobId) -> Result<Vec<u8>, StoreError> {
    let opened = open_checked(layout, id)?;
    let Ok(len) = usize::try_from(id.len) else {
        return Err(StoreError::CorruptBlob {
            hash_hex: hex(&id.hash),
            reason: format!("length {} does not fit in memory", id.len),
        });
    };
    let mut file = &opened.file;
    let mut buf = vec![0u8; len];
    if let Err(e) = file.read_exact(&mut buf) {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Err(opened.corrupt(layout, id, "file shrank while being read"));
        }
        return Err(StoreError::io(&opened.path, e));
    }
    // The file must end exactly here; a longer file is corrupt even if its prefix matches.
    let mut probe = [0u8; 1];
    match file.read(&mut probe) {
        Ok(0) => {}
        Ok(_) => return Err(opened.corrupt(layout, id, "file grew while being read")),
        Err(e) => return Err(StoreError::io(&opened.path, e)),
    }
    if hash_bytes(&buf) != id.hash {
        return Err(opened.corrupt(layout, id, "blake3 of the content does not match"));
    }
    Ok(buf)
}

/// Opens a blob and verifies its length and blake3 by streaming it through one
/// [`HASH_CHUNK`] buffer; the open, verified file is returned (never its content).
pub(crate) fn open_verified(layout: &Layout, id: &BlobId) -> Result<File, StoreError> {
    let opened = open_checked(layout, id)?;
    let (hash, len) = hash_open(&opened.file).map_err(|e| StoreError::io(&opened.path, e))?;
    if len != id.len {
        return Err(opened.corrupt(layout, id, "file changed size while being read"));
    }
    if hash != id.hash {
        return Err(opened.corrupt(layout, id, "blake3 of the content does not match"));
    }
    Ok(opened.file)
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
    let stamp = now_ms();
    let mut to = layout.quarantine.join(format!("{name}.{stamp}"));
    let mut n = 1;
    while to.exists() {
        to = layout.quarantine.join(format!("{name}.{stamp}.{n}"));
        n += 1;
    }
    to
}

#[cfg(unix)]
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_is_hashed_whole_whatever_its_size_against_the_buffer() {
        for len in [
            0,
            1,
            5_600,
            HASH_CHUNK - 1,
            HASH_CHUNK,
            HASH_CHUNK + 1,
            2 * HASH_CHUNK + 7,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&bytes).unwrap();
            let (hash, read) = hash_open(&file).unwrap();
            assert_eq!(read, len as u64, "length of a {len}-byte file");
            assert_eq!(
                hash,
                *blake3::hash(&bytes).as_bytes(),
                "hash of a {len}-byte file"
            );
        }
    }
}
