//! Predictions and administration support: residency without building, validation of a
//! record without its typed recipe, the stored records.

use trove_fingerprint::Digest;
use trove_store::Record;

use crate::engine::Engine;
use crate::engine::verify::{MissReason, Mode, Subject, Validity};
use crate::reason::{Residency, Why};
use crate::trace::Trace;
use crate::{Error, Recipe};

impl Engine {
    /// Residency and (when valid) the output digest, without building.
    pub(crate) fn peek<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<(Residency, Option<Digest>), Error> {
        self.ensure_registered(recipe);
        let key = self.key(recipe, args)?;
        let mut miss = MissReason::default();
        if let Some(meta) = self.inner.memory.meta(&key) {
            let subject = self.subject(recipe, meta.recipe_version, meta.created_ms);
            match self.validate(&subject, &meta.trace(), Mode::Peek)? {
                Validity::Valid { .. } => return Ok((Residency::InMemory, Some(meta.digest))),
                Validity::Invalid(why) => miss = MissReason::remembered(why),
            }
        }
        let variants = match self.inner.store.as_ref() {
            Some(store) => store.variants(&key.0).unwrap_or_default(),
            None => Vec::new(),
        };
        for rec in variants {
            let Some(trace) = Trace::decode(&rec.trace) else {
                miss.offer(
                    rec.last_used_ms,
                    Why::Unverifiable("its trace is in an unknown format".into()),
                );
                continue;
            };
            let subject = self.subject(recipe, rec.recipe_version, rec.created_ms);
            match self.validate(&subject, &trace, Mode::Peek)? {
                Validity::Valid { .. } => {
                    return Ok((Residency::OnDisk, Some(Digest(rec.blob.hash))));
                }
                Validity::Invalid(why) => {
                    miss.offer(rec.last_used_ms, why);
                }
            }
        }
        Ok(match miss.take() {
            Some(why) => (Residency::Stale(why), None),
            None => (Residency::Absent, None),
        })
    }

    /// Validates a stored record without its typed recipe (for status and gc): the
    /// registered recipe's version is checked when known.
    pub(crate) fn validate_record(
        &self,
        rec: &Record,
        mode_gc: bool,
    ) -> Result<Option<Why>, Error> {
        let Some(trace) = Trace::decode(&rec.trace) else {
            return Ok(Some(Why::Unverifiable(
                "its trace is in an unknown format".into(),
            )));
        };
        let erased = self.erased(&rec.recipe);
        let subject = Subject {
            recipe: &rec.recipe,
            sources: erased
                .as_ref()
                .map(|e| e.sources())
                .unwrap_or(crate::Sources::NONE),
            version_now: erased.as_ref().map(|e| e.version()),
            version_then: rec.recipe_version,
            created_ms: rec.created_ms,
            max_age: self.max_age_for(&rec.recipe, erased.as_ref().and_then(|e| e.max_age())),
            definition: erased
                .as_ref()
                .map(|e| self.definition_of(&rec.recipe, &e.definition())),
        };
        let mode = if mode_gc { Mode::Gc } else { Mode::Peek };
        Ok(match self.validate(&subject, &trace, mode)? {
            Validity::Valid { .. } => None,
            Validity::Invalid(why) => Some(why),
        })
    }

    /// Whether the memory tier holds a live object for `key`.
    pub(crate) fn in_memory(&self, key: &Digest) -> bool {
        self.inner.memory.meta(key).is_some()
    }

    /// Every stored record (for status, graph and gc).
    pub(crate) fn records(&self) -> Result<Vec<Record>, Error> {
        self.flush_touches();
        Ok(self.store()?.records()?)
    }

    /// Drops a key's memory-tier slot if it holds the given stored variant (gc removed it).
    pub(crate) fn forget_variant(&self, key: &Digest, variant: i64) {
        if self
            .inner
            .memory
            .meta(key)
            .is_some_and(|m| m.variant() == Some(variant))
        {
            self.inner.memory.remove(key);
        }
    }
}
