//! The engine: its state and its public methods. Each phase of a request lives in a module
//! of its own, in the order a `get` passes through them:
//!
//! - `serve`: memory tier, single flight, disk under the key's lock (the request path);
//! - `verify`: validating a variant's trace (salsa's `maybe_changed_after`);
//! - `disk`: stored variants tried newest first, hit counting;
//! - `build`: the tracked build and its stability check (salsa's `execute`);
//! - `publish`: blob, then record, then the key's lock released, then the upload;
//! - `shared`: the team's shared tier — lookup after the disk tier, lease, upload;
//! - `registry` and `counters`: what validation needs to know about recipes;
//! - `explain`: predictions without building, and support for status and gc;
//! - `watch`: the watcher attached to an engine, which lets memory hits skip every check;
//! - `vouch`: what a caller may cache in front of the engine while the watcher vouches.

mod build;
mod counters;
mod disk;
mod explain;
mod publish;
mod registry;
mod serve;
#[cfg(feature = "shared")]
pub(crate) mod shared;
#[cfg(not(feature = "shared"))]
#[path = "engine/shared_off.rs"]
mod shared;
mod verify;
mod vouch;
mod waits;
pub(crate) mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use trove_config::Config;
use trove_fingerprint::{Digest, encode, key_of_encoded};
use trove_store::{Store, StoreOptions};

use crate::flight::Flights;
use crate::memory::{Memory, Object};
use crate::reason::{Prediction, Reason, Residency, Why};
use crate::{Error, Recipe};

pub(crate) use registry::Erased;
pub use registry::Registration;
pub use vouch::Vouched;
pub use watch::WatchGuard;

/// What a flight hands its waiters: the object, why, its digest and its arguments for
/// people.
pub(crate) type FlightValue = (Object, Reason, Digest, String);

/// Tuning knobs that are not part of the configuration file.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bytes of objects the memory tier keeps resident (default 1 GiB).
    pub memory_limit: u64,
    /// Stored variants per key. `None` (the default) takes the configuration's
    /// `store.variants` (4 when it does not say); `Some(n)` overrides the configuration,
    /// for a program that knows better than its users' files.
    pub max_variants: Option<usize>,
    /// The shared tier's secret, for a program that keeps it elsewhere than in the
    /// environment (a secret manager, a test). `None` (the default) reads the variable
    /// `shared.secret_env` names.
    pub shared_secret: Option<Secret>,
}

/// A secret's bytes; its `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memory_limit: 1 << 30,
            max_variants: None,
            shared_secret: None,
        }
    }
}

/// An object served by the engine, with how it was served.
#[derive(Debug)]
pub struct Served<T> {
    /// The object; the same allocation for every caller while it stays valid.
    pub value: Arc<T>,
    /// Why the answer is what it is.
    pub reason: Reason,
    /// The key.
    pub key: Digest,
    /// blake3 of the encoded object.
    pub digest: Digest,
    /// The arguments, for people.
    pub args: String,
    /// The dependencies built (or waited for) on the way, innermost first, each as
    /// `(recipe and arguments, reason)`: what `trove run --explain` lists under its reason.
    pub dependencies: Vec<(String, Reason)>,
}

/// What an engine has done since it was opened: for tests, benchmarks and dashboards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests served from the memory tier.
    pub memory_hits: u64,
    /// Of those, served on a watcher's word, with no system call.
    pub watched_hits: u64,
    /// Requests served from the disk tier.
    pub disk_hits: u64,
    /// Builds run.
    pub builds: u64,
    /// Requests that joined another caller's flight for the same key in this process
    /// (single flight), counted as they start waiting.
    pub waits: u64,
    /// File inputs checked against the file system (a `stat`, and a hash when in doubt).
    pub files_checked: u64,
    /// Absent paths not looked up because their directory's unchanged stamp vouched for
    /// them (one `stat` of the directory instead of one per absent path).
    pub absences_vouched: u64,
    /// Directory inputs (paths that led to a directory) answered without a `stat` of their
    /// own: an absence group's `stat` of a directory at or below them resolved the path
    /// through them. Counted in `files_checked` too. (A directory input above a file
    /// input the build read is not even recorded: the file's check answers it.)
    pub dirs_answered: u64,
    /// Files whose content builds hashed (`cx.read` and every fingerprint a build took);
    /// a fingerprint reused because the file provably did not change is not counted, nor
    /// is a hash validation makes.
    pub files_hashed: u64,
    /// Requests served from the shared tier (`hit shared`).
    pub shared_hits: u64,
    /// Times the shared tier could not answer (slow, down, refusing, backing off) and the
    /// request went on without it.
    pub shared_unavailable: u64,
    /// Shared records refused (unsigned, forged, truncated, another key) and shared
    /// blobs refused as corrupt.
    pub shared_refused: u64,
    /// Variants this engine uploaded to the shared tier (published, or found there).
    pub shared_uploads: u64,
    /// Uploads that failed.
    pub shared_upload_failures: u64,
}

#[derive(Default)]
struct StatCounters {
    memory_hits: AtomicU64,
    watched_hits: AtomicU64,
    disk_hits: AtomicU64,
    builds: AtomicU64,
    waits: AtomicU64,
    files_checked: AtomicU64,
    absences_vouched: AtomicU64,
    dirs_answered: AtomicU64,
    files_hashed: AtomicU64,
    shared_hits: AtomicU64,
    shared_unavailable: AtomicU64,
    shared_refused: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) struct Inner {
    root: PathBuf,
    config: Config,
    /// The disk tier; `None` when it could not be opened (see `store_error`).
    store: Option<Store>,
    store_error: Option<String>,
    pub(crate) memory: Memory,
    /// A flight ends with its value and the moment its inputs were checked (`None`: never,
    /// waiters ask again).
    flights: Flights<(FlightValue, Option<std::time::Instant>)>,
    registry: RwLock<HashMap<String, Arc<dyn Erased>>>,
    /// The configuration's part of each recipe's definition (declared inputs and env).
    config_definitions: HashMap<String, crate::Definition>,
    counters: RwLock<BTreeMap<String, u64>>,
    /// `counters_for` per recipe, dropped whenever a counter is set.
    counters_cache: RwLock<HashMap<String, Arc<BTreeMap<String, u64>>>>,
    stats: StatCounters,
    /// Disk hits not yet counted in the index: `(variant, when)`, written in batches.
    touches: Mutex<Vec<(i64, i64)>>,
    pub(crate) watch: Mutex<Option<watch::Active>>,
    pub(crate) watching: AtomicBool,
    pub(crate) graph: Mutex<trove_graph::Graph>,
    /// Shared libraries that appeared while a recipe built, by recipe name.
    loaded_libraries: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    /// How `Input::External` inputs are fingerprinted, by kind (`external.rs`).
    pub(crate) fingerprinters: crate::external::Fingerprinters,
    /// The team's shared tier, when `shared:` configures one.
    pub(crate) shared: Option<shared::SharedState>,
    /// The newest fingerprint this engine took or reused of each file, for builds of
    /// other keys to reuse (`crate::reuse`).
    pub(crate) file_states: crate::reuse::KnownStates,
}

/// The engine: serves objects from memory, from disk, or by building them. Cheap to clone
/// (a handle); use one per store per process so every object exists once in memory.
///
/// ```no_run
/// # use trove::{Engine, Recipe, Cx, BuildError};
/// # #[derive(Clone)] struct Table;
/// # impl Recipe for Table { const NAME: &'static str = "table"; const VERSION: u32 = 1;
/// #   type Args = String; type Output = Vec<u8>;
/// #   fn build(&self, cx: &mut Cx, p: &String) -> Result<Vec<u8>, BuildError> { cx.read(p) } }
/// let engine = Engine::open(trove::Config::load("trove.ron".as_ref())?)?;
/// let table = engine.get(&Table, &"data/prices.csv".to_owned())?;
/// # Ok::<(), trove::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// Opens the store the configuration names and registers its command recipes.
    pub fn open(config: Config) -> Result<Engine, Error> {
        Engine::open_with(config, Options::default())
    }

    /// The embedded default: a store at `dir/.trove`, no configuration file.
    pub fn open_in(dir: &Path) -> Result<Engine, Error> {
        Engine::open(Config::default_in(dir))
    }

    /// [`Engine::open`] with tuning options.
    pub fn open_with(config: Config, options: Options) -> Result<Engine, Error> {
        // A store that cannot be opened (disk full, no permission, a newer format) leaves
        // the engine serving from memory and builds; the reason is logged and given to
        // whoever asks for the store (status, gc, verify).
        let (store, store_error) = match Store::open_with(
            &config.store.path,
            StoreOptions {
                max_variants: options.max_variants.unwrap_or(config.store.variants).max(1),
            },
        ) {
            Ok(store) => (Some(store), None),
            Err(e) => {
                tracing::warn!(
                    store = %config.store.path.display(),
                    "the store cannot be used ({e}); objects are built and kept in memory only"
                );
                (None, Some(e.to_string()))
            }
        };
        let shared = shared::SharedState::open(&config, options.shared_secret.clone())?;
        let engine = Engine {
            inner: Arc::new(Inner {
                shared,
                root: config.dir.clone(),
                store,
                store_error,
                memory: Memory::new(options.memory_limit),
                flights: Flights::new(),
                registry: RwLock::new(HashMap::new()),
                config_definitions: registry::config_definitions(&config),
                counters: RwLock::new(BTreeMap::new()),
                counters_cache: RwLock::new(HashMap::new()),
                stats: StatCounters::default(),
                touches: Mutex::new(Vec::new()),
                watch: Mutex::new(None),
                watching: AtomicBool::new(false),
                graph: Mutex::new(trove_graph::Graph::new()),
                loaded_libraries: Mutex::new(HashMap::new()),
                fingerprinters: Default::default(),
                file_states: Default::default(),
                config,
            }),
        };
        engine.register_linked();
        for (name, rc) in &engine.inner.config.recipes {
            if rc.command.is_some() {
                engine.register(crate::command::CommandRecipe::new(name, rc.clone()));
            }
        }
        Ok(engine)
    }

    /// Counts files whose content a build hashed (`Stats::files_hashed`).
    pub(crate) fn count_hashed(&self, n: u64) {
        bump(&self.inner.stats.files_hashed, n);
    }

    /// What the engine has done since it was opened.
    pub fn stats(&self) -> Stats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (shared_uploads, shared_upload_failures) =
            self.inner.shared.as_ref().map_or((0, 0), |s| s.uploads());
        Stats {
            shared_hits: get(&s.shared_hits),
            shared_unavailable: get(&s.shared_unavailable),
            shared_refused: get(&s.shared_refused),
            shared_uploads,
            shared_upload_failures,
            memory_hits: get(&s.memory_hits),
            watched_hits: get(&s.watched_hits),
            disk_hits: get(&s.disk_hits),
            builds: get(&s.builds),
            waits: get(&s.waits),
            files_checked: get(&s.files_checked),
            absences_vouched: get(&s.absences_vouched),
            dirs_answered: get(&s.dirs_answered),
            files_hashed: get(&s.files_hashed),
        }
    }

    /// Waits for the uploads to the shared tier this engine started (each remote call is
    /// bounded by `shared.timeout`; the whole wait by ten times it). `trove run` calls it
    /// after the object is written and stdout closed, so the answer never waits for it;
    /// dropping the last handle of an engine does too.
    pub fn finish_uploads(&self) {
        if let Some(shared) = &self.inner.shared {
            shared.finish_uploads(shared.upload_grace());
        }
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The directory relative paths are resolved against.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The disk tier, or why there is none.
    pub(crate) fn store(&self) -> Result<&Store, Error> {
        self.inner
            .store
            .as_ref()
            .ok_or_else(|| Error::StoreUnavailable {
                path: self.inner.config.store.path.clone(),
                reason: self.inner.store_error.clone().unwrap_or_default(),
            })
    }

    pub(crate) fn store_root(&self) -> &Path {
        &self.inner.config.store.path
    }

    /// The key of `recipe` applied to `args`.
    pub fn key<R: Recipe>(&self, recipe: &R, args: &R::Args) -> Result<Digest, Error> {
        let encoded = encode(args).map_err(|source| Error::Encode {
            recipe: recipe.name().to_owned(),
            source,
        })?;
        Ok(key_of_encoded(recipe.name(), &encoded))
    }

    /// Serves the object `recipe` makes from `args`: from memory, from disk, or by
    /// building it (exactly once, however many threads and processes ask at once).
    pub fn get<R: Recipe>(&self, recipe: &R, args: &R::Args) -> Result<Arc<R::Output>, Error> {
        self.request(recipe, args).map(|s| s.value)
    }

    /// [`Engine::get`], with the reason for the answer.
    pub fn get_explained<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<Served<R::Output>, Error> {
        self.request(recipe, args)
    }

    /// Builds the object anew, whatever is stored, and stores it in place of what was
    /// (the seed's `use_cache=False`; `trove run --force`). The reason is `built: forced`.
    pub fn refresh<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<Served<R::Output>, Error> {
        self.ensure_registered(recipe);
        self.answer(recipe, args, serve::Request::Refresh)
    }

    /// A request from outside any build of this process: served, and recorded for the
    /// build that started this process, if one did (see `nested.rs`).
    fn request<R: Recipe>(&self, recipe: &R, args: &R::Args) -> Result<Served<R::Output>, Error> {
        let outer = crate::cx::DEPENDENCIES_BUILT.with(|d| std::mem::take(&mut *d.borrow_mut()));
        let served = self.serve(recipe, args);
        let built =
            crate::cx::DEPENDENCIES_BUILT.with(|d| std::mem::replace(&mut *d.borrow_mut(), outer));
        let mut served = served?;
        served.dependencies = built;
        if !crate::nested::recording() {
            return Ok(served);
        }
        crate::nested::record(
            recipe.name(),
            &served.args,
            &postcard::to_allocvec(args).unwrap_or_default(),
            served.key,
            served.digest,
        );
        Ok(served)
    }

    /// [`Engine::get`] for async callers: the lookup and any build run on tokio's
    /// blocking pool, so the runtime's workers are never blocked.
    pub async fn get_async<R: Recipe>(
        &self,
        recipe: &R,
        args: R::Args,
    ) -> Result<Arc<R::Output>, Error> {
        let engine = self.clone();
        let task = recipe.clone();
        tokio::task::spawn_blocking(move || engine.get(&task, &args))
            .await
            .map_err(|e| {
                if e.is_panic() {
                    Error::Panicked {
                        key: "(async)".into(),
                    }
                } else {
                    Error::Cancelled {
                        recipe: recipe.name().to_owned(),
                    }
                }
            })?
    }

    /// What a request would do and why, without building anything: `would hit disk`,
    /// `would build: data/prices.csv changed (..)`. With several variants stored, the
    /// reason names what differs in the one the caller was last served.
    pub fn explain<R: Recipe>(&self, recipe: &R, args: &R::Args) -> Result<Prediction, Error> {
        Ok(match self.peek(recipe, args)?.0 {
            Residency::InMemory => Prediction::HitMemory,
            Residency::OnDisk => Prediction::HitDisk,
            Residency::Shared => Prediction::HitShared,
            Residency::Absent => Prediction::Build(Why::NoEntry),
            Residency::Stale(why) => Prediction::Build(why),
        })
    }

    /// Where the object lives now, without building anything.
    pub fn residency<R: Recipe>(&self, recipe: &R, args: &R::Args) -> Result<Residency, Error> {
        Ok(self.peek(recipe, args)?.0)
    }

    pub(crate) fn display_path(&self, p: &Path) -> String {
        p.strip_prefix(&self.inner.root)
            .unwrap_or(p)
            .display()
            .to_string()
    }
}
