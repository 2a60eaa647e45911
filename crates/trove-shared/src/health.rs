//! Backoff: after a remote fails, it is skipped for an interval that doubles with each
//! failure in a row, so a dead store costs one timeout, not one per request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::Backoff;
use crate::error::Unavailable;

/// Counters of one remote (the store or the lease server).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteStats {
    /// Calls that reached the remote.
    pub calls: u64,
    /// Calls that failed (timeouts included).
    pub failures: u64,
    /// Calls that failed by timing out.
    pub timeouts: u64,
    /// Calls not made because the remote was backing off.
    pub skipped: u64,
    /// Failures in a row, 0 when the last call succeeded.
    pub failing_in_a_row: u32,
    /// How long the remote will still be skipped, if it is.
    pub retry_in: Option<Duration>,
    /// The last failure, as a sentence.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct State {
    in_a_row: u32,
    skip_until: Option<Instant>,
    last_error: Option<String>,
}

/// The backoff state and counters of one remote.
#[derive(Debug)]
pub(crate) struct Health {
    backoff: Backoff,
    state: Mutex<State>,
    calls: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
}

impl Health {
    pub(crate) fn new(backoff: Backoff) -> Health {
        Health {
            backoff,
            state: Mutex::new(State {
                in_a_row: 0,
                skip_until: None,
                last_error: None,
            }),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` when the remote may be called now; the reason it is skipped otherwise.
    pub(crate) fn admit(&self) -> Result<(), Unavailable> {
        let state = self.state();
        if let Some(until) = state.skip_until {
            let now = Instant::now();
            if now < until {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                return Err(Unavailable::BackingOff {
                    retry_in: until - now,
                    last_error: state.last_error.clone().unwrap_or_default(),
                });
            }
        }
        drop(state);
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn success(&self) {
        let mut state = self.state();
        state.in_a_row = 0;
        state.skip_until = None;
    }

    pub(crate) fn failure(&self, cause: &Unavailable) {
        if matches!(cause, Unavailable::BackingOff { .. }) {
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        if matches!(cause, Unavailable::TimedOut { .. }) {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let mut state = self.state();
        state.in_a_row = state.in_a_row.saturating_add(1);
        let doublings = (state.in_a_row - 1).min(20);
        let interval = self
            .backoff
            .initial
            .saturating_mul(1 << doublings)
            .min(self.backoff.max);
        state.skip_until = Some(Instant::now() + interval);
        state.last_error = Some(cause.to_string());
    }

    pub(crate) fn stats(&self) -> RemoteStats {
        let state = self.state();
        let now = Instant::now();
        RemoteStats {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            failing_in_a_row: state.in_a_row,
            retry_in: state.skip_until.filter(|u| *u > now).map(|u| u - now),
            last_error: state.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Unavailable {
        Unavailable::Failed {
            message: "connection refused".into(),
        }
    }

    #[test]
    fn a_failure_skips_the_remote_for_an_interval_that_doubles() {
        let health = Health::new(Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(25),
        });
        health.admit().unwrap();
        health.failure(&failed());
        let Err(Unavailable::BackingOff { retry_in, .. }) = health.admit() else {
            panic!("not skipped")
        };
        assert!(retry_in <= Duration::from_secs(10) && retry_in > Duration::from_secs(9));
        health.failure(&failed());
        assert!(health.stats().retry_in.unwrap() > Duration::from_secs(19));
        health.failure(&failed());
        assert!(health.stats().retry_in.unwrap() <= Duration::from_secs(25));
        let stats = health.stats();
        assert_eq!((stats.calls, stats.failures, stats.skipped), (1, 3, 1));
        assert_eq!(stats.failing_in_a_row, 3);
    }

    #[test]
    fn a_success_ends_the_backoff() {
        let health = Health::new(Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
        });
        health.failure(&Unavailable::TimedOut {
            after: Duration::from_secs(2),
        });
        health.admit().unwrap();
        health.success();
        let stats = health.stats();
        assert_eq!((stats.timeouts, stats.failing_in_a_row), (1, 0));
        assert_eq!(stats.retry_in, None);
    }
}
