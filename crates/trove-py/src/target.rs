//! The Python recipe object a recipe's callbacks call, held so that an engine its program
//! dropped can be freed.

use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;

/// The Python recipe object a `DynRecipe`'s callbacks call, held weakly: the engine's
/// registry (inside Rust, where Python's garbage collector cannot see) would otherwise
/// close the cycle recipe object -> `trove.Engine` -> this engine -> registry -> recipe
/// object, and an engine dropped by its program (a notebook cell run again, a test)
/// would keep its memory tier's objects until the process ends. The program holds its
/// recipe objects (a decorated function lives as long as its module or class); one it
/// let go of can no longer be asked for, and a build through it is an error saying so.
/// An object without weak references is held strongly, as before.
pub(crate) enum Target {
    Weak(Py<PyWeakrefReference>),
    Strong(Py<PyAny>),
}

impl Target {
    pub(crate) fn new(target: &Bound<'_, PyAny>) -> Target {
        match PyWeakrefReference::new(target) {
            Ok(weak) => Target::Weak(weak.unbind()),
            Err(_) => Target::Strong(target.clone().unbind()),
        }
    }

    /// The recipe object, or an error when the program let go of it.
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Target::Strong(t) => Ok(t.bind(py).clone()),
            Target::Weak(w) => w.bind(py).upgrade().ok_or_else(|| {
                pyo3::exceptions::PyReferenceError::new_err(
                    "this recipe's Python object was garbage-collected: keep the decorated \
                     function referenced while its engine serves it",
                )
            }),
        }
    }
}
