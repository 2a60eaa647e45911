//! The fingerprints a build takes of files: reused where a recorded state vouches for the
//! file as it is now, hashed otherwise (a file of 1 MiB or more on all cores, by blake3).
//!
//! Recorded states come from two places (ARCHITECTURE.md, "Reusing fingerprints"):
//! - the trace of the key's newest stored variant (`Cx::hint_from`): a rebuild of the same
//!   key, in any process (`trove run --force`, an edited source rebuilding its object);
//! - the engine's table of the newest state of every file it fingerprinted
//!   ([`KnownStates`]): builds of other keys in the same process (a graph of compiles in
//!   one `trove run`, a Python session, a watcher).
//!
//! A state is reused only under the rule validation trusts without hashing
//! ([`FileState::vouches_for`]: the same `(dev, ino, len, mtime_ns, ctime_ns, kind)` and
//! not racy against the moment its hash was taken). `cx.read` never reuses: it hashes the
//! bytes it returns.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use trove_fingerprint::{FileState, Stat, fingerprint_file};

use crate::cx::Cx;

/// Entries the engine's table keeps before it starts over (about 10 MB at most).
const MAX_KNOWN: usize = 1 << 16;

/// The newest state of each file an engine fingerprinted (or reused), by absolute path.
#[derive(Default)]
pub(crate) struct KnownStates(Mutex<HashMap<String, FileState>>);

impl KnownStates {
    fn get(&self, path: &str) -> Option<FileState> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned()
    }

    /// Remembers a state that vouches for what the file held: a regular file's
    /// fingerprint taken while the file did not change (`stable`).
    pub(crate) fn learn(&self, path: &str, state: &FileState) {
        if !matches!(state, FileState::Present { .. }) {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KNOWN && !map.contains_key(path) {
            map.clear();
        }
        map.insert(path.to_owned(), state.clone());
    }
}

/// A file's fingerprint, taken or reused.
pub(crate) struct Taken {
    pub(crate) state: FileState,
    /// False when the file changed while it was hashed.
    pub(crate) stable: bool,
}

impl Cx {
    /// A recorded state that vouches for the file at `abs` as it is now, if one does.
    fn reusable(&self, abs: &Path) -> Option<FileState> {
        let key = abs.to_string_lossy();
        let hint = self.hints.get(key.as_ref()).cloned();
        let known = self.engine.inner.file_states.get(&key);
        if hint.is_none() && known.is_none() {
            return None;
        }
        let now = Stat::of(abs).ok().flatten()?;
        [hint, known]
            .into_iter()
            .flatten()
            .find(|state| state.vouches_for(&now))
    }

    /// Fingerprints `paths` (absolute), one result each in order: a state reused where one
    /// vouches for the file, the rest hashed (each path once). Counts the files hashed and
    /// teaches the engine every stable state.
    pub(crate) fn fingerprint_all(&self, paths: &[&Path]) -> Vec<io::Result<Taken>> {
        let mut out: Vec<Option<io::Result<Taken>>> = paths
            .iter()
            .map(|p| {
                self.reusable(p).map(|state| {
                    Ok(Taken {
                        state,
                        stable: true,
                    })
                })
            })
            .collect();
        // Each path still to fingerprint, once; its repetitions copy the result.
        let mut first: HashMap<&Path, usize> = HashMap::new();
        let mut todo: Vec<usize> = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            if out[i].is_none() && first.insert(*p, i).is_none() {
                todo.push(i);
            }
        }
        let mut hashed = 0;
        for i in todo {
            let result = fingerprint_file(paths[i]);
            if matches!(&result, Ok((FileState::Present { .. }, _))) {
                hashed += 1;
            }
            out[i] = Some(result.map(|(state, stable)| Taken { state, stable }));
        }
        self.engine.count_hashed(hashed);
        let known = &self.engine.inner.file_states;
        let mut results: Vec<io::Result<Taken>> = Vec::with_capacity(paths.len());
        for (i, path) in paths.iter().enumerate() {
            let result = match out[i].take() {
                Some(result) => result,
                None => copy(results.get(first[path])),
            };
            if let Ok(Taken {
                state,
                stable: true,
            }) = &result
            {
                known.learn(&path.to_string_lossy(), state);
            }
            results.push(result);
        }
        results
    }
}

/// The result of a path's first occurrence, for its repetitions.
fn copy(first: Option<&io::Result<Taken>>) -> io::Result<Taken> {
    match first {
        Some(Ok(taken)) => Ok(Taken {
            state: taken.state.clone(),
            stable: taken.stable,
        }),
        Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
        None => Err(io::Error::other("fingerprint missing")),
    }
}
