//! The wall clock: the one place trove reads it (fingerprints are taken by it, records
//! are stamped with it).

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now (negative before it).
pub fn now_ns() -> i64 {
    system_time_ns(SystemTime::now())
}

/// Milliseconds since the Unix epoch, now (0 if the clock is before it): what records
/// are stamped with.
pub fn now_ms() -> i64 {
    now_ns().max(0) / 1_000_000
}

/// A time as nanoseconds since the Unix epoch (negative before it, saturating).
pub(crate) fn system_time_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}
