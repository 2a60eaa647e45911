//! Which build an event belongs to: one [`BuildContext`] per running build, a stack of
//! them per thread (nested builds push; threads a build starts push their parent's), and
//! [`ran`], where every code-tracking mechanism (`frames`) reports the code that runs.
//!
//! A build's `Cx` is reachable from the events of any of its threads through the
//! context's mutex; the pointer is set while the build callback runs and taken out before
//! the callback touches the `Cx` again, so no event can reach it afterwards. Every use of
//! the `Cx` happens with the GIL released: a use may build a dependency, whose callback
//! needs the GIL, while another of the build's threads waits for the mutex.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use trove::Cx;

use crate::{ffi, frames};

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
    /// Whether the code that ran could be tracked on every thread of the build.
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

/// Hashes a code object's address: every mechanism looks one up on every call, and
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

/// The code objects one build has run on one thread.
struct Seen {
    /// Recorded code objects (held, so an address is never reused by another code
    /// object while it is in the set). Their files join the build's `code` when the
    /// frame is left.
    set: Addresses,
    held: Vec<Py<PyAny>>,
    /// A direct-mapped cache in front of `set`: most calls are of code just seen.
    recent: [usize; RECENT],
}

const RECENT: usize = 64;

impl Seen {
    fn new() -> Box<Seen> {
        Box::new(Seen {
            set: Addresses::default(),
            held: Vec::new(),
            recent: [0; RECENT],
        })
    }

    #[inline(always)]
    fn slot(code: *mut pyo3::ffi::PyObject) -> usize {
        (code as usize >> 4) % RECENT
    }

    /// # Safety
    /// The GIL is held and `code` points to a live code object.
    unsafe fn record(&mut self, code: *mut pyo3::ffi::PyObject) -> Ran {
        let address = code as usize;
        let slot = Seen::slot(code);
        if self.recent[slot] == address {
            return Ran::Known;
        }
        self.recent[slot] = address;
        if !self.set.insert(address) {
            return Ran::Known;
        }
        // SAFETY: the caller holds the GIL and `code` is live; the new reference keeps
        // its address from being reused while it is in the set.
        let held = unsafe { Bound::from_borrowed_ptr(Python::assume_attached(), code) };
        self.held.push(held.unbind());
        Ran::New
    }
}

struct Frame {
    ctx: Arc<BuildContext>,
    /// Owned (a `Box` turned raw): [`FAST`] points at it while this is the only thread
    /// building, and every access goes through this pointer, with the GIL held.
    seen: *mut Seen,
}

impl Frame {
    fn new(ctx: Arc<BuildContext>) -> Frame {
        Frame {
            ctx,
            seen: Box::into_raw(Seen::new()),
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: `seen` came from `Box::into_raw` and no pointer to it remains (`pop`
        // clears FAST before a frame goes).
        drop(unsafe { Box::from_raw(self.seen) });
    }
}

/// This thread's builds and flags, in one thread-local.
struct Local {
    stack: RefCell<Vec<Frame>>,
    /// Whether this thread runs our profile function (the fallback mechanism).
    profiling: Cell<bool>,
    /// Set while trove's own Python code runs inside a build (a fingerprinter reading
    /// package metadata): what it does is not the build's.
    suspended: Cell<u32>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            stack: RefCell::new(Vec::new()),
            profiling: Cell::new(false),
            suspended: Cell::new(0),
        }
    };
}

/// A value only read and written with the GIL held (the extension is abi3, so it never
/// runs on a free-threaded interpreter).
struct GilCell<T>(std::cell::UnsafeCell<T>);

// SAFETY: every access happens with the GIL held (see the uses of `FAST`).
unsafe impl<T> Sync for GilCell<T> {}

/// The fast path of code tracking: while exactly one thread builds, its thread state
/// and the [`Seen`] of its innermost build, so the hook on every Python call compares
/// one pointer instead of reaching a thread-local. Null when not known; set by `push`,
/// `pop` and the slow path, cleared when a second thread starts building and while
/// trove's own code runs. Read and written with the GIL held only.
struct Fast {
    thread: *mut pyo3::ffi::PyThreadState,
    seen: *mut Seen,
}

static FAST: GilCell<Fast> = GilCell(std::cell::UnsafeCell::new(Fast {
    thread: std::ptr::null_mut(),
    seen: std::ptr::null_mut(),
}));

/// Sets [`FAST`]. The GIL is held.
fn set_fast(thread: *mut pyo3::ffi::PyThreadState, seen: *mut Seen) {
    // SAFETY: the GIL is held (every caller has it); no reference to FAST is kept.
    unsafe { *FAST.0.get() = Fast { thread, seen } };
}

/// Threads with at least one build on their stack.
static BUILDING_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` with this thread's events belonging to no build.
pub(crate) fn suspended<T>(_py: Python<'_>, f: impl FnOnce() -> T) -> T {
    LOCAL.with(|l| l.suspended.set(l.suspended.get() + 1));
    // The fast path knows nothing of suspension: it is off until the slow path sees
    // this thread building again.
    set_fast(std::ptr::null_mut(), std::ptr::null_mut());
    let out = f();
    LOCAL.with(|l| l.suspended.set(l.suspended.get() - 1));
    out
}

/// Frames pushed on all threads: the hooks return at once while it is zero.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// How many builds (and threads reporting to one) are running in the process.
pub(crate) fn active() -> usize {
    ACTIVE.load(Ordering::Relaxed)
}

/// The innermost build on this thread, if any.
pub(crate) fn current() -> Option<Arc<BuildContext>> {
    if active() == 0 {
        return None;
    }
    LOCAL.with(|l| {
        if l.suspended.get() > 0 {
            return None;
        }
        l.stack.borrow().last().map(|f| f.ctx.clone())
    })
}

/// What [`ran`] did with a code object.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// No build runs on this thread (or trove's own code runs): nothing recorded.
    Outside,
    /// Recorded now for the innermost build of this thread.
    New,
    /// Already recorded for that build.
    Known,
}

/// The hot path of code tracking: `code` (a code object, borrowed) starts or resumes on
/// the thread whose state is `thread`; the first time in that thread's innermost build,
/// it is held and recorded.
///
/// # Safety
/// The GIL is held, `thread` is the calling thread's state and `code` points to a live
/// code object.
#[inline(always)]
pub(crate) unsafe fn ran(
    thread: *mut pyo3::ffi::PyThreadState,
    code: *mut pyo3::ffi::PyObject,
) -> Ran {
    // SAFETY: the GIL is held; FAST.seen is the live innermost frame of `thread` while
    // FAST.thread is `thread` (see `Fast`), and only this thread touches it.
    unsafe {
        let fast = &*FAST.0.get();
        if fast.thread == thread
            && !fast.seen.is_null()
            && (*fast.seen).recent[Seen::slot(code)] == code as usize
        {
            return Ran::Known;
        }
        ran_slow(thread, code)
    }
}

/// [`ran`] past the cache: the fast frame's set, or the thread-local (re-arming the
/// fast path when this thread is the only one building). Out of line, so the hook's
/// common case saves no registers.
#[cold]
#[inline(never)]
unsafe fn ran_slow(thread: *mut pyo3::ffi::PyThreadState, code: *mut pyo3::ffi::PyObject) -> Ran {
    // SAFETY: as in `ran`.
    unsafe {
        let fast = &*FAST.0.get();
        if fast.thread == thread && !fast.seen.is_null() {
            return (*fast.seen).record(code);
        }
    }
    LOCAL.with(|l| {
        if l.suspended.get() > 0 {
            return Ran::Outside;
        }
        // Busy only if the hook re-enters while the stack is changed: not a build event.
        let Ok(mut stack) = l.stack.try_borrow_mut() else {
            return Ran::Outside;
        };
        let Some(frame) = stack.last_mut() else {
            return Ran::Outside;
        };
        let seen = frame.seen;
        if BUILDING_THREADS.load(Ordering::Relaxed) == 1 {
            set_fast(thread, seen);
        }
        // SAFETY: the caller's contract; `seen` is this thread's live innermost frame.
        unsafe { (*seen).record(code) }
    })
}

/// Makes `ctx` this thread's innermost build and starts recording the code that runs.
pub(crate) fn push(py: Python<'_>, ctx: Arc<BuildContext>) {
    let first_in_process = ACTIVE.fetch_add(1, Ordering::Relaxed) == 0;
    if !frames::started(py, first_in_process) {
        ctx.profiled.store(false, Ordering::Relaxed);
    }
    let frame = Frame::new(ctx);
    let fast = frame.seen;
    let first_on_thread = LOCAL.with(|l| {
        let mut stack = l.stack.borrow_mut();
        stack.push(frame);
        stack.len() == 1
    });
    if first_on_thread {
        BUILDING_THREADS.fetch_add(1, Ordering::Relaxed);
    }
    if BUILDING_THREADS.load(Ordering::Relaxed) == 1 {
        // SAFETY: the GIL is held.
        set_fast(unsafe { pyo3::ffi::PyThreadState_Get() }, fast);
    } else {
        set_fast(std::ptr::null_mut(), std::ptr::null_mut());
    }
}

/// Leaves the innermost build of this thread: the files of the code it ran join the
/// build's inputs; the last build of the process stops the hooks.
pub(crate) fn pop(py: Python<'_>) {
    // The fast path never outlives the frame it points to: it is re-armed below or by
    // the slow path.
    set_fast(std::ptr::null_mut(), std::ptr::null_mut());
    let (frame, next) = LOCAL.with(|l| {
        let mut stack = l.stack.borrow_mut();
        let frame = stack.pop();
        let next: Option<*mut Seen> = stack.last().map(|f| f.seen);
        (frame, next)
    });
    let Some(frame) = frame else {
        return;
    };
    match next {
        None => {
            BUILDING_THREADS.fetch_sub(1, Ordering::Relaxed);
        }
        Some(seen) if BUILDING_THREADS.load(Ordering::Relaxed) == 1 => {
            // SAFETY: the GIL is held.
            set_fast(unsafe { pyo3::ffi::PyThreadState_Get() }, seen);
        }
        Some(_) => {}
    }
    let last_in_process = ACTIVE.fetch_sub(1, Ordering::Relaxed) == 1;
    frames::stopped(py, last_in_process, next.is_none());
    let mut files = BTreeSet::new();
    // SAFETY: the frame is off the stack and FAST was cleared: this is the only access.
    let held = unsafe { &(*frame.seen).held };
    for code in held {
        if let Ok(file) = code.bind(py).getattr(pyo3::intern!(py, "co_filename"))
            && let Ok(file) = file.extract::<String>()
        {
            files.insert(file);
        }
    }
    lock(&frame.ctx.code).append(&mut files);
    // The held code objects are released here, with the GIL held.
    drop(frame);
}

/// Whether this thread runs trove's profile function.
pub(crate) fn profiling() -> bool {
    LOCAL.with(|l| l.profiling.get())
}

/// Records that this thread now runs (or no longer runs) trove's profile function.
pub(crate) fn set_profiling(on: bool) {
    LOCAL.with(|l| l.profiling.set(on));
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
