//! How the code that runs during a build reaches [`tracking::ran`]: one of three
//! mechanisms, chosen once per process when `trove` is imported, by the running
//! interpreter's exact version.
//!
//! | interpreter | mechanism | cost while a build runs |
//! |---|---|---|
//! | CPython 3.11 | a PEP 523 frame-evaluation hook (`_PyInterpreterState_SetEvalFrameFunc`): reads the code object of each frame CPython is about to evaluate, then runs `_PyEval_EvalFrameDefault` | per Python call, a pointer compare and a cache lookup (no frame object is made); but CPython 3.11 does not inline Python-to-Python calls while any hook is set, which is most of the cost |
//! | CPython 3.12+ | `sys.monitoring` (PEP 669) `PY_START`/`PY_RESUME`/`PY_THROW` with a callback in Rust, which disables a code location once the only running build has recorded it | one callback per code location, then none |
//! | other versions, or when the above cannot be had | a C-level profile function (`PyEval_SetProfile`) per thread | CPython makes a frame object for every call and calls the function on each call and return |
//!
//! The frame-evaluation hook relies on private, version-specific CPython internals, so it
//! is taken only on 3.11, after checking at import that it sees the code object of a
//! function it runs (a wrong layout falls back to the profile function, never to wrong
//! tracking). The hook and the monitoring events are set only while some build runs in
//! the process: outside builds Python runs exactly as without trove.
//! `TROVE_CODE_TRACKER=profile` (or `eval-frame`, `monitoring`) asks for a mechanism;
//! one that is unavailable falls back to the profile function.

use std::os::raw::{c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::ffi::{PyInterpreterState, PyObject, PyThreadState};
use pyo3::prelude::*;
use pyo3::types::PyCFunction;

use crate::ffi;
use crate::tracking::{self, Ran};

const PROFILE: u8 = 0;
const EVAL_FRAME: u8 = 1;
const MONITORING: u8 = 2;
/// The 3.11 hook without the recording: for the benchmark only (it tracks no code).
const EVAL_FRAME_BARE: u8 = 3;

/// The mechanism in use (one of the constants above).
static MECHANISM: AtomicU8 = AtomicU8::new(PROFILE);

fn name(mechanism: u8) -> &'static str {
    match mechanism {
        EVAL_FRAME => "eval-frame",
        MONITORING => "monitoring",
        EVAL_FRAME_BARE => "eval-frame-bare",
        _ => "profile",
    }
}

/// Chooses the mechanism for this process (at import): `requested` (from
/// `TROVE_CODE_TRACKER`) or the best one the interpreter offers.
pub(crate) fn choose(py: Python<'_>, requested: Option<&str>) -> PyResult<()> {
    let version = py.version_info();
    let best = if (version.major, version.minor) == (3, 11) {
        EVAL_FRAME
    } else if (version.major, version.minor) >= (3, 12) {
        MONITORING
    } else {
        PROFILE
    };
    let wanted = match requested {
        None | Some("") => best,
        Some("profile") => PROFILE,
        Some("eval-frame") => EVAL_FRAME,
        Some("monitoring") => MONITORING,
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "TROVE_CODE_TRACKER={other}: use eval-frame (CPython 3.11), monitoring \
                 (3.12+) or profile"
            )));
        }
    };
    let chosen = match wanted {
        EVAL_FRAME if (version.major, version.minor) == (3, 11) && eval_frame::works(py) => {
            EVAL_FRAME
        }
        MONITORING if (version.major, version.minor) >= (3, 12) && monitoring::setup(py) => {
            MONITORING
        }
        _ => PROFILE,
    };
    MECHANISM.store(chosen, Ordering::Relaxed);
    Ok(())
}

/// The mechanism in use: `eval-frame`, `monitoring` or `profile`.
#[pyfunction]
pub(crate) fn code_tracker() -> &'static str {
    name(MECHANISM.load(Ordering::Relaxed))
}

/// Switches the mechanism (for benchmarks and tests), while no build runs.
/// `eval-frame-bare` (3.11) sets a hook that records nothing: builds under it track no
/// code; the benchmark uses it to show what the hook costs by itself.
#[pyfunction]
pub(crate) fn use_code_tracker(py: Python<'_>, requested: &str) -> PyResult<&'static str> {
    if tracking::active() > 0 {
        return Err(PyRuntimeError::new_err(
            "the code tracker cannot change while a build runs",
        ));
    }
    if requested == "eval-frame-bare" {
        choose(py, Some("eval-frame"))?;
        if MECHANISM.load(Ordering::Relaxed) == EVAL_FRAME {
            MECHANISM.store(EVAL_FRAME_BARE, Ordering::Relaxed);
        }
    } else {
        choose(py, Some(requested))?;
    }
    Ok(code_tracker())
}

/// Whether the mechanism's hook is set now (for tests: it is set only while a build runs;
/// the profile function: on this thread).
#[pyfunction]
pub(crate) fn code_hook_set(py: Python<'_>) -> bool {
    eval_frame::installed() || monitoring::on(py) || tracking::profiling()
}

/// A build (or a thread reporting to one) starts on this thread; `first_in_process`:
/// no other was running. Returns whether the code it runs is tracked.
pub(crate) fn started(py: Python<'_>, first_in_process: bool) -> bool {
    match MECHANISM.load(Ordering::Relaxed) {
        // Where another tool's hook is set, the profile function stands in.
        EVAL_FRAME => eval_frame::install(false) || profile_on_thread(py),
        EVAL_FRAME_BARE => {
            eval_frame::install(true);
            false
        }
        MONITORING => {
            monitoring::started(py, first_in_process);
            true
        }
        _ => profile_on_thread(py),
    }
}

fn profile_on_thread(py: Python<'_>) -> bool {
    tracking::profiling() || profile::start(py)
}

/// A build (or a thread's part of one) ends on this thread.
pub(crate) fn stopped(py: Python<'_>, last_in_process: bool, last_on_thread: bool) {
    if last_on_thread && tracking::profiling() {
        profile::stop();
    }
    if last_in_process {
        eval_frame::uninstall();
        monitoring::stopped(py);
    }
}

/// CPython 3.11's PEP 523 hook.
mod eval_frame {
    use super::*;

    /// `_PyFrameEvalFunction` (3.11: the frame is a `_PyInterpreterFrame *`).
    type EvalFrame = unsafe extern "C" fn(*mut PyThreadState, *mut c_void, c_int) -> *mut PyObject;
    type GetEvalFrame = unsafe extern "C" fn(*mut PyInterpreterState) -> *mut c_void;
    type SetEvalFrame = unsafe extern "C" fn(*mut PyInterpreterState, *mut c_void);

    /// The position of `f_code` in 3.11's `_PyInterpreterFrame` (Include/internal/
    /// pycore_frame.h): after `f_func`, `f_globals`, `f_builtins` and `f_locals`, each a
    /// pointer.
    const F_CODE: usize = 4;

    struct Api {
        get: GetEvalFrame,
        set: SetEvalFrame,
        default: EvalFrame,
    }

    static API: OnceLock<Option<Api>> = OnceLock::new();
    /// `_PyEval_EvalFrameDefault`, for the hook (a plain load on every call).
    static DEFAULT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

    fn symbol(name: &[u8]) -> *mut c_void {
        // SAFETY: a NUL-terminated name looked up among the loaded objects.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast::<c_char>()) }
    }

    /// The private functions, resolved at run time: an interpreter without them keeps
    /// the profile function (the extension still loads).
    fn api() -> Option<&'static Api> {
        API.get_or_init(|| {
            let get = symbol(b"_PyInterpreterState_GetEvalFrameFunc\0");
            let set = symbol(b"_PyInterpreterState_SetEvalFrameFunc\0");
            let default = symbol(b"_PyEval_EvalFrameDefault\0");
            if get.is_null() || set.is_null() || default.is_null() {
                return None;
            }
            DEFAULT.store(default, Ordering::Relaxed);
            // SAFETY: the symbols are these functions, with these signatures in 3.11.
            unsafe {
                Some(Api {
                    get: std::mem::transmute::<*mut c_void, GetEvalFrame>(get),
                    set: std::mem::transmute::<*mut c_void, SetEvalFrame>(set),
                    default: std::mem::transmute::<*mut c_void, EvalFrame>(default),
                })
            }
        })
        .as_ref()
    }

    /// The code object of a 3.11 `_PyInterpreterFrame` (borrowed).
    ///
    /// # Safety
    /// `frame` is a live 3.11 interpreter frame.
    #[inline(always)]
    unsafe fn code_of(frame: *mut c_void) -> *mut PyObject {
        // SAFETY: see the function's contract and `F_CODE`.
        unsafe { *frame.cast::<*mut PyObject>().add(F_CODE) }
    }

    /// The hook: records the frame's code for the build running on this thread (if any),
    /// then evaluates the frame as CPython would.
    unsafe extern "C" fn hook(
        tstate: *mut PyThreadState,
        frame: *mut c_void,
        throwflag: c_int,
    ) -> *mut PyObject {
        // SAFETY: CPython calls the hook with the GIL held and a live frame, whose code
        // object it holds.
        unsafe {
            tracking::ran(tstate, code_of(frame));
            let default =
                std::mem::transmute::<*mut c_void, EvalFrame>(DEFAULT.load(Ordering::Relaxed));
            default(tstate, frame, throwflag)
        }
    }

    /// A hook that records nothing: what the benchmark measures as the cost CPython
    /// itself adds while any hook is set (calls are not inlined).
    unsafe extern "C" fn bare(
        tstate: *mut PyThreadState,
        frame: *mut c_void,
        throwflag: c_int,
    ) -> *mut PyObject {
        // SAFETY: as in `hook`.
        unsafe {
            let default =
                std::mem::transmute::<*mut c_void, EvalFrame>(DEFAULT.load(Ordering::Relaxed));
            default(tstate, frame, throwflag)
        }
    }

    /// The last code object the probe hook saw.
    static PROBED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn probe(
        tstate: *mut PyThreadState,
        frame: *mut c_void,
        throwflag: c_int,
    ) -> *mut PyObject {
        // SAFETY: as in `hook`.
        unsafe {
            PROBED.store(code_of(frame) as usize, Ordering::Relaxed);
            let default =
                std::mem::transmute::<*mut c_void, EvalFrame>(DEFAULT.load(Ordering::Relaxed));
            default(tstate, frame, throwflag)
        }
    }

    /// Whether the hook can be used here: the functions exist, no other hook is set, and
    /// a probe hook reads the code object of a function it runs where 3.11 keeps it.
    pub(super) fn works(py: Python<'_>) -> bool {
        let Some(api) = api() else {
            return false;
        };
        let Ok(function) = py.eval(c"lambda: None", None, None) else {
            return false;
        };
        let Ok(code) = function.getattr("__code__") else {
            return false;
        };
        // SAFETY: the GIL is held; the hook is set and cleared around one call.
        unsafe {
            let interp = pyo3::ffi::PyInterpreterState_Get();
            if (api.get)(interp) != api.default as *mut c_void {
                return false;
            }
            PROBED.store(0, Ordering::Relaxed);
            (api.set)(interp, probe as *mut c_void);
            let called = function.call0();
            (api.set)(interp, api.default as *mut c_void);
            called.is_ok() && PROBED.load(Ordering::Relaxed) == code.as_ptr() as usize
        }
    }

    /// Sets the hook (`bare`: the one that records nothing; the GIL is held); false
    /// when another tool's hook is set.
    pub(super) fn install(bare: bool) -> bool {
        let Some(api) = api() else {
            return false;
        };
        let ours = if bare {
            self::bare as *mut c_void
        } else {
            hook as *mut c_void
        };
        // SAFETY: called with the GIL held, on the running interpreter.
        unsafe {
            let interp = pyo3::ffi::PyInterpreterState_Get();
            let current = (api.get)(interp);
            if current == ours {
                return true;
            }
            if current != api.default as *mut c_void {
                return false;
            }
            (api.set)(interp, ours);
        }
        true
    }

    /// Whether our hook (either) is set.
    pub(super) fn installed() -> bool {
        let Some(api) = API.get().and_then(Option::as_ref) else {
            return false;
        };
        // SAFETY: called with the GIL held, on the running interpreter.
        let current = unsafe { (api.get)(pyo3::ffi::PyInterpreterState_Get()) };
        current == hook as *mut c_void || current == bare as *mut c_void
    }

    /// Clears the hook if it is ours (the GIL is held): calls are inlined again.
    pub(super) fn uninstall() {
        let Some(api) = API.get().and_then(Option::as_ref) else {
            return;
        };
        // SAFETY: as in `install`.
        unsafe {
            let interp = pyo3::ffi::PyInterpreterState_Get();
            let current = (api.get)(interp);
            if current == hook as *mut c_void || current == bare as *mut c_void {
                (api.set)(interp, api.default as *mut c_void);
            }
        }
    }
}

/// `sys.monitoring` (CPython 3.12+).
mod monitoring {
    use super::*;
    use pyo3::sync::PyOnceLock;

    struct Tool {
        id: u8,
        set_events: Py<PyAny>,
        restart_events: Py<PyAny>,
        disable: Py<PyAny>,
        events: i64,
    }

    static TOOL: PyOnceLock<Tool> = PyOnceLock::new();

    /// Claims a tool id and registers the callbacks; false when no id is free.
    pub(super) fn setup(py: Python<'_>) -> bool {
        TOOL.get_or_try_init(py, || claim(py)).is_ok()
    }

    fn claim(py: Python<'_>) -> PyResult<Tool> {
        let monitoring = py.import("sys")?.getattr("monitoring")?;
        let events = monitoring.getattr("events")?;
        let started = events.getattr("PY_START")?.extract::<i64>()?
            | events.getattr("PY_RESUME")?.extract::<i64>()?;
        let thrown = events.getattr("PY_THROW")?.extract::<i64>()?;
        // 0-2 and 5 are named (debugger, coverage, profiler, optimizer); take a free one.
        let id = [3u8, 4]
            .into_iter()
            .find(|&id| {
                monitoring
                    .call_method1("get_tool", (id,))
                    .is_ok_and(|t| t.is_none())
            })
            .ok_or_else(|| PyRuntimeError::new_err("no sys.monitoring tool id is free"))?;
        monitoring.call_method1("use_tool_id", (id, "trove"))?;
        let on_start = PyCFunction::new_closure(
            py,
            Some(c"trove_code_started"),
            None,
            |args, _kwargs| -> PyResult<Py<PyAny>> { Ok(code_started(args)) },
        )?;
        let on_throw = PyCFunction::new_closure(
            py,
            Some(c"trove_code_thrown"),
            None,
            |args, _kwargs| -> PyResult<Py<PyAny>> {
                if let Ok(code) = args.get_item(0) {
                    // SAFETY: the GIL is held and the code object is live.
                    unsafe { tracking::ran(pyo3::ffi::PyThreadState_Get(), code.as_ptr()) };
                }
                Ok(args.py().None())
            },
        )?;
        for (event, callback) in [
            ("PY_START", &on_start),
            ("PY_RESUME", &on_start),
            ("PY_THROW", &on_throw),
        ] {
            monitoring.call_method1("register_callback", (id, events.getattr(event)?, callback))?;
        }
        Ok(Tool {
            id,
            set_events: monitoring.getattr("set_events")?.unbind(),
            restart_events: monitoring.getattr("restart_events")?.unbind(),
            disable: monitoring.getattr("DISABLE")?.unbind(),
            events: started | thrown,
        })
    }

    /// `PY_START`/`PY_RESUME`: records the code; once no other build can need it (this
    /// thread's build is the only one running and has it), the location is disabled
    /// until the next build starts (`restart_events`).
    fn code_started(args: &Bound<'_, pyo3::types::PyTuple>) -> Py<PyAny> {
        let py = args.py();
        let Ok(code) = args.get_item(0) else {
            return py.None();
        };
        // SAFETY: the GIL is held and the code object is live.
        let ran = unsafe { tracking::ran(pyo3::ffi::PyThreadState_Get(), code.as_ptr()) };
        let alone = tracking::active() <= 1;
        match (ran, TOOL.get(py)) {
            (Ran::Known, Some(tool)) if alone => tool.disable.clone_ref(py),
            (Ran::Outside, Some(tool)) if tracking::active() == 0 => tool.disable.clone_ref(py),
            _ => py.None(),
        }
    }

    /// A build starts: the events are on, and every location disabled by an earlier
    /// build reports again.
    pub(super) fn started(py: Python<'_>, first_in_process: bool) {
        let Some(tool) = TOOL.get(py) else {
            return;
        };
        if first_in_process {
            let _ = tool.set_events.call1(py, (tool.id, tool.events));
        }
        let _ = tool.restart_events.call0(py);
    }

    /// Whether the events are on.
    pub(super) fn on(py: Python<'_>) -> bool {
        let Some(tool) = TOOL.get(py) else {
            return false;
        };
        py.import("sys")
            .and_then(|sys| sys.getattr("monitoring"))
            .and_then(|m| m.call_method1("get_events", (tool.id,)))
            .and_then(|e| e.extract::<i64>())
            .is_ok_and(|e| e != 0)
    }

    /// The last build ended: the events are off.
    pub(super) fn stopped(py: Python<'_>) {
        if let Some(tool) = TOOL.get(py) {
            let _ = tool.set_events.call1(py, (tool.id, 0));
        }
    }
}

/// The C-level profile function, per thread.
mod profile {
    use super::*;

    /// Sets the profile function on this thread; false when another profiler (cProfile,
    /// a debugger) owns it: then code is tracked from the recipe's own module and the
    /// imports only.
    pub(super) fn start(py: Python<'_>) -> bool {
        let foreign = py
            .import("sys")
            .and_then(|sys| sys.call_method0("getprofile"))
            .map(|p| !p.is_none())
            .unwrap_or(true);
        if foreign {
            return false;
        }
        // SAFETY: called with the GIL held, for this thread.
        unsafe { ffi::PyEval_SetProfile(Some(function), std::ptr::null_mut()) };
        tracking::set_profiling(true);
        true
    }

    /// Clears this thread's profile function.
    pub(super) fn stop() {
        // SAFETY: called with the GIL held, for this thread.
        unsafe { ffi::PyEval_SetProfile(None, std::ptr::null_mut()) };
        tracking::set_profiling(false);
    }

    /// The profile function: on every Python call, the code object is reported.
    unsafe extern "C" fn function(
        _obj: *mut PyObject,
        frame: *mut ffi::Frame,
        what: c_int,
        _arg: *mut PyObject,
    ) -> c_int {
        if what != ffi::TRACE_CALL || frame.is_null() || tracking::active() == 0 {
            return 0;
        }
        // SAFETY: CPython calls the profile function with the GIL held and a live frame;
        // PyFrame_GetCode returns a new reference, released after use.
        unsafe {
            let code = ffi::PyFrame_GetCode(frame);
            if code.is_null() {
                return 0;
            }
            tracking::ran(pyo3::ffi::PyThreadState_Get(), code);
            pyo3::ffi::Py_DecRef(code);
        }
        0
    }
}
