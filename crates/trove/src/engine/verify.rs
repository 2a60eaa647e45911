//! Validating a stored or remembered variant: recipe version, counters, age, and every
//! input of its trace (files last, on several threads for large traces).

use std::path::Path;
use std::time::Duration;

use trove_fingerprint::{Digest, FileCheck, FileState, ListingState};

use crate::clock::now_ms;
use crate::engine::{Engine, bump};
use crate::reason::{Reason, Residency, Why};
use crate::trace::{Input, Trace};
use crate::words::describe_env;
use crate::{Error, Recipe};

/// How thoroughly a trace is validated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// For serving: dependencies are served (and rebuilt if they must be).
    Serve,
    /// For explaining: nothing is built.
    Peek,
    /// For gc: dependencies are not followed (each is collected on its own).
    Gc,
    /// A watcher vouches for every path: only what it cannot see is checked.
    Watched,
}

pub(crate) enum Validity {
    Valid { refreshed: Option<Trace> },
    Invalid(Why),
}

/// What a watched memory hit still checks: the inputs a watcher cannot vouch for at
/// all (env, volatile, embedded digests), and the paths it does not see.
#[derive(Clone, Copy)]
pub(crate) struct Watched<'a> {
    pub(crate) cheap: &'a [u32],
    pub(crate) unwatched: &'a [u32],
}

/// What validating one variant needs besides its trace.
pub(crate) struct Subject<'a> {
    pub(crate) recipe: &'a str,
    pub(crate) sources: crate::Sources,
    pub(crate) version_now: Option<u32>,
    pub(crate) version_then: u32,
    pub(crate) created_ms: i64,
    pub(crate) max_age: Option<Duration>,
    /// The recipe's definition now; `None` when it is not known (an unregistered recipe).
    pub(crate) definition: Option<crate::Definition>,
}

/// Why a key's stored variants were not served: the reason found in the variant the
/// caller was most recently served (the one it would otherwise get), not in an old
/// branch's variant that merely happens to be newer or first.
#[derive(Default)]
pub(crate) struct MissReason {
    best: Option<(i64, Why)>,
}

impl MissReason {
    /// The object in memory is the one that would have been served: its reason wins.
    pub(crate) fn remembered(why: Why) -> MissReason {
        MissReason {
            best: Some((i64::MAX, why)),
        }
    }

    /// Offers the reason a variant last used at `last_used_ms` was not served.
    pub(crate) fn offer(&mut self, last_used_ms: i64, why: Why) {
        if self.best.as_ref().is_none_or(|(t, _)| last_used_ms > *t) {
            self.best = Some((last_used_ms, why));
        }
    }

    pub(crate) fn take(self) -> Option<Why> {
        self.best.map(|(_, why)| why)
    }
}

impl Engine {
    /// What validating a variant of `recipe` built at `created_ms` by `version_then` needs.
    pub(crate) fn subject<'a, R: Recipe>(
        &self,
        recipe: &'a R,
        version_then: u32,
        created_ms: i64,
    ) -> Subject<'a> {
        Subject {
            recipe: recipe.name(),
            sources: recipe.sources(),
            version_now: Some(recipe.version()),
            version_then,
            created_ms,
            max_age: self.max_age_for(recipe.name(), recipe.max_age()),
            definition: Some(self.definition_of(recipe.name(), &recipe.definition())),
        }
    }

    /// Validates a trace: cheap checks first, files last.
    pub(crate) fn validate(
        &self,
        subject: &Subject<'_>,
        trace: &Trace,
        mode: Mode,
    ) -> Result<Validity, Error> {
        self.validate_with(subject, trace, mode, None)
    }

    /// [`Engine::validate`]; `watched`, when given, lists the trace's inputs a watcher
    /// cannot vouch for (see [`cheap_inputs`]) and the paths it does not see, so a watched
    /// hit checks only those.
    pub(crate) fn validate_with(
        &self,
        subject: &Subject<'_>,
        trace: &Trace,
        mode: Mode,
        watched: Option<Watched<'_>>,
    ) -> Result<Validity, Error> {
        if let Some(now) = subject.version_now
            && now != subject.version_then
        {
            return Ok(Validity::Invalid(Why::RecipeVersion {
                from: subject.version_then,
                to: now,
            }));
        }
        if let Some(now) = &subject.definition {
            let parts = now.differences(&trace.definition);
            if !parts.is_empty() {
                return Ok(Validity::Invalid(Why::Definition { parts }));
            }
        }
        let counters = self.counters_for(subject.recipe);
        for name in counters.keys().chain(trace.counters.keys()) {
            let (then, now) = (trace.counters.get(name), counters.get(name));
            if then != now {
                return Ok(Validity::Invalid(Why::Counter {
                    name: name.clone(),
                    from: then.copied(),
                    to: now.copied(),
                }));
            }
        }
        let age_ms = now_ms().saturating_sub(subject.created_ms).max(0) as u128;
        if let Some(max_age) = subject.max_age
            && age_ms > max_age.as_millis()
        {
            return Ok(Validity::Invalid(Why::Expired { max_age }));
        }
        if mode == Mode::Gc {
            // gc asks only whether the variant can ever be served again: inputs may change
            // back (a branch switch), so they are not checked (see `Engine::dead_reason`).
            return Ok(Validity::Valid { refreshed: None });
        }
        let mut refreshed: Option<Trace> = None;
        let unwatchable: Box<dyn Iterator<Item = &Input>> = match watched {
            Some(w) => Box::new(w.cheap.iter().map(|&i| &trace.inputs[i as usize])),
            None => Box::new(trace.inputs.iter()),
        };
        for input in unwatchable {
            let outcome = match input {
                Input::Volatile { name, ttl_ms } => {
                    (age_ms > u128::from(*ttl_ms)).then(|| Why::VolatileExpired {
                        name: name.clone(),
                        ttl: Duration::from_millis(*ttl_ms),
                    })
                }
                Input::Env { name, value } => {
                    let now = std::env::var(name).ok();
                    (now != *value).then(|| Why::Changed {
                        what: format!("env {name}"),
                        from: describe_env(value),
                        to: describe_env(&now),
                    })
                }
                Input::Code { digest } => {
                    // The build ran without the recipe's sources on disk: the digest of
                    // the sources now (on disk, or embedded in this binary) must match.
                    let now = current_code_digest(&subject.sources);
                    (now.as_ref() != Some(digest)).then(|| Why::Changed {
                        what: format!("sources of recipe {}", subject.recipe),
                        from: format!("blake3 {}", digest.short()),
                        to: now.map_or("unknown".into(), |d| format!("blake3 {}", d.short())),
                    })
                }
                Input::External { kind, name, value } => self.check_external(kind, name, value),
                _ => None,
            };
            if let Some(why) = outcome {
                return Ok(Validity::Invalid(why));
            }
        }
        // A watched hit: the watcher vouches for every path it sees; the others (files
        // outside its roots, literal globs, trees) are checked like any hit's.
        let only = watched.map(|w| w.unwatched);
        if only.is_some_and(|o| o.is_empty()) {
            bump(&self.inner.stats.watched_hits, 1);
            return Ok(Validity::Valid { refreshed: None });
        }
        // Groups of absences whose directory's stamp still holds need no `stat` of their
        // members.
        let wanted = |i: usize| only.is_none_or(|o| o.binary_search(&(i as u32)).is_ok());
        // Directory inputs a group's `stat` answers wait for it.
        let vouched = crate::absence::vouch(trace, wanted);
        bump(&self.inner.stats.absences_vouched, vouched.count);
        // Directory inputs checked by their group's `stat` count as checked files.
        bump(&self.inner.stats.files_checked, vouched.dirs);
        bump(&self.inner.stats.dirs_answered, vouched.dirs);
        let mut prechecked = match only {
            Some(_) => None,
            None => precheck_files(trace, &vouched),
        };
        let all: Vec<usize>;
        let indices: &mut dyn Iterator<Item = usize> = match only {
            Some(o) => &mut o.iter().map(|&i| i as usize),
            None => {
                all = (0..trace.inputs.len()).collect();
                &mut all.iter().copied()
            }
        };
        for index in indices {
            let input = &trace.inputs[index];
            let outcome = match input {
                Input::File { .. } | Input::Absences { .. } if vouched.skips(index) => None,
                // A group its stamp did not vouch for: each member on its own.
                Input::Absences { dir, names, .. } => {
                    crate::absence::members(names).find_map(|name| {
                        bump(&self.inner.stats.files_checked, 1);
                        let path = crate::absence::member_path(dir, name);
                        let absent = FileState::Absent;
                        let checked = trove_fingerprint::check_file(&absent, Path::new(&path));
                        self.check_outcome(&path, &absent, checked).err()
                    })
                }
                Input::File { path, state, .. } => {
                    bump(&self.inner.stats.files_checked, 1);
                    let checked = prechecked
                        .as_mut()
                        .and_then(|all| all[index].take())
                        .unwrap_or_else(|| trove_fingerprint::check_file(state, Path::new(path)));
                    self.file_outcome(trace, index, checked, &mut refreshed)
                }
                Input::Dir { state, .. }
                | Input::Glob { state, .. }
                | Input::Tree { state, .. } => match self.listing_now(input) {
                    Some((_, Ok(now))) if now == *state => None,
                    Some((what, Ok(now))) => Some(Why::Changed {
                        what,
                        from: state.describe(),
                        to: now.describe(),
                    }),
                    Some((what, Err(e))) => Some(Why::Changed {
                        what,
                        from: state.describe(),
                        to: format!("unreadable: {e}"),
                    }),
                    None => None,
                },
                Input::Object {
                    recipe,
                    args_display,
                    args,
                    output,
                    ..
                } => self.validate_dependency(recipe, args_display, args, output, mode)?,
                _ => None,
            };
            if let Some(why) = outcome {
                return Ok(Validity::Invalid(why));
            }
        }
        crate::absence::refresh(trace, &vouched.stale_groups, &mut refreshed);
        Ok(Validity::Valid { refreshed })
    }

    /// What the check of file input `index` found: `None` when it holds (a refreshed
    /// fingerprint is put in `refreshed`), or why it changed.
    fn file_outcome(
        &self,
        trace: &Trace,
        index: usize,
        checked: std::io::Result<FileCheck>,
        refreshed: &mut Option<Trace>,
    ) -> Option<Why> {
        let Input::File { path, state, .. } = &trace.inputs[index] else {
            return None;
        };
        match self.check_outcome(path, state, checked) {
            Ok(Some(new)) => {
                let t = refreshed.get_or_insert_with(|| trace.clone());
                if let Input::File { state, .. } = &mut t.inputs[index] {
                    *state = new;
                }
                None
            }
            Ok(None) => None,
            Err(why) => Some(why),
        }
    }

    /// What the check of a file recorded as `state` at `path` found: unchanged
    /// (`Ok(None)`), unchanged with a fingerprint to store instead (`Ok(Some)`), or why it
    /// changed.
    fn check_outcome(
        &self,
        path: &str,
        state: &FileState,
        checked: std::io::Result<FileCheck>,
    ) -> Result<Option<FileState>, Why> {
        let p = Path::new(path);
        match checked {
            Ok(FileCheck::Unchanged) => Ok(None),
            Ok(FileCheck::Refreshed(new)) => Ok(Some(new)),
            Ok(FileCheck::Changed(new)) => Err(Why::Changed {
                what: self.display_path(p),
                from: state.describe(),
                to: new.describe(),
            }),
            Err(e) => Err(Why::Changed {
                what: self.display_path(p),
                from: state.describe(),
                to: format!("unreadable: {e}"),
            }),
        }
    }

    /// A listing or glob input listed again now: what it is called for people, and its
    /// state (or why it cannot be listed). `None` for other inputs.
    pub(crate) fn listing_now(
        &self,
        input: &Input,
    ) -> Option<(String, Result<ListingState, String>)> {
        match input {
            Input::Dir { path, .. } => {
                let p = Path::new(path);
                let now = trove_fingerprint::list_dir(p)
                    .map(|(_, state)| state)
                    .map_err(|e| e.to_string());
                Some((format!("{}/ listing", self.display_path(p)), now))
            }
            Input::Glob {
                root,
                pattern,
                mode,
                ..
            } => {
                let exclude = vec![self.store_root().to_path_buf()];
                let now = trove_fingerprint::glob_with(Path::new(root), pattern, &exclude, *mode)
                    .map(|listing| listing.state)
                    .map_err(|e| e.to_string());
                Some((format!("glob {pattern}"), now))
            }
            Input::Tree { path, .. } => {
                let p = Path::new(path);
                let exclude = vec![self.store_root().to_path_buf()];
                let now = trove_fingerprint::tree(p, &exclude)
                    .map(|listing| listing.state)
                    .map_err(|e| e.to_string());
                Some((format!("{}/ tree", self.display_path(p)), now))
            }
            _ => None,
        }
    }

    /// Whether a listing or glob input lists differently now.
    pub(crate) fn listing_changed(&self, input: &Input) -> bool {
        match (input, self.listing_now(input)) {
            (
                Input::Dir { state, .. } | Input::Glob { state, .. } | Input::Tree { state, .. },
                Some((_, Ok(now))),
            ) => now != *state,
            (_, Some((_, Err(_)))) => true,
            _ => false,
        }
    }

    pub(crate) fn validate_dependency(
        &self,
        recipe: &str,
        args_display: &str,
        args: &[u8],
        output: &Digest,
        mode: Mode,
    ) -> Result<Option<Why>, Error> {
        if mode == Mode::Gc {
            return Ok(None);
        }
        let what = crate::words::object_label(recipe, args_display);
        let Some(erased) = self.erased(recipe) else {
            return Ok(Some(Why::Unverifiable(format!(
                "dependency recipe `{recipe}` is not registered with this engine"
            ))));
        };
        if mode == Mode::Peek {
            return Ok(match erased.peek(self, args)? {
                (Residency::InMemory | Residency::OnDisk | Residency::Shared, Some(d))
                    if d == *output =>
                {
                    None
                }
                (Residency::Stale(why), _) => Some(Why::Dependency {
                    what,
                    because: Some(Box::new(why)),
                }),
                _ => Some(Why::Dependency {
                    what,
                    because: None,
                }),
            });
        }
        let resolved = erased.resolve(self, args);
        if let Ok((_, reason @ (Reason::Built(_) | Reason::Waited(_)))) = &resolved {
            crate::cx::DEPENDENCIES_BUILT
                .with(|d| d.borrow_mut().push((what.clone(), reason.clone())));
        }
        match resolved {
            Ok((digest, _)) if digest == *output => Ok(None),
            Ok((_, reason)) => Ok(Some(Why::Dependency {
                what,
                because: match reason {
                    Reason::Built(w) | Reason::Waited(w) => Some(Box::new(w)),
                    _ => None,
                },
            })),
            Err(e) => Err(e),
        }
    }
}

/// The inputs of a trace no watcher can vouch for (env vars, volatile sources, embedded
/// source digests, external inputs): a watched memory hit checks only these.
pub(crate) fn cheap_inputs(trace: &Trace) -> Vec<u32> {
    trace
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            matches!(
                i,
                Input::Env { .. }
                    | Input::Volatile { .. }
                    | Input::Code { .. }
                    | Input::External { .. }
            )
        })
        .map(|(index, _)| index as u32)
        .collect()
}

/// Traces with at least this many files have them checked on several threads: `stat`
/// is a system call each, and the kernel answers them in parallel.
pub(crate) const PARALLEL_CHECK_MIN: usize = 256;

/// Checks every file input of a large trace (but the absences `vouched` for) on all cores, ahead of the in-order pass
/// that decides (which then takes each result instead of checking again).
#[allow(clippy::type_complexity)]
pub(crate) fn precheck_files(
    trace: &Trace,
    vouched: &crate::absence::Vouched,
) -> Option<Vec<Option<std::io::Result<FileCheck>>>> {
    let files: Vec<usize> = trace
        .inputs
        .iter()
        .enumerate()
        .filter(|(index, i)| matches!(i, Input::File { .. }) && !vouched.skips(*index))
        .map(|(index, _)| index)
        .collect();
    if files.len() < PARALLEL_CHECK_MIN {
        return None;
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let chunk = files.len().div_ceil(threads);
    let mut results: Vec<Option<std::io::Result<FileCheck>>> =
        (0..trace.inputs.len()).map(|_| None).collect();
    let checked: Vec<Vec<(usize, std::io::Result<FileCheck>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|indices| {
                scope.spawn(move || {
                    indices
                        .iter()
                        .filter_map(|&index| match &trace.inputs[index] {
                            Input::File { path, state, .. } => {
                                Some((index, trove_fingerprint::check_file(state, Path::new(path))))
                            }
                            _ => None,
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (index, result) in checked.into_iter().flatten() {
        results[index] = Some(result);
    }
    Some(results)
}

/// The digest of a recipe's sources as this process sees them.
pub(crate) fn current_code_digest(sources: &crate::Sources) -> Option<Digest> {
    let root = Path::new(sources.root);
    if !sources.is_none() && root.is_dir() {
        return trove_fingerprint::source_digest(root, sources.globs).ok();
    }
    sources.embedded.and_then(Digest::from_hex)
}
