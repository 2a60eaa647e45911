//! Reading the shared tier on the request path: the key's "newest" hint first (one GET,
//! carrying a small object inline), then, when it is missing or does not serve here,
//! every record of the key; a record that verifies and validates here has its object
//! copied into the disk tier and is served from there.

use trove_fingerprint::Digest;
use trove_shared::{BlobRef, Lookup, SharedError, SharedRecord, StorageError, VerifiedRecord};
use trove_store::{NewRecord, Store};

use super::SharedState;
use crate::codec;
use crate::engine::verify::{Mode, Validity};
use crate::engine::{Engine, FlightValue, bump};
use crate::local_storage::{BackfillError, LocalStorage};
use crate::reason::{Reason, Residency, Why};
use crate::trace::Trace;
use crate::{Error, Recipe};

impl Engine {
    /// Looks the key up in the shared tier: the first record that verifies and validates
    /// here is downloaded into the disk tier and served from there. `Err(why)` on a miss:
    /// why the records there were not used, `NoEntry` when there were none.
    pub(crate) fn lookup_shared<R: Recipe>(
        &self,
        recipe: &R,
        key: Digest,
        args_display: &str,
    ) -> Result<Result<FlightValue, Why>, Error> {
        let Some((shared, store)) = self.shared() else {
            return Ok(Err(Why::NoEntry));
        };
        let tier = match self.open_tier(shared)? {
            Ok(tier) => tier,
            Err(why) => return Ok(Err(why)),
        };
        // The key's "newest" hint first: one GET, which carries a small object inline.
        let newest = match tier.lookup_newest(&key.0) {
            Ok(found) => {
                shared.answered();
                found
            }
            Err(e) => return Ok(Err(shared.unavailable(self, &e))),
        };
        bump(
            &self.inner.stats.shared_refused,
            newest.refused.len() as u64,
        );
        let mut refused = newest
            .refused
            .first()
            .map(|r| Why::SharedRefused(r.error.to_string()));
        let mut miss = None;
        let tried = newest.records.first();
        if let Some(record) = tried {
            match self.try_shared(recipe, shared, store, record, key, args_display)? {
                Ok(value) => return Ok(Ok(value)),
                Err(why) => miss = why,
            }
        }
        // No hint, or one that does not serve here (another variant, its blob gone):
        // every record of the key.
        let found = match tier.lookup(&key.0) {
            Ok(found) => found,
            Err(e) => return Ok(Err(shared.unavailable(self, &e))),
        };
        bump(&self.inner.stats.shared_refused, found.refused.len() as u64);
        // A record that verified but does not validate here says more than a refused one.
        if let Some(r) = found.refused.first() {
            refused.get_or_insert(Why::SharedRefused(r.error.to_string()));
        }
        for record in &found.records {
            // The hint's copy of this very record was tried already.
            if tried.is_some_and(|t| {
                t.path() == record.path()
                    && t.created_ms == record.created_ms
                    && t.blob == record.blob
            }) {
                continue;
            }
            match self.try_shared(recipe, shared, store, record, key, args_display)? {
                Ok(value) => return Ok(Ok(value)),
                Err(why) => {
                    if miss.is_none() {
                        miss = why;
                    }
                }
            }
        }
        Ok(Err(miss.or(refused).unwrap_or(Why::NoEntry)))
    }

    /// One verified record of the shared tier: validated here, its object copied into the
    /// disk tier and served from there; `Err(why)` when it cannot be.
    fn try_shared<R: Recipe>(
        &self,
        recipe: &R,
        shared: &SharedState,
        store: &Store,
        record: &VerifiedRecord,
        key: Digest,
        args_display: &str,
    ) -> Result<Result<FlightValue, Option<Why>>, Error> {
        let trace = match self.validate_shared(recipe, record)? {
            Ok(trace) => trace,
            Err(why) => return Ok(Err(Some(why))),
        };
        let id = match self.copy_into_store(shared, store, record, &trace) {
            Ok(id) => id,
            Err(why) => return Ok(Err(Some(why))),
        };
        let stored = store.variants(&key.0).ok().into_iter().flatten();
        let Some(rec) = stored.into_iter().find(|r| r.id == id) else {
            return Ok(Err(None));
        };
        match self.try_variant(store, recipe, &rec)? {
            Ok(object) => {
                bump(&self.inner.stats.shared_hits, 1);
                self.touch(rec.id);
                let value = (
                    object,
                    Reason::HitShared,
                    Digest(rec.blob.hash),
                    args_display.to_owned(),
                );
                Ok(Ok(value))
            }
            Err(why) => Ok(Err(Some(why))),
        }
    }

    /// The record's trace, made local and validated here as a local variant's is.
    fn validate_shared<R: Recipe>(
        &self,
        recipe: &R,
        record: &SharedRecord,
    ) -> Result<Result<Trace, Why>, Error> {
        let Some(trace) = Trace::decode(&record.trace) else {
            return Ok(Err(Why::Unverifiable(
                "the shared record's trace is in an unknown format".into(),
            )));
        };
        if !codec::known(record.codec) {
            return Ok(Err(Why::Unverifiable(format!(
                "the shared object is in an unknown format (codec {})",
                record.codec
            ))));
        }
        let trace = trace.localized(&self.inner.root);
        let subject = self.subject(recipe, record.recipe_version, record.created_ms);
        Ok(match self.validate(&subject, &trace, Mode::Serve)? {
            Validity::Invalid(why) => Err(why),
            Validity::Valid { refreshed } => Ok(refreshed.unwrap_or(trace)),
        })
    }

    /// Backfills the record's blob into the disk tier (`LocalStorage::backfill`: verified
    /// while it streams, and again when the store seals it) and records the variant
    /// there; its row id.
    fn copy_into_store(
        &self,
        shared: &SharedState,
        store: &Store,
        record: &VerifiedRecord,
        trace: &Trace,
    ) -> Result<i64, Why> {
        let local = |e: &dyn std::fmt::Display| {
            tracing::warn!("cannot copy a shared object into the store: {e}");
            Why::NoEntry
        };
        // Another process of this machine may have copied the same variant meanwhile (the
        // shared tier is looked at before the key's lock is taken): one copy is enough.
        if let Ok(variants) = store.variants(&record.key)
            && let Some(copied) = variants.iter().find(|v| {
                v.blob.hash == record.blob.hash
                    && v.created_ms == record.created_ms
                    && v.recipe_version == record.recipe_version
            })
        {
            return Ok(copied.id);
        }
        // Backfill through the Storage trait: the remote's stream, verified as it arrives,
        // is written into a temp blob of the local tier, sealed, checked against its name
        // and renamed into place (nothing is downloaded when the blob is here already).
        let Some(tier) = shared.opened() else {
            return Err(Why::NoEntry);
        };
        match LocalStorage::new(store).backfill_record(tier, record) {
            Ok(_) => {}
            Err(BackfillError::Remote(SharedError::BlobCorrupt { blob, problem })) => {
                bump(&self.inner.stats.shared_refused, 1);
                return Err(Why::BlobCorrupt(format!("shared blob {blob}: {problem}")));
            }
            Err(BackfillError::Remote(e)) if e.is_unavailable() => {
                return Err(shared.unavailable(self, &e));
            }
            // Deleted (gc, or as corrupt) after its record was listed: a miss.
            Err(BackfillError::Remote(SharedError::BlobMissing { blob })) => {
                return Err(Why::Unverifiable(format!(
                    "the shared blob {blob} is missing"
                )));
            }
            Err(BackfillError::Remote(e)) => return Err(local(&e)),
            // Verified as it streamed, then no longer its name once on disk.
            Err(BackfillError::Local(StorageError::Rejected { reason, .. })) => {
                return Err(Why::BlobCorrupt(format!(
                    "shared blob changed on disk: {reason}"
                )));
            }
            Err(BackfillError::Local(e)) => return Err(local(&e)),
        }
        let blob = blob_id(record.blob);
        let new = NewRecord {
            key: record.key,
            recipe: record.recipe.clone(),
            args: record.args.clone(),
            recipe_version: record.recipe_version,
            created_ms: record.created_ms,
            blob,
            codec: record.codec,
            trace: trace.encode(),
            reason: record.reason.clone(),
        };
        store.insert(&new).map_err(|e| local(&e))
    }

    /// Residency in the shared tier, without downloading: `Some` when a record there
    /// verifies and validates here.
    pub(crate) fn peek_shared<R: Recipe>(
        &self,
        recipe: &R,
        key: Digest,
    ) -> Result<Option<(Residency, Digest)>, Error> {
        let Some((shared, _)) = self.shared() else {
            return Ok(None);
        };
        let tier = match self.open_tier(shared)? {
            Ok(tier) => tier,
            Err(_) => return Ok(None),
        };
        // The hint first (one GET), then every record of the key.
        let Ok(newest) = tier.lookup_newest(&key.0) else {
            return Ok(None);
        };
        if let Some(found) = self.peek_records(recipe, &newest)? {
            return Ok(Some(found));
        }
        let Ok(found) = tier.lookup(&key.0) else {
            return Ok(None);
        };
        self.peek_records(recipe, &found)
    }

    fn peek_records<R: Recipe>(
        &self,
        recipe: &R,
        found: &Lookup,
    ) -> Result<Option<(Residency, Digest)>, Error> {
        for record in &found.records {
            let Some(trace) = Trace::decode(&record.trace) else {
                continue;
            };
            let trace = trace.localized(&self.inner.root);
            let subject = self.subject(recipe, record.recipe_version, record.created_ms);
            if let Validity::Valid { .. } = self.validate(&subject, &trace, Mode::Peek)? {
                return Ok(Some((Residency::Shared, Digest(record.blob.hash))));
            }
        }
        Ok(None)
    }
}

fn blob_id(blob: BlobRef) -> trove_store::BlobId {
    trove_store::BlobId {
        hash: blob.hash,
        len: blob.len,
    }
}
