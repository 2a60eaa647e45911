//! `trove._trove.Engine` and its recipes: a `trove::Engine` serving `DynRecipe`s whose
//! arguments are canonical text and whose objects are pickles, and the identity map that
//! hands every caller the same Python object while the engine's memory tier holds it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use trove::{BuildError, Bytes, Config, Definition, Digest, DynRecipe, Engine, GcOptions, Served};

use crate::errors::{PyBuildError, to_pyerr};
use crate::target::Target;
use crate::tracking::{self, BuildContext, lock};
use crate::{code, objects};

static NEXT_ENGINE: AtomicUsize = AtomicUsize::new(1);

/// One object of the identity map: the Python object made from the bytes with `digest`.
struct Known {
    digest: Digest,
    bytes: Weak<Bytes>,
    object: Py<PyAny>,
}

/// The engine's state shared by its recipes.
pub(crate) struct State {
    pub(crate) engine: Engine,
    id: usize,
    /// key -> the Python object served for it. An entry goes when the engine's memory
    /// tier lets go of the bytes it was made from (checked as entries are added).
    known: Mutex<HashMap<Digest, Known, BuildHasherDefault<crate::key::KeyHasher>>>,
    pruned_at: AtomicUsize,
    /// Where the buffer files of `mmap=True` objects live (`trove._objects`).
    buffers: PathBuf,
    /// Objects the watcher vouches for, served by positional calls without a request
    /// (`crate::fast`).
    pub(crate) fast: Mutex<crate::fast::FastMap>,
    /// Moves when this package changes what a vouched hit depends on: a recipe
    /// registered, the watch started or stopped, a counter set, a refresh, a gc.
    pub(crate) epoch: AtomicU64,
    /// Calls answered by the fast path (counted as memory hits and watched hits).
    fast_hits: AtomicU64,
}

impl State {
    fn moved(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// An engine over one store.
#[pyclass(frozen, name = "Engine", module = "trove._trove")]
pub(crate) struct PyEngine {
    state: Arc<State>,
    watch: Mutex<Option<trove::WatchGuard>>,
}

#[pymethods]
impl PyEngine {
    /// Opens the engine: `config` is a `trove.ron` path (or `None`: the embedded default
    /// in `root`), `store` overrides the store's directory.
    #[new]
    #[pyo3(signature = (config=None, root=None, store=None, memory_limit=None))]
    fn new(
        py: Python<'_>,
        config: Option<PathBuf>,
        root: Option<PathBuf>,
        store: Option<PathBuf>,
        memory_limit: Option<u64>,
    ) -> PyResult<PyEngine> {
        let root = match root {
            Some(r) => r,
            None => std::env::current_dir()?,
        };
        let mut config = match config {
            Some(path) => Config::load(&path).map_err(|e| to_pyerr(py, &e.into()))?,
            None => Config::default_in(&root),
        };
        if let Some(store) = store {
            config.store.path = if store.is_absolute() {
                store
            } else {
                root.join(store)
            };
        }
        let mut options = trove::Options::default();
        if let Some(limit) = memory_limit {
            options.memory_limit = limit;
        }
        let engine = py
            .detach(|| Engine::open_with(config, options))
            .map_err(|e| to_pyerr(py, &e))?;
        engine.register_fingerprinter("py-ast", code::ast_fingerprint);
        engine.register_fingerprinter("py-dist", code::dist_fingerprint);
        let buffers = engine.config().store.path.join("py-buffers-v1");
        Ok(PyEngine {
            state: Arc::new(State {
                engine,
                id: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed),
                known: Mutex::default(),
                pruned_at: AtomicUsize::new(64),
                buffers,
                fast: Mutex::default(),
                epoch: AtomicU64::new(0),
                fast_hits: AtomicU64::new(0),
            }),
            watch: Mutex::new(None),
        })
    }

    /// A recipe of this engine; `target` is the Python recipe object, whose
    /// `_trove_build(text)` builds and whose `_trove_check(obj)` checks. `mapped`: its
    /// objects have buffer files, verified (by loading the object) before every serve
    /// from disk.
    /// `names`: the parameter names, when every call can be keyed from its positional
    /// arguments alone (the fast path, [`PyRecipe::call`]).
    #[pyo3(signature = (name, version, target, max_age=None, has_check=false, definition=None, mapped=false, names=None))]
    #[allow(clippy::too_many_arguments)]
    fn recipe(
        &self,
        py: Python<'_>,
        name: &str,
        version: u32,
        target: Py<PyAny>,
        max_age: Option<f64>,
        has_check: bool,
        definition: Option<HashMap<String, String>>,
        mapped: bool,
        names: Option<Py<PyTuple>>,
    ) -> PyResult<PyRecipe> {
        let max_age = max_age
            .map(Duration::try_from_secs_f64)
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("max_age: {e}")))?;
        let mut def = Definition::default();
        for (part, value) in definition.unwrap_or_default() {
            def = def.with(&part, &value);
        }
        let engine_id = self.state.id;
        let target_id = target.as_ptr() as usize;
        let builder = Target::new(target.bind(py));
        let mut recipe = DynRecipe::new_bytes(name, version, move |cx, text| {
            build(cx, text, &builder, target_id, engine_id, max_age)
        })
        .with_max_age(max_age)
        .with_definition(def)
        .with_private_head(objects::private_head);
        if has_check || mapped {
            let checker = Target::new(target.bind(py));
            let buffers = self.state.buffers.clone();
            recipe = recipe.with_check(move |bytes| objects::check(bytes, &checker, &buffers));
        }
        self.state.engine.register(recipe.clone());
        self.state.moved();
        Ok(PyRecipe {
            state: self.state.clone(),
            recipe,
            names,
            target: target_id,
            max_age,
        })
    }

    /// Sets a version counter (`versions` in trove.ron); `recipe` makes it per recipe.
    #[pyo3(signature = (name, value, recipe=None))]
    fn set_counter(&self, name: &str, value: u64, recipe: Option<&str>) {
        match recipe {
            Some(r) => self.state.engine.set_recipe_counter(r, name, value),
            None => self.state.engine.set_counter(name, value),
        }
        self.state.moved();
    }

    /// Waits for the uploads to the shared tier this engine started (bounded by ten
    /// times `shared.timeout`); the package calls it at exit.
    fn finish_uploads(&self, py: Python<'_>) {
        let engine = &self.state.engine;
        py.detach(|| engine.finish_uploads());
    }

    /// What the engine did since it was opened.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.state.engine.stats();
        let fast = self.state.fast_hits.load(Ordering::Relaxed);
        let d = PyDict::new(py);
        d.set_item("memory_hits", s.memory_hits + fast)?;
        d.set_item("watched_hits", s.watched_hits + fast)?;
        d.set_item("fast_hits", fast)?;
        d.set_item("disk_hits", s.disk_hits)?;
        d.set_item("builds", s.builds)?;
        d.set_item("waits", s.waits)?;
        d.set_item("files_checked", s.files_checked)?;
        d.set_item("absences_vouched", s.absences_vouched)?;
        d.set_item("dirs_answered", s.dirs_answered)?;
        d.set_item("files_hashed", s.files_hashed)?;
        // The shared tier (`shared:` in trove.ron), zero without one.
        d.set_item("shared_hits", s.shared_hits)?;
        d.set_item("shared_unavailable", s.shared_unavailable)?;
        d.set_item("shared_refused", s.shared_refused)?;
        d.set_item("shared_uploads", s.shared_uploads)?;
        d.set_item("shared_upload_failures", s.shared_upload_failures)?;
        Ok(d)
    }

    /// The stored entries, as dicts.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let engine = &self.state.engine;
        let entries = py
            .detach(|| engine.status())
            .map_err(|e| to_pyerr(py, &e))?;
        let out = PyList::empty(py);
        for e in entries {
            let d = PyDict::new(py);
            d.set_item("recipe", &e.recipe)?;
            d.set_item("args", args_text(&e.args))?;
            d.set_item("key", e.key.hex())?;
            d.set_item("residency", residency_text(&e.residency))?;
            d.set_item("size", e.size)?;
            d.set_item("age", e.age.as_secs_f64())?;
            d.set_item("hits", e.hits)?;
            d.set_item("reason", &e.reason)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Removes what can never be served again; returns what was (or would be) removed.
    #[pyo3(signature = (dry_run=false, stale=false, max_size=None))]
    fn gc<'py>(
        &self,
        py: Python<'py>,
        dry_run: bool,
        stale: bool,
        max_size: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let engine = &self.state.engine;
        let options = GcOptions {
            dry_run,
            stale,
            max_size,
        };
        let report = py
            .detach(|| engine.gc(options))
            .map_err(|e| to_pyerr(py, &e))?;
        self.state.moved();
        let removals = PyList::empty(py);
        for r in &report.removals {
            let d = PyDict::new(py);
            d.set_item("what", &r.what)?;
            d.set_item("bytes", r.bytes)?;
            d.set_item("reason", &r.reason)?;
            removals.append(d)?;
        }
        let d = PyDict::new(py);
        d.set_item("removals", removals)?;
        d.set_item("bytes", report.bytes)?;
        d.set_item("kept", report.kept)?;
        d.set_item("dry_run", report.dry_run)?;
        Ok(d)
    }

    /// Starts the watcher (memory hits without system calls while nothing changes).
    fn start_watch(&self, py: Python<'_>) -> PyResult<()> {
        let engine = &self.state.engine;
        let guard = py.detach(|| engine.watch()).map_err(|e| to_pyerr(py, &e))?;
        if lock(&self.watch).replace(guard).is_none() {
            crate::sources::start();
        }
        self.state.moved();
        Ok(())
    }

    /// Stops the watcher.
    fn stop_watch(&self, py: Python<'_>) {
        let guard = lock(&self.watch).take();
        if guard.is_some() {
            crate::sources::stop();
        }
        self.state.moved();
        py.detach(|| drop(guard));
    }

    /// Where the buffer files of `mmap=True` objects live.
    #[getter]
    fn buffers_path(&self) -> PathBuf {
        self.state.buffers.clone()
    }

    /// The store's directory.
    #[getter]
    fn store_path(&self) -> PathBuf {
        self.state.engine.config().store.path.clone()
    }

    /// The directory relative paths are resolved against.
    #[getter]
    fn root(&self) -> PathBuf {
        self.state.engine.root().to_path_buf()
    }
}

/// A recipe handle: serves the objects of one Python recipe by argument text.
#[pyclass(frozen, name = "RecipeHandle", module = "trove._trove")]
pub(crate) struct PyRecipe {
    state: Arc<State>,
    recipe: DynRecipe<Bytes>,
    /// The parameter names, for [`PyRecipe::call`].
    names: Option<Py<PyTuple>>,
    /// The Python recipe object's address: how a build finds the arguments of the call
    /// it serves ([`CALLS`]).
    target: usize,
    /// The recipe's own max_age (the engine may override it from trove.ron).
    max_age: Option<Duration>,
}

thread_local! {
    /// The calls this thread is serving through [`PyRecipe::call`], innermost last: the
    /// recipe object's address, the argument text and the arguments. A build runs on the
    /// thread that asked, so it finds its arguments here (a dependency rebuilt during a
    /// validation finds none, and recovers them from their text).
    static CALLS: RefCell<Vec<(usize, String, Py<PyTuple>)>> = const { RefCell::new(Vec::new()) };
}

/// The arguments of the call on this thread that asked `target` for `text`, if any.
fn call_args(py: Python<'_>, target: usize, text: &str) -> Option<Py<PyTuple>> {
    CALLS.with(|c| {
        c.borrow()
            .iter()
            .rev()
            .find(|(t, x, _)| *t == target && x == text)
            .map(|(_, _, args)| args.clone_ref(py))
    })
}

#[pymethods]
impl PyRecipe {
    /// Serves or builds; returns `(object, reason)`.
    fn get(&self, py: Python<'_>, text: String) -> PyResult<(Py<PyAny>, String)> {
        let served = self.serve(py, &text)?;
        let reason = served.reason.to_string();
        Ok((self.object(py, served)?, reason))
    }

    /// The fast path of a call with positional arguments only (one per parameter):
    /// keys, serves or builds, and returns the object, in one call from Python.
    fn call(&self, py: Python<'_>, args: Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let Some(names) = &self.names else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "this recipe is not called by position only",
            ));
        };
        let fast = crate::fast::key_of(&args);
        if let Some(key) = fast
            && let Some(object) = crate::fast::hit(py, &self.state, self.target, key, &args)
        {
            self.state.fast_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(object);
        }
        let text = crate::key::call_text(names.bind(py), &args)?;
        CALLS.with(|c| {
            c.borrow_mut()
                .push((self.target, text.clone(), args.clone().unbind()))
        });
        let served = self.serve(py, &text);
        let call = CALLS.with(|c| c.borrow_mut().pop());
        drop(call); // with the GIL held
        let served = served?;
        let hit = matches!(served.reason, trove::Reason::HitMemory);
        let (key, digest) = (served.key, served.digest);
        let object = self.object(py, served)?;
        if hit && let Some(fast) = fast {
            let ask = self.vouch();
            crate::fast::remember(
                py,
                &self.state,
                self.target,
                ask,
                fast,
                &args,
                key,
                digest,
                &object,
            );
        }
        Ok(object)
    }

    /// Builds anew and replaces what is stored; returns `(object, reason)`.
    fn refresh(&self, py: Python<'_>, text: String) -> PyResult<(Py<PyAny>, String)> {
        let (engine, recipe) = (&self.state.engine, &self.recipe);
        let served = py
            .detach(|| engine.refresh(recipe, &text))
            .map_err(|e| to_pyerr(py, &e));
        self.state.moved();
        let served = served?;
        let reason = served.reason.to_string();
        Ok((self.object(py, served)?, reason))
    }

    /// What a call would do: `would hit memory`, `would build: ...`.
    fn explain(&self, py: Python<'_>, text: String) -> PyResult<String> {
        let (engine, recipe) = (&self.state.engine, &self.recipe);
        let p = py
            .detach(|| engine.explain(recipe, &text))
            .map_err(|e| to_pyerr(py, &e))?;
        Ok(p.to_string())
    }

    /// `absent`, `on_disk`, `in_memory` or `stale: why`.
    fn residency(&self, py: Python<'_>, text: String) -> PyResult<String> {
        let (engine, recipe) = (&self.state.engine, &self.recipe);
        let r = py
            .detach(|| engine.residency(recipe, &text))
            .map_err(|e| to_pyerr(py, &e))?;
        Ok(residency_text(&r))
    }

    /// The key, hex.
    fn key(&self, py: Python<'_>, text: String) -> PyResult<String> {
        let key = self
            .state
            .engine
            .key(&self.recipe, &text)
            .map_err(|e| to_pyerr(py, &e))?;
        Ok(key.hex())
    }
}

impl PyRecipe {
    /// What `crate::fast` asks the engine with.
    fn vouch(&self) -> crate::fast::Ask<'_> {
        crate::fast::Ask {
            engine: &self.state.engine,
            recipe: trove::Recipe::name(&self.recipe),
            max_age: self.max_age,
        }
    }

    fn serve(&self, py: Python<'_>, text: &str) -> PyResult<Served<Bytes>> {
        match tracking::current() {
            // A recipe called by a build of this engine is that build's dependency.
            Some(ctx) if ctx.engine == self.state.id => nested(py, &ctx, &self.recipe, text),
            _ => {
                let (engine, recipe) = (&self.state.engine, &self.recipe);
                py.detach(|| engine.get_explained(recipe, &text.to_owned()))
                    .map_err(|e| to_pyerr(py, &e))
            }
        }
    }

    /// The Python object for a served pickle: the one already handed out for the same key
    /// and bytes, the one the build (or the check) made, or a new one unpickled now.
    fn object(&self, py: Python<'_>, served: Served<Bytes>) -> PyResult<Py<PyAny>> {
        let Served {
            value, key, digest, ..
        } = served;
        if let Some(known) = lock(&self.state.known).get_mut(&key)
            && known.digest == digest
        {
            known.bytes = Arc::downgrade(&value);
            return Ok(known.object.clone_ref(py));
        }
        let object = match objects::take_made(&digest) {
            Some(o) => o,
            None => objects::loads_served(py, &value, &self.state.buffers)?,
        };
        let mut dropped = Vec::new();
        let object = {
            let mut known = lock(&self.state.known);
            let entry = known.entry(key).or_insert_with(|| Known {
                digest,
                bytes: Arc::downgrade(&value),
                object: object.clone_ref(py),
            });
            if entry.digest != digest {
                let old = std::mem::replace(
                    entry,
                    Known {
                        digest,
                        bytes: Arc::downgrade(&value),
                        object: object.clone_ref(py),
                    },
                );
                dropped.push(old);
            }
            let chosen = entry.object.clone_ref(py);
            let limit = self.state.pruned_at.load(Ordering::Relaxed);
            if known.len() > limit {
                let dead: Vec<Digest> = known
                    .iter()
                    .filter(|(_, k)| k.bytes.strong_count() == 0)
                    .map(|(key, _)| *key)
                    .collect();
                dropped.extend(dead.iter().filter_map(|k| known.remove(k)));
                self.state
                    .pruned_at
                    .store((known.len() * 2).max(64), Ordering::Relaxed);
            }
            chosen
        };
        // Objects are released outside the lock: a `__del__` may call trove.
        drop(dropped);
        Ok(object)
    }
}

/// A dependency served through the build's `Cx`, so it joins the build's trace.
fn nested(
    py: Python<'_>,
    ctx: &BuildContext,
    recipe: &DynRecipe<Bytes>,
    text: &str,
) -> PyResult<Served<Bytes>> {
    let text = text.to_owned();
    match ctx.with_cx(py, |cx| cx.get_explained(recipe, &text)) {
        Some(Ok(served)) => Ok(served),
        Some(Err(e)) => Err(crate::errors::build_error_to_pyerr(py, &e)),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "a trove recipe was called from a thread of a build that has already finished",
        )),
    }
}

/// The build callback: runs the Python recipe under tracking, records the code that ran,
/// and returns the pickle.
fn build(
    cx: &mut trove::Cx,
    text: &String,
    target: &Target,
    target_id: usize,
    engine: usize,
    max_age: Option<Duration>,
) -> Result<Bytes, BuildError> {
    Python::attach(|py| {
        let target = match target.get(py) {
            Ok(t) => t,
            Err(e) => return Err(BuildError::Other(Box::new(PyBuildError::new(py, e)))),
        };
        let args = call_args(py, target_id, text);
        let ctx = Arc::new(BuildContext::new(cx, engine, max_age));
        tracking::push(py, ctx.clone());
        let outcome = target.call_method1("_trove_build", (text, args));
        tracking::pop(py);
        ctx.release();
        let recorded = code::record(py, &ctx, cx, &target);
        let (data, object) = match outcome.and_then(|r| {
            let (data, object): (Bound<'_, PyBytes>, Bound<'_, PyAny>) = r.extract()?;
            Ok((data, object))
        }) {
            Ok(made) => made,
            Err(e) => return Err(BuildError::Other(Box::new(PyBuildError::new(py, e)))),
        };
        if let Err(e) = recorded {
            return Err(BuildError::Other(Box::new(PyBuildError::new(py, e))));
        }
        let bytes = data.as_bytes().to_vec();
        objects::made(py, &bytes, object.unbind());
        Ok(Bytes::from(bytes))
    })
}

fn residency_text(r: &trove::Residency) -> String {
    match r {
        trove::Residency::Absent => "absent".into(),
        trove::Residency::OnDisk => "on_disk".into(),
        trove::Residency::InMemory => "in_memory".into(),
        other => other.to_string(),
    }
}

/// Stored arguments (JSON of the argument text) back to the text.
fn args_text(json: &str) -> String {
    serde_json::from_str::<String>(json).unwrap_or_else(|_| json.to_owned())
}
