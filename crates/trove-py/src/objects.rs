//! Objects: pickling is the Python layer's (`trove._objects`: protocol 5, out-of-band
//! buffers framed after the pickle, or in buffer files for `mmap=True`); here are the
//! calls into it, the lending of a large served blob's bytes to Python without a copy,
//! and the hand-over of an object a build or a check already holds, so the caller gets
//! that object instead of unpickling the bytes again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use trove::{Bytes, Digest};

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
static LOADS_SHARED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Blobs at least this large are unpickled from the engine's own bytes (no copy).
const SHARE_MIN: usize = 1 << 20;

/// The engine's bytes of a served blob, lent to Python: `trove._objects.loads_shared`
/// makes a read-only view of them whose owner holds this object, so out-of-band buffers
/// (numpy arrays) are slices of the engine's allocation, or of its verified map of the
/// blob file (`trove::Bytes`), and stay valid as long as any array does.
#[pyclass(frozen, name = "StoredBytes", module = "trove._trove")]
pub(crate) struct StoredBytes(Arc<Bytes>);

#[pymethods]
impl StoredBytes {
    /// The address of the first byte (immutable: the bytes are never written).
    #[getter]
    fn address(&self) -> usize {
        self.0.as_ptr() as usize
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }
}

/// The magic of `trove._objects.dumps`' framing: magic, pickle length (u64 LE), buffer
/// count (u32 LE), the buffers' lengths (u64 LE each), the pickle, the buffers.
const MAGIC: &[u8] = b"trove-pickle5-oob\x01";

/// The head of a stored object that must be private memory when the engine maps it
/// (`DynRecipe::with_private_head`): the framing's header and the pickle, everything
/// `pickle.loads` interprets; only the out-of-band buffers after them (array values)
/// stay the file's pages. `None` (never mapped) for a plain pickle or an `mmap=True`
/// object, whose large buffers are files of their own.
pub(crate) fn private_head(first: &[u8]) -> Option<usize> {
    let rest = first.strip_prefix(MAGIC)?;
    let length = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let count = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?);
    let head = (MAGIC.len() as u64 + 12)
        .checked_add(u64::from(count).checked_mul(8)?)?
        .checked_add(length)?;
    usize::try_from(head).ok()
}

/// Unpickles a verified blob the engine served; a large one without copying it.
pub(crate) fn loads_served(
    py: Python<'_>,
    bytes: &Arc<Bytes>,
    buffers: &Path,
) -> PyResult<Py<PyAny>> {
    if bytes.is_mapped() && private_head(bytes).is_none_or(|head| head > bytes.private_len()) {
        // The engine checked this before serving the map; what is unpickled must never be
        // read from the file.
        return Err(PyValueError::new_err(
            "a mapped object's pickle is not in private memory",
        ));
    }
    if bytes.len() < SHARE_MIN {
        return loads(py, bytes, buffers);
    }
    let loads = LOADS_SHARED.get_or_try_init(py, || -> PyResult<_> {
        Ok(py
            .import("trove._objects")?
            .getattr("loads_shared")?
            .unbind())
    })?;
    let owner = Py::new(py, StoredBytes(bytes.clone()))?;
    Ok(loads.bind(py).call1((owner, buffers))?.unbind())
}

static PICKLE_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The first byte of a plain pickle of protocol 2 or more (`PROTO`); the framed formats
/// of `trove._objects` start with their ASCII magic instead.
const PROTO: u8 = 0x80;

/// Unpickles a verified blob; `buffers` is where an `mmap=True` object's buffer files are.
pub(crate) fn loads(py: Python<'_>, bytes: &[u8], buffers: &Path) -> PyResult<Py<PyAny>> {
    if bytes.first() == Some(&PROTO) {
        // A plain pickle (no out-of-band buffer): `pickle.loads` itself, which is what
        // `trove._objects.loads` would call, without its Python frame and header checks
        // (a small object's disk hit).
        let loads = PICKLE_LOADS.get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("pickle")?.getattr("loads")?.unbind())
        })?;
        return Ok(loads.bind(py).call1((PyBytes::new(py, bytes),))?.unbind());
    }
    let loads = LOADS.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("trove._objects")?.getattr("loads")?.unbind())
    })?;
    let data = PyBytes::new(py, bytes);
    Ok(loads.bind(py).call1((data, buffers))?.unbind())
}

/// The check callback: unpickles (which verifies an `mmap=True` object's buffer files),
/// runs the recipe's check; the object is kept for the caller, so a disk hit unpickles
/// once.
pub(crate) fn check(
    bytes: &[u8],
    target: &crate::target::Target,
    buffers: &Path,
) -> Result<(), String> {
    Python::attach(|py| {
        let target = target.get(py).map_err(|e| e.to_string())?;
        let object =
            loads(py, bytes, buffers).map_err(|e| match e.is_instance_of::<PyValueError>(py) {
                true => e.value(py).to_string(),
                false => format!("cannot unpickle: {e}"),
            })?;
        let verdict = target
            .call_method1("_trove_check", (object.bind(py),))
            .map_err(|e| e.to_string())?;
        if verdict.is_none() {
            made(py, bytes, object);
            Ok(())
        } else {
            Err(verdict.str().map(|s| s.to_string()).unwrap_or_default())
        }
    })
}
