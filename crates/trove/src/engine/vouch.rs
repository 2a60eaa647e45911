//! What a caller may cache in front of the engine: a memory-tier object a watcher vouches
//! for, and the epoch any change to that verdict moves (the Python package's fast path).
//!
//! A watched memory hit checks nothing a watcher sees; what it still checks is listed in
//! the object's `cheap` inputs. An object is vouched for only when those are external
//! inputs (which the caller must vouch for itself) and nothing else: no environment
//! variable, no embedded source digest, no path the watcher does not see. Its expiry
//! (max_age, volatile ttls) is handed to the caller as a deadline. Everything else that
//! can change the answer moves [`Engine::memory_epoch`] after it happened: an event
//! (which also marks the objects it touched unfresh), a rescan, a counter, the watch
//! stopping, a slot replaced, removed or evicted.

use std::sync::atomic::Ordering;

use trove_fingerprint::Digest;

use crate::engine::Engine;
use crate::trace::Input;

/// A memory-tier object a watcher vouches for (see [`Engine::vouched`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vouched {
    /// [`Engine::memory_epoch`] read before the object's freshness was: while the epoch
    /// is still this, a memory hit on the key would serve the same object with no check
    /// but `externals` and `expires_ms`.
    pub epoch: u64,
    /// blake3 of the encoded object in memory (compare with [`crate::Served::digest`]).
    pub digest: Digest,
    /// When the object expires (its max_age, a volatile input's ttl), in ms since the
    /// Unix epoch; a hit after this is not vouched for.
    pub expires_ms: Option<i64>,
    /// The external inputs every hit still checks, `(kind, name)`: the caller vouches for
    /// them or must not cache.
    pub externals: Vec<(String, String)>,
}

impl Engine {
    /// Moves after anything that can change a vouched memory hit (see [`Vouched`]).
    pub fn memory_epoch(&self) -> u64 {
        self.inner.memory.epoch()
    }

    /// Whether the watcher vouches for the memory-tier object of `key` (built by a recipe
    /// whose own max_age is `max_age`): `Some` while the engine watches, the object is in
    /// memory, no event touched its inputs since it was last verified, and a watched hit
    /// would check nothing but its external inputs. Never while a build started this
    /// process (its requests are recorded for that build).
    pub fn vouched(
        &self,
        recipe: &str,
        max_age: Option<std::time::Duration>,
        key: &Digest,
    ) -> Option<Vouched> {
        // Read first: anything that changes after this moves it.
        let epoch = self.memory_epoch();
        if !self.inner.watching.load(Ordering::Acquire)
            || crate::nested::recording()
            || !crate::nested::chain().is_empty()
        {
            return None;
        }
        let meta = self.inner.memory.meta(key)?;
        if meta.recipe != recipe
            || !meta.fresh.load(Ordering::Acquire)
            || !meta.watchable.load(Ordering::Acquire)
            || !meta
                .unwatched
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        {
            return None;
        }
        let trace = meta.trace();
        let mut expires_ms = self
            .max_age_for(recipe, max_age)
            .map(|age| meta.created_ms.saturating_add(age.as_millis() as i64));
        let mut externals = Vec::new();
        for &i in &meta.cheap {
            match trace.inputs.get(i as usize)? {
                Input::External { kind, name, .. } => externals.push((kind.clone(), name.clone())),
                Input::Volatile { ttl_ms, .. } => {
                    let at = meta.created_ms.saturating_add(*ttl_ms as i64);
                    expires_ms = Some(expires_ms.map_or(at, |e| e.min(at)));
                }
                _ => return None,
            }
        }
        Some(Vouched {
            epoch,
            digest: meta.digest,
            expires_ms,
            externals,
        })
    }
}
