//! What another language's front needs from the engine: recipes defined at run time with
//! opaque arguments and byte outputs ([`DynRecipe`]), and inputs that only that language
//! can fingerprint ([`Fingerprinter`]s, recorded as `Input::External`).
//!
//! The Python package is the first user: its recipes' arguments are the canonical text
//! Python computes, their objects are pickles, and the code that ran is recorded as
//! `py-ast` inputs (a source file's AST digest) and `py-dist` inputs (an installed
//! distribution's version), which only Python can compute and the engine validates by
//! calling back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bytes::{Bytes, PrivateHead};
use crate::engine::Engine;
use crate::reason::Why;
use crate::trace::Input;
use crate::{BuildError, Cx, Definition, Recipe};

/// Computes an input's fingerprint now: `None` when the input does not exist (a source
/// file that is gone, a distribution that is not installed). Called on every validation
/// of an object that recorded such an input, so it should be cheap (cache by `stat`).
pub type Fingerprinter = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The fingerprinters registered with an engine, by kind.
pub(crate) type Fingerprinters = std::sync::RwLock<HashMap<String, Fingerprinter>>;

type DynBuild<O> = dyn Fn(&mut Cx, &String) -> Result<O, BuildError> + Send + Sync;
type DynCheck<O> = dyn Fn(&O) -> Result<(), String> + Send + Sync;

/// A recipe made at run time: its name, version, `max_age` and definition are values,
/// its arguments are a canonical string the caller computed (the key is derived from it
/// like any other arguments), and its object is bytes, stored raw: a `Vec<u8>`, or a
/// [`Bytes`], which a large stored object can be served as a verified map of
/// ([`DynRecipe::with_private_head`]). For fronts in other languages (the Python
/// package), where the recipe's code is a callback.
///
/// ```
/// use trove::{DynRecipe, Engine};
/// let double = DynRecipe::new("double", 1, |cx, args| {
///     let n: u64 = args.parse().map_err(trove::BuildError::msg)?;
///     cx.env("UNUSED");
///     Ok((n * 2).to_string().into_bytes())
/// });
/// let dir = std::env::temp_dir().join(format!("trove-dyn-doc-{}", std::process::id()));
/// let engine = Engine::open_in(&dir)?;
/// assert_eq!(*engine.get(&double, &"21".to_owned())?, b"42".to_vec());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), trove::Error>(())
/// ```
pub struct DynRecipe<O = Vec<u8>> {
    name: Arc<str>,
    version: u32,
    max_age: Option<Duration>,
    definition: Definition,
    build: Arc<DynBuild<O>>,
    check: Option<Arc<DynCheck<O>>>,
    head: Option<PrivateHead>,
}

impl<O> Clone for DynRecipe<O> {
    fn clone(&self) -> Self {
        DynRecipe {
            name: self.name.clone(),
            version: self.version,
            max_age: self.max_age,
            definition: self.definition.clone(),
            build: self.build.clone(),
            check: self.check.clone(),
            head: self.head,
        }
    }
}

impl DynRecipe {
    /// A recipe named `name` at `version` whose objects `build` makes from the canonical
    /// argument string.
    pub fn new(
        name: &str,
        version: u32,
        build: impl Fn(&mut Cx, &String) -> Result<Vec<u8>, BuildError> + Send + Sync + 'static,
    ) -> DynRecipe {
        DynRecipe::made(name, version, Arc::new(build))
    }
}

impl<O> DynRecipe<O> {
    fn made(name: &str, version: u32, build: Arc<DynBuild<O>>) -> DynRecipe<O> {
        DynRecipe {
            name: name.into(),
            version,
            max_age: None,
            definition: Definition::default(),
            build,
            check: None,
            head: None,
        }
    }

    /// The invariant an object must satisfy before it is served from disk.
    pub fn with_check(
        mut self,
        check: impl Fn(&O) -> Result<(), String> + Send + Sync + 'static,
    ) -> DynRecipe<O> {
        self.check = Some(Arc::new(check));
        self
    }

    /// How long an object may be served after it was built.
    pub fn with_max_age(mut self, max_age: Option<Duration>) -> DynRecipe<O> {
        self.max_age = max_age;
        self
    }

    /// The named parts of the recipe's definition (see [`Recipe::definition`]).
    pub fn with_definition(mut self, definition: Definition) -> DynRecipe<O> {
        self.definition = definition;
        self
    }
}

impl DynRecipe<Bytes> {
    /// [`DynRecipe::new`] for objects handed out as [`Bytes`] (stored the same way).
    pub fn new_bytes(
        name: &str,
        version: u32,
        build: impl Fn(&mut Cx, &String) -> Result<Bytes, BuildError> + Send + Sync + 'static,
    ) -> DynRecipe<Bytes> {
        DynRecipe::made(name, version, Arc::new(build))
    }

    /// Serves a stored object whose raw part (after the head `head` declares) is at least
    /// [`crate::MAP_MIN`] as a verified read-only map of its blob file, the head a private
    /// copy ([`Bytes`]; the module `bytes` says how it is verified); others are read
    /// whole, as without it.
    pub fn with_private_head(mut self, head: PrivateHead) -> DynRecipe<Bytes> {
        self.head = Some(head);
        self
    }

    pub(crate) fn private_head(&self) -> Option<PrivateHead> {
        self.head
    }
}

impl<O> Recipe for DynRecipe<O>
where
    O: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    const NAME: &'static str = "(run-time recipe)";
    const VERSION: u32 = 0;
    type Args = String;
    type Output = O;

    fn build(&self, cx: &mut Cx, args: &String) -> Result<O, BuildError> {
        (self.build)(cx, args)
    }

    fn check(&self, object: &O) -> Result<(), String> {
        self.check.as_ref().map_or(Ok(()), |check| check(object))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    fn definition(&self) -> Definition {
        self.definition.clone()
    }
}

impl Engine {
    /// Registers how inputs of `kind` are fingerprinted, for inputs only the caller can
    /// compute (the Python package registers `py-ast`: a source file's AST digest, and
    /// `py-dist`: an installed distribution's version). A build records such an input
    /// with [`Cx::track_external`]; validating it calls `fingerprint(name)` again and any
    /// difference rebuilds, naming the input. Where no fingerprinter is registered for a
    /// kind (another process: the CLI), the object cannot be verified and is not served.
    pub fn register_fingerprinter(
        &self,
        kind: &str,
        fingerprint: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) {
        self.inner
            .fingerprinters
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind.to_owned(), Arc::new(fingerprint));
    }

    fn fingerprinter(&self, kind: &str) -> Option<Fingerprinter> {
        self.inner
            .fingerprinters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kind)
            .cloned()
    }

    /// Validates an external input: `None` when its fingerprint is unchanged.
    pub(crate) fn check_external(
        &self,
        kind: &str,
        name: &str,
        then: &Option<String>,
    ) -> Option<Why> {
        let Some(fingerprint) = self.fingerprinter(kind) else {
            return Some(Why::Unverifiable(format!(
                "no fingerprinter for `{kind}` inputs is registered in this process"
            )));
        };
        let now = fingerprint(name);
        (now != *then).then(|| Why::Changed {
            what: format!("{} ({kind})", self.display_path(std::path::Path::new(name))),
            from: describe_fingerprint(then),
            to: describe_fingerprint(&now),
        })
    }
}

/// A fingerprint for people: a blake3 hex digest shortened as file digests are, a short
/// value (a version) as it is.
fn describe_fingerprint(value: &Option<String>) -> String {
    match value {
        None => "absent".into(),
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("blake3 {}..", &v[..8])
        }
        Some(v) if v.len() > 40 => format!("{}..", &v[..v.floor_char_boundary(40)]),
        Some(v) => v.clone(),
    }
}

impl Cx {
    /// Records an input of `kind` that only a registered [`Fingerprinter`] can
    /// fingerprint (see [`Engine::register_fingerprinter`]), with its fingerprint now;
    /// returns it. Without a fingerprinter for `kind` the input is recorded as absent,
    /// and the object will not validate until one is registered.
    pub fn track_external(&mut self, kind: &str, name: &str) -> Option<String> {
        let value = self.engine.fingerprinter(kind).and_then(|f| f(name));
        self.trace.push(Input::External {
            kind: kind.to_owned(),
            name: name.to_owned(),
            value: value.clone(),
        });
        value
    }

    /// Marks the result as not to be stored (it is still returned): something the build
    /// depended on changed while it ran, or the code that ran is not the code on disk
    /// (a source file edited after its module was loaded). `what` is named in the log.
    pub fn mark_unstable(&mut self, what: &str) {
        self.unstable.get_or_insert_with(|| what.to_owned());
    }

    /// The engine this build runs in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
