//! Maintenance: `verify` and the store-level garbage collection primitives.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use trove_fingerprint::hex;

use crate::paths::{self, BlobFile, parse_hex32};
use crate::{Key, Store, StoreError, blob};

/// What [`Store::verify`] checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Live records whose checksum was checked.
    pub records: u64,
    /// Blob files whose blake3 was checked.
    pub blobs: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Records quarantined by this run.
    pub quarantined_records: u64,
    /// Blob files moved to quarantine by this run.
    pub quarantined_blobs: u64,
    /// One line per problem found, in the order found.
    pub corrupt: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
    }
}

/// One piece of store-level garbage found by [`Store::gc_plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcItem {
    /// A record row to delete (a quarantined one, or any row the engine decided to drop).
    Record {
        /// Row id.
        id: i64,
        /// The row's key; deletion only happens if the id still holds this key.
        key: Key,
        /// Recipe name, for display.
        recipe: String,
        /// Approximate bytes the row takes in the index (its blob is a separate item).
        bytes: u64,
        /// Why it is garbage.
        reason: String,
    },
    /// A blob file no live record references, or a stray file among the blobs.
    Blob {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// Why it is garbage.
        reason: String,
    },
    /// A temp file whose writer is dead (its lock could be taken).
    TempFile {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A file in `quarantine/`.
    Quarantined {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
}

impl GcItem {
    /// Why the item is garbage, as a sentence fragment for `trove gc`.
    pub fn reason(&self) -> String {
        match self {
            GcItem::Record { reason, .. } | GcItem::Blob { reason, .. } => reason.clone(),
            GcItem::TempFile { .. } => "temp file left by a dead writer".to_owned(),
            GcItem::Quarantined { .. } => "quarantined file".to_owned(),
        }
    }

    /// The bytes removing it frees.
    pub fn bytes(&self) -> u64 {
        match self {
            GcItem::Record { bytes, .. }
            | GcItem::Blob { bytes, .. }
            | GcItem::TempFile { bytes, .. }
            | GcItem::Quarantined { bytes, .. } => *bytes,
        }
    }

    /// The file the item is about, if it is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            GcItem::Record { .. } => None,
            GcItem::Blob { path, .. }
            | GcItem::TempFile { path, .. }
            | GcItem::Quarantined { path, .. } => Some(path),
        }
    }
}

/// What [`Store::gc_apply`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Items removed (items already gone, or found in use again, are not counted).
    pub removed: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// Approximate size of a row in the index.
fn row_bytes(r: &crate::Record) -> u64 {
    (r.trace.len() + r.recipe.len() + r.args.len() + r.reason.len() + 3 * 32 + 8 * 8) as u64
}

impl Store {
    /// Checks every live record's checksum and every blob file's blake3, and that each
    /// live record's blob exists with the right length. What is corrupt is quarantined:
    /// records get status 1, blob files move to `quarantine/`, and records whose blob is
    /// missing or corrupt are quarantined too.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let rows = self.scan_records()?;
        let mut live = Vec::new();
        for (record, newly_corrupt) in rows {
            if let Some(reason) = newly_corrupt {
                report.records += 1;
                report.quarantined_records += 1;
                report.corrupt.push(format!(
                    "record {} ({} {}, key {}): {reason}; quarantined",
                    record.id,
                    record.recipe,
                    record.args,
                    hex(&record.key)
                ));
            } else if record.quarantined.is_none() {
                report.records += 1;
                live.push(record);
            }
        }

        let mut bad_blobs = HashSet::new();
        for (path, kind) in paths::walk_blobs(&self.layout.blobs)? {
            let BlobFile::Final(hash) = kind else {
                continue;
            };
            let name = hex(&hash);
            match blob::hash_file(&path) {
                Ok((actual, len)) => {
                    report.blobs += 1;
                    report.bytes += len;
                    if actual != hash {
                        blob::quarantine_file(&self.layout, &path, &name, None);
                        report.quarantined_blobs += 1;
                        report.corrupt.push(format!(
                            "blob {name}: its blake3 is {}; moved to quarantine",
                            hex(&actual)
                        ));
                        bad_blobs.insert(hash);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    report
                        .corrupt
                        .push(format!("blob {name}: cannot be read: {e}"));
                    bad_blobs.insert(hash);
                }
            }
        }

        for record in live {
            let problem = if bad_blobs.contains(&record.blob.hash) {
                Some("blob corrupt".to_owned())
            } else {
                match fs::metadata(self.blob_path(&record.blob.hash)) {
                    Ok(m) if m.len() == record.blob.len => None,
                    Ok(m) => Some(format!(
                        "blob is {} bytes, the record says {}",
                        m.len(),
                        record.blob.len
                    )),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Some("blob missing".to_owned())
                    }
                    Err(e) => Some(format!("blob cannot be read: {e}")),
                }
            };
            if let Some(problem) = problem {
                self.quarantine(record.id, &problem)?;
                report.quarantined_records += 1;
                report.corrupt.push(format!(
                    "record {} ({} {}, key {}): {problem} (blob {}); quarantined",
                    record.id,
                    record.recipe,
                    record.args,
                    hex(&record.key),
                    hex(&record.blob.hash)
                ));
            }
        }
        Ok(report)
    }

    /// Lists store-level garbage: quarantined records, blobs no live record references,
    /// temp files of dead writers, stray files among the blobs, and files in
    /// `quarantine/`. Nothing is removed (except that rows found failing their checksum
    /// are quarantined on the way, as every read does); pass the items to
    /// [`Store::gc_apply`].
    ///
    /// A blob referenced only by quarantined records is listed with them, so one
    /// `gc_apply` of the whole plan frees both.
    pub fn gc_plan(&self) -> Result<Vec<GcItem>, StoreError> {
        self.gc_plan_older_than(Duration::ZERO)
    }

    /// Like [`Store::gc_plan`], but leaves out orphan blobs modified less than `min_age`
    /// ago. A blob is published before its record is inserted, so a concurrent builder's
    /// blob is briefly an orphan; a grace period of a few minutes keeps gc from deleting
    /// it under the builder (whose insert would then fail with `MissingBlob`).
    pub fn gc_plan_older_than(&self, min_age: Duration) -> Result<Vec<GcItem>, StoreError> {
        let rows = self.scan_records()?;
        let mut items = Vec::new();
        let mut live: HashSet<[u8; 32]> = HashSet::new();
        let mut quarantined: HashSet<[u8; 32]> = HashSet::new();
        for (record, _) in &rows {
            match &record.quarantined {
                None => {
                    live.insert(record.blob.hash);
                }
                Some(reason) => {
                    quarantined.insert(record.blob.hash);
                    items.push(GcItem::Record {
                        id: record.id,
                        key: record.key,
                        recipe: record.recipe.clone(),
                        bytes: row_bytes(record),
                        reason: format!("quarantined: {reason}"),
                    });
                }
            }
        }

        let now = SystemTime::now();
        let mut temps = Vec::new();
        for (path, kind) in paths::walk_blobs(&self.layout.blobs)? {
            match kind {
                BlobFile::Final(hash) => {
                    if live.contains(&hash) {
                        continue;
                    }
                    let Some(meta) = stat(&path)? else { continue };
                    let age = meta
                        .modified()
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .unwrap_or(Duration::ZERO);
                    if age < min_age {
                        continue;
                    }
                    let reason = if quarantined.contains(&hash) {
                        "orphan blob: only quarantined records reference it"
                    } else {
                        "orphan blob: no record references it"
                    };
                    items.push(GcItem::Blob {
                        path,
                        bytes: meta.len(),
                        reason: reason.to_owned(),
                    });
                }
                BlobFile::Temp => {
                    let Some(locked) = blob::take_dead_temp(&path)? else {
                        continue;
                    };
                    let bytes = locked.metadata().map(|m| m.len()).unwrap_or(0);
                    drop(locked);
                    temps.push(GcItem::TempFile { path, bytes });
                }
                BlobFile::Stray => {
                    let Some(meta) = stat(&path)? else { continue };
                    if meta.is_dir() {
                        continue;
                    }
                    items.push(GcItem::Blob {
                        path,
                        bytes: meta.len(),
                        reason: "unexpected file in the blob directory".to_owned(),
                    });
                }
            }
        }
        items.extend(temps);

        let entries = match fs::read_dir(&self.layout.quarantine) {
            Ok(rd) => Some(rd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(&self.layout.quarantine, e)),
        };
        for entry in entries.into_iter().flatten() {
            let entry = entry.map_err(|e| StoreError::io(&self.layout.quarantine, e))?;
            let path = entry.path();
            let Some(meta) = stat(&path)? else { continue };
            if meta.is_file() {
                items.push(GcItem::Quarantined {
                    path,
                    bytes: meta.len(),
                });
            }
        }
        Ok(items)
    }

    /// Removes the given items. Record items are deleted by id (only if the id still
    /// holds the item's key); a blob is deleted only if no row references it at that
    /// moment, checked under the index's write lock so a concurrent insert cannot lose
    /// its blob; a temp file only if its writer is still dead. Items already gone are
    /// skipped. Paths outside the store are refused with [`StoreError::OutsideStore`].
    pub fn gc_apply(&self, items: &[GcItem]) -> Result<GcStats, StoreError> {
        for item in items {
            if let Some(path) = item.path() {
                let inside = match item {
                    GcItem::Quarantined { .. } => &self.layout.quarantine,
                    _ => &self.layout.blobs,
                };
                let escapes = path.components().any(|c| matches!(c, Component::ParentDir));
                if escapes || !path.starts_with(inside) || path == inside {
                    return Err(StoreError::OutsideStore {
                        path: path.to_owned(),
                        store: inside.clone(),
                    });
                }
            }
        }
        let mut stats = GcStats::default();
        // Records first, so blobs referenced only by removed records are free to go.
        for item in items {
            if let GcItem::Record { id, key, bytes, .. } = item {
                let deleted = self.with_index(|conn| {
                    Ok(conn
                        .prepare_cached("DELETE FROM variants WHERE id = ?1 AND key = ?2")?
                        .execute(params![id, &key[..]])?)
                })?;
                if deleted > 0 {
                    stats.removed += 1;
                    stats.bytes += bytes;
                }
            }
        }
        for item in items {
            let freed = match item {
                GcItem::Record { .. } => None,
                GcItem::Blob { path, .. } => self.remove_blob_file(path)?,
                GcItem::TempFile { path, .. } => match blob::take_dead_temp(path)? {
                    Some(locked) => {
                        let bytes = locked.metadata().map(|m| m.len()).unwrap_or(0);
                        let removed = paths::remove_if_exists(path)?;
                        drop(locked);
                        removed.then_some(bytes)
                    }
                    None => None,
                },
                GcItem::Quarantined { path, .. } => remove_file_counted(path)?,
            };
            if let Some(bytes) = freed {
                stats.removed += 1;
                stats.bytes += bytes;
            }
        }
        // Copies no row references (left by a trove of schema version 1, whose gc removes
        // files only): a copy is only ever added with a row that references it, in one
        // transaction, so an unreferenced one is garbage at any moment.
        self.with_index(|conn| Ok(crate::inline::remove_unreferenced(conn)?))?;
        Ok(stats)
    }

    /// Removes a blob file unless a row references it, under the index write lock.
    fn remove_blob_file(&self, path: &Path) -> Result<Option<u64>, StoreError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(hash) = parse_hex32(name) else {
            // A stray file: no row can reference it.
            return remove_file_counted(path);
        };
        self.with_index(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let referenced = tx
                .prepare_cached("SELECT 1 FROM variants WHERE blob_hash = ?1 LIMIT 1")?
                .query_row([&hash[..]], |_| Ok(()))
                .optional()?
                .is_some();
            let freed = if referenced {
                tracing::debug!(blob = name, "blob is referenced again; not removed");
                None
            } else {
                // The index's copy of the blob goes with its file, under the same lock.
                crate::inline::remove(&tx, &hash)?;
                remove_file_counted(path)?
            };
            tx.commit()?;
            Ok(freed)
        })
    }

    /// Sum of the sizes of all published blob files.
    pub fn total_blob_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for (path, kind) in paths::walk_blobs(&self.layout.blobs)? {
            if let BlobFile::Final(_) = kind
                && let Some(meta) = stat(&path)?
            {
                total += meta.len();
            }
        }
        Ok(total)
    }
}

/// `metadata`, with "gone" as `None`.
fn stat(path: &Path) -> Result<Option<fs::Metadata>, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Removes a file and returns its size, or `None` if it was already gone.
fn remove_file_counted(path: &Path) -> Result<Option<u64>, StoreError> {
    let Some(meta) = stat(path)? else {
        return Ok(None);
    };
    Ok(paths::remove_if_exists(path)?.then_some(meta.len()))
}
