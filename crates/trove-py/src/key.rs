//! Canonical argument text: what a Python call is keyed by.
//!
//! A call's arguments become one string, built from the values alone and the same in every
//! process: `(n=1, path=Path('data/x.csv'), cfg=app.Config(rows=3))`. It is the recipe's
//! arguments as the engine sees them (the key is blake3 of the recipe name and this text)
//! and what `trove status` shows. Types are part of it (`1`, `1.0` and `True` differ);
//! dicts and sets are sorted by their entries' text; floats are `repr` (shortest round
//! trip, one NaN); numpy arrays are their dtype, shape and the blake3 of their bytes,
//! hashed on all cores with the GIL released. Anything else is a `TypeError` naming the
//! type and the way out (`__trove_key__`), never an `id()` or an address.

use std::fmt::Write;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple, PyType,
};

use crate::ffi;

/// Text longer than this is stored as its start and the blake3 of the whole: the key is
/// as unique, and the store's index does not hold megabytes of arguments.
const LONG: usize = 2048;
/// Deeper nesting than this is refused (a list that contains itself would never end).
const DEPTH: usize = 64;

static ENUM: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PURE_PATH: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FIELDS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The canonical text of a call: `(name=value, ...)` in parameter order.
#[pyfunction]
pub(crate) fn call_text(
    names: &Bound<'_, PyTuple>,
    values: &Bound<'_, PyTuple>,
) -> PyResult<String> {
    let mut out = String::from("(");
    for (i, (name, value)) in names.iter().zip(values.iter()).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&name.cast::<PyString>()?.to_cow()?);
        out.push('=');
        canonical(&value, &mut out, 0)?;
    }
    out.push(')');
    Ok(shorten(out))
}

/// The canonical text of one value (for tests and `__trove_key__` authors).
#[pyfunction]
pub(crate) fn canonical_text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let mut out = String::new();
    canonical(value, &mut out, 0)?;
    Ok(shorten(out))
}

fn shorten(text: String) -> String {
    if text.len() <= LONG {
        return text;
    }
    let digest = blake3::hash(text.as_bytes());
    let head = &text[..text.floor_char_boundary(160)];
    format!(
        "{head}... ({} chars, blake3 {})",
        text.len(),
        digest.to_hex()
    )
}

fn qualified(ty: &Bound<'_, PyType>) -> PyResult<String> {
    Ok(format!("{}.{}", ty.module()?, ty.qualname()?))
}

fn canonical(obj: &Bound<'_, PyAny>, out: &mut String, depth: usize) -> PyResult<()> {
    let py = obj.py();
    if depth > DEPTH {
        return Err(PyValueError::new_err(format!(
            "trove cannot key arguments nested more than {DEPTH} deep (does a container hold itself?)"
        )));
    }
    if obj.is_none() {
        out.push_str("None");
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyBool>() {
        out.push_str(if obj.is_truthy()? { "True" } else { "False" });
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyInt>() {
        // Most keys are small numbers: written here, without a call of int.__str__.
        match obj.extract::<i64>() {
            Ok(n) => write!(out, "{n}").expect("writing to a String"),
            Err(_) => out.push_str(&obj.str()?.to_cow()?),
        }
        return Ok(());
    }
    if let Ok(s) = obj.cast_exact::<PyString>()
        && let Ok(text) = s.to_cow()
        && text
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'\\' && b != b'\'')
    {
        // repr() of printable ASCII without quotes or backslashes: the text in quotes.
        out.push('\'');
        out.push_str(&text);
        out.push('\'');
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyByteArray>()
    {
        out.push_str(&obj.repr()?.to_cow()?);
        return Ok(());
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        out.push('(');
        items(t.iter(), out, depth)?;
        if t.len() == 1 {
            out.push(',');
        }
        out.push(')');
        return Ok(());
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        out.push('[');
        items(l.iter(), out, depth)?;
        out.push(']');
        return Ok(());
    }
    if let Ok(d) = obj.cast_exact::<PyDict>() {
        let mut entries = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let (mut kt, mut vt) = (String::new(), String::new());
            canonical(&k, &mut kt, depth + 1)?;
            canonical(&v, &mut vt, depth + 1)?;
            entries.push((kt, vt));
        }
        entries.sort();
        out.push('{');
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{k}: {v}");
        }
        out.push('}');
        return Ok(());
    }
    if let Ok(s) = obj.cast_exact::<PySet>() {
        return set_text(s.iter(), "set", out, depth);
    }
    if let Ok(s) = obj.cast_exact::<PyFrozenSet>() {
        return set_text(s.iter(), "frozenset", out, depth);
    }
    let ty = obj.get_type();
    if ty.hasattr("__trove_key__")? {
        let _ = write!(out, "{}.__trove_key__(", qualified(&ty)?);
        canonical(&obj.call_method0("__trove_key__")?, out, depth + 1)?;
        out.push(')');
        return Ok(());
    }
    let enum_type = ENUM.get_or_try_init(py, || -> PyResult<_> {
        Ok(py
            .import("enum")?
            .getattr("Enum")?
            .cast_into::<PyType>()?
            .unbind())
    })?;
    if obj.is_instance(enum_type.bind(py))? {
        let _ = write!(
            out,
            "{}.{}",
            qualified(&ty)?,
            obj.getattr("name")?.str()?.to_cow()?
        );
        return Ok(());
    }
    if ty.hasattr("__dataclass_fields__")? {
        let fields = FIELDS.get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("dataclasses")?.getattr("fields")?.unbind())
        })?;
        let _ = write!(out, "{}(", qualified(&ty)?);
        for (i, field) in fields.bind(py).call1((obj,))?.try_iter()?.enumerate() {
            let name = field?.getattr("name")?;
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}=", name.str()?.to_cow()?);
            canonical(&obj.getattr(name.cast::<PyString>()?)?, out, depth + 1)?;
        }
        out.push(')');
        return Ok(());
    }
    if let Ok(t) = obj.cast::<PyTuple>()
        && ty.hasattr("_fields")?
    {
        // A namedtuple: its type and its fields by name.
        let _ = write!(out, "{}(", qualified(&ty)?);
        for (i, (name, value)) in ty.getattr("_fields")?.try_iter()?.zip(t.iter()).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}=", name?.str()?.to_cow()?);
            canonical(&value, out, depth + 1)?;
        }
        out.push(')');
        return Ok(());
    }
    let pure_path = PURE_PATH.get_or_try_init(py, || -> PyResult<_> {
        Ok(py
            .import("pathlib")?
            .getattr("PurePath")?
            .cast_into::<PyType>()?
            .unbind())
    })?;
    if obj.is_instance(pure_path.bind(py))? {
        let _ = write!(out, "Path({})", obj.str()?.repr()?.to_cow()?);
        return Ok(());
    }
    if let Some(numpy) = loaded_numpy(py)? {
        if obj.is_instance(&numpy.getattr("ndarray")?)? {
            return ndarray(&numpy, obj, out);
        }
        if obj.is_instance(&numpy.getattr("generic")?)? {
            let _ = write!(out, "numpy.{}(", ty.name()?);
            canonical(&obj.call_method0("item")?, out, depth + 1)?;
            out.push(')');
            return Ok(());
        }
    }
    Err(PyTypeError::new_err(format!(
        "trove cannot key an argument of type `{name}`: arguments are keyed by their value \
         (None, bool, int, float, str, bytes, tuple, list, dict, set, frozenset, dataclasses, \
         namedtuples, enums, pathlib paths and numpy arrays, nested freely), never by id() \
         or repr(). Give `{name}` a `__trove_key__(self)` method returning such a value \
         (what identifies the object), or pass that value instead.",
        name = qualified(&ty)?
    )))
}

fn items<'py>(
    iter: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut String,
    depth: usize,
) -> PyResult<()> {
    for (i, item) in iter.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        canonical(&item, out, depth + 1)?;
    }
    Ok(())
}

fn set_text<'py>(
    iter: impl Iterator<Item = Bound<'py, PyAny>>,
    kind: &str,
    out: &mut String,
    depth: usize,
) -> PyResult<()> {
    let mut texts = Vec::new();
    for item in iter {
        let mut t = String::new();
        canonical(&item, &mut t, depth + 1)?;
        texts.push(t);
    }
    texts.sort();
    let _ = write!(out, "{kind}({{{}}})", texts.join(", "));
    Ok(())
}

/// numpy, if the program imported it (trove never imports it itself).
fn loaded_numpy(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let modules = py.import("sys")?.getattr("modules")?;
    modules.cast_into::<PyDict>()?.get_item("numpy")
}

fn ndarray(numpy: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>, out: &mut String) -> PyResult<()> {
    let dtype = obj.getattr("dtype")?;
    if dtype.getattr("hasobject")?.is_truthy()? {
        return Err(PyTypeError::new_err(
            "trove cannot key a numpy array of Python objects (dtype object): its bytes are \
             addresses. Pass the values (arr.tolist()) or an array of a numeric dtype.",
        ));
    }
    let dtype_text = if dtype.getattr("fields")?.is_none() {
        dtype.getattr("str")?.str()?
    } else {
        dtype.getattr("descr")?.repr()?
    };
    let mut shape = String::new();
    canonical(&obj.getattr("shape")?, &mut shape, 0)?;
    let contiguous = numpy.call_method1("ascontiguousarray", (obj,))?;
    let digest = hash_buffer(&contiguous)?;
    let _ = write!(
        out,
        "ndarray(dtype={}, shape={shape}, blake3={digest})",
        dtype_text.repr()?.to_cow()?
    );
    Ok(())
}

/// blake3 of a C-contiguous buffer's bytes, on all cores for large ones, without the GIL.
pub(crate) fn hash_buffer(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let mut view = ffi::Buffer::empty();
    // SAFETY: `view` is a zeroed Py_buffer and `obj` a live object; on success the buffer
    // is released below, after the last use of the slice.
    if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view, ffi::BUF_SIMPLE) } != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    let bytes: &[u8] = if view.len == 0 {
        &[]
    } else {
        // SAFETY: the exporter guarantees `len` readable bytes at `buf` while the view is held.
        unsafe { std::slice::from_raw_parts(view.buf as *const u8, view.len as usize) }
    };
    let hex = obj.py().detach(|| {
        let mut hasher = blake3::Hasher::new();
        if bytes.len() >= 1 << 20 {
            hasher.update_rayon(bytes);
        } else {
            hasher.update(bytes);
        }
        hasher.finalize().to_hex().to_string()
    });
    // SAFETY: the view was filled by PyObject_GetBuffer above.
    unsafe { ffi::PyBuffer_Release(&mut view) };
    Ok(hex)
}

/// Keys are blake3 digests already: their first eight bytes are the hash (a lookup per
/// request, cheaper than SipHash over all 32).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
}
