//! trove's local disk tier: a SQLite index shared by processes, content-addressed blob
//! files, atomic publish, per-key cross-process locks, verification and gc primitives.
//!
//! The store keeps what the engine hands it faithfully — the trace is opaque bytes — and
//! validates nothing about the inputs; its job is to never return a corrupt record or blob.
//!
//! # On-disk layout
//!
//! ```text
//! <root>/                        (e.g. .trove)
//!   CACHEDIR.TAG                 standard cache directory tag, so backup tools skip it
//!   .gitignore                   `*`: the store never shows in `git status`
//!   v1/                          format version in the name; a reader never touches other vN
//!     index.sqlite (+ -wal, -shm)  the index: WAL, synchronous=FULL, user_version = 2
//!                                (table `variants`; `blob_inline`: copies of small blobs)
//!     blobs/ab/<64 hex blake3>   content-addressed blob files, content only (no header)
//!     blobs/ab/.tmp-<hex>-<pid>-<n>  in-flight publishes, flock-ed by their writer
//!     blobs/tmp/.tmp-stream-<pid>-<n>  streamed objects being written (a command's stdout),
//!                                published by a rename into their shard; flock-ed too
//!     locks/ab/<64 hex key>.lock per-key lock files (flock), never deleted
//!     locks/waits/<pid>-<n>.wait  what a process waiting for a lock waits for (cycle checks)
//!     quarantine/                corrupt blobs (<hex>.<unix_ms>) and corrupt index files
//! ```
//!
//! # Invariants
//!
//! - A blob file, once under its final name, holds exactly the content its name hashes to,
//!   or it is detected on read and moved to `quarantine/`. Publishing writes a temp file in
//!   the same directory (or, for a streamed object, in `blobs/tmp/` on the same file
//!   system), fsyncs it, renames it and fsyncs the directory.
//! - A copy of a small blob in the index (`blob_inline`) is only ever added after its
//!   file hashed to its name, and is verified again before it is returned.
//! - Reading a blob verifies it first: [`Store::read_blob`] reads it whole,
//!   [`Store::open_blob`] streams it through one 1 MiB buffer and returns the open file, so
//!   objects of any size are verified in bounded memory.
//! - A committed record's blob was published before the record was inserted (checked under
//!   the index write lock, which gc also takes before deleting a blob).
//! - A temp file whose flock can be taken belongs to a dead writer; open and gc remove it,
//!   so a killed process leaves no corrupt entry.
//! - Every record read is checked against a blake3 checksum of its immutable fields; a row
//!   that fails is quarantined, never returned as live.
//! - Deleting a record never deletes its blob (rows may share a blob); gc removes orphans.
//!
//! # API boundary
//!
//! [`Store`] and the plain data types re-exported here; everything else is private.

mod blob;
mod error;
mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod inline;
mod lock;
mod maint;
mod paths;
mod record;
mod store;
mod stream;

pub use blob::{read_at, read_full_at};
pub use error::StoreError;
#[cfg(feature = "failpoints")]
pub use faults::hits as fault_hits;
pub use index::{SCHEMA_VERSION, WAL_EMPTY_AT};
pub use lock::KeyLock;
pub use maint::{GcItem, GcStats, VerifyReport};
pub use paths::FORMAT_DIR;
pub use record::{BlobId, Key, NewRecord, Record};
pub use store::{Store, StoreOptions};
pub use stream::TempBlob;

#[cfg(test)]
mod tests {
    #[test]
    fn store_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<super::Store>();
    }
}
