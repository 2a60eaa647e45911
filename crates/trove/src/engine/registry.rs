//! The recipe registry: the type-erased recipes an engine knows by name, so a stored
//! object's dependencies on other recipes can be validated (and rebuilt for early cutoff).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use trove_fingerprint::Digest;

use crate::engine::Engine;
use crate::reason::{Reason, Residency};
use crate::{Definition, Error, Recipe};

/// The type-erased face of a registered recipe: what validating another object's
/// dependency on it needs.
pub(crate) trait Erased: Send + Sync {
    fn version(&self) -> u32;
    fn max_age(&self) -> Option<Duration>;
    fn sources(&self) -> crate::Sources;
    fn definition(&self) -> crate::Definition;
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
    fn definition(&self) -> crate::Definition {
        self.0.definition()
    }
    fn resolve(&self, engine: &Engine, args: &[u8]) -> Result<(Digest, Reason), Error> {
        let args = decode_args::<R>(args)?;
        let served = engine.serve(&self.0, &args)?;
        Ok((served.digest, served.reason))
    }
    fn peek(&self, engine: &Engine, args: &[u8]) -> Result<(Residency, Option<Digest>), Error> {
        let args = decode_args::<R>(args)?;
        engine.peek(&self.0, &args)
    }
}

/// A dependency's arguments as its dependent's trace stored them (postcard).
fn decode_args<R: Recipe>(bytes: &[u8]) -> Result<R::Args, Error> {
    postcard::from_bytes(bytes).map_err(|e| Error::StoredArgs {
        object: format!("recipe `{}`", R::NAME),
        problem: format!("do not decode: {e}"),
    })
}

/// The part of every recipe's definition that the configuration holds: its declared
/// `inputs` and `env` (sorted: their order means nothing). Parts are present only when
/// the configuration says something, so adding the first input changes the definition.
pub(crate) fn config_definitions(config: &trove_config::Config) -> HashMap<String, Definition> {
    config
        .recipes
        .iter()
        .map(|(name, rc)| (name.clone(), Definition::declared(rc)))
        .collect()
}

/// A recipe registered at link time by [`register!`](crate::register): every engine this
/// process opens knows it, so a stored object depending on it validates in a fresh
/// process without the caller registering anything.
#[doc(hidden)]
pub struct Registration(pub fn(&Engine));

inventory::collect!(Registration);

/// Registers recipes with every engine this process opens, at link time: write it once
/// beside the recipe's `impl`, and a fresh process validates stored objects that depend
/// on the recipe (and rebuilds them for early cutoff) before anyone asks for it.
///
/// ```
/// use trove::{BuildError, Cx, Recipe};
///
/// #[derive(Clone)]
/// struct Calendar;
///
/// impl Recipe for Calendar {
///     const NAME: &'static str = "calendar";
///     const VERSION: u32 = 1;
///     type Args = String;
///     type Output = Vec<String>;
///     fn build(&self, cx: &mut Cx, market: &String) -> Result<Vec<String>, BuildError> {
///         Ok(cx.read_to_string(format!("calendars/{market}.txt"))?.lines().map(String::from).collect())
///     }
/// }
///
/// trove::register!(Calendar);
/// ```
#[macro_export]
macro_rules! register {
    ($($recipe:expr),+ $(,)?) => {
        $(
            $crate::__private::inventory::submit! {
                $crate::__private::Registration(|engine| engine.register($recipe))
            }
        )+
    };
}

impl Engine {
    /// Registers every recipe submitted with [`register!`](crate::register).
    pub(crate) fn register_linked(&self) {
        for registration in inventory::iter::<Registration> {
            (registration.0)(self);
        }
    }

    /// A recipe's whole definition now: its own parts and the configuration's.
    pub(crate) fn definition_of(&self, name: &str, own: &Definition) -> Definition {
        match self.inner.config_definitions.get(name) {
            Some(declared) => own.merged(declared),
            None => own.clone(),
        }
    }

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
