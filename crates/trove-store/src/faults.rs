//! Fail points for the reliability tests, compiled in only with the `failpoints` feature.
//!
//! Every write, fsync and rename of a publish and every step of a record insert is a named
//! point (`store::blob-create`, `store::blob-write`, `store::blob-write-partial`,
//! `store::blob-fsync`, `store::blob-rename`, `store::blob-dir-fsync`,
//! `store::record-insert`, `store::record-commit`, `store::record-committed`). The `fail`
//! crate configures them from the `FAILPOINTS` environment variable (or
//! `fail::cfg`), for example `FAILPOINTS=store::blob-fsync=return(enospc)`:
//!
//! - `return(abort)`: the process aborts on the spot, like a SIGKILL (no unwinding, no
//!   destructor, no cleanup);
//! - `return(enospc)`, `return(eio)`, `return(efbig)` or a bare `return`: the operation
//!   fails with that error, as a full disk or a failing device would make it fail;
//! - `panic`: the operation panics and the panic unwinds through the caller.
//!
//! Without the feature the points expand to nothing.

#[cfg(feature = "failpoints")]
use std::collections::BTreeMap;
#[cfg(feature = "failpoints")]
use std::sync::Mutex;

/// Evaluates a fail point; when it is configured to fail, returns from the enclosing
/// function with `$on_error` applied to the injected `io::Error`.
macro_rules! fail_point {
    ($name:literal, $on_error:expr) => {
        #[cfg(feature = "failpoints")]
        {
            $crate::faults::count($name);
            fail::fail_point!($name, |arg: Option<String>| {
                let error: std::io::Error = $crate::faults::injected($name, arg);
                #[allow(clippy::redundant_closure_call)]
                ($on_error)(error)
            });
        }
    };
}
pub(crate) use fail_point;

#[cfg(feature = "failpoints")]
static HITS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

#[cfg(feature = "failpoints")]
pub(crate) fn count(name: &'static str) {
    *HITS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name)
        .or_default() += 1;
}

/// How many times the fail point `name` was reached in this process, failing or not (to
/// show, for example, that a failed fsync is never tried again).
#[cfg(feature = "failpoints")]
pub fn hits(name: &str) -> u64 {
    HITS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// The error a failing point injects; `abort` never returns.
#[cfg(feature = "failpoints")]
pub(crate) fn injected(point: &str, arg: Option<String>) -> std::io::Error {
    use std::io::Error;
    match arg.as_deref() {
        Some("abort") => {
            eprintln!("fail point {point}: aborting the process");
            std::process::abort()
        }
        None | Some("enospc") => Error::from_raw_os_error(28),
        Some("eio") => Error::from_raw_os_error(5),
        Some("efbig") => Error::from_raw_os_error(27),
        Some(other) => Error::other(format!("injected at {point}: {other}")),
    }
}
