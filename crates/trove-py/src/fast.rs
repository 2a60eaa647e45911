//! The fast path of a watched memory hit: while an engine watches, a positional call whose
//! arguments are `None`, bools, ints and strs and whose object the watcher vouches for is
//! answered from a map of those arguments (exact types: `1` and `True` differ) to the
//! Python object, without a request to the engine (no argument text, no key hash, no GIL
//! release, no validation).
//!
//! Soundness: an entry is made only right after a request of the same recipe served the
//! object from memory, and only when the engine vouches for it (`trove::Engine::vouched`:
//! watched, fresh, nothing checked per hit but external inputs) and every external input
//! is one this package vouches for: `py-ast` files whose digest the source watch
//! answers (`code::ast_clean`), and `py-dist` (distributions are read once per process
//! anyway). The map holds the three counters an entry depends on, read before what
//! they guard: the engine's memory epoch (events, rescans, counters, slots replaced,
//! removed or evicted), this package's epoch (recipes registered, watch started or
//! stopped, refresh, gc, counters) and the source watch's generation. A hit needs all
//! three unchanged, the entry's deadline (max_age, volatile ttls) not passed, and no build
//! running on the thread (a recipe called in a build is that build's dependency, recorded
//! through its `Cx`). Any change empties the map.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString, PyTuple};
use trove::{Digest, Engine};

use crate::engine::State;
use crate::tracking::lock;

/// Vouched objects by recipe and [`key_of`] their arguments, valid for one `Epochs`.
#[derive(Default)]
pub(crate) struct FastMap {
    epochs: Epochs,
    entries: HashMap<usize, HashMap<u64, Vec<Entry>>>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Epochs {
    engine: u64,
    package: u64,
    sources: u64,
}

struct Entry {
    /// The arguments of the call that made the entry (all of [`key_of`]'s types).
    args: Py<PyTuple>,
    object: Py<PyAny>,
    expires_ms: Option<i64>,
}

/// A hash of positional arguments that are all `None`, or exactly `bool`, `int` or `str`
/// (no subclass); `None` for any other call (it takes the engine's path). Two calls with
/// the same arguments by [`same_args`] have the same canonical text: equal values of one
/// of these exact types are written alike (floats are not among them: `0.0 == -0.0`).
pub(crate) fn key_of(args: &Bound<'_, PyTuple>) -> Option<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for arg in args.iter() {
        let (tag, value) = if arg.is_none() {
            (1u64, 0u64)
        } else if arg.is_exact_instance_of::<PyBool>() {
            (2, u64::from(arg.is_truthy().ok()?))
        } else if arg.is_exact_instance_of::<PyInt>() {
            (3, arg.hash().ok()? as u64)
        } else if arg.is_exact_instance_of::<PyString>() {
            (4, arg.hash().ok()? as u64) // cached in the str object
        } else {
            return None;
        };
        h = (h ^ tag).wrapping_mul(0x0100_0000_01b3);
        h = (h ^ value).wrapping_mul(0x0100_0000_01b3);
    }
    Some(h)
}

/// Whether two argument tuples of [`key_of`]'s types are the same call: each argument of
/// the same exact type and equal.
fn same_args(a: &Bound<'_, PyTuple>, b: &Bound<'_, PyTuple>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.get_type().is(y.get_type()) && (x.is(&y) || x.eq(&y).unwrap_or(false)))
}

/// What the engine is asked whether it vouches for an object.
pub(crate) struct Ask<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) recipe: &'a str,
    pub(crate) max_age: Option<Duration>,
}

fn epochs_now(state: &State) -> Epochs {
    Epochs {
        engine: state.engine.memory_epoch(),
        package: state.epoch.load(Ordering::SeqCst),
        sources: crate::sources::generation(),
    }
}

/// The object vouched for `target`'s call with `args` (whose [`key_of`] is `key`), if
/// the entry is still valid.
pub(crate) fn hit(
    py: Python<'_>,
    state: &State,
    target: usize,
    key: u64,
    args: &Bound<'_, PyTuple>,
) -> Option<Py<PyAny>> {
    if crate::tracking::current().is_some() || !crate::sources::watching() {
        return None;
    }
    let mut map = lock(&state.fast);
    if map.entries.is_empty() {
        return None;
    }
    if map.epochs != epochs_now(state) {
        let stale = std::mem::take(&mut map.entries);
        drop(map);
        drop(stale); // objects released outside the lock: a `__del__` may call trove
        return None;
    }
    let entry = map
        .entries
        .get(&target)?
        .get(&key)?
        .iter()
        .find(|e| same_args(e.args.bind(py), args))?;
    if entry
        .expires_ms
        .is_some_and(|at| trove_fingerprint::now_ms() > at)
    {
        return None;
    }
    Some(entry.object.clone_ref(py))
}

/// After a memory hit of `target`'s call with `args` (`fast`: their [`key_of`]) served
/// `object` (`key`, `digest`): remembers it if the engine and this package vouch for it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn remember(
    py: Python<'_>,
    state: &State,
    target: usize,
    ask: Ask<'_>,
    fast: u64,
    args: &Bound<'_, PyTuple>,
    key: Digest,
    digest: Digest,
    object: &Py<PyAny>,
) {
    if crate::tracking::current().is_some() || !crate::sources::watching() {
        return;
    }
    // Read before what they guard: a change after this moves one of them.
    let package = state.epoch.load(Ordering::SeqCst);
    let sources = crate::sources::generation();
    let Some(vouched) = ask.engine.vouched(ask.recipe, ask.max_age, &key) else {
        return;
    };
    if vouched.digest != digest {
        return; // another object took the key's slot since this one was served
    }
    for (kind, name) in &vouched.externals {
        let ok = match kind.as_str() {
            "py-ast" => crate::code::ast_clean(name),
            "py-dist" => true,
            _ => false,
        };
        if !ok {
            return;
        }
    }
    let made = Epochs {
        engine: vouched.epoch,
        package,
        sources,
    };
    let mut map = lock(&state.fast);
    if epochs_now(state) != made {
        return; // something moved while this was checked
    }
    let stale = if map.epochs != made {
        map.epochs = made;
        std::mem::take(&mut map.entries)
    } else {
        HashMap::new()
    };
    let same = map
        .entries
        .entry(target)
        .or_default()
        .entry(fast)
        .or_default();
    let (replaced, mut kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(same)
        .into_iter()
        .partition(|e| same_args(e.args.bind(py), args));
    kept.push(Entry {
        args: args.clone().unbind(),
        object: object.clone_ref(py),
        expires_ms: vouched.expires_ms,
    });
    *same = kept;
    drop(map);
    // Objects are released outside the lock: a `__del__` may call trove.
    drop(replaced);
    drop(stale);
}
