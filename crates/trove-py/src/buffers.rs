//! Out-of-band buffers of `mmap=True` recipes: each large buffer (a numpy array's data)
//! is a content-addressed file beside the store, `<store>/py-buffers-v1/ab/<blake3 hex>`,
//! which a served object maps read-only instead of reading.
//!
//! A buffer file is written once (temp file, fsync, rename, directory fsync, mode 0444)
//! and verified before it is mapped: by blake3 of its content, or, once that was done
//! outside the racy window, by its `stat` alone (dev, ino, length, mtime, ctime — the rule
//! trove applies to input files), recorded in a stamp file `<hex>.ok` beside it. Any
//! write to the file changes its ctime, so the next map hashes it again; a buffer whose
//! content does not match its name is removed and reported, so the object is rebuilt.
//! The mapping holds the inode: removing the file (gc) does not disturb a live array.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use trove_fingerprint::{Stat, now_ns};

use crate::ffi;

/// The bytes of a Python object with the buffer protocol, held until dropped.
struct View(ffi::Buffer);

impl View {
    fn of(obj: &Bound<'_, PyAny>) -> PyResult<View> {
        let mut view = ffi::Buffer::empty();
        // SAFETY: the GIL is held; `view` is released in `drop`.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view, ffi::BUF_SIMPLE) } != 0 {
            return Err(PyErr::take(obj.py())
                .unwrap_or_else(|| PyBufferError::new_err("not a contiguous buffer")));
        }
        Ok(View(view))
    }

    fn bytes(&self) -> &[u8] {
        if self.0.len == 0 || self.0.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter keeps `len` bytes at `buf` alive while the view is held.
        unsafe { std::slice::from_raw_parts(self.0.buf.cast::<u8>(), self.0.len as usize) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: the view was filled by PyObject_GetBuffer; dropped with the GIL held
        // (every `View` lives inside a function that holds it).
        unsafe { ffi::PyBuffer_Release(&mut self.0) };
    }
}

// SAFETY: the bytes are only read while the GIL is released for hashing or writing, and
// the owner keeps them alive and unchanged (the buffer is exported read-only or the object
// is being pickled by this thread).
unsafe impl Send for View {}
unsafe impl Sync for View {}

fn hash(bytes: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    if bytes.len() >= 1 << 20 {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
    hasher.finalize()
}

fn path_of(dir: &Path, hex: &str) -> PathBuf {
    dir.join(&hex[..2]).join(hex)
}

fn stamp_path(path: &Path) -> PathBuf {
    path.with_extension("ok")
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("{what} {}: {e}", path.display()))
}

/// Whether the stamp beside `path` vouches for `stat` (the content was hashed when the
/// file had exactly this stat, and not within the racy window of a change).
fn stamped(path: &Path, stat: &Stat) -> bool {
    let Ok(text) = fs::read_to_string(stamp_path(path)) else {
        return false;
    };
    let fields: Vec<i64> = text
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let [dev, ino, len, mtime_ns, ctime_ns, taken_ns] = fields[..] else {
        return false;
    };
    text.starts_with("v1 ")
        && dev as u64 == stat.dev
        && ino as u64 == stat.ino
        && len as u64 == stat.len
        && mtime_ns == stat.mtime_ns
        && ctime_ns == stat.ctime_ns
        && !stat.is_racy(taken_ns)
}

/// Records that the content of `path`, with `stat`, was hashed at `taken_ns` and matched
/// (skipped when racy: the next map hashes again).
fn stamp(path: &Path, stat: &Stat, taken_ns: i64) {
    if stat.is_racy(taken_ns) {
        return;
    }
    let text = format!(
        "v1 {} {} {} {} {} {}\n",
        stat.dev, stat.ino, stat.len, stat.mtime_ns, stat.ctime_ns, taken_ns
    );
    let temp = path.with_extension(format!("ok.{}.tmp", std::process::id()));
    if fs::write(&temp, text).is_ok() && fs::rename(&temp, stamp_path(path)).is_err() {
        let _ = fs::remove_file(&temp);
    }
}

/// Stores the bytes of `data` (any contiguous buffer) under `dir`, named by their blake3;
/// returns the hex name. An intact file already there (stamped) is kept.
#[pyfunction]
pub(crate) fn put_buffer(
    py: Python<'_>,
    dir: PathBuf,
    data: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let view = View::of(data)?;
    py.detach(|| -> PyResult<String> {
        let bytes = view.bytes();
        let hex = hash(bytes).to_hex().to_string();
        let path = path_of(&dir, &hex);
        if let Ok(Some(stat)) = Stat::of(&path)
            && stat.len == bytes.len() as u64
            && stamped(&path, &stat)
        {
            return Ok(hex);
        }
        let shard = path.parent().expect("a buffer path has a shard directory");
        fs::create_dir_all(shard).map_err(|e| io_err("cannot create", shard, e))?;
        let temp = shard.join(format!(".{hex}.{}.{}.tmp", std::process::id(), now_ns()));
        let written = (|| -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::set_permissions(&temp, fs::Permissions::from_mode(0o444))?;
            fs::rename(&temp, &path)?;
            File::open(shard)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_err("cannot write the buffer", &path, e));
        }
        Ok(hex)
    })
}

/// Maps the buffer named `hex` (of `length` bytes) under `dir` read-only and returns a
/// read-only `memoryview` of it, after verifying it (`verify=False` only right after
/// `put_buffer` wrote or checked it). A buffer that is missing, of another length or
/// whose content does not match its name is a `ValueError` (a corrupt one is removed).
#[pyfunction]
#[pyo3(signature = (dir, hex, length, verify=true))]
pub(crate) fn map_buffer<'py>(
    py: Python<'py>,
    dir: PathBuf,
    hex: &str,
    length: u64,
    verify: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PyValueError::new_err(format!("not a buffer name: {hex:?}")));
    }
    let path = path_of(&dir, hex);
    let file = File::open(&path).map_err(|e| {
        PyValueError::new_err(format!(
            "stored buffer {} is missing ({e}): the object is rebuilt",
            &hex[..16]
        ))
    })?;
    let stat = Stat::from_metadata(
        &file
            .metadata()
            .map_err(|e| io_err("cannot stat", &path, e))?,
    );
    if stat.len != length {
        return Err(corrupt(
            &path,
            hex,
            &format!("{} bytes, not {length}", stat.len),
        ));
    }
    let mmap = py.import("mmap")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("access", mmap.getattr("ACCESS_READ")?)?;
    use std::os::fd::AsRawFd;
    let map = mmap
        .getattr("mmap")?
        .call((file.as_raw_fd(), length), Some(&kwargs))?;
    drop(file); // the map holds its own descriptor, and the inode
    if verify && !stamped(&path, &stat) {
        let taken_ns = now_ns();
        let view = View::of(&map)?;
        let matches = py.detach(|| hash(view.bytes()).to_hex().as_str() == hex);
        drop(view);
        if !matches {
            let _ = map.call_method0("close");
            return Err(corrupt(&path, hex, "blake3 of the content does not match"));
        }
        stamp(&path, &stat, taken_ns);
    }
    py.import("builtins")?.getattr("memoryview")?.call1((map,))
}

/// Removes a corrupt buffer (the rebuild writes it again) and says so.
fn corrupt(path: &Path, hex: &str, why: &str) -> PyErr {
    let _ = fs::remove_file(stamp_path(path));
    let _ = fs::remove_file(path);
    PyValueError::new_err(format!(
        "stored buffer {} is corrupt ({why}): removed, the object is rebuilt",
        &hex[..16]
    ))
}
