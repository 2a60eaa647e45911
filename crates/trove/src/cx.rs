//! The tracked build context.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use trove_fingerprint::{FileState, GlobMode, read_file};

use crate::engine::Engine;
use crate::trace::{Input, Role, Trace};
use crate::{BuildError, Recipe};

thread_local! {
    /// Dependencies built (or waited for) by the builds on this thread since the current
    /// top-level request began: `Served::dependencies`.
    pub(crate) static DEPENDENCIES_BUILT: std::cell::RefCell<Vec<(String, crate::Reason)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// What a recipe reads its inputs through. Every call records the input and the state it
/// had, so the object is served again only while all of them are unchanged.
pub struct Cx {
    pub(crate) engine: Engine,
    pub(crate) root: PathBuf,
    pub(crate) trace: Trace,
    /// Set when an input changed while it was read: the result is returned, not stored.
    pub(crate) unstable: Option<String>,
    /// Files fingerprinted only after the work that read them was done (a depfile's, a
    /// traced command's): their fingerprint vouches for what the build saw only if they
    /// were not modified after the build started.
    pub(crate) late: Vec<String>,
    /// Directories listed only after the work that listed them was done (a traced
    /// command's), by path, with the latest change their listing could have seen
    /// (`None`: gone by then). Their listing is what the build saw only if none of it
    /// changed after the build started (`Engine::changed_during_build`).
    pub(crate) late_listings: std::collections::HashMap<String, Option<trove_fingerprint::Change>>,
    /// Fingerprints a previous build of this key recorded (see `crate::reuse`).
    pub(crate) hints: std::collections::HashMap<String, FileState>,
}

/// A module loaded by [`Cx::load_module`].
#[derive(Debug)]
pub enum Module {
    /// A shared library, loaded.
    Library(libloading::Library),
    /// A script or other non-library module: its bytes.
    Script(Vec<u8>),
}

impl Cx {
    pub(crate) fn new(engine: Engine, root: PathBuf) -> Cx {
        Cx {
            engine,
            root,
            trace: Trace::default(),
            unstable: None,
            late: Vec::new(),
            late_listings: std::collections::HashMap::new(),
            hints: std::collections::HashMap::new(),
        }
    }

    /// The absolute path of `path` (relative paths are relative to the engine's root).
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }

    fn record_file(&mut self, role: Role, path: &Path, state: FileState, stable: bool) {
        if !stable && matches!(state, FileState::Present { .. }) {
            self.unstable = Some(path.display().to_string());
        }
        self.trace.push(Input::File {
            role,
            path: path.to_string_lossy().into_owned(),
            state,
        });
    }

    fn read_as(&mut self, role: Role, path: &Path) -> Result<Option<Vec<u8>>, BuildError> {
        let abs = self.resolve(path);
        let (bytes, state, stable) = read_file(&abs).map_err(|source| BuildError::Io {
            path: abs.clone(),
            source,
        })?;
        let present = matches!(state, FileState::Present { .. });
        if present {
            // Exactly the bytes returned were hashed; never a reused fingerprint.
            self.engine.count_hashed(1);
            if stable {
                let key = abs.to_string_lossy();
                self.engine.inner.file_states.learn(&key, &state);
            }
        }
        let not_a_file = matches!(state, FileState::NotAFile { .. });
        self.record_file(role, &abs, state, stable);
        if not_a_file {
            return Err(BuildError::Io {
                path: abs,
                source: std::io::Error::other("not a regular file"),
            });
        }
        Ok(present.then_some(bytes))
    }

    /// Reads a file whole, tracked. A missing file is recorded too (creating it later
    /// invalidates) and returned as an error.
    pub fn read(&mut self, path: impl AsRef<Path>) -> Result<Vec<u8>, BuildError> {
        let path = path.as_ref();
        self.read_as(Role::Data, path)?
            .ok_or_else(|| BuildError::Io {
                path: self.resolve(path),
                source: std::io::ErrorKind::NotFound.into(),
            })
    }

    /// Reads a UTF-8 file whole, tracked.
    pub fn read_to_string(&mut self, path: impl AsRef<Path>) -> Result<String, BuildError> {
        let path = path.as_ref();
        let bytes = self.read(path)?;
        String::from_utf8(bytes).map_err(|e| BuildError::Io {
            path: self.resolve(path),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// Reads a file that may be absent: `Ok(None)` when it is, and its absence is tracked.
    pub fn try_read(&mut self, path: impl AsRef<Path>) -> Result<Option<Vec<u8>>, BuildError> {
        self.read_as(Role::Data, path.as_ref())
    }

    /// Opens a file for streaming, tracked: its content is fingerprinted first, and if it
    /// changes before the build ends the result is not stored.
    pub fn open(&mut self, path: impl AsRef<Path>) -> Result<File, BuildError> {
        let abs = self.resolve(path);
        let state = self.track_file_as(Role::Data, &abs)?;
        // Only a regular file is opened: opening a FIFO for reading would wait for a
        // writer forever. Its state is recorded all the same.
        if !matches!(state, FileState::Present { .. }) {
            return Err(BuildError::Io {
                path: abs,
                source: std::io::Error::other(format!("not a regular file ({})", state.describe())),
            });
        }
        File::open(&abs).map_err(|source| BuildError::Io { path: abs, source })
    }

    /// Records a file (or its absence) as an input without reading it into the build:
    /// for files a build hands to something else (a command, a library).
    pub fn track_file(&mut self, path: impl AsRef<Path>) -> Result<(), BuildError> {
        let abs = self.resolve(path);
        self.track_file_as(Role::Data, &abs).map(drop)
    }

    /// Fingerprints and records a file; returns the state recorded.
    pub(crate) fn track_file_as(
        &mut self,
        role: Role,
        abs: &Path,
    ) -> Result<FileState, BuildError> {
        self.track_files_as(&[(role, abs)])
            .pop()
            .unwrap_or_else(|| Err(BuildError::Failed("no fingerprint".into())))
    }

    /// Fingerprints and records files, in order (`crate::reuse`: a recorded state reused
    /// where it provably still holds, the rest hashed); returns each
    /// file's state recorded, or why it could not be fingerprinted (then nothing is
    /// recorded for it).
    pub(crate) fn track_files_as(
        &mut self,
        files: &[(Role, &Path)],
    ) -> Vec<Result<FileState, BuildError>> {
        let paths: Vec<&Path> = files.iter().map(|(_, p)| *p).collect();
        let taken = self.fingerprint_all(&paths);
        files
            .iter()
            .zip(taken)
            .map(|((role, abs), taken)| {
                let taken = taken.map_err(|source| BuildError::Io {
                    path: abs.to_path_buf(),
                    source,
                })?;
                self.record_file(*role, abs, taken.state.clone(), taken.stable);
                Ok(taken.state)
            })
            .collect()
    }

    /// [`Cx::track_files_as`] of files in one role; the first failure is the error.
    fn track_paths(&mut self, role: Role, paths: &[PathBuf]) -> Result<(), BuildError> {
        let files: Vec<(Role, &Path)> = paths.iter().map(|p| (role, p.as_path())).collect();
        self.track_files_as(&files)
            .into_iter()
            .try_for_each(|r| r.map(drop))
    }

    /// Gives the build the file fingerprints a previous build of the same key recorded,
    /// to reuse where the files provably did not change.
    pub(crate) fn hint_from(&mut self, trace: &Trace) {
        for input in &trace.inputs {
            if let Input::File {
                path,
                state: state @ FileState::Present { .. },
                ..
            } = input
            {
                self.hints.insert(path.clone(), state.clone());
            }
        }
    }

    /// Lists a directory, tracked: a name appearing or disappearing invalidates. Returns
    /// sorted names, directories with a trailing `/`; an absent directory lists nothing.
    pub fn read_dir(&mut self, path: impl AsRef<Path>) -> Result<Vec<String>, BuildError> {
        let abs = self.resolve(path);
        let (names, state) =
            trove_fingerprint::list_dir(&abs).map_err(|source| BuildError::Io {
                path: abs.clone(),
                source,
            })?;
        self.trace.push(Input::Dir {
            path: abs.to_string_lossy().into_owned(),
            state,
        });
        Ok(names)
    }

    /// Lists `dir` after the work that listed it was done (a traced command's), as
    /// [`Cx::read_dir`] does, noting the latest change the listing could have seen. The
    /// changes the build made itself are left out: an entry for which `own` is true (a
    /// path the command wrote, or one of trove's own) and, when `own_dir` (the command
    /// made, removed, renamed or chmod'ed an entry directly in `dir`), the directory's own
    /// times.
    pub(crate) fn read_dir_late(
        &mut self,
        dir: &Path,
        own: &dyn Fn(&Path) -> bool,
        own_dir: bool,
    ) -> Result<(), BuildError> {
        let (_, state, changed) =
            trove_fingerprint::list_dir_changed(dir, own, own_dir).map_err(|source| {
                BuildError::Io {
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
        let path = dir.to_string_lossy().into_owned();
        self.late_listings.insert(path.clone(), changed);
        self.trace.push(Input::Dir { path, state });
        Ok(())
    }

    /// Matches a glob under the engine's root, honouring `.gitignore`: the set of matches
    /// (each entry's name, kind and mode, directories the pattern matches included) and
    /// each matched file are tracked. Returns the matched files' absolute paths, sorted.
    pub fn glob(&mut self, pattern: &str) -> Result<Vec<PathBuf>, BuildError> {
        let root = self.root.clone();
        self.glob_in(&root, pattern, GlobMode::Discovery, Role::Data)
    }

    /// Matches a glob under `root` in `mode` (literal for what the configuration names,
    /// discovery for what recipe code looks for), tracking the listing and every file.
    pub(crate) fn glob_in(
        &mut self,
        root: &Path,
        pattern: &str,
        mode: GlobMode,
        role: Role,
    ) -> Result<Vec<PathBuf>, BuildError> {
        let exclude = vec![self.engine.store_root().to_path_buf()];
        let listing = trove_fingerprint::glob_with(root, pattern, &exclude, mode)?;
        self.trace.push(Input::Glob {
            root: root.to_string_lossy().into_owned(),
            pattern: pattern.to_owned(),
            mode,
            state: listing.state,
        });
        let paths: Vec<PathBuf> = listing.files.iter().map(|n| root.join(n)).collect();
        self.track_paths(role, &paths)?;
        Ok(paths)
    }

    /// Tracks a directory's whole tree: every name, kind and mode in it, and every file's
    /// content. What a directory named in the configuration's `inputs` means.
    pub fn track_tree(&mut self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, BuildError> {
        let abs = self.resolve(dir);
        let exclude = vec![self.engine.store_root().to_path_buf()];
        let listing = trove_fingerprint::tree(&abs, &exclude)?;
        self.trace.push(Input::Tree {
            path: abs.to_string_lossy().into_owned(),
            state: listing.state,
        });
        let paths: Vec<PathBuf> = listing.files.iter().map(|n| abs.join(n)).collect();
        self.track_paths(Role::Data, &paths)?;
        Ok(paths)
    }

    /// Reads an environment variable, tracked (its absence too).
    pub fn env(&mut self, name: &str) -> Option<String> {
        let value = std::env::var(name).ok();
        self.trace.push(Input::Env {
            name: name.to_owned(),
            value: value.clone(),
        });
        value
    }

    /// Reads a script or other module as bytes, tracked as a module input.
    pub fn load_script(&mut self, path: impl AsRef<Path>) -> Result<Vec<u8>, BuildError> {
        let path = path.as_ref();
        self.read_as(Role::Module, path)?
            .ok_or_else(|| BuildError::Module {
                path: self.resolve(path),
                message: "not found".into(),
            })
    }

    /// Loads a module, tracked: a shared library (`.so`, `.dylib`, `.dll`) is loaded with
    /// `libloading`; anything else is read as a script.
    ///
    /// # Safety
    /// Loading a shared library runs its initialisers and lets the caller call into it;
    /// the same contract as [`libloading::Library::new`] applies.
    pub unsafe fn load_module(&mut self, path: impl AsRef<Path>) -> Result<Module, BuildError> {
        let abs = self.resolve(path);
        let name = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_library = name.ends_with(".so")
            || name.contains(".so.")
            || name.ends_with(".dylib")
            || name.ends_with(".dll");
        if !is_library {
            return self.load_script(&abs).map(Module::Script);
        }
        self.track_file_as(Role::Module, &abs)?;
        // SAFETY: forwarded to the caller by this function's contract.
        let lib = unsafe { libloading::Library::new(&abs) }.map_err(|e| BuildError::Module {
            path: abs.clone(),
            message: e.to_string(),
        })?;
        Ok(Module::Library(lib))
    }

    /// Gets another object, tracked by its output digest: if it is rebuilt but comes out
    /// byte-identical, this object stays valid (early cutoff).
    pub fn get<R: Recipe>(
        &mut self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<Arc<R::Output>, BuildError> {
        self.get_explained(recipe, args).map(|served| served.value)
    }

    /// [`Cx::get`], with how the dependency was served (its reason, key and digest).
    pub fn get_explained<R: Recipe>(
        &mut self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<crate::Served<R::Output>, BuildError> {
        let served = self
            .engine
            .serve(recipe, args)
            .map_err(|e| BuildError::Dependency(Box::new(e)))?;
        if matches!(
            served.reason,
            crate::Reason::Built(_) | crate::Reason::Waited(_)
        ) {
            let label = crate::object_label(recipe.name(), &served.args);
            DEPENDENCIES_BUILT.with(|d| d.borrow_mut().push((label, served.reason.clone())));
        }
        self.trace.push(Input::Object {
            recipe: recipe.name().to_owned(),
            args_display: served.args.clone(),
            args: postcard::to_allocvec(args).unwrap_or_default(),
            key: served.key,
            output: served.digest,
        });
        Ok(served)
    }

    /// Declares a volatile source (a URL, a clock): the object expires `ttl` after it was
    /// built, whatever else holds.
    pub fn volatile(&mut self, name: &str, ttl: Duration) {
        self.trace.push(Input::Volatile {
            name: name.to_owned(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Reads a depfile — one path a line, or the make form compilers write (`gcc -MD -MF`:
    /// `target: prerequisite \` with make's escapes) — and tracks every input it names,
    /// absent ones included; relative paths are relative to `base`. A depfile that cannot
    /// be parsed is an error naming it and the line. The depfile itself is not an input.
    pub fn track_depfile(&mut self, depfile: &Path, base: &Path) -> Result<usize, BuildError> {
        let text = match std::fs::read(depfile) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(BuildError::Io {
                    path: depfile.to_path_buf(),
                    source,
                });
            }
        };
        let paths = crate::depfile::parse(&text).map_err(|e| BuildError::Io {
            path: depfile.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        for p in &paths {
            let abs = if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                base.join(p)
            };
            self.track_file_as(Role::Data, &abs)?;
            self.late.push(abs.to_string_lossy().into_owned());
        }
        Ok(paths.len())
    }
}
