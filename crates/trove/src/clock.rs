//! The wall clock, in the units the store records.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The clock the kernel stamps file times with (Linux: the coarse real-time clock, up to
/// one scheduler tick behind the precise one), in nanoseconds since the Unix epoch.
///
/// A file written at or after the moment this returns gets an mtime (and ctime) at least
/// this large; one written in the same tick *before* it may too, so comparing a file's
/// times with it errs on the side of "changed" — never the other way.
pub(crate) fn file_clock_ns() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        // time_t and c_long are i64 on 64-bit Linux, narrower elsewhere.
        #[allow(clippy::unnecessary_cast)]
        if rc == 0 {
            return (ts.tv_sec as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ts.tv_nsec as i64);
        }
    }
    // Elsewhere, one tick of the slowest common clock before now.
    trove_fingerprint::now_ns().saturating_sub(10_000_000)
}
