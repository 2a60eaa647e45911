//! Predictions and administration support: residency without building, the two verdicts
//! on a stored record without its typed recipe (dead for gc, stale for status), the
//! stored records.

use std::time::Duration;

use trove_fingerprint::Digest;
use trove_store::Record;

use crate::clock::now_ms;
use crate::engine::disk::readable;
use crate::engine::verify::{MissReason, Mode, Subject, Validity};
use crate::engine::{Engine, Erased};
use crate::reason::{Residency, Why};
use crate::trace::{Input, Trace};
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
            let trace = match readable(&rec) {
                Ok(trace) => trace,
                Err(why) => {
                    miss.offer(rec.last_used_ms, why);
                    continue;
                }
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
        if let Some((residency, digest)) = self.peek_shared(recipe, key)? {
            return Ok((residency, Some(digest)));
        }
        Ok(match miss.take() {
            Some(why) => (Residency::Stale(why), None),
            None => (Residency::Absent, None),
        })
    }

    /// Why a stored variant can never be served again, or `None` when it may be (gc's
    /// "dead"). Dead: built by another recipe version or definition, under a version
    /// counter lower than the current one (or one that did not exist yet), older than its
    /// `max_age`, or past a volatile input's time to live — none of these comes back by
    /// itself. Files, listings, globs and environment variables are not checked: a branch
    /// switch can bring them back, so a variant that merely differs from today's files
    /// is not dead.
    ///
    /// A counter *higher* than the current one (or one since removed) does not make the
    /// variant dead: lowering the counter again, such as dropping a bump from
    /// `trove.local.ron`, brings it back. A trace in an unknown format belongs to another
    /// trove and is never dead here.
    pub(crate) fn dead_reason(&self, rec: &Record) -> Result<Option<Why>, Error> {
        let Some(mut trace) = Trace::decode(&rec.trace) else {
            return Ok(None);
        };
        // Counters that can come back are set to today's values, so that validation
        // reports only the ones that are older than today's.
        let now = self.counters_for(&rec.recipe);
        trace.counters.retain(|name, then| match now.get(name) {
            Some(&current) => {
                *then = (*then).min(current);
                true
            }
            None => false,
        });
        let erased = self.erased(&rec.recipe);
        let subject = record_subject(self, rec, erased.as_deref());
        if let Validity::Invalid(why) = self.validate(&subject, &trace, Mode::Gc)? {
            return Ok(Some(why));
        }
        let age_ms = now_ms().saturating_sub(rec.created_ms).max(0) as u128;
        Ok(trace.inputs.iter().find_map(|input| match input {
            Input::Volatile { name, ttl_ms } if age_ms > u128::from(*ttl_ms) => {
                Some(Why::VolatileExpired {
                    name: name.clone(),
                    ttl: Duration::from_millis(*ttl_ms),
                })
            }
            _ => None,
        }))
    }

    /// Why a stored variant would not be served now, or `None` when it would: every
    /// input of its trace is checked against today's files and environment, and its
    /// dependencies are predicted without building (for `status`, and `gc --stale`).
    /// Without its typed recipe, the registered recipe's version is checked when known.
    pub(crate) fn stale_reason(&self, rec: &Record) -> Result<Option<Why>, Error> {
        let Some(trace) = Trace::decode(&rec.trace) else {
            return Ok(Some(Why::Unverifiable(
                "its trace is in an unknown format".into(),
            )));
        };
        let erased = self.erased(&rec.recipe);
        let subject = record_subject(self, rec, erased.as_deref());
        Ok(match self.validate(&subject, &trace, Mode::Peek)? {
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

/// What validating a stored record needs, from the registered recipe when there is one
/// (its version, sources and `max_age`); an unregistered recipe's version is unknown and
/// not checked.
fn record_subject<'a>(
    engine: &Engine,
    rec: &'a Record,
    erased: Option<&dyn Erased>,
) -> Subject<'a> {
    Subject {
        recipe: &rec.recipe,
        sources: erased.map_or(crate::Sources::NONE, |e| e.sources()),
        version_now: erased.map(|e| e.version()),
        version_then: rec.recipe_version,
        created_ms: rec.created_ms,
        max_age: engine.max_age_for(&rec.recipe, erased.and_then(|e| e.max_age())),
        definition: erased.map(|e| engine.definition_of(&rec.recipe, &e.definition())),
    }
}
