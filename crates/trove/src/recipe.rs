//! The `Recipe` trait: a named, versioned way to build one kind of object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use trove_fingerprint::Digest;

use crate::{BuildError, Cx};

/// A named, versioned way to build one kind of object from arguments.
///
/// ```
/// use trove::{BuildError, Cx, Recipe};
///
/// #[derive(Clone)]
/// struct LineCount;
///
/// impl Recipe for LineCount {
///     const NAME: &'static str = "line-count";
///     const VERSION: u32 = 1;
///     type Args = String; // a path
///     type Output = u64;
///     fn build(&self, cx: &mut Cx, path: &String) -> Result<u64, BuildError> {
///         let text = cx.read(path)?; // tracked: editing the file rebuilds
///         Ok(text.iter().filter(|&&b| b == b'\n').count() as u64)
///     }
/// }
/// ```
pub trait Recipe: Clone + Send + Sync + 'static {
    /// The recipe's name; part of every key it makes. Unique within an engine.
    const NAME: &'static str;
    /// Bump when the code's meaning changes: objects built by another version are stale.
    const VERSION: u32;
    /// The arguments, canonically encoded into the key.
    type Args: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The object. `Vec<u8>` is stored raw, without a copy through serde.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Builds the object. Every input must be read through `cx` to be tracked.
    fn build(&self, cx: &mut Cx, args: &Self::Args) -> Result<Self::Output, BuildError>;

    /// Invariants an object must satisfy before it is served from disk. A failure
    /// quarantines that stored object and rebuilds it.
    fn check(&self, _object: &Self::Output) -> Result<(), String> {
        Ok(())
    }

    /// The name used in keys. Defaults to [`Recipe::NAME`]; recipes made at run time (the
    /// configuration's command recipes) override it.
    fn name(&self) -> &str {
        Self::NAME
    }

    /// The version used for validation. Defaults to [`Recipe::VERSION`].
    fn version(&self) -> u32 {
        Self::VERSION
    }

    /// The source files this recipe's code lives in: editing them invalidates its objects.
    fn sources(&self) -> Sources {
        Sources::NONE
    }

    /// How long an object of this recipe may be served after it was built. Overridden by
    /// the configuration's `max_age` for this recipe; the global `max_age` applies when
    /// neither says.
    fn max_age(&self) -> Option<Duration> {
        None
    }

    /// What the recipe *is*, besides its [`Recipe::VERSION`] and its sources: named parts,
    /// each fingerprinted. Changing a part rebuilds exactly this recipe's objects, with a
    /// reason naming the part (`recipe definition changed (command)`). Command recipes
    /// return their configuration entry; the engine adds the configuration's declared
    /// `inputs` and `env` for every recipe.
    fn definition(&self) -> Definition {
        Definition::default()
    }
}

/// The named parts of a recipe's definition, each a blake3 of its canonical encoding.
/// Cheap to clone.
///
/// ```
/// use trove::Definition;
/// let a = Definition::default().with("command", &["python3", "prices.py"]);
/// let b = Definition::default().with("command", &["python3", "prices2.py"]);
/// assert_ne!(a, b);
/// assert_eq!(a.parts().count(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Definition(Arc<BTreeMap<String, Digest>>);

impl Definition {
    /// The declared inputs and env of a configuration entry, as definition parts
    /// (sorted: their order means nothing).
    pub(crate) fn declared(rc: &trove_config::RecipeConfig) -> Definition {
        let mut d = Definition::default();
        if !rc.inputs.is_empty() {
            let mut inputs = rc.inputs.clone();
            inputs.sort();
            inputs.dedup();
            d = d.with("inputs", &inputs);
        }
        if !rc.env.is_empty() {
            let mut env = rc.env.clone();
            env.sort();
            env.dedup();
            d = d.with("env", &env);
        }
        d
    }

    /// Adds (or replaces) a part: the canonical encoding of `value`, hashed. A value that
    /// cannot be encoded canonically (a map with non-string keys that do not encode)
    /// is hashed from its JSON instead, so it still counts.
    pub fn with<T: Serialize + ?Sized>(mut self, part: &str, value: &T) -> Definition {
        let digest = match trove_fingerprint::encode(value) {
            Ok(bytes) => Digest::of_bytes(&bytes),
            Err(_) => Digest::of_bytes(serde_json::to_string(value).unwrap_or_default().as_bytes()),
        };
        Arc::make_mut(&mut self.0).insert(part.to_owned(), digest);
        self
    }

    /// The parts, by name.
    pub fn parts(&self) -> impl Iterator<Item = (&str, &Digest)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// This definition with `other`'s parts added where this one has none.
    pub(crate) fn merged(&self, other: &Definition) -> Definition {
        if other.0.is_empty() {
            return self.clone();
        }
        if self.0.is_empty() {
            return other.clone();
        }
        if other.0.keys().all(|k| self.0.contains_key(k)) {
            return self.clone();
        }
        let mut out = (*self.0).clone();
        for (k, v) in other.0.iter() {
            out.entry(k.clone()).or_insert(*v);
        }
        Definition(Arc::new(out))
    }

    pub(crate) fn map(&self) -> &BTreeMap<String, Digest> {
        &self.0
    }

    /// The names of the parts that differ between a stored definition and this one.
    pub(crate) fn differences(&self, then: &BTreeMap<String, Digest>) -> Vec<String> {
        let now = &*self.0;
        let mut names: Vec<String> = now
            .iter()
            .filter(|(k, v)| then.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        names.extend(then.keys().filter(|k| !now.contains_key(*k)).cloned());
        names.sort();
        names
    }
}

/// Where a recipe's code lives, so editing it invalidates the recipe's objects.
///
/// When the files are on disk they are fingerprinted like any data file (and watched);
/// when the binary runs without them, the digest its build script embedded stands in (see
/// [`trove_fingerprint::emit_source_digest`]).
///
/// ```
/// use trove::Sources;
/// const TABLE: Sources = Sources::new(
///     env!("CARGO_MANIFEST_DIR"),
///     &["src/table/**/*.rs"],
///     option_env!("TROVE_SOURCES_TABLE"),
/// );
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Sources {
    /// The directory the globs are relative to (usually `env!("CARGO_MANIFEST_DIR")`).
    pub root: &'static str,
    /// Globs of source files.
    pub globs: &'static [&'static str],
    /// The hex digest embedded at compile time, if the build script made one.
    pub embedded: Option<&'static str>,
}

impl Sources {
    /// No source tracking.
    pub const NONE: Sources = Sources {
        root: "",
        globs: &[],
        embedded: None,
    };

    /// Source files under `root` matched by `globs`, with an optional embedded digest.
    pub const fn new(
        root: &'static str,
        globs: &'static [&'static str],
        embedded: Option<&'static str>,
    ) -> Sources {
        Sources {
            root,
            globs,
            embedded,
        }
    }

    pub(crate) fn is_none(&self) -> bool {
        self.globs.is_empty()
    }
}
