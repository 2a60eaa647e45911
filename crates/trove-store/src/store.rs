//! The `Store`: index connection management and the record and blob operations.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::faults::fail_point;
use crate::index::{self, FileId, file_id, is_corruption};
use crate::lock::KeyLock;
use trove_fingerprint::hex;

use crate::paths::Layout;
use crate::record::{Decoded, Signed, decode_row};
use crate::{BlobId, Key, NewRecord, Record, StoreError, blob};

/// The columns every row query selects, in the order `decode_row` reads them. A macro so
/// that the SQL strings stay literals (they are the keys of the prepared-statement cache).
macro_rules! columns {
    () => {
        "id, key, recipe, args, recipe_version, created_ms, last_used_ms, hits, blob_hash, \
         blob_len, codec, trace, reason, status, status_reason, checksum"
    };
}

/// Tuning of a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many live variants a key keeps; inserting beyond it evicts the least recently
    /// used. Values below 1 are treated as 1 (the variant just inserted is always kept).
    pub max_variants: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_variants: 4 }
    }
}

/// The local disk tier: a SQLite index plus content-addressed blob files under one
/// directory, shared safely by threads (`Store` is `Send + Sync`) and processes.
///
/// ```
/// use trove_store::{NewRecord, Store};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// let blob = store.put_blob(b"an expensive object").unwrap();
/// let key = [7u8; 32];
/// let id = store
///     .insert(&NewRecord {
///         key,
///         recipe: "table".into(),
///         args: "2024".into(),
///         recipe_version: 3,
///         created_ms: 1_700_000_000_000,
///         blob,
///         codec: 0,
///         trace: b"opaque engine trace".to_vec(),
///         reason: "built: no entry".into(),
///     })
///     .unwrap();
/// let newest = &store.variants(&key).unwrap()[0];
/// assert_eq!(newest.id, id);
/// assert_eq!(store.read_blob(&newest.blob).unwrap(), b"an expensive object");
/// ```
pub struct Store {
    pub(crate) layout: Layout,
    opts: StoreOptions,
    index: Mutex<Index>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.layout.root)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// The connection plus the identity of the file it has open, to notice when another
/// process replaced a corrupt index.
struct Index {
    conn: Connection,
    file: Option<FileId>,
}

/// The error of one index operation, before the index path is attached.
pub(crate) enum OpError {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Sql(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64, OpError> {
    i64::try_from(v).map_err(|_| {
        OpError::Sql(rusqlite::Error::ToSqlConversionFailure(
            format!("{what} {v} does not fit in a signed 64-bit integer").into(),
        ))
    })
}

/// Marks a row quarantined, unless it already is.
pub(crate) fn mark_quarantined(conn: &Connection, id: i64, reason: &str) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached(
        "UPDATE variants SET status = 1, status_reason = ?2 WHERE id = ?1 AND status IS NOT 1",
    )?;
    st.execute(params![id, reason])?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store rooted at `root` with default options.
    ///
    /// Creates `CACHEDIR.TAG`, a `.gitignore` holding `*` (each only when missing), the
    /// `v1/` layout and the index; recovers from a corrupt index by moving it to
    /// `quarantine/`; removes temp files left by dead writers.
    /// Fails with [`StoreError::NewerFormat`] when the index was written by a newer trove.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Self::open_with(root, StoreOptions::default())
    }

    /// Opens the store rooted at `root` with the given options. See [`Store::open`].
    pub fn open_with(root: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        layout.create()?;
        let conn = index::open_or_recover(&layout.index, &layout.quarantine)?;
        let file = file_id(&layout.index);
        if let Err(e) = blob::remove_dead_temps(&layout) {
            // Leftover temp files only waste space; gc retries later.
            tracing::warn!(error = %e, "cannot clean up temp files left by dead writers");
        }
        Ok(Store {
            layout,
            opts,
            index: Mutex::new(Index { conn, file }),
        })
    }

    /// The store's root directory (the one holding `CACHEDIR.TAG` and `v1/`).
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// The versioned directory, `<root>/v1`.
    pub fn format_dir(&self) -> &Path {
        &self.layout.dir
    }

    /// The SQLite index file, `<root>/v1/index.sqlite`.
    pub fn index_path(&self) -> &Path {
        &self.layout.index
    }

    /// The quarantine directory, `<root>/v1/quarantine`.
    pub fn quarantine_dir(&self) -> &Path {
        &self.layout.quarantine
    }

    /// Runs `f` on the index connection. A corrupt index is moved to quarantine, replaced
    /// by a fresh one and `f` is run once more; an index replaced by another process is
    /// reopened first.
    pub(crate) fn with_index<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> Result<T, OpError>,
    ) -> Result<T, StoreError> {
        let mut idx = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if idx.file.is_some() && file_id(&self.layout.index) != idx.file {
            tracing::info!(index = %self.layout.index.display(), "the store index was replaced by another process; reopening it");
            self.reopen(&mut idx)?;
        }
        let changes = idx.conn.total_changes();
        match f(&mut idx.conn) {
            Ok(v) => {
                if idx.conn.total_changes() != changes {
                    index::keep_wal_short(&idx.conn, &self.layout.wal);
                }
                Ok(v)
            }
            Err(OpError::Sql(e)) if is_corruption(&e) => {
                tracing::warn!(
                    index = %self.layout.index.display(),
                    error = %e,
                    "the store index is corrupt; moving it to quarantine and starting a fresh one (existing blobs become orphans for gc)"
                );
                // Only move the file if it is still the one we found corrupt; another
                // process may have replaced it already.
                let replace_ok = idx.file.is_none() || file_id(&self.layout.index) == idx.file;
                let old = std::mem::replace(
                    &mut idx.conn,
                    Connection::open_in_memory().map_err(|e| self.sql_err(e))?,
                );
                let _ = old.close();
                if replace_ok {
                    index::quarantine_files(&self.layout.index, &self.layout.quarantine)?;
                }
                self.reopen(&mut idx)?;
                f(&mut idx.conn).map_err(|e| self.op_err(e))
            }
            Err(e) => Err(self.op_err(e)),
        }
    }

    fn reopen(&self, idx: &mut Index) -> Result<(), StoreError> {
        idx.conn = index::open_or_recover(&self.layout.index, &self.layout.quarantine)?;
        idx.file = file_id(&self.layout.index);
        Ok(())
    }

    fn sql_err(&self, e: rusqlite::Error) -> StoreError {
        index::sql_err(&self.layout.index, e)
    }

    fn op_err(&self, e: OpError) -> StoreError {
        match e {
            OpError::Sql(e) => self.sql_err(e),
            OpError::Store(e) => e,
        }
    }

    // ---------------------------------------------------------------- blobs

    /// Hashes `bytes` with blake3 and publishes them atomically as a blob (temp file in
    /// the same directory, fsync, rename, fsync of the directory). Identical content is
    /// stored once: if the blob already exists with the right length nothing is written.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<BlobId, StoreError> {
        self.put_blob_hashed(bytes, blob::hash_bytes(bytes))
    }

    /// [`Store::put_blob`] for a caller that already hashed `bytes` with blake3 (the
    /// engine hashes an object once, for its digest, before storing it). The hash names
    /// the blob; every read verifies it, so a wrong one is caught there, never served.
    pub fn put_blob_hashed(&self, bytes: &[u8], hash: [u8; 32]) -> Result<BlobId, StoreError> {
        let id = BlobId {
            hash,
            len: bytes.len() as u64,
        };
        let path = self.blob_path(&id.hash);
        // `symlink_metadata`: a symlink planted at a blob's path is never taken for the
        // blob, nor written through (the publish renames a real file over it).
        if let Ok(meta) = fs::symlink_metadata(&path)
            && meta.is_file()
            && meta.len() == id.len
        {
            // Refresh the mtime so that gc's grace period protects a blob that is about
            // to be referenced again.
            // A read-only descriptor suffices: setting explicit times asks for ownership,
            // not write access (blobs are published read-only, mode 0444).
            if let Ok(f) = fs::File::open(&path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok(id);
        }
        blob::publish(&path, &id.hash, bytes)?;
        Ok(id)
    }

    /// Reads a whole blob and verifies its length and blake3 before returning it.
    ///
    /// A blob that does not match is moved to `quarantine/` and reported as
    /// [`StoreError::CorruptBlob`]; an absent one as [`StoreError::MissingBlob`]. When only
    /// the length in `id` is wrong and the file still hashes to its name, the blob is
    /// intact and stays: [`StoreError::RecordMismatch`].
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, StoreError> {
        blob::read_verified(&self.layout, id)
    }

    /// Whether the blob file exists with the expected length (its content is not hashed).
    pub fn has_blob(&self, id: &BlobId) -> bool {
        fs::metadata(self.blob_path(&id.hash)).is_ok_and(|m| m.is_file() && m.len() == id.len)
    }

    /// The path of the blob file with this blake3: `<root>/v1/blobs/ab/<64 hex>`.
    pub fn blob_path(&self, hash: &[u8; 32]) -> PathBuf {
        self.layout.blob_path(hash)
    }

    // ---------------------------------------------------------------- records

    /// Inserts a record and returns its row id.
    ///
    /// The blob must already be published (the file must exist with the record's
    /// length), else [`StoreError::MissingBlob`] or [`StoreError::CorruptBlob`]. Afterwards
    /// the key keeps at most `max_variants` live rows: the least recently used
    /// (`last_used_ms`, then `id`) beyond the limit are deleted, never the new row. Their
    /// blobs stay for gc, since another row may share them.
    pub fn insert(&self, rec: &NewRecord) -> Result<i64, StoreError> {
        let checksum = Signed::of_new(rec).checksum();
        let blob_path = self.blob_path(&rec.blob.hash);
        let keep_others = self.opts.max_variants.max(1) - 1;
        self.with_index(|conn| {
            fail_point!("store::record-insert", |e| Err(StoreError::io(&self.layout.index, e).into()));
            let blob_len = to_i64(rec.blob.len, "blob length")?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Checked under the write lock: gc_apply re-checks references under the same
            // lock before deleting a blob, so a committed row always has its blob.
            check_published(&blob_path, &rec.blob)?;
            crate::inline::add(&tx, &blob_path, &rec.blob)?;
            let id = {
                let mut st = tx.prepare_cached(
                    "INSERT INTO variants (key, recipe, args, recipe_version, created_ms, \
                     last_used_ms, hits, blob_hash, blob_len, codec, trace, reason, status, \
                     status_reason, checksum) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, ?7, ?8, ?9, ?10, 0, NULL, ?11)",
                )?;
                st.insert(params![
                    &rec.key[..],
                    rec.recipe,
                    rec.args,
                    i64::from(rec.recipe_version),
                    rec.created_ms,
                    &rec.blob.hash[..],
                    blob_len,
                    i64::from(rec.codec),
                    &rec.trace[..],
                    rec.reason,
                    &checksum[..],
                ])?
            };
            {
                let mut st = tx.prepare_cached(
                    "DELETE FROM variants WHERE id IN (SELECT id FROM variants \
                     WHERE key = ?1 AND status = 0 AND id != ?2 \
                     ORDER BY last_used_ms DESC, id DESC LIMIT -1 OFFSET ?3)",
                )?;
                let evicted = st.execute(params![&rec.key[..], id, keep_others as i64])?;
                if evicted > 0 {
                    tracing::debug!(key = %hex(&rec.key), evicted, "evicted least recently used variants");
                }
            }
            fail_point!("store::record-commit", |e| Err(StoreError::io(&self.layout.index, e).into()));
            tx.commit()?;
            fail_point!("store::record-committed", |e| Err(
                StoreError::io(&self.layout.index, e).into()
            ));
            Ok(id)
        })
    }

    /// The live variants of `key`, newest first (`created_ms` descending, then `id`).
    ///
    /// Every row's checksum is verified; a row that fails, or holds out-of-range values,
    /// is quarantined and left out.
    pub fn variants(&self, key: &Key) -> Result<Vec<Record>, StoreError> {
        self.newest_variants(key, None)
    }

    /// The first `limit` rows of [`Store::variants`] (all of them for `None`): a hit that
    /// the newest variant answers reads one row, not every variant's trace. Rows that fail
    /// their checksum are quarantined and left out, so fewer may come back.
    pub fn newest_variants(
        &self,
        key: &Key,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, StoreError> {
        // The limit is part of the statement's text, not a bound parameter: a parameter
        // there made SQLite prepare the statement again on every execution (measured:
        // a quarter of a small disk hit's time in `sqlite3Reprepare`).
        const QUERY: &str = concat!(
            "SELECT ",
            columns!(),
            ", (SELECT bytes FROM blob_inline WHERE hash = variants.blob_hash) \
             FROM variants WHERE key = ?1 AND status = 0 \
             ORDER BY created_ms DESC, id DESC"
        );
        // The newest variant alone: its id is chosen first, from the index and the rows'
        // leading columns, and only its row is read whole. Sorting the full rows (`USE
        // TEMP B-TREE FOR ORDER BY`) read every variant's trace, checksum and inline blob
        // into the sorter, each trace's overflow pages included, to keep one.
        const NEWEST: &str = concat!(
            "SELECT ",
            columns!(),
            ", (SELECT bytes FROM blob_inline WHERE hash = variants.blob_hash) \
             FROM variants WHERE id = (SELECT id FROM variants \
             WHERE key = ?1 AND status = 0 ORDER BY created_ms DESC, id DESC LIMIT 1)"
        );
        let limited;
        let sql = match limit {
            Some(1) => NEWEST,
            Some(n) => {
                limited = format!("{QUERY} LIMIT {n}");
                limited.as_str()
            }
            None => QUERY,
        };
        self.with_index(|conn| {
            let decoded: Vec<Decoded> = {
                // With each row, the index's copy of its blob when it keeps one (small
                // blobs): one query serves a small object's record and content.
                let mut st = conn.prepare_cached(sql)?;
                st.query_map([&key[..]], |row| {
                    let mut d = decode_row(row)?;
                    d.record.inline = match row.get_ref(16)? {
                        rusqlite::types::ValueRef::Blob(b) => Some(b.to_vec()),
                        _ => None,
                    };
                    Ok(d)
                })?
                .collect::<rusqlite::Result<_>>()?
            };
            let mut out = Vec::with_capacity(decoded.len());
            for d in decoded {
                match d.corrupt {
                    None => out.push(d.record),
                    Some(reason) => {
                        tracing::warn!(id = d.record.id, key = %hex(key), %reason, "quarantining a corrupt record");
                        mark_quarantined(conn, d.record.id, &reason)?;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Records a hit: `last_used_ms = now_ms`, `hits += 1`. A row removed in the meantime
    /// (evicted by another process) is not an error.
    ///
    /// Usage counters are not worth an fsync each: this one write runs with
    /// `synchronous=NORMAL` (WAL stays consistent; only the latest hits can be lost to a
    /// power failure, and they are flushed by the next durable commit).
    pub fn touch(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.touch_many(&[(id, now_ms)])
    }

    /// [`Store::touch`] for several hits in one transaction: `(id, now_ms)` pairs, a row
    /// named twice counted twice. Hit counts are not worth an fsync: this commits with
    /// `synchronous=NORMAL` (a power loss may lose the latest counts, never a record).
    pub fn touch_many(&self, hits: &[(i64, i64)]) -> Result<(), StoreError> {
        if hits.is_empty() {
            return Ok(());
        }
        self.with_index(|conn| {
            conn.execute_batch("PRAGMA synchronous=NORMAL")?;
            let r = (|| {
                let tx = conn.transaction()?;
                {
                    let mut st = tx.prepare_cached(
                        "UPDATE variants SET last_used_ms = max(last_used_ms, ?2), hits = hits + 1 WHERE id = ?1",
                    )?;
                    for (id, now_ms) in hits {
                        st.execute(params![id, now_ms])?;
                    }
                }
                tx.commit()
            })();
            conn.execute_batch("PRAGMA synchronous=FULL")?;
            r?;
            Ok(())
        })
    }

    /// Replaces a record's trace (for example with refreshed file metadata) and its
    /// checksum. A row removed in the meantime is not an error; a row that fails its
    /// checksum is quarantined and reported as [`StoreError::CorruptRecord`].
    pub fn update_trace(&self, id: i64, trace: &[u8]) -> Result<(), StoreError> {
        self.with_index(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = {
                let mut st = tx.prepare_cached(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM variants WHERE id = ?1"
                ))?;
                st.query_row([id], decode_row).optional()?
            };
            let Some(Decoded {
                mut record,
                corrupt,
            }) = row
            else {
                return Ok(());
            };
            if let Some(reason) = corrupt {
                mark_quarantined(&tx, id, &reason)?;
                tx.commit()?;
                return Err(StoreError::CorruptRecord { id, reason }.into());
            }
            record.trace = trace.to_vec();
            let checksum = Signed::of_record(&record).checksum();
            tx.prepare_cached("UPDATE variants SET trace = ?2, checksum = ?3 WHERE id = ?1")?
                .execute(params![id, trace, &checksum[..]])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Quarantines a record: it is no longer live, `records()` shows it with `reason`,
    /// and gc removes it.
    pub fn quarantine(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        self.with_index(|conn| {
            conn.prepare_cached(
                "UPDATE variants SET status = 1, status_reason = ?2 WHERE id = ?1",
            )?
            .execute(params![id, reason])?;
            Ok(())
        })
    }

    /// Deletes a record row. Its blob stays (another row may share it); gc removes
    /// orphan blobs.
    pub fn remove(&self, id: i64) -> Result<(), StoreError> {
        self.with_index(|conn| {
            conn.prepare_cached("DELETE FROM variants WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
    }

    /// Every row, quarantined ones included (`quarantined: Some(reason)`), by id. Rows
    /// failing their checksum are quarantined on the way and come back as such.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        Ok(self.scan_records()?.into_iter().map(|(r, _)| r).collect())
    }

    /// Every row, with `Some(reason)` for the rows this scan found corrupt and quarantined.
    pub(crate) fn scan_records(&self) -> Result<Vec<(Record, Option<String>)>, StoreError> {
        self.with_index(|conn| {
            let decoded: Vec<Decoded> = {
                let mut st = conn.prepare_cached(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM variants ORDER BY id"
                ))?;
                st.query_map([], decode_row)?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut out = Vec::with_capacity(decoded.len());
            for Decoded {
                mut record,
                corrupt,
            } in decoded
            {
                if let Some(reason) = &corrupt {
                    tracing::warn!(id = record.id, %reason, "quarantining a corrupt record");
                    mark_quarantined(conn, record.id, reason)?;
                    record.quarantined = Some(reason.clone());
                }
                out.push((record, corrupt));
            }
            Ok(out)
        })
    }

    // ---------------------------------------------------------------- locks

    /// Takes the key's exclusive cross-process lock, waiting as long as it takes.
    ///
    /// Released when the [`KeyLock`] is dropped or the process dies.
    pub fn lock_key(&self, key: &Key) -> Result<KeyLock, StoreError> {
        KeyLock::acquire(self.layout.lock_path(key))
    }

    /// The directory where processes waiting for a key's lock say what they wait for
    /// (the engine's cross-process wait-for graph; see `trove`'s `engine/waits.rs`).
    pub fn waits_dir(&self) -> std::path::PathBuf {
        self.layout.locks.join("waits")
    }

    /// Takes the key's lock if it is free; `None` when another holder (thread or process)
    /// has it.
    pub fn try_lock_key(&self, key: &Key) -> Result<Option<KeyLock>, StoreError> {
        KeyLock::try_acquire(self.layout.lock_path(key))
    }
}

/// Checks that a blob is published with the expected length.
fn check_published(path: &Path, id: &BlobId) -> Result<(), StoreError> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == id.len => Ok(()),
        Ok(m) => Err(StoreError::CorruptBlob {
            hash_hex: hex(&id.hash),
            reason: format!("file is {} bytes, the record says {}", m.len(), id.len),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::MissingBlob {
            hash_hex: hex(&id.hash),
        }),
        Err(e) => Err(StoreError::io(path, e)),
    }
}
