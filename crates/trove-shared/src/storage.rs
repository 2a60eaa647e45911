//! The storage trait every tier can implement, in the manner of sccache's `Storage`.

use std::io::{Read, Write};

use crate::error::StorageError;

/// What [`Storage::put_if_absent`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// The object was written: this writer was first.
    Created,
    /// An object already had that path; nothing was written.
    AlreadyExists,
}

/// How strong a storage's create-if-absent is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateIfAbsent {
    /// The service decides atomically: of writers racing on one path, exactly one gets
    /// [`Put::Created`] and the object is that writer's, whole.
    Atomic,
    /// Each write asks the server to create the object only if absent (S3's
    /// `If-None-Match: *`) and the server decides: atomically on servers that implement
    /// the condition atomically (AWS S3 since 2024, MinIO, Cloudflare R2), as
    /// [`CheckThenWrite`](CreateIfAbsent::CheckThenWrite) on servers that check and then
    /// write (moto, the test suite's server; s3s-fs).
    ServerConditional,
    /// The existence check and the write are two steps: writers racing inside that window
    /// may each get [`Put::Created`], and the last complete write stays. Every write is
    /// whole (the object appears at once, never partially), so the path always holds one
    /// writer's complete object, never a mix.
    CheckThenWrite,
}

/// One name in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The full path (`v1/records/ab/<key>/`), ending with `/` for a directory.
    pub path: String,
    /// The object's length, when the listing tells it.
    pub len: Option<u64>,
}

impl Entry {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.path.ends_with('/')
    }

    /// The last component, without the trailing `/` of a directory.
    pub fn name(&self) -> &str {
        let path = self.path.trim_end_matches('/');
        path.rsplit('/').next().unwrap_or(path)
    }
}

/// A place that stores immutable objects by path: the shared tier's remote store, or the
/// local tier behind an adapter. Blocking: an implementation that is async inside drives
/// its own runtime (see [`RemoteStore`](crate::RemoteStore)).
///
/// Paths are relative, `/`-separated, never start with `/`. An object, once written, is
/// never modified in place: it is created whole or deleted.
pub trait Storage: Send + Sync {
    /// The whole object, or `None` when there is none at `path`.
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Streams the object into `out` in bounded memory and returns its length, or `None`
    /// when there is none (nothing is then written to `out`). On an error, part of the
    /// object may have been written.
    fn get_into(
        &self,
        path: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<u64>, StorageError>;

    /// Writes `bytes` at `path` unless an object is already there.
    fn put_if_absent(&self, path: &str, bytes: &[u8]) -> Result<Put, StorageError>;

    /// Writes `len` bytes read from `from` at `path` unless an object is already there,
    /// in bounded memory where the service allows it.
    fn put_stream_if_absent(
        &self,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, StorageError>;

    /// Writes `bytes` at `path`, replacing what was there: whole (a reader sees the old
    /// object, the new one or none, never a mix), last writer wins. Only for the shared
    /// tier's "newest" hints, which are never trusted unverified.
    fn put(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// The entries directly under the directory `dir` (`v1/records/`), files and
    /// directories; an empty list when the directory does not exist.
    fn list(&self, dir: &str) -> Result<Vec<Entry>, StorageError>;

    /// Removes the object at `path`; removing an absent object succeeds.
    fn delete(&self, path: &str) -> Result<(), StorageError>;

    /// What [`put_if_absent`](Storage::put_if_absent) guarantees on this storage.
    fn create_if_absent(&self) -> CreateIfAbsent;

    /// A short description for messages: `s3://bucket/prefix at http://...`.
    fn describe(&self) -> String;
}
