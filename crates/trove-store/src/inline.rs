//! Copies of small blobs kept in the index (`blob_inline`, schema version 2), so that a
//! disk hit of a small object reads its record and its content in one SQLite query
//! instead of a query and a file (open, read, close).
//!
//! The blob file stays the object's home: it is published first, as for any blob, and gc,
//! verify, [`Store::has_blob`] and the shared tier see only files. The copy is added in
//! the transaction that inserts a record pointing at the blob, after the file was read
//! back and hashed to its name, and removed with the blob file by gc (under the same
//! write lock). A copy is never trusted: it is verified against the record's blake3 and
//! length before it is returned, and one that fails is deleted and the file read instead.

use rusqlite::{Connection, params};
use trove_fingerprint::hex;

use crate::index::INLINE_MAX;
use crate::store::OpError;
use crate::{BlobId, Record, Store, StoreError, blob};

/// Adds the inline copy of a just-checked published blob, if it is small enough; called
/// inside the insert's write transaction. The file is read back and must hash to its
/// name: what is copied is what the blob is.
pub(crate) fn add(
    conn: &Connection,
    blob_path: &std::path::Path,
    id: &BlobId,
) -> Result<(), OpError> {
    if id.len > INLINE_MAX {
        return Ok(());
    }
    let Ok(bytes) = std::fs::read(blob_path) else {
        // The copy is an optimisation: a blob that cannot be read back stays a file only.
        return Ok(());
    };
    if bytes.len() as u64 != id.len || blob::hash_bytes(&bytes) != id.hash {
        return Ok(());
    }
    conn.prepare_cached("INSERT OR IGNORE INTO blob_inline (hash, bytes) VALUES (?1, ?2)")?
        .execute(params![&id.hash[..], bytes])?;
    Ok(())
}

/// Removes the inline copy of a blob (gc removing its file, or a copy that failed its
/// verification).
pub(crate) fn remove(conn: &Connection, hash: &[u8; 32]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM blob_inline WHERE hash = ?1")?
        .execute([&hash[..]])?;
    Ok(())
}

/// Removes the copies no row references.
pub(crate) fn remove_unreferenced(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM blob_inline WHERE NOT EXISTS \
         (SELECT 1 FROM variants WHERE variants.blob_hash = blob_inline.hash)",
    )?
    .execute([])?;
    Ok(())
}

impl Store {
    /// The content of a record's blob, verified (length, then blake3) before it is
    /// returned: the index's copy when [`Store::variants`] read one with the record (a
    /// small blob), else the file, as [`Store::read_blob`] reads it.
    pub fn read_blob_of(&self, rec: &Record) -> Result<Vec<u8>, StoreError> {
        if let Some(bytes) = &rec.inline {
            if bytes.len() as u64 == rec.blob.len && blob::hash_bytes(bytes) == rec.blob.hash {
                return Ok(bytes.clone());
            }
            tracing::warn!(blob = %hex(&rec.blob.hash), "the index's copy of a blob does not match it; removing the copy and reading the file");
            let _ = self.with_index(|conn| Ok(remove(conn, &rec.blob.hash)?));
        }
        self.read_blob(&rec.blob)
    }
}
