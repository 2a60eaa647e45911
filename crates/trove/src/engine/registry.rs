//! The recipe registry: the type-erased recipes an engine knows by name, so a stored
//! object's dependencies on other recipes can be validated (and rebuilt for early cutoff).

use std::sync::Arc;
use std::time::Duration;

use trove_fingerprint::Digest;

use crate::engine::Engine;
use crate::reason::{Reason, Residency};
use crate::{Error, Recipe};

/// The type-erased face of a registered recipe: what validating another object's
/// dependency on it needs.
pub(crate) trait Erased: Send + Sync {
    fn version(&self) -> u32;
    fn max_age(&self) -> Option<Duration>;
    fn sources(&self) -> crate::Sources;
    /// Serves (building if needed) the object for postcard-encoded arguments.
    fn resolve(&self, engine: &Engine, args: &[u8]) -> Result<(Digest, Reason), Error>;
    /// What a request would do, without building.
    fn peek(&self, engine: &Engine, args: &[u8]) -> Result<(Residency, Option<Digest>), Error>;
}

pub(crate) struct Typed<R>(R);

impl<R: Recipe> Erased for Typed<R> {
    fn version(&self) -> u32 {
        self.0.version()
    }
    fn max_age(&self) -> Option<Duration> {
        self.0.max_age()
    }
    fn sources(&self) -> crate::Sources {
        self.0.sources()
    }
    fn resolve(&self, engine: &Engine, args: &[u8]) -> Result<(Digest, Reason), Error> {
        let args: R::Args = postcard::from_bytes(args).map_err(|e| {
            Error::Config(format!(
                "recipe `{}`: stored arguments do not decode: {e}",
                R::NAME
            ))
        })?;
        let served = engine.serve(&self.0, &args)?;
        Ok((served.digest, served.reason))
    }
    fn peek(&self, engine: &Engine, args: &[u8]) -> Result<(Residency, Option<Digest>), Error> {
        let args: R::Args = postcard::from_bytes(args).map_err(|e| {
            Error::Config(format!(
                "recipe `{}`: stored arguments do not decode: {e}",
                R::NAME
            ))
        })?;
        engine.peek(&self.0, &args)
    }
}

impl Engine {
    /// Makes a recipe known to the engine, so objects that depend on its objects can be
    /// validated (and its objects rebuilt for early cutoff) before anyone asks for them in
    /// this process. `get` registers the recipes it is called with.
    pub fn register<R: Recipe>(&self, recipe: R) {
        let name = recipe.name().to_owned();
        let mut reg = self
            .inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        reg.insert(name, Arc::new(Typed(recipe)));
    }

    pub(crate) fn ensure_registered<R: Recipe>(&self, recipe: &R) {
        let known = self
            .inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(recipe.name());
        if !known {
            self.register(recipe.clone());
        }
    }

    /// Registers in this engine the recipes `from` knows that are not command recipes of
    /// `from`'s configuration (those come from this engine's own configuration, which
    /// may have changed them or removed them): a reloaded configuration keeps the
    /// library's recipes known.
    pub(crate) fn adopt_library_recipes(&self, from: &Engine) {
        let theirs: Vec<(String, Arc<dyn Erased>)> = from
            .inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(name, _)| {
                from.config()
                    .recipe(name)
                    .is_none_or(|rc| rc.command.is_none())
            })
            .map(|(name, erased)| (name.clone(), erased.clone()))
            .collect();
        let mut ours = self
            .inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for (name, erased) in theirs {
            ours.entry(name).or_insert(erased);
        }
    }

    pub(crate) fn erased(&self, name: &str) -> Option<Arc<dyn Erased>> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}
