//! Opening, creating and recovering the SQLite index.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, config::DbConfig};

use crate::StoreError;
use trove_fingerprint::now_ms;

/// The index schema version this code writes and reads (`PRAGMA user_version` of
/// `index.sqlite`); a newer one is refused with [`StoreError::NewerFormat`].
///
/// 1: the `variants` table. 2: adds `blob_inline`, a copy of each small blob's content
/// (see [`INLINE_MAX`]) so that a disk hit of a small object reads one SQLite row instead
/// of a row and a file; a version-1 index is migrated on open (the table starts empty:
/// blobs published before keep being read from their files).
pub const SCHEMA_VERSION: i64 = 2;

/// Blobs up to this many bytes get a copy in the index (`blob_inline`), written in the
/// transaction that inserts a record pointing at them. The blob file stays the source of
/// truth for everything else (gc, verify, `has_blob`, the shared tier); the copy is
/// verified against the blob's blake3 before it is returned, as a file is.
pub(crate) const INLINE_MAX: u64 = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS variants (
    id             INTEGER PRIMARY KEY,
    key            BLOB(32) NOT NULL,
    recipe         TEXT NOT NULL,
    args           TEXT NOT NULL,
    recipe_version INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    last_used_ms   INTEGER NOT NULL,
    hits           INTEGER NOT NULL DEFAULT 0,
    blob_hash      BLOB(32) NOT NULL,
    blob_len       INTEGER NOT NULL,
    codec          INTEGER NOT NULL,
    trace          BLOB NOT NULL,
    reason         TEXT NOT NULL,
    status         INTEGER NOT NULL DEFAULT 0,
    status_reason  TEXT,
    checksum       BLOB(32) NOT NULL
);
CREATE INDEX IF NOT EXISTS variants_by_key ON variants (key, status);
CREATE INDEX IF NOT EXISTS variants_by_blob ON variants (blob_hash);
";

/// Schema version 2 over 1: the inline copies of small blobs, named by their blake3.
const SCHEMA_2: &str = "
CREATE TABLE IF NOT EXISTS blob_inline (
    hash  BLOB PRIMARY KEY,
    bytes BLOB NOT NULL
) WITHOUT ROWID;
";

/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The write-ahead log's length from which a write ends by emptying it
/// ([`keep_wal_short`]): 256 pages of 4 KiB and their frame headers.
pub const WAL_EMPTY_AT: u64 = 1 << 20;

/// The identity `(dev, ino)` of a file, to notice an index another process replaced.
pub(crate) type FileId = (u64, u64);

#[cfg(unix)]
pub(crate) fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub(crate) fn file_id(_path: &Path) -> Option<FileId> {
    None
}

/// Whether an error means the index file itself is damaged.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Opens the index at `path`, creating the schema when the file is new.
///
/// Returns the raw rusqlite error so that the caller can tell corruption apart; a newer
/// schema is reported as `Ok(Err(found))`.
pub(crate) fn open(path: &Path) -> rusqlite::Result<Result<Connection, i64>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Read the version before changing anything, so a newer index is left untouched.
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Ok(Err(found));
    }
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(index = %path.display(), mode, "the store index could not switch to WAL mode");
    }
    // Keep the WAL when the last connection closes: checkpointing and deleting it on
    // close, then creating it again on the next open, cost a short-lived process (one
    // `trove run`) three fsyncs for a read. `keep_wal_short` empties it as it grows.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    // FULL: a record committed after its blob was published must survive a power loss.
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")?;
    conn.set_prepared_statement_cache_capacity(32);
    if found < SCHEMA_VERSION {
        let mut conn = conn;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have created the schema while we waited for the write lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > SCHEMA_VERSION {
            return Ok(Err(now));
        }
        if now < 1 {
            tx.execute_batch(SCHEMA)?;
        }
        if now < 2 {
            tx.execute_batch(SCHEMA_2)?;
        }
        if now < SCHEMA_VERSION {
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        }
        tx.commit()?;
        return Ok(Ok(conn));
    }
    Ok(Ok(conn))
}

/// [`open`], retried while another process holds a lock the busy handler does not wait
/// for: switching a fresh database to WAL needs an exclusive lock and SQLite answers
/// `SQLITE_BUSY` at once when several processes create one store at the same moment.
fn open_waiting(path: &Path) -> rusqlite::Result<Result<Connection, i64>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(1);
    loop {
        match open(path) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Opens the index, moving a corrupt one to `quarantine` and starting afresh.
pub(crate) fn open_or_recover(path: &Path, quarantine: &Path) -> Result<Connection, StoreError> {
    let first = match open_waiting(path) {
        Ok(r) => r,
        Err(e) if is_corruption(&e) => {
            tracing::warn!(
                index = %path.display(),
                error = %e,
                "the store index is corrupt; moving it to quarantine and starting a fresh one (existing blobs become orphans for gc)"
            );
            quarantine_files(path, quarantine)?;
            open(path).map_err(|source| sql_err(path, source))?
        }
        Err(e) => return Err(sql_err(path, e)),
    };
    first.map_err(|found| StoreError::NewerFormat {
        found,
        supported: SCHEMA_VERSION,
    })
}

/// Moves the index and its WAL and shared-memory files into `quarantine`.
pub(crate) fn quarantine_files(path: &Path, quarantine: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(quarantine).map_err(|e| StoreError::io(quarantine, e))?;
    let stamp = now_ms();
    for suffix in ["", "-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let from = PathBuf::from(from);
        let name = from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = quarantine.join(format!("{name}.{stamp}"));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(from, e)),
        }
    }
    Ok(())
}

pub(crate) fn sql_err(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Empties the write-ahead log once it has grown to [`WAL_EMPTY_AT`]: called after a
/// write committed (`conn` outside a transaction), it copies the log's pages into the
/// index and truncates the log (`wal_checkpoint(TRUNCATE)`), without waiting: while
/// another connection reads or writes, the log is left to a later write.
///
/// SQLite's own checkpoint after a commit does not keep the log short for a store used
/// by short-lived processes. The log starts over only when a writer begins after a
/// checkpoint copied every frame back, and a process's first connection rebuilds the
/// log's index by reading the whole file (the shared-memory index is reset when no
/// other process has it open) without knowing what was copied back. A process that
/// writes once, as every `trove run` hit does (its use counter), so appends to the log
/// for good: every later process reads all of it when it opens the index, and past
/// 1000 pages copies all of it back on its commit.
pub(crate) fn keep_wal_short(conn: &Connection, wal: &Path) {
    let long = std::fs::metadata(wal).is_ok_and(|m| m.len() >= WAL_EMPTY_AT);
    if !long || !conn.is_autocommit() {
        return;
    }
    let emptied = conn.busy_timeout(Duration::ZERO).and_then(|()| {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        })
    });
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::warn!(wal = %wal.display(), error = %e, "cannot restore the index's busy timeout");
    }
    match emptied {
        Ok(0) => tracing::debug!(wal = %wal.display(), "emptied the index's write-ahead log"),
        // Another connection holds a lock: a later write tries again.
        Ok(_) => {
            tracing::debug!(wal = %wal.display(), "the index's write-ahead log is in use; left for a later write")
        }
        Err(e) => {
            tracing::warn!(wal = %wal.display(), error = %e, "cannot empty the index's write-ahead log")
        }
    }
}
