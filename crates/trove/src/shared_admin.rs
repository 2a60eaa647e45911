//! `trove status --shared` and `trove gc --shared`: the shared tier's entries, health and
//! counters, and trimming it by age and size.
//!
//! Gc deletes a variant's record before its blob, and a blob only when no remaining
//! record names it: a reader racing the delete either lists no record (a miss), or reads
//! the record and then finds no blob (`BlobMissing`, a miss that rebuilds), never a torn
//! object — a blob is verified by length and blake3 before any of it is used.

use std::time::Duration;

use trove_fingerprint::Digest;

use crate::{Engine, Error};

/// One key in the shared tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedEntry {
    /// The recipe.
    pub recipe: String,
    /// The arguments, for people.
    pub args: String,
    /// The key.
    pub key: Digest,
    /// How many variants (signed records) the key has there.
    pub variants: usize,
    /// Bytes of their blobs.
    pub size: u64,
    /// Age of the newest variant.
    pub age: Duration,
}

/// The shared tier's health and this process's counters of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedHealth {
    /// The store, as configured (`s3://bucket/prefix`, `file:///mnt/team`, ...).
    pub url: String,
    /// Whether this machine only reads.
    pub read_only: bool,
    /// Whether leases are configured.
    pub leases: bool,
    /// Calls that reached the store.
    pub calls: u64,
    /// Of those, failed (timeouts included).
    pub failures: u64,
    /// Of those, timed out.
    pub timeouts: u64,
    /// Calls skipped while the store was backing off after a failure.
    pub skipped: u64,
    /// How long the store is still skipped, if it is.
    pub retry_in: Option<Duration>,
    /// The last failure, as a sentence.
    pub last_error: Option<String>,
    /// Records that verified.
    pub records_verified: u64,
    /// Records refused (unsigned, forged, truncated, signed with another key).
    pub records_refused: u64,
    /// Blobs downloaded and verified.
    pub blobs_fetched: u64,
    /// Blobs refused as corrupt.
    pub blobs_corrupt: u64,
    /// Records this machine published first.
    pub published: u64,
    /// Why the last failed upload of this engine failed, if one did.
    pub last_upload_error: Option<String>,
}

/// What `status --shared` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedStatus {
    /// The keys, by recipe and arguments.
    pub entries: Vec<SharedEntry>,
    /// Records that were refused, each with its path and why.
    pub refused: Vec<(String, String)>,
    /// Health and counters, after the listing.
    pub health: SharedHealth,
}

/// What `gc --shared` removes.
#[derive(Clone, Debug, Default)]
pub struct SharedGcOptions {
    /// List what would be removed without removing it.
    pub dry_run: bool,
    /// Remove the oldest variants until their blobs take at most this many bytes.
    pub max_size: Option<u64>,
    /// Remove variants built longer ago than this.
    pub max_age: Option<Duration>,
    /// How long a blob no record names must have been seen so by earlier collections
    /// before it is removed; `None` is [`ORPHAN_GRACE`](trove_shared::ORPHAN_GRACE)
    /// (ten minutes): a publish writes its blob before its record.
    pub orphan_grace: Option<Duration>,
}

/// A blob no record names, removed (or that would be) by `gc --shared`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedOrphan {
    /// Its blake3.
    pub blob: Digest,
    /// Its size, when the store's listing tells it.
    pub size: Option<u64>,
    /// How long collections have found it unnamed.
    pub unnamed_for: Duration,
}

/// One variant `gc --shared` removed (or would remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRemoval {
    /// The recipe.
    pub recipe: String,
    /// The arguments, for people.
    pub args: String,
    /// The key.
    pub key: Digest,
    /// Its blob's size.
    pub size: u64,
    /// Its age.
    pub age: Duration,
    /// Why: `older than 7d`, `over the size limit (..)`.
    pub reason: String,
}

/// What `gc --shared` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedGcReport {
    /// The variants removed (or that would be).
    pub removed: Vec<SharedRemoval>,
    /// Bytes of blobs deleted (or that would be).
    pub freed: u64,
    /// Variants left.
    pub kept: usize,
    /// Blobs no record names, removed (or that would be) after their grace period.
    pub orphans: Vec<SharedOrphan>,
    /// Blobs no record names that are still within their grace period (a publish may be
    /// between its blob and its record): marked, removed by a later collection.
    pub orphans_waiting: usize,
    /// Why orphan blobs were not looked for, when they were not.
    pub orphans_skipped: Option<String>,
}

impl Engine {
    /// The shared tier's health and this engine's counters of it; `None` without one.
    pub fn shared_health(&self) -> Option<SharedHealth> {
        imp::health(self)
    }

    /// Every key in the shared tier (each record is read and verified), with the tier's
    /// health. A tier that cannot be listed is `Error::SharedTier`.
    pub fn shared_status(&self) -> Result<SharedStatus, Error> {
        imp::status(self)
    }

    /// Removes variants from the shared tier by age and size, oldest first: record,
    /// then blob; then blobs no record names once collections have found them so for
    /// [`SharedGcOptions::orphan_grace`]. Refused records (another team's, say) are left
    /// alone, and while there are any no blob is taken for an orphan. A read-only tier
    /// refuses.
    pub fn shared_gc(&self, options: &SharedGcOptions) -> Result<SharedGcReport, Error> {
        imp::gc(self, options)
    }
}

#[cfg(not(feature = "shared"))]
mod imp {
    use super::*;

    pub(super) fn health(_: &Engine) -> Option<SharedHealth> {
        None
    }

    pub(super) fn status(_: &Engine) -> Result<SharedStatus, Error> {
        Err(Error::NoSharedTier)
    }

    pub(super) fn gc(_: &Engine, _: &SharedGcOptions) -> Result<SharedGcReport, Error> {
        Err(Error::NoSharedTier)
    }
}

#[cfg(feature = "shared")]
mod imp {
    use std::collections::{BTreeMap, HashSet};

    use std::sync::Arc;

    use trove_shared::{
        Lookup, ORPHAN_GRACE, SharedError, SharedTier, VerifiedRecord, newest_path,
    };

    use super::*;
    use crate::clock::now_ms;

    /// The engine's shared tier, opened.
    fn tier(engine: &Engine) -> Result<&Arc<SharedTier>, Error> {
        let shared = engine.inner.shared.as_ref().ok_or(Error::NoSharedTier)?;
        shared.tier(engine.config()).map_err(Error::from)
    }

    fn failed(e: SharedError) -> Error {
        Error::SharedTier(e.to_string())
    }

    fn age(created_ms: i64, now: i64) -> Duration {
        Duration::from_millis(now.saturating_sub(created_ms).max(0) as u64)
    }

    pub(super) fn health(engine: &Engine) -> Option<SharedHealth> {
        let shared = engine.inner.shared.as_ref()?;
        let tier = shared.tier(engine.config()).ok()?;
        let stats = tier.stats();
        Some(SharedHealth {
            url: shared.settings.url.clone(),
            read_only: tier.is_read_only(),
            leases: tier.leases().is_some(),
            calls: stats.store.calls,
            failures: stats.store.failures,
            timeouts: stats.store.timeouts,
            skipped: stats.store.skipped,
            retry_in: stats.store.retry_in,
            last_error: stats.store.last_error.clone(),
            records_verified: stats.records_verified,
            records_refused: stats.records_refused,
            blobs_fetched: stats.blobs_fetched,
            blobs_corrupt: stats.blobs_corrupt,
            published: stats.published,
            last_upload_error: shared.last_upload_error(),
        })
    }

    pub(super) fn status(engine: &Engine) -> Result<SharedStatus, Error> {
        let shared = tier(engine)?;
        let all = shared.all_records().map_err(failed)?;
        let now = now_ms();
        let mut by_key: BTreeMap<(String, String, [u8; 32]), SharedEntry> = BTreeMap::new();
        for record in &all.records {
            let entry = by_key
                .entry((record.recipe.clone(), record.args.clone(), record.key))
                .or_insert_with(|| SharedEntry {
                    recipe: record.recipe.clone(),
                    args: record.args.clone(),
                    key: Digest(record.key),
                    variants: 0,
                    size: 0,
                    age: age(record.created_ms, now),
                });
            entry.variants += 1;
            entry.size += record.blob.len;
            entry.age = entry.age.min(age(record.created_ms, now));
        }
        Ok(SharedStatus {
            entries: by_key.into_values().collect(),
            refused: all
                .refused
                .iter()
                .map(|r| (r.path.clone(), r.error.to_string()))
                .collect(),
            health: health(engine).unwrap_or_default(),
        })
    }

    pub(super) fn gc(engine: &Engine, options: &SharedGcOptions) -> Result<SharedGcReport, Error> {
        let shared = tier(engine)?;
        if shared.is_read_only() && !options.dry_run {
            return Err(failed(SharedError::ReadOnly));
        }
        let all = shared.all_records().map_err(failed)?;
        let now = now_ms();
        // Newest first: the oldest go first under the size limit.
        let mut kept: Vec<&VerifiedRecord> = all.records.iter().collect();
        kept.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
        let mut doomed: Vec<(&VerifiedRecord, String)> = Vec::new();
        if let Some(max_age) = options.max_age {
            let limit = crate::format_duration(max_age);
            kept.retain(|r| {
                let old = age(r.created_ms, now) > max_age;
                if old {
                    doomed.push((r, format!("older than {limit}")));
                }
                !old
            });
        }
        if let Some(max_size) = options.max_size {
            let blobs = |records: &[&VerifiedRecord]| -> u64 {
                let mut seen = HashSet::new();
                records
                    .iter()
                    .filter(|r| seen.insert(r.blob.hash))
                    .map(|r| r.blob.len)
                    .sum()
            };
            while blobs(&kept) > max_size {
                let Some(oldest) = kept.pop() else { break };
                doomed.push((
                    oldest,
                    format!("over the size limit ({})", crate::format_size(max_size)),
                ));
            }
        }
        let still_named: HashSet<[u8; 32]> = kept.iter().map(|r| r.blob.hash).collect();
        let mut report = SharedGcReport {
            kept: kept.len(),
            ..SharedGcReport::default()
        };
        let mut blobs_gone = HashSet::new();
        let storage = shared.storage();
        if !options.dry_run {
            // The hints before the records: a hint copying a doomed record, or a record
            // gone already (a publish that raced an earlier gc), is removed first, so a
            // reader never finds a removed record through its hint. A hint of a record
            // published since the listing is removed too: only a hint, rewritten by the
            // key's next publish; readers fall back to listing the key's records.
            let listed: HashSet<&str> = all.records.iter().map(|r| r.path()).collect();
            let doomed_paths: HashSet<&str> = doomed.iter().map(|(r, _)| r.path()).collect();
            for hint in &shared.all_newest().map_err(failed)?.records {
                if doomed_paths.contains(hint.path()) || !listed.contains(hint.path()) {
                    storage
                        .delete(&newest_path(&hint.key))
                        .map_err(|e| Error::SharedTier(e.to_string()))?;
                }
            }
        }
        for (record, reason) in doomed {
            if !options.dry_run {
                // The record first: a reader that still finds it then misses the blob, a
                // clean miss; one that does not find it never looks for the blob.
                storage
                    .delete(record.path())
                    .map_err(|e| Error::SharedTier(e.to_string()))?;
            }
            if !still_named.contains(&record.blob.hash) && blobs_gone.insert(record.blob.hash) {
                if !options.dry_run {
                    storage
                        .delete(&record.blob.path())
                        .map_err(|e| Error::SharedTier(e.to_string()))?;
                }
                report.freed += record.blob.len;
            }
            report.removed.push(SharedRemoval {
                recipe: record.recipe.clone(),
                args: record.args.clone(),
                key: Digest(record.key),
                size: record.blob.len,
                age: age(record.created_ms, now),
                reason,
            });
        }
        orphans(shared, &all, options, now, &mut report)?;
        Ok(report)
    }

    /// Blobs no listed record names (`trove_shared::orphans`): removed when an earlier
    /// collection marked them at least the grace period ago, marked otherwise. Listed
    /// after the records, so a blob whose record was published since is only marked.
    fn orphans(
        shared: &SharedTier,
        all: &Lookup,
        options: &SharedGcOptions,
        now: i64,
        report: &mut SharedGcReport,
    ) -> Result<(), Error> {
        if !all.refused.is_empty() {
            report.orphans_skipped = Some(format!(
                "{} record{} could not be verified (another team's, or damaged), so the \
                 blobs they name are unknown",
                all.refused.len(),
                if all.refused.len() == 1 { "" } else { "s" }
            ));
            return Ok(());
        }
        let grace = options.orphan_grace.unwrap_or(ORPHAN_GRACE);
        let named: HashSet<[u8; 32]> = all.records.iter().map(|r| r.blob.hash).collect();
        let earlier = shared.orphan_marks().map_err(failed)?;
        let mut marks = BTreeMap::new();
        for blob in shared.all_blobs().map_err(failed)? {
            if named.contains(&blob.hash) {
                continue;
            }
            match earlier.get(&blob.hash) {
                Some(&first) if age(first, now) >= grace => {
                    if !options.dry_run {
                        shared
                            .storage()
                            .delete(&blob.path())
                            .map_err(|e| Error::SharedTier(e.to_string()))?;
                    }
                    report.freed += blob.len.unwrap_or(0);
                    report.orphans.push(SharedOrphan {
                        blob: Digest(blob.hash),
                        size: blob.len,
                        unnamed_for: age(first, now),
                    });
                }
                first => {
                    marks.insert(blob.hash, first.copied().unwrap_or(now));
                    report.orphans_waiting += 1;
                }
            }
        }
        if !options.dry_run {
            shared.set_orphan_marks(&marks).map_err(failed)?;
        }
        Ok(())
    }
}
