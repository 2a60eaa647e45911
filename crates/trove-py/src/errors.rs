//! Errors across the boundary: a Python exception raised by a recipe travels through the
//! engine whole (`BuildError::Other`) and is raised again, the same object, in the caller
//! and in every caller that waited; the engine's own errors become `trove.TroveError`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use trove::{BuildError, Error};

create_exception!(
    _trove,
    TroveError,
    PyException,
    "An error of trove itself (the store, the configuration, a cycle), not of a recipe."
);
create_exception!(
    _trove,
    CycleError,
    TroveError,
    "A recipe asked, directly or not, for the object it is itself building."
);

/// A Python exception raised by a recipe's build, carried through the engine.
#[derive(Debug)]
pub(crate) struct PyBuildError {
    err: PyErr,
    message: String,
}

impl PyBuildError {
    pub(crate) fn new(py: Python<'_>, err: PyErr) -> PyBuildError {
        let message = format!(
            "{}: {}",
            err.get_type(py)
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "exception".into()),
            err.value(py)
        );
        PyBuildError { err, message }
    }
}

impl std::fmt::Display for PyBuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PyBuildError {}

/// The Python exception a recipe raised, somewhere in an engine error.
fn raised(e: &Error) -> Option<&PyBuildError> {
    match e {
        Error::Shared(inner) => raised(inner),
        Error::Build { source, .. } => raised_in_build(source),
        _ => None,
    }
}

fn raised_in_build(e: &BuildError) -> Option<&PyBuildError> {
    match e {
        BuildError::Other(source) => source.downcast_ref::<PyBuildError>(),
        BuildError::Dependency(inner) => raised(inner),
        _ => None,
    }
}

fn is_cycle(e: &Error) -> bool {
    match e {
        Error::Shared(inner) => is_cycle(inner),
        Error::Cycle { .. } => true,
        Error::Build {
            source: BuildError::Dependency(inner),
            ..
        } => is_cycle(inner),
        _ => false,
    }
}

/// An engine error as the Python exception to raise.
pub(crate) fn to_pyerr(py: Python<'_>, e: &Error) -> PyErr {
    if let Some(r) = raised(e) {
        return r.err.clone_ref(py);
    }
    if is_cycle(e) {
        return CycleError::new_err(e.to_string());
    }
    TroveError::new_err(e.to_string())
}

/// A dependency's failure inside a build, as the Python exception to raise there.
pub(crate) fn build_error_to_pyerr(py: Python<'_>, e: &BuildError) -> PyErr {
    if let Some(r) = raised_in_build(e) {
        return r.err.clone_ref(py);
    }
    if let BuildError::Dependency(inner) = e {
        return to_pyerr(py, inner);
    }
    TroveError::new_err(e.to_string())
}
