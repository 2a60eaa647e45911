//! Per-key cross-process locks.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// An exclusive lock on one key, held across threads and processes.
///
/// It is an `flock` on `locks/ab/<key hex>.lock`: released when the `KeyLock` is dropped,
/// and by the kernel when the holding process dies, so a killed builder never blocks
/// anyone. Two `KeyLock`s on the same key exclude each other even within one process,
/// because each holds its own open file description. Lock files are never deleted:
/// removing a lock file while another process is about to lock it would let two holders in.
#[derive(Debug)]
pub struct KeyLock {
    file: File,
    path: PathBuf,
}

impl KeyLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(path: &Path) -> Result<File, StoreError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        // std opens files close-on-exec, so a child process never inherits the lock.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))
    }

    pub(crate) fn acquire(path: PathBuf) -> Result<KeyLock, StoreError> {
        let file = Self::open(&path)?;
        file.lock().map_err(|e| StoreError::io(&path, e))?;
        Ok(KeyLock { file, path })
    }

    pub(crate) fn try_acquire(path: PathBuf) -> Result<Option<KeyLock>, StoreError> {
        let file = Self::open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { file, path })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
        }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes the release
        // immediate even if the descriptor were shared.
        let _ = self.file.unlock();
    }
}
