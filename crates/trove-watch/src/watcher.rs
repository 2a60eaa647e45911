//! The watcher: notify's recommended backend, behind the full debouncer (for people) or
//! delivering every event at once (for the engine's invalidation), with trove's filter in
//! front of the consumer.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use ignore::WalkBuilder;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache};

use crate::filter::{Filter, GITIGNORE};

/// The shortest debounce accepted: the debouncer polls every quarter of it.
const MIN_DEBOUNCE: Duration = Duration::from_millis(10);

/// What to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Directories watched recursively. Each must exist; symlinks are resolved.
    pub roots: Vec<PathBuf>,
    /// How long a path must stay quiet before its change is delivered; changes within
    /// one window arrive in one batch. At least 10 ms (shorter values are raised), except
    /// `Duration::ZERO`: every event is delivered as soon as the OS reports it (what an
    /// engine invalidating its memory tier wants: no window in which a change is known to
    /// the OS but not yet to the consumer).
    pub debounce: Duration,
    /// Directories whose contents are never reported, such as the store. Relative paths
    /// are taken from the current directory; they need not exist yet.
    pub ignore_dirs: Vec<PathBuf>,
    /// Single files watched besides the roots, such as a configuration file: a change to
    /// one (an edit, or another file renamed over it) is delivered even when it lies
    /// outside every root. Its directory must exist and is watched without recursion;
    /// the file itself need not exist yet. `.gitignore` does not apply to them.
    pub files: Vec<PathBuf>,
}

impl WatchOptions {
    /// Watch `roots` with a 100 ms debounce and no ignored directories.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        WatchOptions {
            roots,
            debounce: Duration::from_millis(100),
            ignore_dirs: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// What the watcher delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// These paths were created, modified, removed or renamed (both sides of a rename).
    /// Absolute, under a canonical root, deduplicated and sorted. A directory that was
    /// created or moved in is followed by the paths inside it; one that was removed or
    /// moved out may be named alone.
    Changed(Vec<PathBuf>),
    /// Changes may have been lost (an error from the OS or notify, a queue overflow, a
    /// `.gitignore` that changed what is watched): the consumer must validate everything
    /// it trusted the watcher for.
    Rescan {
        /// Why, for people.
        reason: String,
    },
}

/// Errors starting a [`Watcher`].
#[derive(thiserror::Error, Debug)]
pub enum WatchError {
    /// A root does not exist, cannot be resolved, or is not a directory.
    #[error("cannot watch {}: {source}", path.display())]
    Root {
        /// The root as given in the options.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// notify could not create the watcher, or could not watch a root (for instance
    /// the OS limit on watches was reached).
    #[error("cannot watch {}: {source}", path.display())]
    Notify {
        /// The canonical root being watched, or the first root (empty if there is none)
        /// when creating the watcher itself failed.
        path: PathBuf,
        /// notify's error.
        source: notify::Error,
    },
}

enum Backend {
    Debounced(Debouncer<RecommendedWatcher, RecommendedCache>),
    Immediate(RecommendedWatcher),
}

/// A running watcher. Events go to the callback given to [`Watcher::start`], on the
/// watcher's own thread. Dropping the watcher stops watching; once the drop returns the
/// callback is not called again and has been dropped.
pub struct Watcher {
    roots: Vec<PathBuf>,
    filter: Arc<RwLock<Filter>>,
    backend: Option<Backend>,
    /// The thread that runs the callback, known after its first call.
    callback_thread: Arc<OnceLock<ThreadId>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching `opts.roots` recursively and returns once every root is watched:
    /// a change made after `start` returns is delivered, so the caller may read its
    /// inputs and then trust the watcher for them.
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use trove_watch::{WatchEvent, WatchOptions, Watcher};
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let mut opts = WatchOptions::new(vec!["data".into()]);
    /// opts.ignore_dirs.push(".trove".into());
    /// let watcher = Watcher::start(opts, move |event| {
    ///     let _ = tx.send(event);
    /// })?;
    /// while let Ok(event) = rx.recv_timeout(Duration::from_secs(60)) {
    ///     match event {
    ///         WatchEvent::Changed(paths) => println!("changed: {paths:?}"),
    ///         WatchEvent::Rescan { reason } => println!("check everything: {reason}"),
    ///     }
    /// }
    /// drop(watcher);
    /// # Ok::<(), trove_watch::WatchError>(())
    /// ```
    pub fn start(
        opts: WatchOptions,
        on_event: impl FnMut(WatchEvent) + Send + 'static,
    ) -> Result<Watcher, WatchError> {
        let roots = opts
            .roots
            .iter()
            .map(|root| canonical_root(root))
            .collect::<Result<Vec<_>, _>>()?;
        let files = opts
            .files
            .iter()
            .map(|file| canonical_file(file))
            .collect::<Result<Vec<_>, _>>()?;
        let ignore_dirs = opts.ignore_dirs.iter().map(|dir| resolve(dir)).collect();
        let filter = Arc::new(RwLock::new(Filter::load(
            &roots,
            ignore_dirs,
            files.clone(),
        )));
        let callback_thread = Arc::new(OnceLock::new());

        let mut deliver = Deliver {
            filter: Arc::clone(&filter),
            on_event,
            callback_thread: Arc::clone(&callback_thread),
        };
        let notify_error = |source| WatchError::Notify {
            path: opts.roots.first().cloned().unwrap_or_default(),
            source,
        };
        let mut backend = if opts.debounce.is_zero() {
            let watcher =
                notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
                    let batch = result
                        .map(|event| vec![DebouncedEvent::new(event, Instant::now())])
                        .map_err(|error| vec![error]);
                    deliver.handle(batch);
                })
                .map_err(notify_error)?;
            Backend::Immediate(watcher)
        } else {
            let debouncer = notify_debouncer_full::new_debouncer(
                opts.debounce.max(MIN_DEBOUNCE),
                None,
                move |result: DebounceEventResult| deliver.handle(result),
            )
            .map_err(notify_error)?;
            Backend::Debounced(debouncer)
        };
        for root in &roots {
            // notify's `watch` returns once the recursive watch is registered.
            let registered = match &mut backend {
                Backend::Debounced(d) => d.watch(root, RecursiveMode::Recursive),
                Backend::Immediate(w) => w.watch(root, RecursiveMode::Recursive),
            };
            registered.map_err(|source| WatchError::Notify {
                path: root.clone(),
                source,
            })?;
        }
        // A file's directory is watched on its own only when no root covers it already
        // (watching a directory twice would change how its watch recurses).
        let mut file_dirs: Vec<&Path> = files
            .iter()
            .filter_map(|file| file.parent())
            .filter(|dir| !roots.iter().any(|root| dir.starts_with(root)))
            .collect();
        file_dirs.sort();
        file_dirs.dedup();
        for dir in file_dirs {
            let registered = match &mut backend {
                Backend::Debounced(d) => d.watch(dir, RecursiveMode::NonRecursive),
                Backend::Immediate(w) => w.watch(dir, RecursiveMode::NonRecursive),
            };
            registered.map_err(|source| WatchError::Notify {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        tracing::debug!(roots = ?roots, "watching");
        Ok(Watcher {
            roots,
            filter,
            backend: Some(backend),
            callback_thread,
        })
    }

    /// The watched roots, canonicalized, in the order given.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Whether a change to `path` would be delivered: it is one of the single
    /// [`files`](WatchOptions::files), or it is under a watched root, not in an ignored
    /// directory or `.git`, and not excluded by a `.gitignore`. The engine
    /// trusts the watcher only for inputs it covers.
    ///
    /// `path` is compared as given: pass absolute paths under [`roots`](Self::roots)
    /// (a path through a symlink to a root is not covered).
    pub fn covers(&self, path: &Path) -> bool {
        let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
        self.filter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .covers(path, is_dir)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let debouncer = match self.backend.take() {
            None => return,
            // Dropping notify's watcher ends its event thread.
            Some(Backend::Immediate(watcher)) => return drop(watcher),
            Some(Backend::Debounced(debouncer)) => debouncer,
        };
        if self.callback_thread.get() == Some(&thread::current().id()) {
            // Dropped from inside the callback: joining our own thread would deadlock.
            debouncer.stop_nonblocking();
        } else {
            // Waits at most one debouncer tick for the callback thread to finish.
            debouncer.stop();
        }
    }
}

/// Resolves a root to the canonical directory notify will report paths under.
fn canonical_root(root: &Path) -> Result<PathBuf, WatchError> {
    let error = |source| WatchError::Root {
        path: root.to_path_buf(),
        source,
    };
    let canonical = root.canonicalize().map_err(error)?;
    if !canonical.is_dir() {
        return Err(error(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    Ok(canonical)
}

/// Resolves a single watched file to the path notify will report: its directory made
/// canonical (it must exist), joined with its name.
fn canonical_file(file: &Path) -> Result<PathBuf, WatchError> {
    let error = |source| WatchError::Root {
        path: file.to_path_buf(),
        source,
    };
    let absolute = std::path::absolute(file).map_err(error)?;
    let (Some(dir), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return Err(error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    };
    Ok(dir.canonicalize().map_err(error)?.join(name))
}

/// Makes an ignored directory comparable with reported paths: canonical if it exists,
/// else its canonical parent joined with its name, else absolute as spelled.
fn resolve(dir: &Path) -> PathBuf {
    if let Ok(canonical) = dir.canonicalize() {
        return canonical;
    }
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map_or_else(|_| absolute.clone(), |parent| parent.join(name)),
        _ => absolute,
    }
}

/// Turns the debouncer's batches into [`WatchEvent`]s for the consumer.
struct Deliver<F> {
    filter: Arc<RwLock<Filter>>,
    on_event: F,
    callback_thread: Arc<OnceLock<ThreadId>>,
}

impl<F: FnMut(WatchEvent)> Deliver<F> {
    fn handle(&mut self, result: DebounceEventResult) {
        self.callback_thread.get_or_init(|| thread::current().id());
        let events = match result {
            Ok(events) => events,
            Err(errors) => {
                let reason = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return self.rescan(format!("watch error: {reason}"));
            }
        };
        if events.iter().any(|event| event.need_rescan()) {
            return self.rescan("the OS reported that events were lost".to_owned());
        }

        let mut raw = BTreeSet::new();
        let mut new_dirs = Vec::new();
        for event in events.iter().filter(|event| is_change(event)) {
            let may_add_dir = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) | EventKind::Any
            );
            for path in &event.paths {
                if may_add_dir && !matches!(event.kind, EventKind::Create(CreateKind::File)) {
                    new_dirs.push(path.clone());
                }
                raw.insert(path.clone());
            }
        }

        let gitignores: Vec<&PathBuf> = raw
            .iter()
            .filter(|path| path.file_name() == Some(GITIGNORE.as_ref()))
            .collect();
        if !gitignores.is_empty() {
            let mut filter = self.filter.write().unwrap_or_else(PoisonError::into_inner);
            let covered: Vec<&PathBuf> = gitignores
                .into_iter()
                .filter(|path| filter.covers(path, false))
                .collect();
            for path in &covered {
                filter.reload_root_of(path);
            }
            drop(filter);
            if let Some(path) = covered.first() {
                // Paths it used to exclude may have changed unseen.
                return self.rescan(format!("{} changed", path.display()));
            }
        }

        let filter = self.filter.read().unwrap_or_else(PoisonError::into_inner);
        let mut changed: BTreeSet<PathBuf> = raw
            .into_iter()
            .filter(|path| filter.covers(path, path.symlink_metadata().is_ok_and(|m| m.is_dir())))
            .collect();
        // A directory created or moved in brings its contents without an event each
        // (they may even predate the watch on it): report what is inside now.
        for dir in new_dirs {
            if !changed.contains(&dir) || !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                continue;
            }
            for entry in WalkBuilder::new(&dir)
                .standard_filters(false)
                .build()
                .filter_map(Result::ok)
            {
                let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
                if filter.covers(entry.path(), is_dir) {
                    changed.insert(entry.into_path());
                }
            }
        }
        drop(filter);

        if !changed.is_empty() {
            let changed: Vec<PathBuf> = changed.into_iter().collect();
            tracing::debug!(count = changed.len(), "changed");
            (self.on_event)(WatchEvent::Changed(changed));
        }
    }

    fn rescan(&mut self, reason: String) {
        tracing::warn!(%reason, "rescan");
        (self.on_event)(WatchEvent::Rescan { reason });
    }
}

/// Whether an event can mean content or names changed. Opening, reading and closing a
/// file without writing are not changes: the engine reads its inputs to validate them,
/// and reporting those reads would make it validate forever.
fn is_change(event: &DebouncedEvent) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}
