//! Objects: pickling is the Python layer's (`trove._objects`: protocol 5, out-of-band
//! buffers framed after the pickle); here are the calls into it and the hand-over of an
//! object a build or a check already holds, so the caller gets that object instead of
//! unpickling the bytes again.

use std::cell::RefCell;
use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use trove::Digest;

thread_local! {
    /// Objects a build or a check on this thread made, by the digest of their pickle,
    /// waiting for the request that served those bytes. Equal digests are equal bytes,
    /// so an entry can never stand for another object.
    static MADE: RefCell<HashMap<Digest, Py<PyAny>>> = RefCell::new(HashMap::new());
}

/// Keeps the object made from (or unpickled from) `bytes` for the request on this thread.
pub(crate) fn made(py: Python<'_>, bytes: &[u8], object: Py<PyAny>) {
    let digest = py.detach(|| {
        let mut hasher = blake3::Hasher::new();
        if bytes.len() >= 1 << 20 {
            hasher.update_rayon(bytes);
        } else {
            hasher.update(bytes);
        }
        Digest(*hasher.finalize().as_bytes())
    });
    let old = MADE.with(|m| {
        let mut m = m.borrow_mut();
        // Bounded: objects nobody served (a build whose result was not stored and was
        // answered by another path) do not pile up.
        if m.len() >= 64 {
            Some(std::mem::take(&mut *m))
        } else {
            None
        }
    });
    drop(old);
    MADE.with(|m| m.borrow_mut().insert(digest, object));
}

/// The object kept for `digest` on this thread, if any.
pub(crate) fn take_made(digest: &Digest) -> Option<Py<PyAny>> {
    MADE.with(|m| m.borrow_mut().remove(digest))
}

static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Unpickles a verified blob.
pub(crate) fn loads(py: Python<'_>, bytes: &[u8]) -> PyResult<Py<PyAny>> {
    let loads = LOADS.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("trove._objects")?.getattr("loads")?.unbind())
    })?;
    let data = PyBytes::new(py, bytes);
    Ok(loads.bind(py).call1((data,))?.unbind())
}
