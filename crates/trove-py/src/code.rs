//! Code as an input: the source files whose functions ran and the modules imported during
//! a build, recorded when it ends as `py-ast` inputs (the blake3 of the file's `ast.dump`,
//! so comments and formatting do not count), `py-dist` inputs (an installed
//! distribution's version, or the interpreter's for the standard library), or files by
//! content (extension modules). Which is which is decided by `trove._code.code_inputs`.
//!
//! Validation calls the fingerprinters on every request, so they are cheap: a `py-ast`
//! digest is cached by the file's `stat` (re-parsed only when the stat changes or is
//! racy, as file hashes are), a distribution's version once per process (the process
//! runs the code it imported, whatever is installed since).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;
use trove_fingerprint::{Stat, now_ns};

use crate::sources;
use crate::tracking::{BuildContext, lock};

struct Parsed {
    stat: Stat,
    taken_ns: i64,
    digest: Option<String>,
    /// While the source watch runs (`sources`): no event touched the file since this
    /// entry was checked, so it is answered without a `stat`.
    clean: bool,
}

static AST: Mutex<Option<HashMap<String, Parsed>>> = Mutex::new(None);
static DISTS: Mutex<Option<HashMap<String, Option<String>>>> = Mutex::new(None);
static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    HELPERS
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("trove._code")?.unbind())
        })
        .map(|m| m.bind(py))
}

/// The source watch saw `path` change.
pub(crate) fn file_changed(path: &Path) {
    if let Some(parsed) = lock(&AST)
        .as_mut()
        .and_then(|m| path.to_str().and_then(|p| m.get_mut(p)))
    {
        parsed.clean = false;
    }
}

/// The source watch saw `dir` itself change (moved, removed, no longer watched).
pub(crate) fn dir_changed(dir: &Path) {
    for (path, parsed) in lock(&AST).iter_mut().flatten() {
        if Path::new(path).parent() == Some(dir) {
            parsed.clean = false;
        }
    }
}

/// Nothing the source watch vouched for can be trusted any longer.
pub(crate) fn all_changed() {
    for parsed in lock(&AST).iter_mut().flat_map(|m| m.values_mut()) {
        parsed.clean = false;
    }
}

/// Whether `path`'s `py-ast` entry is answered from the source watch (for tests).
#[pyfunction]
pub(crate) fn ast_clean(path: &str) -> bool {
    sources::watching()
        && lock(&AST)
            .as_ref()
            .and_then(|m| m.get(path))
            .is_some_and(|p| p.clean)
}

/// The `py-ast` fingerprinter: the AST digest of a source file, `None` when it is gone.
pub(crate) fn ast_fingerprint(path: &str) -> Option<String> {
    let watching = sources::watching();
    if watching
        && let Some(parsed) = lock(&AST).as_ref().and_then(|m| m.get(path))
        && parsed.clean
    {
        return parsed.digest.clone();
    }
    // The directory is watched before the stat, so a change after it is an event; an
    // event while this runs leaves the entry unclean (checked again next time).
    let generation = sources::generation();
    let watched = watching && Path::new(path).parent().is_some_and(sources::watch_dir);
    let clean = |now: u64| watched && now == generation;
    let stat = Stat::of(Path::new(path)).ok()??;
    if let Some(parsed) = lock(&AST).get_or_insert_with(HashMap::new).get_mut(path)
        && parsed.stat == stat
        && !stat.is_racy(parsed.taken_ns)
    {
        parsed.clean = clean(sources::generation());
        return parsed.digest.clone();
    }
    let taken_ns = now_ns();
    // Read here, not in Python: a read by trove's own code is no build's input.
    let source = std::fs::read(path).ok()?;
    let digest = Python::attach(|py| {
        let text = crate::tracking::suspended(py, || {
            helpers(py)
                .and_then(|h| {
                    h.call_method1("ast_text", (pyo3::types::PyBytes::new(py, &source), path))
                })
                .and_then(|t| t.extract::<Option<String>>())
        });
        match text {
            Ok(Some(t)) => Some(blake3::hash(t.as_bytes()).to_hex().to_string()),
            // Source that does not parse: its bytes stand in (any edit is a change).
            _ => Some(format!("unparsable {}", blake3::hash(&source).to_hex())),
        }
    });
    let mut ast = lock(&AST);
    ast.get_or_insert_with(HashMap::new).insert(
        path.to_owned(),
        Parsed {
            stat,
            taken_ns,
            digest: digest.clone(),
            // A racy stat may not describe the content read: checked again next time.
            clean: clean(sources::generation()) && !stat.is_racy(taken_ns),
        },
    );
    digest
}

/// The `py-dist` fingerprinter: an installed distribution's version (`(stdlib)`: the
/// interpreter's), `None` when it is not installed.
pub(crate) fn dist_fingerprint(name: &str) -> Option<String> {
    if let Some(known) = lock(&DISTS).get_or_insert_with(HashMap::new).get(name) {
        return known.clone();
    }
    let version = Python::attach(|py| {
        crate::tracking::suspended(py, || {
            helpers(py)
                .and_then(|h| h.call_method1("dist_version", (name,)))
                .and_then(|v| v.extract::<Option<String>>())
                .ok()
                .flatten()
        })
    });
    lock(&DISTS)
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), version.clone());
    version
}

/// Records the code a build ran and the modules it imported into its `Cx`.
pub(crate) fn record(
    py: Python<'_>,
    ctx: &BuildContext,
    cx: &mut trove::Cx,
    target: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let files: Vec<String> = lock(&ctx.code).iter().cloned().collect();
    let modules: Vec<String> = lock(&ctx.modules).iter().cloned().collect();
    let profiled = ctx.profiled.load(std::sync::atomic::Ordering::Relaxed);
    let inputs = crate::tracking::suspended(py, || {
        helpers(py)?.call_method1(
            "code_inputs",
            (
                PyList::new(py, files)?,
                PyList::new(py, modules)?,
                target,
                profiled,
            ),
        )
    })?;
    let (externals, contents, unstable): (Vec<(String, String)>, Vec<String>, Option<String>) =
        inputs.extract()?;
    if let Some(what) = unstable {
        cx.mark_unstable(&what);
    }
    for (kind, name) in externals {
        cx.track_external(&kind, &name);
    }
    for path in contents {
        let _ = py.detach(|| cx.track_file(&path));
    }
    Ok(())
}
