//! `trove._trove`: the Rust half of the Python package. The engine, store, locks and
//! fingerprints are the `trove` crate's; this crate adds what Python needs around them:
//!
//! - `engine`: `Engine` and its recipe handles (run-time recipes keyed by canonical
//!   argument text, objects as pickles), the identity map;
//! - `key`: canonical argument text, numpy arrays hashed through the buffer protocol;
//! - `tracking`: which build an event belongs to, per thread;
//! - `frames`: how the code that runs is seen (a PEP 523 hook on CPython 3.11,
//!   `sys.monitoring` on 3.12+, a C-level profile function elsewhere);
//! - `hooks`: the audit hook and the calls of the Python layer's wrappers;
//! - `code`: code as an input (`py-ast`, `py-dist` fingerprinters);
//! - `fast`: watched memory hits of positional calls answered without a request;
//! - `sources`: the watch on source directories that spares `py-ast` checks a `stat`
//!   while an engine watches;
//! - `objects`, `errors`: objects and exceptions across the boundary;
//! - `buffers`: the mapped buffer files of `mmap=True` recipes;
//! - `ffi`: the few CPython functions the abi3 declarations lack.

mod buffers;
mod code;
mod engine;
mod errors;
mod fast;
mod ffi;
mod frames;
mod hooks;
mod key;
mod objects;
mod sources;
mod target;
mod tracking;

use pyo3::prelude::*;

/// The Rust half of `trove`; use the `trove` package.
#[pymodule]
fn _trove(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    frames::choose(py, std::env::var("TROVE_CODE_TRACKER").ok().as_deref())?;
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<engine::PyRecipe>()?;
    m.add_class::<tracking::PyContext>()?;
    m.add_class::<objects::StoredBytes>()?;
    m.add("TroveError", py.get_type::<errors::TroveError>())?;
    m.add("CycleError", py.get_type::<errors::CycleError>())?;
    m.add_function(wrap_pyfunction!(key::call_text, m)?)?;
    m.add_function(wrap_pyfunction!(key::canonical_text, m)?)?;
    m.add_function(wrap_pyfunction!(tracking::current_context, m)?)?;
    m.add_function(wrap_pyfunction!(frames::code_tracker, m)?)?;
    m.add_function(wrap_pyfunction!(frames::use_code_tracker, m)?)?;
    m.add_function(wrap_pyfunction!(frames::code_hook_set, m)?)?;
    m.add_function(wrap_pyfunction!(tracking::building, m)?)?;
    m.add_function(wrap_pyfunction!(tracking::enter_thread, m)?)?;
    m.add_function(wrap_pyfunction!(tracking::exit_thread, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::audit, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::set_ignored, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::probe, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::env_read, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::track, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::volatile, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::parse_duration, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::loaded_at, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::importing, m)?)?;
    m.add_function(wrap_pyfunction!(code::ast_clean, m)?)?;
    m.add_function(wrap_pyfunction!(buffers::put_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(buffers::map_buffer, m)?)?;
    Ok(())
}
