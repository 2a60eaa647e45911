//! Blobs that never pass through memory: a temp file a producer writes (a command's stdout)
//! is hashed by streaming and published by a rename, and a stored blob is opened and
//! verified by streaming instead of being read whole.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::faults::fail_point;
use crate::paths::{self, TEMP_PREFIX};
use crate::{BlobId, Store, StoreError, blob};

/// How many times creating a temp file is retried when it vanished before it was locked (a
/// concurrent cleanup can take it for dead in the instant between its creation and lock).
const CREATE_ATTEMPTS: usize = 3;

/// A file being written that may become a blob: created in the store's `blobs/tmp/` by
/// [`Store::temp_blob`] (or anywhere by [`TempBlob::create_in`]), locked by its writer so
/// gc and cleanup leave it alone, removed when dropped unless it was published.
///
/// Write through [`TempBlob::file`] (or hand a clone of it to a child process as its
/// stdout), then [`TempBlob::seal`] it and publish it with [`Store::put_blob_file`]: a
/// rename, never a copy.
///
/// ```
/// use std::io::Write;
/// use trove_store::Store;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// let mut temp = store.temp_blob().unwrap();
/// temp.file().write_all(b"a large object, streamed").unwrap();
/// let id = store.put_blob_file(temp).unwrap();
/// assert_eq!(store.read_blob(&id).unwrap(), b"a large object, streamed");
/// ```
#[derive(Debug)]
pub struct TempBlob {
    /// Opened for writing and `flock`-ed: the lock tells cleanup the writer is alive.
    file: File,
    /// The same file opened read-only, for readers that must not be able to write.
    reader: File,
    path: PathBuf,
    /// The content's identity once sealed.
    sealed: Option<BlobId>,
    /// Whether the name is gone (published by a rename, or unlinked on purpose).
    detached: bool,
}

impl TempBlob {
    /// Creates an empty temp file in `dir` (created if missing), locked by this process.
    pub fn create_in(dir: &Path) -> Result<TempBlob, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let path = dir.join(format!(
                "{TEMP_PREFIX}stream-{}-{}",
                std::process::id(),
                paths::next_counter()
            ));
            match Self::create_at(path) {
                Ok(Some(temp)) => return Ok(temp),
                Ok(None) if attempt < CREATE_ATTEMPTS => {
                    tracing::debug!("a new temp blob file vanished before it was locked; retrying");
                }
                Ok(None) => {
                    return Err(StoreError::io(
                        dir,
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            "new temp files keep vanishing before they are locked",
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates, locks and reopens read-only; `None` when the file vanished before it was
    /// locked (another process's cleanup took it for a dead writer's).
    fn create_at(path: PathBuf) -> Result<Option<TempBlob>, StoreError> {
        fail_point!("store::blob-create", |e| Err(StoreError::io(&path, e)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let fail = |e: io::Error| {
            let _ = fs::remove_file(&path);
            StoreError::io(&path, e)
        };
        file.lock().map_err(fail)?;
        let reader = match File::open(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let (a, b) = (
            file.metadata().map_err(fail)?,
            reader.metadata().map_err(fail)?,
        );
        if !blob::same_file(&a, &b) {
            // Our file was removed and the name reused in between: not ours to touch.
            return Ok(None);
        }
        Ok(Some(TempBlob {
            file,
            reader,
            path,
            sealed: None,
            detached: false,
        }))
    }

    /// The file, open for writing (`Write` is implemented for `&File`). Hand a
    /// [`File::try_clone`] of it to a child process to have it write there.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The same file, open read-only. Reads through it are positional
    /// (`std::os::unix::fs::FileExt::read_at`) so they do not disturb other readers.
    pub fn reader(&self) -> &File {
        &self.reader
    }

    /// Where the file is now; `None` once it was published or unlinked.
    pub fn path(&self) -> Option<&Path> {
        (!self.detached).then_some(self.path.as_path())
    }

    /// Hashes the content written so far (by streaming it, through one 1 MiB buffer) and
    /// returns its identity; [`Store::put_blob_file`] publishes it under that name. Write
    /// nothing after sealing: a blob whose content does not match its name is caught by
    /// the next read and quarantined.
    pub fn seal(&mut self) -> Result<BlobId, StoreError> {
        let (hash, len) =
            blob::hash_open(&self.reader).map_err(|e| StoreError::io(&self.path, e))?;
        let id = BlobId { hash, len };
        self.sealed = Some(id);
        Ok(id)
    }

    /// Removes the file's name now; the open files still reach its content until the
    /// last one is closed, and nothing is left behind if the process dies. An unlinked
    /// temp file cannot be published.
    pub fn unlink(&mut self) -> Result<(), StoreError> {
        if !self.detached {
            paths::remove_if_exists(&self.path)?;
            self.detached = true;
        }
        Ok(())
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.detached {
            // Removed while the lock is still held, so no cleanup can race us.
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Store {
    /// A new temp file in `<root>/v1/blobs/tmp/`, on the same file system as the blobs so
    /// that [`Store::put_blob_file`] publishes it by a rename.
    pub fn temp_blob(&self) -> Result<TempBlob, StoreError> {
        TempBlob::create_in(&self.layout.temps)
    }

    /// Publishes a temp file as a blob without copying it: seals it if it was not (hashing
    /// it by streaming), fsyncs it, renames it to `blobs/ab/<64 hex>` and fsyncs that
    /// directory. If the blob already exists with the right length nothing is renamed and
    /// the temp file is removed. A failure removes the temp file.
    pub fn put_blob_file(&self, mut temp: TempBlob) -> Result<BlobId, StoreError> {
        if temp.detached {
            return Err(StoreError::io(
                &temp.path,
                io::Error::new(io::ErrorKind::NotFound, "the temp file was unlinked"),
            ));
        }
        let id = match temp.sealed {
            Some(id) => id,
            None => temp.seal()?,
        };
        let final_path = self.blob_path(&id.hash);
        if let Ok(meta) = fs::symlink_metadata(&final_path)
            && meta.is_file()
            && meta.len() == id.len
        {
            // Identical content is stored once; the mtime is refreshed so that gc's grace
            // period protects a blob about to be referenced again.
            if let Ok(f) = File::open(&final_path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok(id);
        }
        let dir = final_path
            .parent()
            .expect("a blob path always has a shard directory");
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        // Never fsync twice: after a failed fsync the page cache may be clean but the data
        // lost. The temp file is removed when `temp` drops on the error path.
        fail_point!("store::blob-fsync", |source| Err(StoreError::Sync {
            path: temp.path.clone(),
            source,
        }));
        temp.file.sync_all().map_err(|source| StoreError::Sync {
            path: temp.path.clone(),
            source,
        })?;
        // Published read-only: nothing writes a blob in place (see `blob::READ_ONLY`).
        blob::make_read_only(&temp.file).map_err(|e| StoreError::io(&temp.path, e))?;
        fail_point!("store::blob-rename", |e| Err(StoreError::io(
            &final_path,
            e
        )));
        fs::rename(&temp.path, &final_path).map_err(|e| StoreError::io(&final_path, e))?;
        temp.detached = true;
        fail_point!("store::blob-dir-fsync", |source| Err(StoreError::Sync {
            path: dir.to_owned(),
            source,
        }));
        paths::sync_dir(dir)?;
        Ok(id)
    }

    /// Opens a blob for reading after verifying its length and blake3 by streaming it (one
    /// 1 MiB buffer, no memory map), so an object of any size is checked in bounded memory.
    /// The returned file stays readable even if gc removes the blob afterwards.
    ///
    /// Errors as [`Store::read_blob`]: a blob that does not match is moved to
    /// `quarantine/` and reported as [`StoreError::CorruptBlob`].
    pub fn open_blob(&self, id: &BlobId) -> Result<File, StoreError> {
        blob::open_verified(&self.layout, id)
    }

    /// Opens a blob read-only and checks its length against `id`, without hashing its
    /// content: for a caller that verifies the content itself, from the bytes it will
    /// serve (a memory map of the file). A content that does not match must then be
    /// reported with [`Store::corrupt_blob`], which quarantines it as a failed
    /// [`Store::open_blob`] would. Errors as [`Store::open_blob`] for a missing blob or a
    /// length that does not match.
    pub fn open_blob_unhashed(&self, id: &BlobId) -> Result<File, StoreError> {
        blob::open_checked(&self.layout, id).map(|opened| opened.file)
    }

    /// Reports the blob `file` (opened by [`Store::open_blob_unhashed`]) as corrupt:
    /// moved to `quarantine/` if its path still names that file (a good copy published in
    /// the meantime stays), and returned as [`StoreError::CorruptBlob`].
    pub fn corrupt_blob(&self, id: &BlobId, file: &File, reason: &str) -> StoreError {
        let hash_hex = trove_fingerprint::hex(&id.hash);
        let path = self.blob_path(&id.hash);
        blob::quarantine_file(
            &self.layout,
            &path,
            &hash_hex,
            file.metadata().ok().as_ref(),
        );
        StoreError::CorruptBlob {
            hash_hex,
            reason: reason.to_owned(),
        }
    }
}
