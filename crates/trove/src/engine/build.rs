//! Building an object: a tracked context seeded with the declared inputs, the build, the
//! libraries it mapped, and the stability check that decides whether it may be stored.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, RwLock};

use trove_fingerprint::{Digest, GlobMode};
use trove_store::KeyLock;

use crate::clock::now_ms;
use crate::codec;
use crate::cx::Cx;
use crate::engine::publish::Pending;
use crate::engine::verify::cheap_inputs;
use crate::engine::{Engine, FlightValue, bump};
use crate::memory::{Meta, Object};
use crate::nested::BUILDING;
use crate::reason::{Reason, Why};
use crate::trace::{Input, Role};
use crate::words::args_for_people;
use crate::{Error, Recipe};

/// What a leader returns: the flight's value, and the object still to be stored.
pub(crate) type Built<T> = (FlightValue, Option<Pending<T>>);

pub(crate) struct BuildingGuard;

impl BuildingGuard {
    pub(crate) fn enter(key: Digest, recipe: &str) -> Result<BuildingGuard, Error> {
        BUILDING.with(|b| {
            let mut b = b.borrow_mut();
            if b.contains(&key) {
                return Err(Error::Cycle {
                    recipe: recipe.to_owned(),
                });
            }
            b.push(key);
            Ok(BuildingGuard)
        })
    }
}

impl Drop for BuildingGuard {
    fn drop(&mut self) {
        BUILDING.with(|b| {
            b.borrow_mut().pop();
        });
    }
}

impl Engine {
    /// Builds the object and puts it in the memory tier. Storing it is left to the
    /// returned [`Pending`], so the caller can wake the flight's waiters first.
    pub(crate) fn build<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
        key: Digest,
        args_display: String,
        why: Why,
        lock: Option<KeyLock>,
    ) -> Result<Built<R::Output>, Error> {
        let _guard = BuildingGuard::enter(key, recipe.name())?;
        let created_ms = now_ms();
        let started = crate::clock::BuildStart::now(self.store_root());
        let mut cx = Cx::new(self.clone(), self.inner.root.clone());
        if let Some(previous) = self.newest_trace(key) {
            cx.hint_from(&previous);
        }
        cx.trace.counters = (*self.counters_for(recipe.name())).clone();
        cx.trace.definition = self
            .definition_of(recipe.name(), &recipe.definition())
            .map()
            .clone();
        let build_error = |source| Error::Build {
            recipe: recipe.name().to_owned(),
            args: args_for_people(&args_display),
            source,
        };
        self.track_declared(&mut cx, recipe.name(), &recipe.sources())
            .map_err(build_error)?;
        let libraries_before = crate::modules::mapped_libraries();
        tracing::debug!(recipe = recipe.name(), args = %args_display, "building: {why}");
        bump(&self.inner.stats.builds, 1);
        let value = recipe.build(&mut cx, args).map_err(build_error)?;
        self.track_mapped_libraries(&mut cx, recipe.name(), &libraries_before)
            .map_err(build_error)?;
        // Read before the check: a waiter that asked after this may have followed a
        // change the check did not see, and asks again (see `Engine::answer`).
        let checked = std::time::Instant::now();
        let unstable = match cx.unstable.take() {
            Some(path) => Some(path),
            None => self.changed_during_build(&cx, &started),
        };
        let reason = Reason::Built(why);
        let value = Arc::new(value);
        let encoded = codec::encode(&*value).map_err(|msg| {
            build_error(crate::BuildError::Failed(format!(
                "cannot encode the object: {msg}"
            )))
        })?;
        // A file-backed object was hashed as it was finished; bytes are hashed here.
        let (codec_id, size, digest) = (encoded.codec(), encoded.weight(), encoded.digest());
        // Postcard bytes are kept for publishing; raw bytes and files are the object's own.
        let encoded = encoded.into_owned();
        let object: Object = value.clone();
        if let Some(path) = unstable {
            tracing::warn!(
                recipe = recipe.name(),
                "{} changed while the object was built (or was saved in the clock tick it \
                 started in): returning the object without storing it",
                self.display_path(Path::new(&path))
            );
            return Ok(((object, reason, digest, args_display), None));
        }
        // The trace is complete: its absences are grouped under their directories, and
        // the directory inputs its files imply are left out.
        crate::absence::group_absences(&mut cx.trace);
        crate::absence::leave_out_implied_dirs(&mut cx.trace);
        let trace_bytes = cx.trace.encode();
        let meta = self.remember(
            key,
            object.clone(),
            Meta {
                recipe: recipe.name().to_owned(),
                args: args_display.clone(),
                recipe_version: recipe.version(),
                created_ms,
                digest,
                variant: AtomicI64::new(0),
                size,
                cheap: cheap_inputs(&cx.trace),
                trace: RwLock::new(Arc::new(cx.trace)),
                fresh: AtomicBool::new(false),
                watchable: AtomicBool::new(false),
                unwatched: RwLock::new(Arc::new(Vec::new())),
            },
        );
        let pending = Pending {
            value,
            encoded,
            codec: codec_id,
            digest,
            trace: trace_bytes,
            created_ms,
            args: args_display.clone(),
            reason: reason.to_string(),
            meta,
            lock,
            claim: None,
            checked,
        };
        Ok(((object, reason, digest, args_display), Some(pending)))
    }

    /// Tracks the shared libraries the build mapped. A library this recipe loaded in an
    /// earlier build and that is still mapped does not show up as new, so it is tracked
    /// again; and when the file at a library's path is no longer the mapped one (it was
    /// replaced after it was loaded), the build ran code that is not on disk: the result
    /// is returned but not stored.
    pub(crate) fn track_mapped_libraries(
        &self,
        cx: &mut Cx,
        recipe: &str,
        before: &BTreeMap<String, u64>,
    ) -> Result<(), crate::BuildError> {
        let after = crate::modules::mapped_libraries();
        let mut used: Vec<String> = after
            .keys()
            .filter(|p| !before.contains_key(*p))
            .cloned()
            .collect();
        {
            let mut loaded = self
                .inner
                .loaded_libraries
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let seen = loaded.entry(recipe.to_owned()).or_default();
            seen.extend(used.iter().cloned());
            used.extend(
                seen.iter()
                    .filter(|p| after.contains_key(*p) && before.contains_key(*p))
                    .cloned(),
            );
        }
        for lib in &used {
            let path = Path::new(lib);
            cx.track_file_as(Role::Module, path)?;
            let on_disk = trove_fingerprint::Stat::of(path)
                .ok()
                .flatten()
                .map(|s| s.ino);
            if on_disk != after.get(lib).copied() {
                cx.unstable = Some(lib.clone());
            }
        }
        Ok(())
    }

    /// Declared inputs (the configuration's `inputs` and `env`) and the recipe's sources.
    pub(crate) fn track_declared(
        &self,
        cx: &mut Cx,
        recipe: &str,
        sources: &crate::Sources,
    ) -> Result<(), crate::BuildError> {
        if let Some(rc) = self.inner.config.recipes.get(recipe) {
            let root = self.inner.root.clone();
            // What the configuration names is matched literally (.gitignore never hides
            // a file the user wrote down); a directory covers its whole tree.
            for pattern in &rc.inputs {
                let path = root.join(pattern);
                if pattern.contains(['*', '?', '[', '{']) {
                    cx.glob_in(&root, pattern, GlobMode::Literal, Role::Data)?;
                } else if path.is_dir() {
                    cx.track_tree(&path)?;
                } else {
                    cx.track_file_as(Role::Data, &path)?;
                }
            }
            for name in &rc.env {
                cx.env(name);
            }
        }
        if !sources.is_none() {
            let root = Path::new(sources.root);
            if root.is_dir() {
                for pattern in sources.globs {
                    cx.glob_in(root, pattern, GlobMode::Discovery, Role::Source)?;
                }
            } else if let Some(d) = sources.embedded.and_then(Digest::from_hex) {
                cx.trace.push(Input::Code { digest: d });
            }
        }
        Ok(())
    }

    /// Whether any input changed while the build ran, so the build may have seen a mix of
    /// old and new states and its result must not be stored (it is still returned):
    ///
    /// - every file is stat'ed again: a difference from its fingerprint, or an absent file
    ///   that now exists, means it changed after it was recorded;
    /// - a file fingerprinted only after the work that read it (a depfile's) vouches for
    ///   what the build saw only if it was not modified at or after the build started
    ///   (`started`, on the clocks file times are stamped with);
    /// - a directory listed only after the work that listed it (a traced command's)
    ///   vouches for what the build saw only if neither it nor an entry may have changed
    ///   at or after the build started (the command's own changes left out, see
    ///   `Cx::read_dir_late`), and it was still there;
    /// - other listings and globs are listed again.
    pub(crate) fn changed_during_build(
        &self,
        cx: &Cx,
        started: &crate::clock::BuildStart,
    ) -> Option<String> {
        use trove_fingerprint::{FileState, Stat};
        let late = &cx.late;
        for input in &cx.trace.inputs {
            // Listed after the command: changed if anything in it may have changed since
            // the build started (or it is gone). Listing it once more would only see what
            // changed since it was listed, which the next check of the object sees anyway.
            if let Input::Dir { path, .. } = input
                && let Some(changed) = cx.late_listings.get(path)
            {
                if changed.is_none_or(|changed| started.listing_maybe_after(&changed)) {
                    return Some(path.clone());
                }
                continue;
            }
            match input {
                Input::File { path, state, .. } => {
                    let now = Stat::of(Path::new(path));
                    let changed = match (state, &now) {
                        (FileState::Present { stat, .. }, Ok(Some(now))) => {
                            now != stat || (late.contains(path) && started.maybe_after(now))
                        }
                        (FileState::Absent, Ok(None)) => false,
                        (FileState::NotAFile { kind }, Ok(Some(now))) => now.kind != *kind,
                        _ => true,
                    };
                    if changed {
                        return Some(path.clone());
                    }
                }
                Input::Absences { dir, names, .. } => {
                    let appeared = crate::absence::members(names)
                        .map(|name| crate::absence::member_path(dir, name))
                        .find(|path| !matches!(Stat::of(Path::new(path)), Ok(None)));
                    if appeared.is_some() {
                        return appeared;
                    }
                }
                Input::Dir { path, .. }
                | Input::Glob { root: path, .. }
                | Input::Tree { path, .. }
                    if self.listing_changed(input) =>
                {
                    return Some(path.clone());
                }
                _ => {}
            }
        }
        None
    }
}
