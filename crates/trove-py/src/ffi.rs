//! The CPython functions tracking needs that PyO3's abi3 (3.9) build does not declare:
//! a C-level profile function, the frame's code object, and the buffer protocol. Each has
//! had this signature (and `Py_buffer` this layout) in every CPython since 3.9; the
//! extension resolves them from the interpreter that loads it, like every other symbol.

use std::os::raw::{c_char, c_int, c_void};

use pyo3::ffi::PyObject;

/// `PyFrameObject`, only ever handled by pointer.
pub(crate) type Frame = c_void;

/// `Py_tracefunc`.
pub(crate) type TraceFunc =
    unsafe extern "C" fn(*mut PyObject, *mut Frame, c_int, *mut PyObject) -> c_int;

/// `PyTrace_CALL`: a Python function (or generator) starts or resumes.
pub(crate) const TRACE_CALL: c_int = 0;

/// `PyBUF_SIMPLE`: the bytes of a C-contiguous buffer, no shape or format.
pub(crate) const BUF_SIMPLE: c_int = 0;

/// `Py_buffer`.
#[repr(C)]
pub(crate) struct Buffer {
    pub(crate) buf: *mut c_void,
    obj: *mut PyObject,
    pub(crate) len: isize,
    itemsize: isize,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut isize,
    strides: *mut isize,
    suboffsets: *mut isize,
    internal: *mut c_void,
}

impl Buffer {
    pub(crate) fn empty() -> Buffer {
        Buffer {
            buf: std::ptr::null_mut(),
            obj: std::ptr::null_mut(),
            len: 0,
            itemsize: 0,
            readonly: 0,
            ndim: 0,
            format: std::ptr::null_mut(),
            shape: std::ptr::null_mut(),
            strides: std::ptr::null_mut(),
            suboffsets: std::ptr::null_mut(),
            internal: std::ptr::null_mut(),
        }
    }
}

unsafe extern "C" {
    /// Sets (or, with `None`, clears) this thread's C-level profile function.
    pub(crate) fn PyEval_SetProfile(func: Option<TraceFunc>, obj: *mut PyObject);
    /// The frame's code object (a new reference).
    pub(crate) fn PyFrame_GetCode(frame: *mut Frame) -> *mut PyObject;
    /// The innermost Python frame of this thread (borrowed), or null.
    pub(crate) fn PyEval_GetFrame() -> *mut Frame;
    pub(crate) fn PyObject_GetBuffer(obj: *mut PyObject, view: *mut Buffer, flags: c_int) -> c_int;
    pub(crate) fn PyBuffer_Release(view: *mut Buffer);
}
