//! The audit hook (`sys.addaudithook`) and the calls the Python layer's few wrappers make:
//! each turns an event of a running build into an input of its `Cx`.
//!
//! | event | recorded |
//! |---|---|
//! | `open` for reading (`open`, `io.open`, `os.open`, and everything built on them: `numpy.load`, `pandas.read_csv`) | the file, or its absence |
//! | `open` for writing | nothing: an output (later reads of it are not inputs either) |
//! | `os.listdir`, `os.scandir` (so `glob`, `os.walk`, `pathlib`) | the directory listing |
//! | `sqlite3.connect` | the database file |
//! | `subprocess.Popen` | the executable |
//! | `socket.connect` | a volatile input (the recipe's `max_age`, else a warning) |
//! | `import` | the module, resolved when the build ends |
//!
//! Opens and listings made by the import system are skipped: modules are tracked as code.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::tracking::{self, BuildContext, lock};

/// Path prefixes whose files are never data inputs: the store, installed distributions
/// and the standard library (tracked by version instead), `/proc`, `/sys`, `/dev`.
static IGNORED: std::sync::RwLock<Vec<PathBuf>> = std::sync::RwLock::new(Vec::new());

/// Sets the prefixes [`IGNORED`] holds.
#[pyfunction]
pub(crate) fn set_ignored(prefixes: Vec<PathBuf>) {
    *IGNORED.write().unwrap_or_else(|e| e.into_inner()) = prefixes;
}

fn ignored(path: &std::path::Path) -> bool {
    IGNORED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|p| path.starts_with(p))
}

/// A path argument as an absolute path (relative to the process's working directory,
/// as Python resolves it); `None` for file descriptors and what is not a path.
fn path_of(obj: &Bound<'_, PyAny>) -> Option<PathBuf> {
    let text: PathBuf = if let Ok(s) = obj.cast::<PyString>() {
        PathBuf::from(s.to_cow().ok()?.as_ref())
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(b.as_bytes()))
    } else if obj.hasattr("__fspath__").ok()? {
        return path_of(&obj.call_method0("__fspath__").ok()?);
    } else {
        return None;
    };
    if text.as_os_str().is_empty() {
        return None;
    }
    Some(if text.is_absolute() {
        text
    } else {
        std::env::current_dir().ok()?.join(text)
    })
}

/// Records a file (or its absence) read or probed by the build.
fn file_input(py: Python<'_>, ctx: &BuildContext, path: PathBuf) {
    if ignored(&path) || ctx.was_written(&path) {
        return;
    }
    // A file that cannot be fingerprinted (no permission) is left out: the build's own
    // read of it fails and says why.
    ctx.with_cx(py, |cx| {
        let _ = cx.track_file(&path);
    });
}

/// The audit hook. Returns at once when no build runs on any thread.
#[pyfunction]
pub(crate) fn audit(py: Python<'_>, event: &Bound<'_, PyString>, args: &Bound<'_, PyTuple>) {
    let Ok(event) = event.to_cow() else {
        return;
    };
    if event == "import"
        && let Ok(Ok(name)) = args.get_item(0).map(|n| n.extract::<String>())
    {
        // When each module was loaded, build or not: a source file modified after its
        // module was loaded is not the code that runs (`trove._code`).
        importing(&name);
    }
    let Some(ctx) = tracking::current() else {
        return;
    };
    let arg = |i: usize| args.get_item(i).ok();
    match event.as_ref() {
        "open" => {
            let Some(path) = arg(0).as_ref().and_then(path_of) else {
                return;
            };
            if writes(arg(1).as_ref(), arg(2).as_ref()) {
                ctx.wrote(path);
            } else if !tracking::in_import_machinery(py) {
                file_input(py, &ctx, path);
            }
        }
        "os.listdir" | "os.scandir" => {
            let path = match arg(0) {
                Some(p) if p.is_none() => std::env::current_dir().ok(),
                Some(p) => path_of(&p),
                None => None,
            };
            if let Some(path) = path
                && !ignored(&path)
                && !tracking::in_import_machinery(py)
            {
                ctx.with_cx(py, |cx| {
                    let _ = cx.read_dir(&path);
                });
            }
        }
        "sqlite3.connect" => {
            if let Some(path) = arg(0).as_ref().and_then(database_path) {
                file_input(py, &ctx, path);
            }
        }
        "subprocess.Popen" => {
            let program = match arg(0) {
                Some(p) if !p.is_none() => Some(p),
                _ => arg(1).and_then(|a| {
                    if a.cast::<PyString>().is_ok() || a.cast::<PyBytes>().is_ok() {
                        Some(a)
                    } else {
                        a.get_item(0).ok()
                    }
                }),
            };
            if let Some(program) = program.as_ref().and_then(executable) {
                file_input(py, &ctx, program);
            }
        }
        "socket.connect" => network(py, &ctx, arg(1)),
        "import" => {
            if let Some(Ok(name)) = arg(0).map(|n| n.extract::<String>()) {
                lock(&ctx.modules).insert(name);
            }
        }
        _ => {}
    }
}

/// The file a `sqlite3.connect` name opens: a path, or a `file:` URI's path (SQLite's
/// URI form, `uri=True`); `None` for in-memory and temporary databases.
fn database_path(name: &Bound<'_, PyAny>) -> Option<PathBuf> {
    let text = name.extract::<String>().ok();
    let Some(uri) = text.as_deref().and_then(|t| t.strip_prefix("file:")) else {
        return path_of(name).filter(|p| !p.ends_with(":memory:"));
    };
    // `file:` names are URIs only with `uri=True`, which the event does not say; a file
    // really named `file:...` is rare, and taken as such only when it exists.
    if let Some(plain) = path_of(name)
        && plain.exists()
    {
        return Some(plain);
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, q),
        None => (uri, ""),
    };
    let path = path.split('#').next().unwrap_or_default();
    // `file://host/path`: only an empty host or `localhost` is a local file.
    let path = match path.strip_prefix("//") {
        Some(rest) => &rest[rest.find('/')?..],
        None => path,
    };
    if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory") {
        return None;
    }
    let decoded = percent_decode(path);
    let path = PathBuf::from(decoded);
    Some(if path.is_absolute() {
        path
    } else {
        std::env::current_dir().ok()?.join(path)
    })
}

/// `%XX` escapes of a URI path, decoded (invalid ones are kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether an `open` event's mode (a str for `open`, `None` for `os.open`) or flags write.
fn writes(mode: Option<&Bound<'_, PyAny>>, flags: Option<&Bound<'_, PyAny>>) -> bool {
    if let Some(mode) = mode.and_then(|m| m.extract::<String>().ok()) {
        return mode.contains(['w', 'a', 'x', '+']);
    }
    let flags = flags.and_then(|f| f.extract::<i64>().ok()).unwrap_or(0);
    let access = flags & i64::from(libc::O_ACCMODE);
    access != i64::from(libc::O_RDONLY) || flags & i64::from(libc::O_CREAT | libc::O_TRUNC) != 0
}

/// The file a program name runs: a path as given, else the first match on `PATH`.
fn executable(program: &Bound<'_, PyAny>) -> Option<PathBuf> {
    let given = path_of(program)?;
    let name = program.extract::<String>().ok();
    match name {
        Some(name) if !name.contains('/') => {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join(&name))
                .find(|p| p.is_file())
        }
        _ => Some(given),
    }
}

static LOADED: std::sync::Mutex<Option<std::collections::HashMap<String, i64>>> =
    std::sync::Mutex::new(None);

/// The import of `name` begins now (the `import` audit event, or `trove._hooks`'s
/// finder for imports that raise no event: `importlib.import_module`).
#[pyfunction]
pub(crate) fn importing(name: &str) {
    lock(&LOADED)
        .get_or_insert_with(Default::default)
        .insert(name.to_owned(), trove_fingerprint::now_ns());
}

/// When the import of `module` began (ns since the epoch), if it began after trove was
/// imported.
#[pyfunction]
pub(crate) fn loaded_at(module: &str) -> Option<i64> {
    lock(&LOADED).as_ref()?.get(module).copied()
}

static NETWORK_WARNED: AtomicBool = AtomicBool::new(false);

/// A network connection: the object depends on something trove cannot see.
fn network(py: Python<'_>, ctx: &Arc<BuildContext>, address: Option<Bound<'_, PyAny>>) {
    let name = address
        .and_then(|a| a.str().ok().map(|s| s.to_string()))
        .unwrap_or_else(|| "network".into());
    let ttl = ctx.max_age.unwrap_or(Duration::MAX);
    if ctx.max_age.is_none() && !NETWORK_WARNED.swap(true, Ordering::Relaxed) {
        let warning = format!(
            "a trove build connected to {name}: what it fetched can change without trove \
             seeing it. Give the recipe a max_age (or call trove.volatile(name, ttl=...)) \
             so the object expires; warned once per process."
        );
        if let Ok(warnings) = py.import("warnings") {
            let _ = warnings.call_method1(
                "warn",
                (warning, py.get_type::<pyo3::exceptions::PyUserWarning>(), 2),
            );
        }
    }
    ctx.with_cx(py, |cx| cx.volatile(&format!("network {name}"), ttl));
}

/// A path the build probed (`os.stat`, `os.path.exists`, ...), present or not.
#[pyfunction]
pub(crate) fn probe(py: Python<'_>, path: &Bound<'_, PyAny>) {
    if let (Some(ctx), Some(path)) = (tracking::current(), path_of(path)) {
        file_input(py, &ctx, path);
    }
}

/// An environment variable the build read (present or not).
#[pyfunction]
pub(crate) fn env_read(py: Python<'_>, name: &Bound<'_, PyAny>) {
    let Some(ctx) = tracking::current() else {
        return;
    };
    let name = match name.extract::<String>() {
        Ok(n) => n,
        Err(_) => match name.cast::<PyBytes>() {
            Ok(b) => String::from_utf8_lossy(b.as_bytes()).into_owned(),
            Err(_) => return,
        },
    };
    ctx.with_cx(py, |cx| {
        cx.env(&name);
    });
}

/// `trove.track(path)`: an explicit file input of the current build.
#[pyfunction]
pub(crate) fn track(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<()> {
    let ctx = tracking::required("trove.track()")?;
    let Some(path) = path_of(path) else {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "trove.track() takes a path (str, bytes or os.PathLike)",
        ));
    };
    ctx.with_cx(py, |cx| cx.track_file(&path))
        .transpose()
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
    Ok(())
}

/// `trove.volatile(name, ttl)`: the current object expires `ttl` seconds after it was built.
#[pyfunction]
pub(crate) fn volatile(py: Python<'_>, name: &str, ttl_seconds: f64) -> PyResult<()> {
    let ctx = tracking::required("trove.volatile()")?;
    let ttl = Duration::try_from_secs_f64(ttl_seconds)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("ttl {ttl_seconds}: {e}")))?;
    ctx.with_cx(py, |cx| cx.volatile(name, ttl));
    Ok(())
}

/// Parses a duration as `trove.ron` does (`30s`, `15m`, `2h`, `30d`); seconds.
#[pyfunction]
pub(crate) fn parse_duration(text: &str) -> PyResult<f64> {
    trove_config::parse_duration(text)
        .map(|d| d.as_secs_f64())
        .map_err(pyo3::exceptions::PyValueError::new_err)
}
