//! [`Engine::watch_stale`]: a typed stream of the stored objects that really go stale, for
//! `trove watch` and for any program that wants to react to changes.
//!
//! A file event only nominates candidates (the stored objects reading a changed path, and
//! their dependents); each candidate is then validated the way `explain` does it (a
//! prediction that builds nothing), and only those whose validation now fails are
//! reported. A `touch` or an editor saving the same bytes under a new inode is not a
//! change; an edit is, and the reason names the input that differs.

mod pass;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use trove_config::{Config, ConfigError};
use trove_fingerprint::{Digest, encode, key_of_encoded};
use trove_watch::{WatchEvent, WatchOptions, Watcher};

use crate::engine::Engine;
use crate::reason::Why;
use crate::{Error, Recipe};

/// The arguments of a stored object, as the store keeps them: the JSON encoding of the
/// typed arguments. For a command recipe they are the command's extra words: after
/// `trove run prices eu 2024` the stored JSON is `["eu","2024"]`, [`words`](Self::words)
/// gives `vec!["eu", "2024"]` back and `Display` shows `eu 2024`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredArgs {
    json: String,
}

impl StoredArgs {
    pub(crate) fn new(json: String) -> StoredArgs {
        StoredArgs { json }
    }

    /// The JSON text as stored.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The arguments decoded as `T`, if the stored JSON is a `T`. To get arguments a
    /// recipe can be asked with, prefer [`StaleEvent::args_for`], which also checks that
    /// they make the object's key.
    pub fn decode<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.json).ok()
    }

    /// A command recipe's words (`trove run RECIPE WORDS..`), if the arguments are a
    /// list of strings.
    pub fn words(&self) -> Option<Vec<String>> {
        self.decode()
    }
}

/// For people: a command recipe's words joined by spaces, nothing for none, the JSON
/// otherwise.
impl fmt::Display for StoredArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::words::args_for_people(&self.json))
    }
}

/// Serialized as the JSON value itself (a list of words for a command recipe), or as a
/// string when the stored text is not JSON.
impl Serialize for StoredArgs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<serde_json::Value>(&self.json) {
            Ok(value) => value.serialize(serializer),
            Err(_) => serializer.serialize_str(&self.json),
        }
    }
}

/// A stored object whose validation now fails: a request would rebuild it, because of
/// `why`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StaleEvent {
    /// The recipe's name.
    pub recipe: String,
    /// Its arguments, as stored.
    pub args: StoredArgs,
    /// The object's key.
    pub key: Digest,
    /// Why a request would rebuild it: the input that differs (`data/fx.csv changed
    /// (blake3 1f3a.. -> 9c2e..)`), or the dependency that does.
    pub why: Why,
}

impl StaleEvent {
    /// The object for people: `prices eu 2024`.
    pub fn label(&self) -> String {
        crate::words::object_label(&self.recipe, self.args.json())
    }

    /// The typed arguments to ask `recipe` for this object again (to rebuild it), checked
    /// to make exactly this object's key: an error if `recipe` has another name or the
    /// stored arguments do not decode to arguments making the same key.
    ///
    /// ```no_run
    /// # fn rebuild(engine: &trove::Engine, event: &trove::StaleEvent) -> Result<(), trove::Error> {
    /// let rc = engine.config().recipe(&event.recipe).expect("configured").clone();
    /// let command = trove::CommandRecipe::new(&event.recipe, rc);
    /// let words: Vec<String> = event.args_for(&command)?;
    /// let served = engine.get_explained(&command, &words)?;
    /// println!("{}: {}", event.label(), served.reason);
    /// # Ok(()) }
    /// ```
    pub fn args_for<R: Recipe>(&self, recipe: &R) -> Result<R::Args, Error> {
        let label = self.label();
        if recipe.name() != self.recipe {
            return Err(Error::WrongRecipe {
                object: label,
                recipe: self.recipe.clone(),
                given: recipe.name().to_owned(),
            });
        }
        let args: R::Args =
            serde_json::from_str(self.args.json()).map_err(|e| Error::StoredArgs {
                object: label.clone(),
                problem: format!("do not decode: {e}"),
            })?;
        let encoded = encode(&args).map_err(|source| Error::Encode {
            recipe: self.recipe.clone(),
            source,
        })?;
        if key_of_encoded(&self.recipe, &encoded) != self.key {
            return Err(Error::StoredArgs {
                object: label,
                problem: "do not make the object's key again".to_owned(),
            });
        }
        Ok(args)
    }
}

/// What a [`StaleStream`] yields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WatchUpdate {
    /// A stored object went stale (objects come in dependency order: an object after the
    /// ones it depends on).
    Stale(StaleEvent),
    /// Changes may have been missed (the OS dropped events, a `.gitignore` changed what
    /// is watched): every stored object is validated again, and the ones found stale
    /// follow this update.
    Rescan {
        /// Why, for people.
        reason: String,
    },
    /// The configuration file (or its `trove.local.ron`) changed and the new one is in
    /// use: [`StaleStream::engine`] runs on it. Objects it makes stale (a recipe's
    /// version, a counter) follow this update.
    ConfigReloaded {
        /// The configuration file.
        path: PathBuf,
    },
    /// The configuration file changed but cannot be used; the previous configuration
    /// stays in use.
    ConfigRejected {
        /// What is wrong, with file, line and column when it has a place.
        error: ConfigError,
    },
}

/// A stored object known to be stale: reported (or stale when the stream started), so it
/// is not reported again for the same reason.
struct Known {
    /// `(row id, created)` of the key's newest variant when it was judged.
    newest: (i64, i64),
    why: String,
}

/// The stream returned by [`Engine::watch_stale`]. Blocking: [`recv`](Self::recv) and
/// [`recv_timeout`](Self::recv_timeout) do the validation on the calling thread; the
/// watcher's own thread only queues file events. Also an (endless) iterator.
pub struct StaleStream {
    engine: Engine,
    watcher: Watcher,
    /// Kept so the channel never disconnects while the stream lives, and for restarting
    /// the watcher when a reloaded configuration watches other roots.
    sender: Sender<WatchEvent>,
    events: Receiver<WatchEvent>,
    /// `(canonical root, configured root)` where the two spellings differ.
    aliases: Vec<(PathBuf, PathBuf)>,
    /// The configuration file and its local overlay, as the watcher reports them.
    config_files: Vec<PathBuf>,
    /// Set while the configuration file on disk is one that was rejected.
    rejected: bool,
    known: HashMap<[u8; 32], Known>,
    unwatched: Vec<PathBuf>,
    pending: VecDeque<WatchUpdate>,
}

impl fmt::Debug for StaleStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleStream")
            .field("roots", &self.watcher.roots())
            .field("unwatched", &self.unwatched)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Watches the configuration's `watch.roots` (and its configuration file) and yields
    /// the stored objects that go stale, each with the reason a request would rebuild
    /// it. A file event only nominates the stored objects reading the changed path, and
    /// their dependents; each is validated as [`Engine::explain`] would (nothing is
    /// built), and reported only if its validation now fails and it was not already
    /// stale for the same reason. Objects already stale when the stream starts are not
    /// reported until their reason changes.
    ///
    /// While the stream runs, the configuration file is what it runs on: when the file
    /// (or its `trove.local.ron`) says something new, including between this engine's
    /// opening and this call, the new configuration is used from then on, by an engine of
    /// its own ([`StaleStream::engine`]: default [`Options`](crate::Options), and the
    /// recipes this engine had registered besides the command recipes), and the objects
    /// it makes stale are reported. One that cannot be used is reported and the previous
    /// one stays in use.
    ///
    /// Needs the disk tier (the stream judges stored objects).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), trove::Error> {
    /// let engine = trove::Engine::open(trove::Config::load("trove.ron".as_ref()).unwrap())?;
    /// let mut stream = engine.watch_stale()?;
    /// for path in stream.unwatched() {
    ///     eprintln!("not watched: {}", path.display());
    /// }
    /// loop {
    ///     if let trove::WatchUpdate::Stale(event) = stream.recv()? {
    ///         println!("stale: {}: {}", event.label(), event.why);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn watch_stale(&self) -> Result<StaleStream, Error> {
        self.store()?;
        let (sender, events) = mpsc::channel();
        // The watch is registered before anything is read (salsa's lazy-input pattern):
        // a change made after this line is delivered, so nothing read below can miss one.
        let watcher = start_watcher(self.config(), sender.clone())?;
        let mut stream = StaleStream {
            engine: self.clone(),
            aliases: Vec::new(),
            config_files: Vec::new(),
            watcher,
            sender,
            events,
            rejected: false,
            known: HashMap::new(),
            unwatched: Vec::new(),
            pending: VecDeque::new(),
        };
        stream.spellings();
        // What is stale already is not news.
        stream.refresh(false)?;
        // The configuration file may have changed since this engine read it.
        stream.reload()?;
        Ok(stream)
    }
}

/// Starts a watcher on `config`'s roots and configuration files that queues its events.
fn start_watcher(config: &Config, sender: Sender<WatchEvent>) -> Result<Watcher, Error> {
    let options = WatchOptions {
        roots: config.watch.roots.clone(),
        debounce: config.watch.debounce,
        ignore_dirs: vec![config.store.path.clone()],
        files: config_files(config),
    };
    Ok(Watcher::start(options, move |event| {
        let _ = sender.send(event);
    })?)
}

/// The configuration file and the local overlay beside it (which may not exist yet).
fn config_files(config: &Config) -> Vec<PathBuf> {
    match &config.file {
        Some(file) => vec![
            file.clone(),
            file.with_file_name(trove_config::LOCAL_FILE_NAME),
        ],
        None => Vec::new(),
    }
}

/// What decides the watcher: a reloaded configuration that changes none of it keeps the
/// running one.
fn watch_setup(config: &Config) -> (&[PathBuf], Duration, &Path, Vec<PathBuf>) {
    (
        &config.watch.roots,
        config.watch.debounce,
        &config.store.path,
        config_files(config),
    )
}

impl StaleStream {
    /// Blocks until the next update.
    pub fn recv(&mut self) -> Result<WatchUpdate, Error> {
        loop {
            if let Some(update) = self.recv_until(None)? {
                return Ok(update);
            }
        }
    }

    /// Waits at most `timeout` for the next update; `Ok(None)` when none came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<WatchUpdate>, Error> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// The engine the stream validates with: the one it was started from, or the one a
    /// reloaded configuration opened ([`WatchUpdate::ConfigReloaded`]). Rebuild with it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The watched roots, canonical.
    pub fn roots(&self) -> &[PathBuf] {
        self.watcher.roots()
    }

    /// The paths in the project that stored objects read (files, directories, glob
    /// roots) and that lie outside every watched root, sorted: a change to one is not
    /// seen, so the objects reading it are not reported when it changes. Computed when
    /// the stream starts and after each reload or rescan.
    pub fn unwatched(&self) -> &[PathBuf] {
        &self.unwatched
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Option<WatchUpdate>, Error> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Ok(Some(update));
            }
            let first = match deadline {
                None => match self.events.recv() {
                    Ok(event) => event,
                    // The stream holds a sender: the channel cannot disconnect.
                    Err(_) => return Ok(None),
                },
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.events.recv_timeout(left) {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                            return Ok(None);
                        }
                    }
                }
            };
            // Whatever else is queued already joins this batch: one validation pass.
            let mut batch = vec![first];
            batch.extend(self.events.try_iter());
            self.handle(batch)?;
        }
    }

    fn handle(&mut self, batch: Vec<WatchEvent>) -> Result<(), Error> {
        let mut paths = Vec::new();
        let mut rescan = None;
        for event in batch {
            match event {
                WatchEvent::Changed(changed) => paths.extend(changed),
                WatchEvent::Rescan { reason } => rescan = Some(reason),
            }
        }
        paths.sort();
        paths.dedup();
        if paths.iter().any(|p| self.config_files.contains(p)) && self.reload()? {
            // A reload validates everything: the other paths are covered.
            return Ok(());
        }
        if let Some(reason) = rescan {
            self.pending.push_back(WatchUpdate::Rescan { reason });
            return self.refresh(true);
        }
        self.changed(&paths)
    }

    /// Reads the configuration file again; if it now says something else, runs on it
    /// (restarting the watcher when the roots changed) and validates every object.
    /// Returns whether a new configuration was taken.
    fn reload(&mut self) -> Result<bool, Error> {
        let Some(path) = self.engine.config().file.clone() else {
            return Ok(false);
        };
        let config = match Config::load(&path) {
            Ok(config) => config,
            Err(error) => {
                self.rejected = true;
                self.pending
                    .push_back(WatchUpdate::ConfigRejected { error });
                return Ok(false);
            }
        };
        if config == *self.engine.config() {
            // Reformatted, touched, or put back as it was after a rejected edit.
            if std::mem::take(&mut self.rejected) {
                self.pending.push_back(WatchUpdate::ConfigReloaded { path });
            }
            return Ok(false);
        }
        let watcher = if watch_setup(&config) == watch_setup(self.engine.config()) {
            None
        } else {
            match start_watcher(&config, self.sender.clone()) {
                Ok(watcher) => Some(watcher),
                Err(e) => {
                    self.rejected = true;
                    let error = ConfigError {
                        file: path,
                        line: 0,
                        column: 0,
                        message: e.to_string(),
                        hint: Some(
                            "every root in `watch: (roots: [...])` must be an existing directory"
                                .into(),
                        ),
                    };
                    self.pending
                        .push_back(WatchUpdate::ConfigRejected { error });
                    return Ok(false);
                }
            }
        };
        let engine = Engine::open(config)?;
        engine.adopt_library_recipes(&self.engine);
        self.engine = engine;
        if let Some(watcher) = watcher {
            // The new watch runs before the old one stops: no change falls between.
            self.watcher = watcher;
            self.spellings();
        }
        self.rejected = false;
        self.pending.push_back(WatchUpdate::ConfigReloaded { path });
        self.refresh(true)?;
        Ok(true)
    }

    /// Learns how the watcher spells the configured roots and files.
    fn spellings(&mut self) {
        let config = self.engine.config();
        self.aliases = self
            .watcher
            .roots()
            .iter()
            .cloned()
            .zip(config.watch.roots.iter().cloned())
            .filter(|(canonical, given)| canonical != given)
            .collect();
        self.config_files = config_files(config)
            .iter()
            .map(|file| canonical_file(file))
            .collect();
    }
}

impl Iterator for StaleStream {
    type Item = Result<WatchUpdate, Error>;

    /// The next update (blocking); never `None`.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.recv())
    }
}

/// A file as the watcher reports it: its directory canonical, joined with its name.
fn canonical_file(file: &Path) -> PathBuf {
    match (file.parent(), file.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map_or_else(|_| file.to_path_buf(), |dir| dir.join(name)),
        _ => file.to_path_buf(),
    }
}
