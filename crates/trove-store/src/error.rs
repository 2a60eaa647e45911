//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the local store.
///
/// Every variant names the file or the blob it is about, and its `Display` is a sentence a
/// user can act on.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `fsync` failed, so the data may not be on disk. The write was abandoned and is never
    /// retried on the same file (after a failed fsync the kernel may have dropped the dirty
    /// pages, so a second fsync could wrongly report success).
    #[error(
        "cannot make {} durable (fsync failed: {source}); the write was abandoned, check the disk and retry",
        path.display()
    )]
    Sync {
        /// The file or directory that could not be synced.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The SQLite index reported an error.
    #[error("the store index {} reported an error: {source}", path.display())]
    Sqlite {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// A blob's length or blake3 does not match its name; the file was moved to quarantine.
    #[error(
        "blob {hash_hex} is corrupt ({reason}); it was moved to quarantine, rebuild the object"
    )]
    CorruptBlob {
        /// The blob's expected blake3, lowercase hex.
        hash_hex: String,
        /// What did not match.
        reason: String,
    },
    /// The record disagrees with an intact blob (the blob's content matches its name but
    /// not the record's length): the record is what is wrong, the blob was left in place.
    #[error(
        "blob {hash_hex} is intact but the record does not match it ({reason}); rebuild the object"
    )]
    RecordMismatch {
        /// The blob's blake3, lowercase hex.
        hash_hex: String,
        /// What did not match.
        reason: String,
    },
    /// The blob file does not exist.
    #[error("blob {hash_hex} is missing from the store; rebuild the object")]
    MissingBlob {
        /// The blob's blake3, lowercase hex.
        hash_hex: String,
    },
    /// The index was written by a newer trove; this one does not read or change it.
    #[error(
        "the store index has format version {found} but this trove supports up to {supported}; upgrade trove or point it at another store directory"
    )]
    NewerFormat {
        /// The version found in the index (`PRAGMA user_version`).
        found: i64,
        /// The newest version this code understands.
        supported: i64,
    },
    /// A record row failed its checksum or holds out-of-range values; it was quarantined.
    #[error("record {id} of the store index is corrupt ({reason}); it was quarantined")]
    CorruptRecord {
        /// The row id.
        id: i64,
        /// What was wrong with it.
        reason: String,
    },
    /// `gc_apply` was handed a path that is not inside the store, and refused to touch it.
    #[error("refusing to remove {}: it is not inside the store directory {}", path.display(), store.display())]
    OutsideStore {
        /// The path that was refused.
        path: PathBuf,
        /// The store's versioned directory.
        store: PathBuf,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
