//! Which build an event belongs to: one [`BuildContext`] per running build, a stack of
//! them per thread (nested builds push; threads a build starts push their parent's), and
//! the C-level profile function that records the code that ran.
//!
//! A build's `Cx` is reachable from the events of any of its threads through the
//! context's mutex; the pointer is set while the build callback runs and taken out before
//! the callback touches the `Cx` again, so no event can reach it afterwards. Every use of
//! the `Cx` happens with the GIL released: a use may build a dependency, whose callback
//! needs the GIL, while another of the build's threads waits for the mutex.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use trove::Cx;

use crate::ffi;

/// A `*mut Cx` that may cross threads: every access goes through the context's mutex.
struct CxPtr(*mut Cx);

// SAFETY: `Cx` is `Send`, and the pointer is only dereferenced under the mutex, while the
// build callback that lent it is blocked in Python.
unsafe impl Send for CxPtr {}

/// What one running build collects besides what it records in its `Cx` at once.
pub(crate) struct BuildContext {
    cx: Mutex<Option<CxPtr>>,
    /// The engine the build runs in (a nested call through another engine is not a
    /// dependency this build can record).
    pub(crate) engine: usize,
    pub(crate) max_age: Option<Duration>,
    /// Source files of the code that ran (`co_filename`s).
    pub(crate) code: Mutex<BTreeSet<String>>,
    /// Modules whose import started during the build.
    pub(crate) modules: Mutex<BTreeSet<String>>,
    /// Files the build opened for writing: outputs, not inputs.
    written: Mutex<HashSet<PathBuf>>,
    /// Whether the code-tracking profile function could be installed on every thread.
    pub(crate) profiled: AtomicBool,
}

impl BuildContext {
    pub(crate) fn new(cx: &mut Cx, engine: usize, max_age: Option<Duration>) -> BuildContext {
        BuildContext {
            cx: Mutex::new(Some(CxPtr(cx))),
            engine,
            max_age,
            code: Mutex::default(),
            modules: Mutex::default(),
            written: Mutex::default(),
            profiled: AtomicBool::new(true),
        }
    }

    /// Ends the lending of the `Cx`: afterwards no event reaches it.
    pub(crate) fn release(&self) {
        *lock(&self.cx) = None;
    }

    /// Runs `f` on the build's `Cx` with the GIL released; `None` once the build ended.
    pub(crate) fn with_cx<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Cx) -> T + Send,
    ) -> Option<T> {
        py.detach(|| {
            let guard = lock(&self.cx);
            let ptr = guard.as_ref()?.0;
            // SAFETY: see `CxPtr`; the guard is held for the whole use.
            Some(f(unsafe { &mut *ptr }))
        })
    }

    pub(crate) fn wrote(&self, path: PathBuf) {
        lock(&self.written).insert(path);
    }

    pub(crate) fn was_written(&self, path: &Path) -> bool {
        lock(&self.written).contains(path)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A build context as Python sees it: handed to threads the build starts.
#[pyclass(frozen, name = "BuildContext", module = "trove._trove")]
pub(crate) struct PyContext(pub(crate) Arc<BuildContext>);

/// Hashes a code object's address: the profile function looks one up on every call, and
/// addresses need no protection against collisions chosen by an attacker.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Addresses = HashSet<usize, std::hash::BuildHasherDefault<AddressHasher>>;

struct Frame {
    ctx: Arc<BuildContext>,
    /// Code objects already recorded for this build on this thread (held, so an address
    /// is never reused by another code object while it is in the set).
    seen: Addresses,
    held: Vec<Py<PyAny>>,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// Whether this thread runs our profile function.
    static PROFILING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while trove's own Python code runs inside a build (a fingerprinter reading
    /// package metadata): what it does is not the build's.
    static SUSPENDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with this thread's events belonging to no build.
pub(crate) fn suspended<T>(f: impl FnOnce() -> T) -> T {
    SUSPENDED.with(|s| s.set(s.get() + 1));
    let out = f();
    SUSPENDED.with(|s| s.set(s.get() - 1));
    out
}

/// Frames pushed on all threads: the hooks return at once while it is zero.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// The innermost build on this thread, if any.
pub(crate) fn current() -> Option<Arc<BuildContext>> {
    if ACTIVE.load(Ordering::Relaxed) == 0 || SUSPENDED.with(|s| s.get()) > 0 {
        return None;
    }
    STACK.with(|s| s.borrow().last().map(|f| f.ctx.clone()))
}

/// Makes `ctx` this thread's innermost build and starts recording the code that runs.
pub(crate) fn push(py: Python<'_>, ctx: Arc<BuildContext>) {
    if !PROFILING.with(|p| p.get()) {
        let foreign = py
            .import("sys")
            .and_then(|sys| sys.call_method0("getprofile"))
            .map(|p| !p.is_none())
            .unwrap_or(true);
        if foreign {
            // Another profiler (cProfile, a debugger) owns this thread's profile hook:
            // code is tracked from the recipe's own module and the imports only.
            ctx.profiled.store(false, Ordering::Relaxed);
        } else {
            // SAFETY: called with the GIL held, for this thread.
            unsafe { ffi::PyEval_SetProfile(Some(profile), std::ptr::null_mut()) };
            PROFILING.with(|p| p.set(true));
        }
    }
    STACK.with(|s| {
        s.borrow_mut().push(Frame {
            ctx,
            seen: Addresses::default(),
            held: Vec::new(),
        })
    });
    ACTIVE.fetch_add(1, Ordering::Relaxed);
}

/// Leaves the innermost build of this thread; the last one stops the profile function.
pub(crate) fn pop(py: Python<'_>) {
    let (frame, empty) = STACK.with(|s| {
        let mut s = s.borrow_mut();
        let frame = s.pop();
        (frame, s.is_empty())
    });
    if frame.is_some() {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
    if empty && PROFILING.with(|p| p.get()) {
        // SAFETY: called with the GIL held, for this thread.
        unsafe { ffi::PyEval_SetProfile(None, std::ptr::null_mut()) };
        PROFILING.with(|p| p.set(false));
    }
    // The held code objects are released here, with the GIL held.
    drop(frame);
    let _ = py;
}

/// The profile function: on every Python call, the first time a code object runs in the
/// innermost build of this thread, its file is recorded. Everything else returns at once.
unsafe extern "C" fn profile(
    _obj: *mut pyo3::ffi::PyObject,
    frame: *mut ffi::Frame,
    what: std::os::raw::c_int,
    _arg: *mut pyo3::ffi::PyObject,
) -> std::os::raw::c_int {
    if what != ffi::TRACE_CALL || frame.is_null() {
        return 0;
    }
    // SAFETY: CPython calls the profile function with the GIL held and a live frame.
    let code = unsafe { ffi::PyFrame_GetCode(frame) };
    if code.is_null() {
        return 0;
    }
    // SAFETY: as above: the GIL is held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `code` is the new reference PyFrame_GetCode returned.
    let code = unsafe { Bound::from_owned_ptr(py, code) };
    if SUSPENDED.with(|s| s.get()) > 0 {
        return 0;
    }
    let recorded = STACK.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return None;
        };
        let frame = s.last_mut()?;
        if !frame.seen.insert(code.as_ptr() as usize) {
            return None;
        }
        frame.held.push(code.clone().unbind());
        Some(frame.ctx.clone())
    });
    if let Some(ctx) = recorded
        && let Ok(file) = code.getattr(pyo3::intern!(py, "co_filename"))
        && let Ok(file) = file.extract::<String>()
    {
        lock(&ctx.code).insert(file);
    }
    0
}

/// Whether the innermost Python frame is the import system's (or linecache's): its file
/// reads and listings are how modules are found, tracked as modules instead.
pub(crate) fn in_import_machinery(py: Python<'_>) -> bool {
    // SAFETY: the GIL is held; the frame is borrowed and its code a new reference.
    let code = unsafe {
        let frame = ffi::PyEval_GetFrame();
        if frame.is_null() {
            return false;
        }
        let code = ffi::PyFrame_GetCode(frame);
        if code.is_null() {
            return false;
        }
        Bound::from_owned_ptr(py, code)
    };
    let Ok(file) = code.getattr(pyo3::intern!(py, "co_filename")) else {
        return false;
    };
    let Ok(file) = file.extract::<String>() else {
        return false;
    };
    file.starts_with("<frozen importlib")
        || file.ends_with("importlib/_bootstrap_external.py")
        || file.ends_with("importlib/_bootstrap.py")
        || file.ends_with("/linecache.py")
        || file.ends_with("/tokenize.py")
}

/// The innermost build of this thread, for Python (`None` outside builds).
#[pyfunction]
pub(crate) fn current_context() -> Option<PyContext> {
    current().map(PyContext)
}

/// Whether this thread is inside a build (the cheap test the Python hooks start with).
#[pyfunction]
pub(crate) fn building() -> bool {
    current().is_some()
}

/// Makes this thread (one a build started) report to that build.
#[pyfunction]
pub(crate) fn enter_thread(py: Python<'_>, ctx: &Bound<'_, PyContext>) {
    push(py, ctx.get().0.clone());
}

/// Undoes [`enter_thread`].
#[pyfunction]
pub(crate) fn exit_thread(py: Python<'_>) {
    pop(py);
}

/// The innermost build, or the error for calling an explicit tracker outside one.
pub(crate) fn required(what: &str) -> PyResult<Arc<BuildContext>> {
    current().ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "{what} is called outside a build: call it from the code of a recipe (or a thread it started)"
        ))
    })
}
