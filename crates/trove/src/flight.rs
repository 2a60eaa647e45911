//! Single flight within a process: one leader builds a key, every other caller waits for
//! its result. A leader that fails or panics wakes its waiters with an error.
//!
//! The flights also keep a wait-for graph: each flight's leading thread, and the key each
//! waiting thread waits for. A thread about to wait for a key whose leader waits, directly
//! or through others, for a key this thread leads would wait forever (two threads each
//! building one side of a cycle): it is told [`Role::Cycle`] instead. The check and the
//! registration happen under one lock, so of the threads that close a cycle the last one
//! to ask always sees it.

use std::collections::HashMap;
use std::sync::Arc;

// The model check (the `shuttle` feature, test-only) swaps in shuttle's primitives, which
// explore the interleavings of the threads that use them; `Arc` stays std's, as it never
// blocks.
#[cfg(feature = "shuttle")]
use shuttle::sync::{Condvar, Mutex};
#[cfg(feature = "shuttle")]
use shuttle::thread::{ThreadId, current};
#[cfg(not(feature = "shuttle"))]
use std::sync::{Condvar, Mutex};
#[cfg(not(feature = "shuttle"))]
use std::thread::{ThreadId, current};

use trove_fingerprint::Digest;

/// What a flight ends with; cheap to clone for every waiter.
pub(crate) type Outcome<T> = Result<T, Arc<crate::Error>>;

pub(crate) struct Flights<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The flight of each key being led.
    flights: HashMap<Digest, Arc<Flight<T>>>,
    /// The key each waiting thread waits for.
    waiting: HashMap<ThreadId, Digest>,
}

pub(crate) struct Flight<T> {
    leader: ThreadId,
    result: Mutex<Option<Outcome<T>>>,
    done: Condvar,
}

pub(crate) enum Role<'a, T: Clone> {
    Leader(Leader<'a, T>),
    Waiter(Waiter<'a, T>),
    /// Waiting would close a cycle of threads waiting for each other.
    Cycle,
}

/// A caller waiting for another thread's flight.
pub(crate) struct Waiter<'a, T> {
    flights: &'a Flights<T>,
    flight: Arc<Flight<T>>,
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
            state: Mutex::new(State {
                flights: HashMap::new(),
                waiting: HashMap::new(),
            }),
        }
    }

    pub(crate) fn join(&self, key: Digest) -> Role<'_, T> {
        let me = current().id();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = state.flights.get(&key) {
            let flight = f.clone();
            if state.leads_to(flight.leader, me) {
                return Role::Cycle;
            }
            state.waiting.insert(me, key);
            return Role::Waiter(Waiter {
                flights: self,
                flight,
            });
        }
        let flight = Arc::new(Flight {
            leader: me,
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        state.flights.insert(key, flight.clone());
        Role::Leader(Leader {
            flights: self,
            key,
            flight,
            finished: false,
        })
    }
}

impl<T> State<T> {
    /// Whether `thread`, following what it waits for and who leads that, reaches `me`.
    fn leads_to(&self, mut thread: ThreadId, me: ThreadId) -> bool {
        // Each step moves to another thread; more steps than waiting threads is a loop
        // that does not pass through `me`.
        for _ in 0..=self.waiting.len() {
            if thread == me {
                return true;
            }
            let Some(next) = self
                .waiting
                .get(&thread)
                .and_then(|key| self.flights.get(key))
            else {
                return false;
            };
            thread = next.leader;
        }
        false
    }
}

impl<T: Clone> Waiter<'_, T> {
    pub(crate) fn wait(self) -> Outcome<T> {
        let outcome = {
            let mut r = self.flight.result.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(r) = r.as_ref() {
                    break r.clone();
                }
                r = self.flight.done.wait(r).unwrap_or_else(|e| e.into_inner());
            }
        };
        self.flights
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(&current().id());
        outcome
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
        // Every waiter of this flight joined before, and stays in `waiting` until it has
        // the result, so whether anyone waits is known here for good: a flight nobody
        // joined (most of them) skips the wake-up, a system call with no one to wake.
        let waited = {
            let mut state = self.flights.state.lock().unwrap_or_else(|e| e.into_inner());
            state.flights.remove(&self.key);
            state.waiting.values().any(|k| *k == self.key)
        };
        *self.flight.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        if waited {
            self.flight.done.notify_all();
        }
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

/// A model check of the single flight with shuttle: every schedule it explores (random,
/// PCT with depth 3, and a bounded depth-first search) of a leader and its waiters ends without deadlock (shuttle fails a schedule in which every
/// thread is blocked), and every waiter receives the outcome of the leader of the flight it
/// joined, whether that leader succeeded, failed or panicked.
#[cfg(all(test, feature = "shuttle"))]
mod model {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;

    use shuttle::sync::Mutex;
    use trove_fingerprint::Digest;

    use super::{Flights, Role};
    use crate::{BuildError, Error};

    /// The error leader `n` fails its flight with.
    fn failure(n: u32) -> Error {
        Error::Build {
            recipe: "model".to_owned(),
            args: n.to_string(),
            source: BuildError::msg("failed"),
        }
    }

    /// How a leader ends its flight in one model.
    #[derive(Clone, Copy)]
    enum Ending {
        Succeeds,
        Fails,
        Panics,
    }

    /// What one thread saw: `Led(n)` when it led and ended the flight with the value `n`
    /// (or the error `n`), `Got(..)` when it waited and received an outcome.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Led(u32),
        GotValue(u32),
        GotError(String),
    }

    /// `threads` threads ask for one key at once; each leader ends its flight as `ending`
    /// says, tagging the outcome with its own thread number. The builds are not caught by
    /// `catch_unwind` (see `Ending::Panics`), the wrapper only keeps the shape of the
    /// engine's call.
    fn run(threads: u32, ending: Ending) {
        let flights: Arc<Flights<u32>> = Arc::new(Flights::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..threads)
            .map(|n| {
                let flights = flights.clone();
                let seen = seen.clone();
                shuttle::thread::spawn(move || {
                    let key = Digest([7; 32]);
                    let outcome = catch_unwind(AssertUnwindSafe(|| match flights.join(key) {
                        Role::Leader(leader) => {
                            seen.lock().unwrap().push(Seen::Led(n));
                            match ending {
                                Ending::Succeeds => leader.finish(Ok(n)),
                                Ending::Fails => leader.finish(Err(Arc::new(failure(n)))),
                                // Shuttle fails any schedule in which a thread panics,
                                // even a caught panic, so the model drops the leader
                                // unfinished: exactly what unwinding through the build
                                // does. The engine tests cover a real panic.
                                Ending::Panics => drop(leader),
                            }
                            None
                        }
                        Role::Waiter(waiter) => Some(waiter.wait()),
                        Role::Cycle => unreachable!("one key cannot make a cycle"),
                    }));
                    match outcome {
                        Ok(Some(Ok(v))) => seen.lock().unwrap().push(Seen::GotValue(v)),
                        Ok(Some(Err(e))) => {
                            seen.lock().unwrap().push(Seen::GotError(e.to_string()))
                        }
                        // A leader that led and finished, or one whose build panicked (its
                        // Leader was dropped while unwinding).
                        Ok(None) | Err(_) => {}
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .expect("no thread of the model panics outside the build");
        }
        let seen = seen.lock().unwrap().clone();
        let leaders: Vec<u32> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Led(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert!(!leaders.is_empty(), "someone led");
        assert_eq!(seen.len() as u32, threads, "every thread ended: {seen:?}");
        for s in &seen {
            match (s, ending) {
                (Seen::Led(_), _) => {}
                (Seen::GotValue(v), Ending::Succeeds) => assert!(leaders.contains(v), "{seen:?}"),
                (Seen::GotError(e), Ending::Fails) => assert!(
                    leaders.iter().any(|n| *e == failure(*n).to_string()),
                    "{seen:?}"
                ),
                (Seen::GotError(e), Ending::Panics) => {
                    assert!(e.contains("panicked"), "{seen:?}")
                }
                _ => panic!("a waiter got another outcome than its leader's: {seen:?}"),
            }
        }
    }

    const ITERATIONS: usize = 5000;

    #[test]
    fn every_waiter_gets_the_value_of_a_succeeding_leader() {
        shuttle::check_random(|| run(4, Ending::Succeeds), ITERATIONS);
        shuttle::check_pct(|| run(4, Ending::Succeeds), ITERATIONS, 3);
        shuttle::check_dfs(|| run(2, Ending::Succeeds), Some(4 * ITERATIONS));
        eprintln!(
            "figure: flight model every_waiter_gets_the_value_of_a_succeeding_leader schedules={} deadlocks=0 wrong_outcomes=0",
            6 * ITERATIONS
        );
    }

    #[test]
    fn every_waiter_gets_the_error_of_a_failing_leader() {
        shuttle::check_random(|| run(4, Ending::Fails), ITERATIONS);
        shuttle::check_pct(|| run(4, Ending::Fails), ITERATIONS, 3);
        shuttle::check_dfs(|| run(2, Ending::Fails), Some(4 * ITERATIONS));
        eprintln!(
            "figure: flight model every_waiter_gets_the_error_of_a_failing_leader schedules={} deadlocks=0 wrong_outcomes=0",
            6 * ITERATIONS
        );
    }

    #[test]
    fn a_panicking_leader_wakes_every_waiter_with_an_error() {
        shuttle::check_random(|| run(4, Ending::Panics), ITERATIONS);
        shuttle::check_pct(|| run(4, Ending::Panics), ITERATIONS, 3);
        shuttle::check_dfs(|| run(2, Ending::Panics), Some(4 * ITERATIONS));
        eprintln!(
            "figure: flight model a_panicking_leader_wakes_every_waiter_with_an_error schedules={} deadlocks=0 wrong_outcomes=0",
            6 * ITERATIONS
        );
    }
}
