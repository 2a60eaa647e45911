//! The disk tier as the engine sees it: stored variants tried newest first, hits counted
//! in batches, a loaded object put in the memory tier.

use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, RwLock};

use trove_fingerprint::Digest;
use trove_store::{Record, Store};

use crate::clock::now_ms;
use crate::codec;
use crate::engine::verify::{MissReason, Mode};
use crate::engine::verify::{Validity, cheap_inputs};
use crate::engine::{Engine, FlightValue, Inner, bump};
use crate::memory::{Meta, Object};
use crate::reason::{Reason, Why};
use crate::trace::Trace;
use crate::{Error, Recipe};

/// Which stored variant is a key's newest (row ids can be reused, so its creation time
/// and blob go with the id).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct VariantId(i64, i64, [u8; 32]);

impl VariantId {
    pub(crate) fn of(rec: &Record) -> VariantId {
        VariantId(rec.id, rec.created_ms, rec.blob.hash)
    }
}

/// The trace of a stored variant this trove can read, or why it cannot: its trace or its
/// object is in a format this trove does not know (another trove wrote it). Such a
/// variant is a miss, left in the store for the trove that knows it; it is never
/// quarantined as corrupt.
pub(crate) fn readable(rec: &Record) -> Result<Trace, Why> {
    let trace = Trace::decode(&rec.trace)
        .ok_or_else(|| Why::Unverifiable("its trace is in an unknown format".into()))?;
    if !codec::known(rec.codec) {
        return Err(Why::Unverifiable(format!(
            "its object is in an unknown format (codec {})",
            rec.codec
        )));
    }
    Ok(trace)
}

/// Disk hits counted in memory before they are written in one transaction.
pub(crate) const TOUCH_BATCH: usize = 64;

impl Inner {
    pub(crate) fn write_touches(&self, batch: &[(i64, i64)]) {
        if let Some(store) = self.store.as_ref()
            && let Err(e) = store.touch_many(batch)
        {
            tracing::debug!("hit counts not recorded: {e}");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.finish_uploads(shared.upload_grace());
        }
        let batch = std::mem::take(self.touches.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.write_touches(&batch);
    }
}

impl Engine {
    /// Counts a disk hit of a variant (its hits and last use, for status and gc's
    /// least-recently-used trimming). Hits are written in batches: a write per hit
    /// would cost more than the hit.
    pub(crate) fn touch(&self, variant: i64) {
        let mut touches = self.inner.touches.lock().unwrap_or_else(|e| e.into_inner());
        touches.push((variant, now_ms()));
        if touches.len() >= TOUCH_BATCH {
            let batch = std::mem::take(&mut *touches);
            drop(touches);
            self.inner.write_touches(&batch);
        }
    }

    /// Writes the hits counted so far (before status and gc read them).
    pub(crate) fn flush_touches(&self) {
        let batch =
            std::mem::take(&mut *self.inner.touches.lock().unwrap_or_else(|e| e.into_inner()));
        self.inner.write_touches(&batch);
    }

    /// The identity of the newest stored variant of a key.
    pub(crate) fn newest_variant(&self, key: Digest) -> Option<VariantId> {
        let variants = self.inner.store.as_ref()?.variants(&key.0).ok()?;
        variants.first().map(VariantId::of)
    }

    /// The trace of the newest stored variant of a key, if one decodes.
    pub(crate) fn newest_trace(&self, key: Digest) -> Option<Trace> {
        let variants = self.inner.store.as_ref()?.variants(&key.0).ok()?;
        Trace::decode(&variants.first()?.trace)
    }

    /// Tries the stored variants of a key, newest first; `seen` gets the identity of the
    /// newest one this look read (one query serves both).
    pub(crate) fn lookup_disk<R: Recipe>(
        &self,
        recipe: &R,
        key: Digest,
        args_display: &str,
        seen: &mut Option<VariantId>,
    ) -> Result<Result<FlightValue, Why>, Error> {
        let Some(store) = self.inner.store.as_ref() else {
            return Ok(Err(Why::NoEntry));
        };
        // The newest variant alone first: it is the one a hit usually serves, and each
        // row carries its whole trace. The others are read only if it is not served.
        let mut tried: Option<VariantId> = None;
        let mut miss = MissReason::default();
        for limit in [Some(1), None] {
            let variants = match store.newest_variants(&key.0, limit) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("treating the disk tier as empty: {e}");
                    return Ok(Err(miss.take().unwrap_or(Why::NoEntry)));
                }
            };
            // `seen` is the newest variant this look read: the first pass's row, or, when
            // that pass read none (no row, or a corrupt one it quarantined), the full
            // read's first. Always this look's own (the caller compares it with the
            // newest variant under the key's lock, and loops until they agree).
            if tried.is_none() && (!variants.is_empty() || limit.is_none()) {
                *seen = variants.first().map(VariantId::of);
            }
            for rec in variants {
                if tried == Some(VariantId::of(&rec)) {
                    continue; // the newest, tried by the first pass
                }
                tried.get_or_insert(VariantId::of(&rec));
                if let Some(hit) = self.try_stored(store, recipe, &rec, args_display, &mut miss)? {
                    return Ok(Ok(hit));
                }
            }
        }
        Ok(Err(miss.take().unwrap_or(Why::NoEntry)))
    }

    /// One stored variant: served (`Some`), or its reason offered to `miss`.
    fn try_stored<R: Recipe>(
        &self,
        store: &Store,
        recipe: &R,
        rec: &Record,
        args_display: &str,
        miss: &mut MissReason,
    ) -> Result<Option<FlightValue>, Error> {
        match self.try_variant(store, recipe, rec)? {
            Ok(object) => {
                bump(&self.inner.stats.disk_hits, 1);
                self.touch(rec.id);
                Ok(Some((
                    object,
                    Reason::HitDisk,
                    Digest(rec.blob.hash),
                    args_display.to_owned(),
                )))
            }
            Err(why) => {
                miss.offer(rec.last_used_ms, why);
                Ok(None)
            }
        }
    }

    pub(crate) fn try_variant<R: Recipe>(
        &self,
        store: &Store,
        recipe: &R,
        rec: &Record,
    ) -> Result<Result<Object, Why>, Error> {
        let trace = match readable(rec) {
            Ok(trace) => trace,
            Err(why) => return Ok(Err(why)),
        };
        let subject = self.subject(recipe, rec.recipe_version, rec.created_ms);
        let trace = match self.validate(&subject, &trace, Mode::Serve)? {
            Validity::Invalid(why) => return Ok(Err(why)),
            Validity::Valid { refreshed: Some(t) } => {
                if let Err(e) = store.update_trace(rec.id, &t.encode()) {
                    tracing::warn!("cannot refresh stored metadata: {e}");
                }
                t
            }
            Validity::Valid { refreshed: None } => trace,
        };
        // The blob is verified against its blake3 before anything deserializes it (a
        // file-backed object is verified by streaming and handed out as its open file).
        let (value, size): (R::Output, u64) =
            match codec::load(store, rec, crate::bytes::private_head(recipe)) {
                Ok(loaded) => loaded,
                Err(msg) => {
                    let why = Why::BlobCorrupt(msg);
                    let _ = store.quarantine(rec.id, &why.to_string());
                    return Ok(Err(why));
                }
            };
        if let Err(msg) = recipe.check(&value) {
            let why = Why::CheckFailed(msg);
            let _ = store.quarantine(rec.id, &why.to_string());
            return Ok(Err(why));
        }
        let object: Object = Arc::new(value);
        self.remember(
            Digest(rec.key),
            object.clone(),
            Meta {
                recipe: rec.recipe.clone(),
                args: rec.args.clone(),
                recipe_version: rec.recipe_version,
                created_ms: rec.created_ms,
                digest: Digest(rec.blob.hash),
                variant: AtomicI64::new(rec.id),
                size,
                cheap: cheap_inputs(&trace),
                trace: RwLock::new(Arc::new(trace)),
                fresh: AtomicBool::new(false),
                watchable: AtomicBool::new(false),
                unwatched: RwLock::new(Arc::new(Vec::new())),
            },
        );
        Ok(Ok(object))
    }

    /// Puts an object in the memory tier and its edges in the graph the watcher uses.
    pub(crate) fn remember(&self, key: Digest, object: Object, meta: Meta) -> Arc<Meta> {
        let trace = meta.trace();
        let meta = Arc::new(meta);
        super::watch::on_remember(self, key, &meta, &trace);
        self.inner.memory.insert(key, object, meta.clone());
        meta
    }
}
