//! The local store's blobs behind trove-shared's [`Storage`] trait (feature `shared`), so
//! the local tier and the team's shared tier are two implementations of one trait, and a
//! shared hit is backfilled into the local tier through it (sccache's `Storage`, tiers
//! stacked from slow to fast).
//!
//! # What the trait covers here
//!
//! The blob layer both tiers share, in the shared tier's layout: `v1/blobs/ab/<64 hex
//! blake3>`, which is also where the local store keeps a blob under its root. Records are
//! not part of it: the local store keeps them in its SQLite index (unsigned, checksummed,
//! with their use times and variants), the shared tier as signed objects under
//! `v1/records/`; each tier reads and writes its own through its own API (`Store::insert`
//! and `variants`, `SharedTier::lookup` and `publish`). A path outside `v1/blobs/` is
//! refused ([`StorageError::Rejected`]).
//!
//! # Invariants kept
//!
//! Every operation goes through trove-store's own primitives, so the store's invariants
//! hold whoever writes:
//!
//! - A blob is only ever stored under its own blake3. `put_if_absent` hashes the bytes
//!   first and refuses (`Rejected`) bytes that do not hash to the path's name, before
//!   anything is written; `put_stream_if_absent` and [`BlobSink`] write into a
//!   [`trove_store::TempBlob`] (`Store::temp_blob`), seal it (`TempBlob::seal` hashes it
//!   by streaming), refuse it when the hash or the length is not the path's, and only then
//!   publish it with `Store::put_blob_file`.
//! - Writes are atomic: a temp file (locked by its writer, so cleanup leaves it alone),
//!   fsync, rename into the shard, fsync of the directory (`Store::put_blob_file`, or
//!   `Store::put_blob_hashed` for bytes in memory). A reader sees a whole blob or none.
//! - Reads verify: `get` is `Store::read_blob`, `get_into` streams a file that
//!   `Store::open_blob` verified first; a corrupt blob is moved to quarantine by the store
//!   and refused here, never returned.
//! - `delete` is the store's gc of one blob (`Store::gc_apply` of a `GcItem::Blob`): the
//!   file is removed only if no row of the index names it, checked under the index's
//!   write lock, so a concurrent insert cannot lose its blob. Deleting a blob a record
//!   still uses is refused (`Rejected`) and the blob stays; delete the record first (gc
//!   then removes the orphan). Deleting an absent blob succeeds.
//!
//! # Create-if-absent
//!
//! [`CreateIfAbsent::CheckThenWrite`]: the store checks whether the blob exists, then
//! renames its temp file over the path (`rename(2)` replaces; the store relies on that to
//! put a good copy where a corrupt one was quarantined). Two writers racing inside that
//! window may both hear [`Put::Created`]. What holds instead: every write is whole (temp
//! file and rename), and, content-addressed and checked before the rename, both wrote the
//! same bytes, so the path always holds one complete, correct blob. `Atomic` would need a
//! no-replace rename (`link(2)`, `RENAME_NOREPLACE`), which the store does not use.
//!
//! # Backfill
//!
//! [`LocalStorage::backfill`] copies a blob of the shared tier into this one with no copy
//! beyond the one that lands in the store: the remote's `Storage::get_into` (through
//! `SharedTier::fetch_blob`, which checks the length as bytes arrive and the blake3 at the
//! end) writes into a [`BlobSink`] of this adapter, a temp blob in the store, which is
//! sealed, checked against its name and renamed into place. The upload goes the other way
//! from a file [`LocalStorage::open`] names by the same path.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use trove_shared::{
    BlobRef, CreateIfAbsent, Entry, LAYOUT_DIR, Put, SharedError, SharedTier, Storage,
    StorageError, VerifiedRecord,
};
use trove_store::{BlobId, GcItem, Store, StoreError, TempBlob};

/// How much of a stream is read at a time by `put_stream_if_absent` and `get_into`.
const COPY_CHUNK: usize = 256 << 10;

/// The local store's blobs as a [`Storage`]: paths `v1/blobs/ab/<64 hex blake3>`, the
/// layout the shared tier uses. See the module documentation for what it keeps true.
///
/// ```no_run
/// use trove::LocalStorage;
/// use trove_shared::{Put, Storage};
///
/// let store = trove_store::Store::open(std::path::Path::new(".trove"))?;
/// let local = LocalStorage::new(&store);
/// let bytes = b"an object";
/// let path = trove_shared::BlobRef::of(bytes).path(); // v1/blobs/ab/<64 hex>
/// assert_eq!(local.put_if_absent(&path, bytes)?, Put::Created);
/// assert_eq!(local.get(&path)?.as_deref(), Some(&bytes[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LocalStorage<'a> {
    store: &'a Store,
}

/// Why [`LocalStorage::backfill`] copied nothing usable: which tier failed.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The shared tier: unavailable, the blob missing there, or corrupt (refused while it
    /// streamed; nothing of it was kept).
    #[error(transparent)]
    Remote(SharedError),
    /// The local store: its disk, or a blob that changed on disk after it was verified
    /// (`Rejected`: it does not hash to its name, so it was not stored).
    #[error(transparent)]
    Local(StorageError),
}

impl<'a> LocalStorage<'a> {
    /// The blobs of `store`.
    pub fn new(store: &'a Store) -> LocalStorage<'a> {
        LocalStorage { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// The blob `path` names (`v1/blobs/ab/<64 hex>`, lowercase, shard matching), or
    /// `Rejected` for any other path.
    fn blob_hash(op: &'static str, path: &str) -> Result<[u8; 32], StorageError> {
        let parsed = path
            .strip_prefix(LAYOUT_DIR)
            .and_then(|p| p.strip_prefix("/blobs/"))
            .and_then(|p| p.split_once('/'))
            .filter(|(shard, name)| name.len() == 64 && name.starts_with(shard))
            .and_then(|(_, name)| parse_hex(name));
        parsed.ok_or_else(|| rejected(op, path, not_a_blob(path)))
    }

    /// The blob's length on disk, `None` when there is none at its path.
    fn len_on_disk(
        &self,
        op: &'static str,
        path: &str,
        hash: &[u8; 32],
    ) -> Result<Option<u64>, StorageError> {
        match fs::symlink_metadata(self.store.blob_path(hash)) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            // A symlink or a directory planted at a blob's path is not a blob.
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(local(op, path, e)),
        }
    }

    /// The verified blob at `path`, opened (positioned at its start), or `None`.
    fn open_verified(
        &self,
        op: &'static str,
        path: &str,
    ) -> Result<Option<(File, u64)>, StorageError> {
        let hash = Self::blob_hash(op, path)?;
        let Some(len) = self.len_on_disk(op, path, &hash)? else {
            return Ok(None);
        };
        match self.store.open_blob(&BlobId { hash, len }) {
            Ok(file) => Ok(Some((file, len))),
            Err(StoreError::MissingBlob { .. }) => Ok(None),
            Err(e) => Err(store_error(op, path, e)),
        }
    }

    /// The blob file at `path`, opened for reading without verifying it (for a reader
    /// that hashes it anyway: `SharedTier::publish` checks it against its record before
    /// sending a byte), or `None` when there is none. The open file stays readable if gc
    /// removes the blob meanwhile.
    pub fn open(&self, path: &str) -> Result<Option<File>, StorageError> {
        const OP: &str = "open";
        let hash = Self::blob_hash(OP, path)?;
        if self.len_on_disk(OP, path, &hash)?.is_none() {
            return Ok(None);
        }
        match File::open(self.store.blob_path(&hash)) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(local(OP, path, e)),
        }
    }

    /// A writer for the blob at `path`: bytes go to a temp blob of the store as they
    /// arrive; [`BlobSink::commit`] checks them against the name and publishes them.
    /// Dropped without a commit, it leaves nothing behind.
    pub fn sink(&self, path: &str) -> Result<BlobSink<'a>, StorageError> {
        const OP: &str = "put";
        let hash = Self::blob_hash(OP, path)?;
        let temp = self
            .store
            .temp_blob()
            .map_err(|e| store_error(OP, path, e))?;
        Ok(BlobSink {
            store: self.store,
            temp,
            hash,
            path: path.to_owned(),
        })
    }

    /// Backfill from the shared tier: the blob `blob` streamed from `tier` (verified as it
    /// arrives, by `SharedTier::fetch_blob`) into a [`BlobSink`], then published here.
    /// `AlreadyExists`, with nothing downloaded, when the store has it already.
    pub fn backfill(&self, tier: &SharedTier, blob: &BlobRef) -> Result<Put, BackfillError> {
        self.backfill_with(blob, |sink| tier.fetch_blob(blob, sink))
    }

    /// [`backfill`](LocalStorage::backfill) of a record's object: from the record itself
    /// when it carries the object inline (nothing is downloaded), else its blob.
    pub fn backfill_record(
        &self,
        tier: &SharedTier,
        record: &VerifiedRecord,
    ) -> Result<Put, BackfillError> {
        self.backfill_with(&record.blob, |sink| tier.fetch(record, sink))
    }

    fn backfill_with(
        &self,
        blob: &BlobRef,
        fetch: impl FnOnce(&mut BlobSink<'_>) -> Result<(), SharedError>,
    ) -> Result<Put, BackfillError> {
        let id = BlobId {
            hash: blob.hash,
            len: blob.len,
        };
        if self.store.has_blob(&id) {
            return Ok(Put::AlreadyExists);
        }
        let mut sink = self.sink(&blob.path()).map_err(BackfillError::Local)?;
        fetch(&mut sink).map_err(BackfillError::Remote)?;
        sink.commit(Some(blob.len)).map_err(BackfillError::Local)
    }
}

/// A blob being written into the local store: see [`LocalStorage::sink`].
#[derive(Debug)]
pub struct BlobSink<'a> {
    store: &'a Store,
    temp: TempBlob,
    hash: [u8; 32],
    path: String,
}

impl BlobSink<'_> {
    /// Seals what was written (hashing it by streaming it once), refuses it (`Rejected`,
    /// and removes it) unless it hashes to the path's name and, when `len` is given, has
    /// that length, then publishes it atomically. `AlreadyExists` when the blob was there
    /// (another writer's, identical by its name): this copy is dropped.
    pub fn commit(mut self, len: Option<u64>) -> Result<Put, StorageError> {
        const OP: &str = "put";
        let path = self.path.as_str();
        let id = self.temp.seal().map_err(|e| store_error(OP, path, e))?;
        if id.hash != self.hash {
            return Err(rejected(
                OP,
                path,
                format!(
                    "the bytes hash to {}, not to the path's name",
                    hex(&id.hash)
                ),
            ));
        }
        if let Some(len) = len
            && id.len != len
        {
            return Err(rejected(
                OP,
                path,
                format!("{} bytes where {len} were announced", id.len),
            ));
        }
        let existed = self.store.has_blob(&id);
        // Publishes by a rename; when the blob is there already it only refreshes its
        // mtime (gc's grace period) and removes the temp file.
        self.store
            .put_blob_file(self.temp)
            .map_err(|e| store_error(OP, path, e))?;
        Ok(if existed {
            Put::AlreadyExists
        } else {
            Put::Created
        })
    }
}

impl Write for BlobSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.file().flush()
    }
}

impl Storage for LocalStorage<'_> {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        const OP: &str = "get";
        let hash = Self::blob_hash(OP, path)?;
        let Some(len) = self.len_on_disk(OP, path, &hash)? else {
            return Ok(None);
        };
        match self.store.read_blob(&BlobId { hash, len }) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StoreError::MissingBlob { .. }) => Ok(None),
            Err(e) => Err(store_error(OP, path, e)),
        }
    }

    fn get_into(
        &self,
        path: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<u64>, StorageError> {
        const OP: &str = "get";
        let Some((file, len)) = self.open_verified(OP, path)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut offset = 0u64;
        while offset < len {
            let n = trove_store::read_full_at(&file, &mut buf, offset)
                .map_err(|e| local(OP, path, e))?;
            if n == 0 {
                return Err(local(OP, path, io::ErrorKind::UnexpectedEof.into()));
            }
            out.write_all(&buf[..n]).map_err(|e| local(OP, path, e))?;
            offset += n as u64;
        }
        Ok(Some(len))
    }

    fn put_if_absent(&self, path: &str, bytes: &[u8]) -> Result<Put, StorageError> {
        const OP: &str = "put";
        let hash = Self::blob_hash(OP, path)?;
        let found = trove_fingerprint::Digest::of_bytes(bytes).0;
        if found != hash {
            return Err(rejected(
                OP,
                path,
                format!("the bytes hash to {}, not to the path's name", hex(&found)),
            ));
        }
        let id = BlobId {
            hash,
            len: bytes.len() as u64,
        };
        if self.store.has_blob(&id) {
            return Ok(Put::AlreadyExists);
        }
        self.store
            .put_blob_hashed(bytes, hash)
            .map_err(|e| store_error(OP, path, e))?;
        Ok(Put::Created)
    }

    /// A blob already at `path` is answered `AlreadyExists` with nothing read from
    /// `from` (as the shared tier's remote does for large objects); otherwise `from` is
    /// streamed into a temp blob through one buffer and refused unless it hashes to the
    /// name.
    fn put_stream_if_absent(
        &self,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, StorageError> {
        const OP: &str = "put";
        let hash = Self::blob_hash(OP, path)?;
        if self.store.has_blob(&BlobId { hash, len }) {
            return Ok(Put::AlreadyExists);
        }
        let mut sink = self.sink(path)?;
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left.min(COPY_CHUNK as u64)).expect("under COPY_CHUNK");
            from.read_exact(&mut buf[..want])
                .and_then(|()| sink.write_all(&buf[..want]))
                .map_err(|e| local(OP, path, e))?;
            left -= want as u64;
        }
        sink.commit(Some(len))
    }

    /// Refused (`Rejected`): blobs are never replaced, and the shared tier's "newest"
    /// hints, the only objects written this way, are not part of the local tier.
    fn put(&self, path: &str, _bytes: &[u8]) -> Result<(), StorageError> {
        Err(rejected(
            "put",
            path,
            "the local store's blobs are created once, never replaced".to_owned(),
        ))
    }

    /// `v1/`, `v1/blobs/` (the shards, `v1/blobs/ab/`) and a shard (its blobs, with their
    /// lengths). Temp files and the store's other files are never listed.
    fn list(&self, dir: &str) -> Result<Vec<Entry>, StorageError> {
        const OP: &str = "list";
        let blobs_root = format!("{LAYOUT_DIR}/blobs/");
        let dir_slash = if dir.ends_with('/') {
            dir.to_owned()
        } else {
            format!("{dir}/")
        };
        if dir_slash == format!("{LAYOUT_DIR}/") {
            return Ok(vec![Entry {
                path: blobs_root,
                len: None,
            }]);
        }
        let shard = match dir_slash.strip_prefix(&blobs_root) {
            Some("") => None,
            Some(s) if is_shard(s.trim_end_matches('/')) && s.matches('/').count() == 1 => {
                Some(s.trim_end_matches('/').to_owned())
            }
            _ => return Err(rejected(OP, dir, not_a_blob(dir))),
        };
        let on_disk = self.blobs_dir().join(shard.as_deref().unwrap_or(""));
        let entries = match fs::read_dir(&on_disk) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(local(OP, dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| local(OP, dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue; // removed meanwhile
            };
            match &shard {
                None if meta.is_dir() && is_shard(&name) => out.push(Entry {
                    path: format!("{blobs_root}{name}/"),
                    len: None,
                }),
                Some(shard)
                    if meta.is_file()
                        && name.starts_with(shard.as_str())
                        && name.len() == 64
                        && parse_hex(&name).is_some() =>
                {
                    out.push(Entry {
                        path: format!("{dir_slash}{name}"),
                        len: Some(meta.len()),
                    })
                }
                _ => {}
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        const OP: &str = "delete";
        let hash = Self::blob_hash(OP, path)?;
        let Some(bytes) = self.len_on_disk(OP, path, &hash)? else {
            return Ok(());
        };
        let file = self.store.blob_path(&hash);
        let item = GcItem::Blob {
            path: file.clone(),
            bytes,
            reason: "deleted through the Storage trait".to_owned(),
        };
        let removed = self
            .store
            .gc_apply(std::slice::from_ref(&item))
            .map_err(|e| store_error(OP, path, e))?;
        if removed.removed == 0 && self.len_on_disk(OP, path, &hash)?.is_some() {
            return Err(rejected(
                OP,
                path,
                "a record of the local store still uses this blob; it stays (remove the record, then gc removes the blob)".to_owned(),
            ));
        }
        Ok(())
    }

    fn create_if_absent(&self) -> CreateIfAbsent {
        CreateIfAbsent::CheckThenWrite
    }

    fn describe(&self) -> String {
        format!("local store {}", self.store.root().display())
    }
}

impl LocalStorage<'_> {
    /// `<root>/v1/blobs`, as the store lays it out (the parent of a shard).
    fn blobs_dir(&self) -> PathBuf {
        let any = self.store.blob_path(&[0; 32]);
        any.parent()
            .and_then(|shard| shard.parent())
            .expect("a blob path is <blobs>/<shard>/<name>")
            .to_owned()
    }
}

fn is_shard(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// 64 lowercase hex digits, the only spelling of a blob's name.
fn parse_hex(name: &str) -> Option<[u8; 32]> {
    if name.len() != 64 || !name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    trove_fingerprint::from_hex(name)?.try_into().ok()
}

fn hex(hash: &[u8; 32]) -> String {
    trove_fingerprint::hex(hash)
}

fn not_a_blob(path: &str) -> String {
    format!(
        "the local store holds blobs only, at {LAYOUT_DIR}/blobs/ab/<64 hex blake3> (its records are in its SQLite index); `{path}` is not one"
    )
}

fn rejected(op: &'static str, path: &str, reason: String) -> StorageError {
    StorageError::Rejected {
        op,
        path: path.to_owned(),
        reason,
    }
}

fn local(op: &'static str, path: &str, source: io::Error) -> StorageError {
    StorageError::Local {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A store error: a corrupt blob (which the store has quarantined) is refused, anything
/// else is local I/O.
fn store_error(op: &'static str, path: &str, e: StoreError) -> StorageError {
    match e {
        StoreError::CorruptBlob { .. } | StoreError::RecordMismatch { .. } => {
            rejected(op, path, e.to_string())
        }
        e => local(op, path, io::Error::other(e)),
    }
}
