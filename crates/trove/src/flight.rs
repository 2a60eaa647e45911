//! Single flight within a process: one leader builds a key, every other caller waits for
//! its result. A leader that fails or panics wakes its waiters with an error.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use trove_fingerprint::Digest;

/// What a flight ends with; cheap to clone for every waiter.
pub(crate) type Outcome<T> = Result<T, Arc<crate::Error>>;

pub(crate) struct Flights<T> {
    map: Mutex<HashMap<Digest, Arc<Flight<T>>>>,
}

pub(crate) struct Flight<T> {
    result: Mutex<Option<Outcome<T>>>,
    done: Condvar,
}

pub(crate) enum Role<'a, T: Clone> {
    Leader(Leader<'a, T>),
    Waiter(Arc<Flight<T>>),
}

/// The caller that builds. Dropping it without [`Leader::finish`] (a panic unwinding
/// through the build) ends the flight with an error, so no waiter hangs.
pub(crate) struct Leader<'a, T: Clone> {
    flights: &'a Flights<T>,
    key: Digest,
    flight: Arc<Flight<T>>,
    finished: bool,
}

impl<T: Clone> Flights<T> {
    pub(crate) fn new() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn join(&self, key: Digest) -> Role<'_, T> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(&key) {
            return Role::Waiter(f.clone());
        }
        let flight = Arc::new(Flight {
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        map.insert(key, flight.clone());
        Role::Leader(Leader {
            flights: self,
            key,
            flight,
            finished: false,
        })
    }
}

impl<T: Clone> Flight<T> {
    pub(crate) fn wait(&self) -> Outcome<T> {
        let mut r = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = r.as_ref() {
                return r.clone();
            }
            r = self.done.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<T: Clone> Leader<'_, T> {
    pub(crate) fn finish(mut self, outcome: Outcome<T>) {
        self.complete(outcome);
    }

    fn complete(&mut self, outcome: Outcome<T>) {
        self.finished = true;
        // Remove the flight first: a caller arriving after this point starts afresh (and
        // finds the object in the memory tier) instead of joining a finished flight.
        self.flights
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        *self.flight.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.flight.done.notify_all();
    }
}

impl<T: Clone> Drop for Leader<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.complete(Err(Arc::new(crate::Error::Panicked {
                key: self.key.short(),
            })));
        }
    }
}
