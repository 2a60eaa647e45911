//! The engine: how a request is answered (memory tier, disk tier, build), validation of
//! traces, status, gc.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use trove_config::Config;
use trove_fingerprint::{Digest, FileCheck, encode, key_of_encoded};
use trove_store::{KeyLock, NewRecord, Record, Store, StoreOptions};

use crate::codec;
use crate::cx::Cx;
use crate::flight::{Flights, Role as FlightRole};
use crate::memory::{Memory, Meta, Object};
use crate::reason::{Reason, Residency, Why};
use crate::trace::{Input, Role, Trace};
use crate::{Error, Recipe};

/// Tuning knobs that are not part of the configuration file.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bytes of objects the memory tier keeps resident (default 1 GiB).
    pub memory_limit: u64,
    /// Stored variants per key (default 4).
    pub max_variants: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memory_limit: 1 << 30,
            max_variants: 4,
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
}

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

struct Typed<R>(R);

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

/// How thoroughly a trace is validated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// For serving: dependencies are served (and rebuilt if they must be).
    Serve,
    /// For explaining: nothing is built.
    Peek,
    /// For gc: dependencies are not followed (each is collected on its own).
    Gc,
    /// A watcher vouches for every path: only what it cannot see is checked.
    Watched,
}

enum Validity {
    Valid { refreshed: Option<Trace> },
    Invalid(Why),
}

/// What validating one variant needs besides its trace.
struct Subject<'a> {
    recipe: &'a str,
    sources: crate::Sources,
    version_now: Option<u32>,
    version_then: u32,
    created_ms: i64,
    max_age: Option<Duration>,
}

type FlightValue = (Object, Reason, Digest, String);

/// Which stored variant is a key's newest (row ids can be reused, so its creation time
/// and blob go with the id).
#[derive(Clone, Copy, PartialEq, Eq)]
struct VariantId(i64, i64, [u8; 32]);

impl VariantId {
    fn of(rec: &Record) -> VariantId {
        VariantId(rec.id, rec.created_ms, rec.blob.hash)
    }
}

/// What a leader returns: the flight's value, and the object still to be stored.
type Built<T> = (FlightValue, Option<Pending<T>>);

/// A built object not stored yet, with the key's lock, held until it is.
struct Pending<T> {
    value: Arc<T>,
    /// The postcard encoding; `None` for a raw `Vec<u8>` object (its own bytes).
    encoded: Option<Vec<u8>>,
    codec: u8,
    digest: Digest,
    trace: Vec<u8>,
    created_ms: i64,
    args: String,
    reason: String,
    meta: Arc<Meta>,
    lock: Option<KeyLock>,
}

/// Disk hits counted in memory before they are written in one transaction.
const TOUCH_BATCH: usize = 64;

impl Inner {
    fn write_touches(&self, batch: &[(i64, i64)]) {
        if let Some(store) = self.store.as_ref()
            && let Err(e) = store.touch_many(batch)
        {
            tracing::debug!("hit counts not recorded: {e}");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let batch = std::mem::take(self.touches.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.write_touches(&batch);
    }
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
    /// File inputs checked against the file system (a `stat`, and a hash when in doubt).
    pub files_checked: u64,
}

#[derive(Default)]
struct StatCounters {
    memory_hits: AtomicU64,
    watched_hits: AtomicU64,
    disk_hits: AtomicU64,
    builds: AtomicU64,
    files_checked: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) struct Inner {
    root: PathBuf,
    config: Config,
    /// The disk tier; `None` when it could not be opened (see `store_error`).
    store: Option<Store>,
    store_error: Option<String>,
    pub(crate) memory: Memory,
    /// A flight ends with its value and whether waiters must ask again.
    flights: Flights<(FlightValue, bool)>,
    registry: RwLock<HashMap<String, Arc<dyn Erased>>>,
    counters: RwLock<BTreeMap<String, u64>>,
    /// `counters_for` per recipe, dropped whenever a counter is set.
    counters_cache: RwLock<HashMap<String, Arc<BTreeMap<String, u64>>>>,
    stats: StatCounters,
    /// Disk hits not yet counted in the index: `(variant, when)`, written in batches.
    touches: Mutex<Vec<(i64, i64)>>,
    pub(crate) watch: Mutex<Option<crate::watch::Active>>,
    pub(crate) watching: AtomicBool,
    pub(crate) graph: Mutex<trove_graph::Graph>,
    /// Shared libraries that appeared while a recipe built, by recipe name.
    loaded_libraries: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
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
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

thread_local! {
    /// Keys being built on this thread, innermost last: a recipe asking for one of them
    /// is a cycle.
    static BUILDING: RefCell<Vec<Digest>> = const { RefCell::new(Vec::new()) };
}

struct BuildingGuard;

impl BuildingGuard {
    fn enter(key: Digest, recipe: &str) -> Result<BuildingGuard, Error> {
        BUILDING.with(|b| {
            let mut b = b.borrow_mut();
            if b.contains(&key) {
                return Err(Error::Cycle {
                    recipe: recipe.to_owned(),
                });
            }
            b.push(key);
            Ok(BuildingGuard)
        })
    }
}

impl Drop for BuildingGuard {
    fn drop(&mut self) {
        BUILDING.with(|b| {
            b.borrow_mut().pop();
        });
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
                max_variants: options.max_variants.max(1),
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
        let engine = Engine {
            inner: Arc::new(Inner {
                root: config.dir.clone(),
                store,
                store_error,
                memory: Memory::new(options.memory_limit),
                flights: Flights::new(),
                registry: RwLock::new(HashMap::new()),
                counters: RwLock::new(BTreeMap::new()),
                counters_cache: RwLock::new(HashMap::new()),
                stats: StatCounters::default(),
                touches: Mutex::new(Vec::new()),
                watch: Mutex::new(None),
                watching: AtomicBool::new(false),
                graph: Mutex::new(trove_graph::Graph::new()),
                loaded_libraries: Mutex::new(HashMap::new()),
                config,
            }),
        };
        for (name, rc) in &engine.inner.config.recipes {
            if rc.command.is_some() {
                engine.register(crate::command::CommandRecipe::new(name, rc.clone()));
            }
        }
        Ok(engine)
    }

    /// What the engine has done since it was opened.
    pub fn stats(&self) -> Stats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            memory_hits: get(&s.memory_hits),
            watched_hits: get(&s.watched_hits),
            disk_hits: get(&s.disk_hits),
            builds: get(&s.builds),
            files_checked: get(&s.files_checked),
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

    fn ensure_registered<R: Recipe>(&self, recipe: &R) {
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

    fn erased(&self, name: &str) -> Option<Arc<dyn Erased>> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Sets a global version counter; objects covered by it become stale when it changes.
    pub fn set_counter(&self, name: &str, value: u64) {
        self.set_qualified_counter(name.to_owned(), value);
    }

    /// Sets a version counter that covers one recipe.
    pub fn set_recipe_counter(&self, recipe: &str, name: &str, value: u64) {
        self.set_qualified_counter(format!("{recipe}/{name}"), value);
    }

    fn set_qualified_counter(&self, name: String, value: u64) {
        let mut counters = self
            .inner
            .counters
            .write()
            .unwrap_or_else(|e| e.into_inner());
        counters.insert(name, value);
        // Cleared under the counters' write lock: `counters_for` fills the cache under
        // their read lock, so no stale map can be put back after this.
        self.inner
            .counters_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        drop(counters);
        self.inner.memory.mark_all_unfresh();
    }

    /// Every counter covering `recipe`, by qualified name (`alice`, `table/alice`).
    fn counters_for(&self, recipe: &str) -> Arc<BTreeMap<String, u64>> {
        let counters = self
            .inner
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = self
            .inner
            .counters_cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(recipe)
        {
            return c.clone();
        }
        let config = &self.inner.config;
        let mut out: BTreeMap<String, u64> = config.versions.clone();
        if let Some(rc) = config.recipes.get(recipe) {
            for (k, v) in &rc.versions {
                out.insert(format!("{recipe}/{k}"), *v);
            }
        }
        let prefix = format!("{recipe}/");
        for (k, v) in counters.iter() {
            if !k.contains('/') || k.starts_with(&prefix) {
                out.insert(k.clone(), *v);
            }
        }
        let out = Arc::new(out);
        self.inner
            .counters_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(recipe.to_owned(), out.clone());
        out
    }

    /// What validating a variant of `recipe` built at `created_ms` by `version_then` needs.
    fn subject<'a, R: Recipe>(
        &self,
        recipe: &'a R,
        version_then: u32,
        created_ms: i64,
    ) -> Subject<'a> {
        Subject {
            recipe: recipe.name(),
            sources: recipe.sources(),
            version_now: Some(recipe.version()),
            version_then,
            created_ms,
            max_age: self.max_age_for(recipe.name(), recipe.max_age()),
        }
    }

    fn max_age_for(&self, recipe: &str, own: Option<Duration>) -> Option<Duration> {
        let config = &self.inner.config;
        config
            .recipes
            .get(recipe)
            .and_then(|rc| rc.max_age)
            .or(own)
            .or(config.max_age)
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
        self.serve(recipe, args).map(|s| s.value)
    }

    /// [`Engine::get`], with the reason for the answer.
    pub fn get_explained<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<Served<R::Output>, Error> {
        self.serve(recipe, args)
    }

    /// [`Engine::get`] for async callers: the lookup and any build run on tokio's
    /// blocking pool, so the runtime's workers are never blocked.
    pub async fn get_async<R: Recipe>(
        &self,
        recipe: &R,
        args: R::Args,
    ) -> Result<Arc<R::Output>, Error> {
        let engine = self.clone();
        let recipe = recipe.clone();
        tokio::task::spawn_blocking(move || engine.get(&recipe, &args))
            .await
            .map_err(|e| {
                if e.is_panic() {
                    Error::Panicked {
                        key: "(async)".into(),
                    }
                } else {
                    Error::Config(format!("the blocking task was cancelled: {e}"))
                }
            })?
    }

    /// What a request would do and why, without building anything.
    pub fn explain<R: Recipe>(&self, recipe: &R, args: &R::Args) -> Result<Reason, Error> {
        Ok(match self.peek(recipe, args)?.0 {
            Residency::InMemory => Reason::HitMemory,
            Residency::OnDisk => Reason::HitDisk,
            Residency::Absent => Reason::Built(Why::NoEntry),
            Residency::Stale(why) => Reason::Built(why),
        })
    }

    /// Where the object lives now, without building anything.
    pub fn residency<R: Recipe>(&self, recipe: &R, args: &R::Args) -> Result<Residency, Error> {
        Ok(self.peek(recipe, args)?.0)
    }

    pub(crate) fn serve<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<Served<R::Output>, Error> {
        let key = self.key(recipe, args)?;
        let downcast = |object: Object, reason: Reason, digest: Digest, args: String| {
            object
                .downcast::<R::Output>()
                .map(|value| Served {
                    value,
                    reason,
                    key,
                    digest,
                    args,
                })
                .map_err(|_| Error::TypeMismatch {
                    recipe: recipe.name().to_owned(),
                })
        };
        let mut stale = None;
        if let Some((object, meta)) = self.inner.memory.lookup(&key) {
            match self.check_memory(recipe, &meta)? {
                None => {
                    bump(&self.inner.stats.memory_hits, 1);
                    return downcast(object, Reason::HitMemory, meta.digest, meta.args.clone());
                }
                Some(why) => stale = Some(why),
            }
        }
        // An object in memory got there through its recipe, which was registered then;
        // past this point the recipe may be needed to validate other objects.
        self.ensure_registered(recipe);
        // A build on this thread asking, directly or not, for its own key would wait for
        // itself forever: it is a cycle.
        if BUILDING.with(|b| b.borrow().contains(&key)) {
            return Err(Error::Cycle {
                recipe: recipe.name().to_owned(),
            });
        }
        match self.inner.flights.join(key) {
            FlightRole::Waiter(flight) => {
                let ((object, reason, digest, args_json), ask_again) =
                    flight.wait().map_err(Error::Shared)?;
                if ask_again {
                    // The leader's build read an input that changed while it ran: its
                    // object is the leader's to return, not evidence of the inputs now.
                    return self.serve(recipe, args);
                }
                let args = args_json;
                let reason = match reason {
                    Reason::Built(why) => Reason::Waited(why),
                    other => other,
                };
                downcast(object, reason, digest, args)
            }
            FlightRole::Leader(leader) => {
                let outcome = self.lead(recipe, args, key, stale);
                match outcome {
                    Ok((v, pending)) => {
                        // A build that is not going to be stored saw an input change
                        // while it ran; a waiter may have asked after that change, so
                        // waiters ask again instead of taking this object.
                        let ask_again = matches!(v.1, Reason::Built(_)) && pending.is_none();
                        // Waiters in this process get the object now; other processes
                        // wait on the key's lock until it is stored.
                        leader.finish(Ok((v.clone(), ask_again)));
                        if let Some(pending) = pending {
                            self.publish(recipe, key, pending);
                        }
                        downcast(v.0, v.1, v.2, v.3)
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        leader.finish(Err(e.clone()));
                        Err(Arc::try_unwrap(e).unwrap_or_else(Error::Shared))
                    }
                }
            }
        }
    }

    /// `None` when the memory-tier object may be served; otherwise why not.
    fn check_memory<R: Recipe>(&self, recipe: &R, meta: &Meta) -> Result<Option<Why>, Error> {
        let watched =
            self.inner.watching.load(Ordering::Acquire) && meta.watchable.load(Ordering::Acquire);
        // Claim freshness before validating: an event that arrives while (or after) we
        // validate clears it again, so no change can slip between the check and the flag.
        let was_fresh = watched && meta.fresh.swap(true, Ordering::AcqRel);
        let mode = if was_fresh {
            Mode::Watched
        } else {
            Mode::Serve
        };
        let trace = meta.trace();
        let subject = self.subject(recipe, meta.recipe_version, meta.created_ms);
        let cheap = (mode == Mode::Watched).then_some(meta.cheap.as_slice());
        let validity = self.validate_with(&subject, &trace, mode, cheap);
        if !matches!(validity, Ok(Validity::Valid { .. })) {
            // Not verified (stale, or the check itself failed): the claim is withdrawn.
            meta.fresh.store(false, Ordering::Release);
        }
        match validity? {
            Validity::Valid { refreshed } => {
                if let Some(t) = refreshed {
                    self.adopt_refresh(meta.variant(), meta, t);
                }
                Ok(None)
            }
            Validity::Invalid(why) => Ok(Some(why)),
        }
    }

    fn adopt_refresh(&self, variant: Option<i64>, meta: &Meta, trace: Trace) {
        if let Some(id) = variant
            && let Some(store) = self.inner.store.as_ref()
            && let Err(e) = store.update_trace(id, &trace.encode())
        {
            tracing::warn!("cannot refresh stored metadata: {e}");
        }
        *meta.trace.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(trace);
    }

    /// The leader's path: memory again, disk, lock, disk again, build.
    fn lead<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
        key: Digest,
        stale: Option<Why>,
    ) -> Result<Built<R::Output>, Error> {
        // A flight that finished just before this one began left its object in memory.
        if let Some((object, meta)) = self.inner.memory.lookup(&key)
            && self.check_memory(recipe, &meta)?.is_none()
        {
            bump(&self.inner.stats.memory_hits, 1);
            return Ok((
                (object, Reason::HitMemory, meta.digest, meta.args.clone()),
                None,
            ));
        }
        let args_display = describe_args(args);
        // The newest variant the look saw: anything published after it shows up as a
        // different newest variant under the lock below.
        let mut seen = None;
        let mut why = match self.lookup_disk(recipe, key, &args_display, &mut seen)? {
            Ok(hit) => return Ok((hit, None)),
            Err(why) => stale.unwrap_or(why),
        };
        let lock = loop {
            let lock = match self.inner.store.as_ref().map(|s| s.lock_key(&key.0)) {
                None => None,
                Some(Ok(lock)) => Some(lock),
                Some(Err(e)) => {
                    tracing::warn!("building without the cross-process lock: {e}");
                    None
                }
            };
            // Another process may have built it while we waited for the lock. Load it
            // without holding the lock, so every process that waited loads at once
            // instead of one after another.
            let newest = self.newest_variant(key);
            if lock.is_none() || newest == seen {
                break lock;
            }
            drop(lock);
            match self.lookup_disk(recipe, key, &args_display, &mut seen)? {
                Ok(hit) => return Ok((hit, None)),
                Err(w) if why == Why::NoEntry => why = w,
                Err(_) => {}
            }
        };
        self.build(recipe, args, key, args_display, why, lock)
    }

    /// Counts a disk hit of a variant (its hits and last use, for status and gc's
    /// least-recently-used trimming). Hits are written in batches: a write per hit
    /// would cost more than the hit.
    fn touch(&self, variant: i64) {
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
    fn newest_variant(&self, key: Digest) -> Option<VariantId> {
        let variants = self.inner.store.as_ref()?.variants(&key.0).ok()?;
        variants.first().map(VariantId::of)
    }

    /// Tries the stored variants of a key, newest first; `seen` gets the identity of the
    /// newest one this look read (one query serves both).
    fn lookup_disk<R: Recipe>(
        &self,
        recipe: &R,
        key: Digest,
        args_display: &str,
        seen: &mut Option<VariantId>,
    ) -> Result<Result<FlightValue, Why>, Error> {
        let Some(store) = self.inner.store.as_ref() else {
            return Ok(Err(Why::NoEntry));
        };
        let variants = match store.variants(&key.0) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("treating the disk tier as empty: {e}");
                return Ok(Err(Why::NoEntry));
            }
        };
        *seen = variants.first().map(VariantId::of);
        let mut first_why = None;
        for rec in variants {
            match self.try_variant(store, recipe, &rec)? {
                Ok(object) => {
                    bump(&self.inner.stats.disk_hits, 1);
                    self.touch(rec.id);
                    return Ok(Ok((
                        object,
                        Reason::HitDisk,
                        Digest(rec.blob.hash),
                        args_display.to_owned(),
                    )));
                }
                Err(why) => {
                    first_why.get_or_insert(why);
                }
            }
        }
        Ok(Err(first_why.unwrap_or(Why::NoEntry)))
    }

    fn try_variant<R: Recipe>(
        &self,
        store: &Store,
        recipe: &R,
        rec: &Record,
    ) -> Result<Result<Object, Why>, Error> {
        let Some(trace) = Trace::decode(&rec.trace) else {
            return Ok(Err(Why::Unverifiable(
                "its trace is in an unknown format".into(),
            )));
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
        // The blob is verified against its blake3 before anything deserializes it.
        let bytes = match store.read_blob(&rec.blob) {
            Ok(b) => b,
            Err(e) => {
                let why = Why::BlobCorrupt(e.to_string());
                let _ = store.quarantine(rec.id, &why.to_string());
                return Ok(Err(why));
            }
        };
        let size = bytes.len() as u64;
        let value: R::Output = match codec::decode(bytes, rec.codec) {
            Ok(v) => v,
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
            },
        );
        Ok(Ok(object))
    }

    /// Puts an object in the memory tier and its edges in the graph the watcher uses.
    fn remember(&self, key: Digest, object: Object, meta: Meta) -> Arc<Meta> {
        let trace = meta.trace();
        let meta = Arc::new(meta);
        crate::watch::on_remember(self, key, &meta, &trace);
        self.inner.memory.insert(key, object, meta.clone());
        meta
    }

    /// Builds the object and puts it in the memory tier. Storing it is left to the
    /// returned [`Pending`], so the caller can wake the flight's waiters first.
    fn build<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
        key: Digest,
        args_display: String,
        why: Why,
        lock: Option<KeyLock>,
    ) -> Result<Built<R::Output>, Error> {
        let _guard = BuildingGuard::enter(key, recipe.name())?;
        let created_ms = now_ms();
        let mut cx = Cx::new(self.clone(), self.inner.root.clone());
        cx.trace.counters = (*self.counters_for(recipe.name())).clone();
        let build_error = |source| Error::Build {
            recipe: recipe.name().to_owned(),
            args: args_for_people(&args_display),
            source,
        };
        self.track_declared(&mut cx, recipe.name(), &recipe.sources())
            .map_err(build_error)?;
        let libraries_before = crate::modules::mapped_libraries();
        tracing::debug!(recipe = recipe.name(), args = %args_display, "building: {why}");
        bump(&self.inner.stats.builds, 1);
        let value = recipe.build(&mut cx, args).map_err(build_error)?;
        self.track_mapped_libraries(&mut cx, recipe.name(), &libraries_before)
            .map_err(build_error)?;
        let unstable = match cx.unstable.take() {
            Some(path) => Some(path),
            None => self.changed_during_build(&cx.trace),
        };
        let reason = Reason::Built(why);
        let value = Arc::new(value);
        let (bytes, codec_id) = codec::encode(&*value).map_err(|msg| {
            build_error(crate::BuildError::Failed(format!(
                "cannot encode the object: {msg}"
            )))
        })?;
        let size = bytes.len() as u64;
        let digest = Digest::of_bytes(&bytes);
        // Postcard bytes are kept for publishing; raw bytes are the object's own.
        let encoded = match bytes {
            std::borrow::Cow::Owned(v) => Some(v),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let object: Object = value.clone();
        if let Some(path) = unstable {
            tracing::warn!(
                recipe = recipe.name(),
                "{path} changed while the object was built: returning it without storing it"
            );
            return Ok(((object, reason, digest, args_display), None));
        }
        let trace_bytes = cx.trace.encode();
        let meta = self.remember(
            key,
            object.clone(),
            Meta {
                recipe: recipe.name().to_owned(),
                args: args_display.clone(),
                recipe_version: recipe.version(),
                created_ms,
                digest,
                variant: AtomicI64::new(0),
                size,
                cheap: cheap_inputs(&cx.trace),
                trace: RwLock::new(Arc::new(cx.trace)),
                fresh: AtomicBool::new(false),
                watchable: AtomicBool::new(false),
            },
        );
        let pending = Pending {
            value,
            encoded,
            codec: codec_id,
            digest,
            trace: trace_bytes,
            created_ms,
            args: args_display.clone(),
            reason: reason.to_string(),
            meta,
            lock,
        };
        Ok(((object, reason, digest, args_display), Some(pending)))
    }

    /// Tracks the shared libraries the build mapped. A library this recipe loaded in an
    /// earlier build and that is still mapped does not show up as new, so it is tracked
    /// again; and when the file at a library's path is no longer the mapped one (it was
    /// replaced after it was loaded), the build ran code that is not on disk: the result
    /// is returned but not stored.
    fn track_mapped_libraries(
        &self,
        cx: &mut Cx,
        recipe: &str,
        before: &BTreeMap<String, u64>,
    ) -> Result<(), crate::BuildError> {
        let after = crate::modules::mapped_libraries();
        let mut used: Vec<String> = after
            .keys()
            .filter(|p| !before.contains_key(*p))
            .cloned()
            .collect();
        {
            let mut loaded = self
                .inner
                .loaded_libraries
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let seen = loaded.entry(recipe.to_owned()).or_default();
            seen.extend(used.iter().cloned());
            used.extend(
                seen.iter()
                    .filter(|p| after.contains_key(*p) && before.contains_key(*p))
                    .cloned(),
            );
        }
        for lib in &used {
            let path = Path::new(lib);
            cx.track_file_as(Role::Module, path)?;
            let on_disk = trove_fingerprint::Stat::of(path)
                .ok()
                .flatten()
                .map(|s| s.ino);
            if on_disk != after.get(lib).copied() {
                cx.unstable = Some(lib.clone());
            }
        }
        Ok(())
    }

    /// Stores a built object: blob first, then the record that points at it, then the
    /// key's lock is released. A failure is logged, not returned: the caller still gets
    /// its object.
    fn publish<R: Recipe>(&self, recipe: &R, key: Digest, pending: Pending<R::Output>) {
        let bytes: std::borrow::Cow<'_, [u8]> = match &pending.encoded {
            Some(v) => std::borrow::Cow::Borrowed(v.as_slice()),
            None => match codec::encode(&*pending.value) {
                Ok((b, _)) => b,
                Err(_) => return,
            },
        };
        let Some(store) = self.inner.store.as_ref() else {
            return;
        };
        let blob = match store.put_blob_hashed(&bytes, pending.digest.0) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(recipe = recipe.name(), "object not stored: {e}");
                return;
            }
        };
        let record = NewRecord {
            key: key.0,
            recipe: recipe.name().to_owned(),
            args: pending.args,
            recipe_version: recipe.version(),
            created_ms: pending.created_ms,
            blob,
            codec: pending.codec,
            trace: pending.trace,
            reason: pending.reason,
        };
        match store.insert(&record) {
            Ok(id) => pending.meta.variant.store(id, Ordering::Release),
            Err(e) => tracing::warn!(recipe = recipe.name(), "object not recorded: {e}"),
        }
        drop(pending.lock);
    }

    /// Declared inputs (the configuration's `inputs` and `env`) and the recipe's sources.
    pub(crate) fn track_declared(
        &self,
        cx: &mut Cx,
        recipe: &str,
        sources: &crate::Sources,
    ) -> Result<(), crate::BuildError> {
        if let Some(rc) = self.inner.config.recipes.get(recipe) {
            let root = self.inner.root.clone();
            for pattern in &rc.inputs {
                if pattern.contains(['*', '?', '[', '{']) {
                    cx.glob_in(&root, pattern, Role::Data)?;
                } else {
                    cx.track_file_as(Role::Data, &root.join(pattern))?;
                }
            }
            for name in &rc.env {
                cx.env(name);
            }
        }
        if !sources.is_none() {
            let root = Path::new(sources.root);
            if root.is_dir() {
                for pattern in sources.globs {
                    cx.glob_in(root, pattern, Role::Source)?;
                }
            } else if let Some(d) = sources.embedded.and_then(Digest::from_hex) {
                cx.trace.push(Input::Code { digest: d });
            }
        }
        Ok(())
    }

    /// Stat again every file the build read: a difference means the build may have seen a
    /// mix of old and new content, so its result must not be stored.
    fn changed_during_build(&self, trace: &Trace) -> Option<String> {
        for input in &trace.inputs {
            if let Input::File {
                path,
                state: trove_fingerprint::FileState::Present { stat, .. },
                ..
            } = input
            {
                match trove_fingerprint::Stat::of(Path::new(path)) {
                    Ok(Some(now)) if now == *stat => {}
                    _ => return Some(path.clone()),
                }
            }
        }
        None
    }

    /// Validates a trace: cheap checks first, files last.
    fn validate(
        &self,
        subject: &Subject<'_>,
        trace: &Trace,
        mode: Mode,
    ) -> Result<Validity, Error> {
        self.validate_with(subject, trace, mode, None)
    }

    /// [`Engine::validate`]; `cheap`, when given, lists the trace's inputs a watcher
    /// cannot vouch for (see [`cheap_inputs`]), so a watched hit does not walk the rest.
    fn validate_with(
        &self,
        subject: &Subject<'_>,
        trace: &Trace,
        mode: Mode,
        cheap: Option<&[u32]>,
    ) -> Result<Validity, Error> {
        if let Some(now) = subject.version_now
            && now != subject.version_then
        {
            return Ok(Validity::Invalid(Why::RecipeVersion {
                from: subject.version_then,
                to: now,
            }));
        }
        let counters = self.counters_for(subject.recipe);
        for name in counters.keys().chain(trace.counters.keys()) {
            let (then, now) = (trace.counters.get(name), counters.get(name));
            if then != now {
                return Ok(Validity::Invalid(Why::Counter {
                    name: name.clone(),
                    from: then.copied(),
                    to: now.copied(),
                }));
            }
        }
        let age_ms = now_ms().saturating_sub(subject.created_ms).max(0) as u128;
        if let Some(max_age) = subject.max_age
            && age_ms > max_age.as_millis()
        {
            return Ok(Validity::Invalid(Why::Expired { max_age }));
        }
        let mut refreshed: Option<Trace> = None;
        let unwatchable: Box<dyn Iterator<Item = &Input>> = match cheap {
            Some(indices) => Box::new(indices.iter().map(|&i| &trace.inputs[i as usize])),
            None => Box::new(trace.inputs.iter()),
        };
        for input in unwatchable {
            let outcome = match input {
                Input::Volatile { name, ttl_ms } => {
                    (age_ms > u128::from(*ttl_ms)).then(|| Why::VolatileExpired {
                        name: name.clone(),
                        ttl: Duration::from_millis(*ttl_ms),
                    })
                }
                Input::Env { name, value } => {
                    let now = std::env::var(name).ok();
                    (now != *value).then(|| Why::Changed {
                        what: format!("env {name}"),
                        from: describe_env(value),
                        to: describe_env(&now),
                    })
                }
                Input::Code { digest } => {
                    // The build ran without the recipe's sources on disk: the digest of
                    // the sources now (on disk, or embedded in this binary) must match.
                    let now = current_code_digest(&subject.sources);
                    (now.as_ref() != Some(digest)).then(|| Why::Changed {
                        what: format!("sources of recipe {}", subject.recipe),
                        from: format!("blake3 {}", digest.short()),
                        to: now.map_or("unknown".into(), |d| format!("blake3 {}", d.short())),
                    })
                }
                _ => None,
            };
            if let Some(why) = outcome {
                return Ok(Validity::Invalid(why));
            }
        }
        if mode == Mode::Watched {
            bump(&self.inner.stats.watched_hits, 1);
            return Ok(Validity::Valid { refreshed: None });
        }
        let mut prechecked = precheck_files(trace);
        for (index, input) in trace.inputs.iter().enumerate() {
            let outcome = match input {
                Input::File { path, state, .. } => {
                    bump(&self.inner.stats.files_checked, 1);
                    let p = Path::new(path);
                    let checked = prechecked
                        .as_mut()
                        .and_then(|all| all[index].take())
                        .unwrap_or_else(|| trove_fingerprint::check_file(state, p));
                    match checked {
                        Ok(FileCheck::Unchanged) => None,
                        Ok(FileCheck::Refreshed(new)) => {
                            let t = refreshed.get_or_insert_with(|| trace.clone());
                            if let Input::File { state, .. } = &mut t.inputs[index] {
                                *state = new;
                            }
                            None
                        }
                        Ok(FileCheck::Changed(new)) => Some(Why::Changed {
                            what: self.display_path(p),
                            from: state.describe(),
                            to: new.describe(),
                        }),
                        Err(e) => Some(Why::Changed {
                            what: self.display_path(p),
                            from: state.describe(),
                            to: format!("unreadable: {e}"),
                        }),
                    }
                }
                Input::Dir { path, state } => {
                    let p = Path::new(path);
                    match trove_fingerprint::list_dir(p) {
                        Ok((_, now)) if now == *state => None,
                        Ok((_, now)) => Some(Why::Changed {
                            what: format!("{}/ listing", self.display_path(p)),
                            from: state.describe(),
                            to: now.describe(),
                        }),
                        Err(e) => Some(Why::Changed {
                            what: format!("{}/ listing", self.display_path(p)),
                            from: state.describe(),
                            to: format!("unreadable: {e}"),
                        }),
                    }
                }
                Input::Glob {
                    root,
                    pattern,
                    state,
                } => {
                    let exclude = vec![self.store_root().to_path_buf()];
                    match trove_fingerprint::glob(Path::new(root), pattern, &exclude) {
                        Ok((_, now)) if now == *state => None,
                        Ok((_, now)) => Some(Why::Changed {
                            what: format!("glob {pattern}"),
                            from: state.describe(),
                            to: now.describe(),
                        }),
                        Err(e) => Some(Why::Changed {
                            what: format!("glob {pattern}"),
                            from: state.describe(),
                            to: format!("error: {e}"),
                        }),
                    }
                }
                Input::Object {
                    recipe,
                    args_display,
                    args,
                    output,
                    ..
                } => self.validate_dependency(recipe, args_display, args, output, mode)?,
                _ => None,
            };
            if let Some(why) = outcome {
                return Ok(Validity::Invalid(why));
            }
        }
        Ok(Validity::Valid { refreshed })
    }

    fn validate_dependency(
        &self,
        recipe: &str,
        args_display: &str,
        args: &[u8],
        output: &Digest,
        mode: Mode,
    ) -> Result<Option<Why>, Error> {
        if mode == Mode::Gc {
            return Ok(None);
        }
        let what = crate::admin::object_label(recipe, args_display);
        let Some(erased) = self.erased(recipe) else {
            return Ok(Some(Why::Unverifiable(format!(
                "dependency recipe `{recipe}` is not registered with this engine"
            ))));
        };
        if mode == Mode::Peek {
            return Ok(match erased.peek(self, args)? {
                (Residency::InMemory | Residency::OnDisk, Some(d)) if d == *output => None,
                (Residency::Stale(why), _) => Some(Why::Dependency {
                    what,
                    because: Some(Box::new(why)),
                }),
                _ => Some(Why::Dependency {
                    what,
                    because: None,
                }),
            });
        }
        match erased.resolve(self, args) {
            Ok((digest, _)) if digest == *output => Ok(None),
            Ok((_, reason)) => Ok(Some(Why::Dependency {
                what,
                because: match reason {
                    Reason::Built(w) | Reason::Waited(w) => Some(Box::new(w)),
                    _ => None,
                },
            })),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn display_path(&self, p: &Path) -> String {
        p.strip_prefix(&self.inner.root)
            .unwrap_or(p)
            .display()
            .to_string()
    }

    /// Residency and (when valid) the output digest, without building.
    pub(crate) fn peek<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<(Residency, Option<Digest>), Error> {
        self.ensure_registered(recipe);
        let key = self.key(recipe, args)?;
        let mut first_why = None;
        if let Some(meta) = self.inner.memory.meta(&key) {
            let subject = self.subject(recipe, meta.recipe_version, meta.created_ms);
            match self.validate(&subject, &meta.trace(), Mode::Peek)? {
                Validity::Valid { .. } => return Ok((Residency::InMemory, Some(meta.digest))),
                Validity::Invalid(why) => first_why = Some(why),
            }
        }
        let variants = match self.inner.store.as_ref() {
            Some(store) => store.variants(&key.0).unwrap_or_default(),
            None => Vec::new(),
        };
        for rec in variants {
            let Some(trace) = Trace::decode(&rec.trace) else {
                first_why.get_or_insert(Why::Unverifiable(
                    "its trace is in an unknown format".into(),
                ));
                continue;
            };
            let subject = self.subject(recipe, rec.recipe_version, rec.created_ms);
            match self.validate(&subject, &trace, Mode::Peek)? {
                Validity::Valid { .. } => {
                    return Ok((Residency::OnDisk, Some(Digest(rec.blob.hash))));
                }
                Validity::Invalid(why) => {
                    first_why.get_or_insert(why);
                }
            }
        }
        Ok(match first_why {
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

/// The inputs of a trace no watcher can vouch for (env vars, volatile sources, embedded
/// source digests): a watched memory hit checks only these.
pub(crate) fn cheap_inputs(trace: &Trace) -> Vec<u32> {
    trace
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            matches!(
                i,
                Input::Env { .. } | Input::Volatile { .. } | Input::Code { .. }
            )
        })
        .map(|(index, _)| index as u32)
        .collect()
}

/// Traces with at least this many files have them checked on several threads: `stat`
/// is a system call each, and the kernel answers them in parallel.
const PARALLEL_CHECK_MIN: usize = 256;

/// Checks every file input of a large trace on all cores, ahead of the in-order pass
/// that decides (which then takes each result instead of checking again).
#[allow(clippy::type_complexity)]
fn precheck_files(trace: &Trace) -> Option<Vec<Option<std::io::Result<FileCheck>>>> {
    let files: Vec<usize> = trace
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i, Input::File { .. }))
        .map(|(index, _)| index)
        .collect();
    if files.len() < PARALLEL_CHECK_MIN {
        return None;
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let chunk = files.len().div_ceil(threads);
    let mut results: Vec<Option<std::io::Result<FileCheck>>> =
        (0..trace.inputs.len()).map(|_| None).collect();
    let checked: Vec<Vec<(usize, std::io::Result<FileCheck>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|indices| {
                scope.spawn(move || {
                    indices
                        .iter()
                        .filter_map(|&index| match &trace.inputs[index] {
                            Input::File { path, state, .. } => {
                                Some((index, trove_fingerprint::check_file(state, Path::new(path))))
                            }
                            _ => None,
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (index, result) in checked.into_iter().flatten() {
        results[index] = Some(result);
    }
    Some(results)
}

/// The digest of a recipe's sources as this process sees them.
fn current_code_digest(sources: &crate::Sources) -> Option<Digest> {
    let root = Path::new(sources.root);
    if !sources.is_none() && root.is_dir() {
        return trove_fingerprint::source_digest(root, sources.globs).ok();
    }
    sources.embedded.and_then(Digest::from_hex)
}

fn describe_env(v: &Option<String>) -> String {
    match v {
        Some(v) if v.len() > 40 => format!("{:?}..", &v[..v.floor_char_boundary(40)]),
        Some(v) => format!("{v:?}"),
        None => "unset".into(),
    }
}

/// The arguments for people (and for `trove watch --rebuild`, which parses them back):
/// JSON.
fn describe_args<A: serde::Serialize>(args: &A) -> String {
    serde_json::to_string(args).unwrap_or_else(|_| "(args)".into())
}

/// Arguments (as stored, JSON) for people: the words of a command recipe joined by
/// spaces, nothing for `()` or no words, the JSON otherwise.
pub(crate) fn args_for_people(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Null) => String::new(),
        Ok(serde_json::Value::Array(items)) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => json.to_owned(),
    }
}
