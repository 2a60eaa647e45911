//! The configuration types, the default configuration and the questions asked of one.
//! Obtaining one from files is `load.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;
use crate::paths::absolute;

/// The configuration file trove looks for: `trove.ron`.
pub const FILE_NAME: &str = "trove.ron";

/// The per-developer overlay read beside the configuration file: `trove.local.ron`.
pub const LOCAL_FILE_NAME: &str = "trove.local.ron";

/// Files larger than this (4 MiB) are refused before they are parsed.
pub const MAX_FILE_SIZE: u64 = 4 << 20;

/// A checked configuration: a `trove.ron`, its `trove.local.ron`, and the
/// defaults for every key they leave out.
///
/// ```
/// use std::path::Path;
/// use trove_config::Config;
///
/// let source = r#"(
///     max_age: "30d",
///     recipes: { "prices": (command: ["python3", "tools/prices.py"], inputs: ["data/*.csv"]) },
/// )"#;
/// let config = Config::parse(source, Path::new("/project/trove.ron"))?;
/// assert_eq!(config.store.path, Path::new("/project/.trove"));
/// assert_eq!(config.recipe("prices").unwrap().version, 1);
/// # Ok::<(), trove_config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The `trove.ron` that was read, or `None` for [`Config::default_in`].
    pub file: Option<PathBuf>,
    /// The `trove.local.ron` that was applied, if there was one.
    pub local_file: Option<PathBuf>,
    /// The directory relative paths are resolved against: the file's
    /// directory, or the one given to [`Config::default_in`]. Absolute.
    pub dir: PathBuf,
    /// Where objects are stored and how much room they may take.
    pub store: StoreConfig,
    /// Objects older than this are rebuilt (`max_age: "30d"`); `None` keeps them.
    pub max_age: Option<Duration>,
    /// Global version counters (`versions: { "alice": 3 }`), after the local overlay.
    pub versions: BTreeMap<String, u64>,
    /// What the watcher watches.
    pub watch: WatchConfig,
    /// Whether command recipes run under the syscall tracer (`trace: true`, the default
    /// on Linux), so that what they read is discovered without declarations.
    pub trace: bool,
    /// Globs of paths a traced command may read that are never inputs
    /// (`trace_ignore: ["/var/cache/**"]`).
    pub trace_ignore: Vec<String>,
    /// The team's shared tier (`shared: (url: .., ..)`); `None` when not configured.
    pub shared: Option<SharedSettings>,
    /// Recipes configured by name.
    pub recipes: BTreeMap<String, RecipeConfig>,
}

/// A line and column (1-based) in the configuration file, kept for problems found after
/// it was read (a secret variable that is not set, a URL the shared tier refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Place {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// `shared: (url: "s3://bucket/trove?..", secret_env: "TROVE_SHARED_SECRET", read_only:
/// false, lease: (url: "redis://127.0.0.1:6379", ttl: "30s"), timeout: "2s")`.
///
/// The secret is never in the file: `secret_env` names the environment variable that
/// holds it, read when the tier is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings {
    /// The store: `s3://bucket/prefix?endpoint=..&region=..`, `redis://host:port`,
    /// `webdav://host:port/path`, `file:///path` (a shared file system), `memory://`.
    pub url: String,
    /// The environment variable holding the key that signs records (default
    /// `TROVE_SHARED_SECRET`).
    pub secret_env: String,
    /// Read, never upload (developer machines; CI writes).
    pub read_only: bool,
    /// Leases for building each key once across machines.
    pub lease: Option<LeaseSettings>,
    /// The longest any remote call may hold an answer (default 2 s).
    pub timeout: Duration,
    /// Where `shared` is in the file.
    pub at: Place,
    /// Where its `url` is.
    pub url_at: Place,
    /// Where its `secret_env` is (where `shared` is, when the default is used).
    pub secret_env_at: Place,
}

impl SharedSettings {
    /// The variable read when `secret_env` is not given.
    pub const DEFAULT_SECRET_ENV: &'static str = "TROVE_SHARED_SECRET";
    /// The timeout when `timeout` is not given.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
}

/// `lease: (url: "redis://127.0.0.1:6379", ttl: "30s")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The Redis server: `redis://host:port[/db][?prefix=name]` or `rediss://`.
    pub url: String,
    /// How long a lease lives without renewal (default 30 s).
    pub ttl: Duration,
    /// Where its `url` is.
    pub url_at: Place,
}

impl LeaseSettings {
    /// The ttl when `ttl` is not given.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
}

/// `store: (path: ".trove", max_size: "20GiB", variants: 4)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The store directory, absolute (default `<dir>/.trove`).
    pub path: PathBuf,
    /// The size garbage collection shrinks the store to, in bytes; `None` for no limit.
    pub max_size: Option<u64>,
    /// How many stored builds (variants) one key keeps, at least 1 (default
    /// [`StoreConfig::DEFAULT_VARIANTS`]): one per branch switched between, so switching
    /// back serves instead of rebuilding. Beyond it the least recently used is dropped.
    pub variants: usize,
}

impl StoreConfig {
    /// The number of variants a key keeps when the configuration does not say: 4.
    pub const DEFAULT_VARIANTS: usize = 4;
}

/// `watch: (roots: ["src", "data"], debounce_ms: 100)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Directories to watch, absolute (default: the configuration's directory).
    pub roots: Vec<PathBuf>,
    /// How long to wait for a burst of file events to settle (default 100 ms).
    pub debounce: Duration,
}

/// One entry of `recipes: { "name": (..) }`.
///
/// With `command` it is a command recipe: the command's stdout is the object.
/// Without, it configures a recipe built by Rust code; its counters, expiry,
/// inputs and environment variables still apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeConfig {
    /// The recipe's name (the key in `recipes`).
    pub name: String,
    /// The program and its arguments, for command recipes.
    pub command: Option<Vec<String>>,
    /// Glob patterns of files the recipe reads, relative to the configuration's directory.
    pub inputs: Vec<String>,
    /// Names of environment variables the recipe reads.
    pub env: Vec<String>,
    /// Objects this one needs, built first: `"calendar"` or `("fx", ["EUR"])`.
    pub needs: Vec<Need>,
    /// Version counters for this recipe, after the local overlay.
    pub versions: BTreeMap<String, u64>,
    /// Objects older than this are rebuilt; overrides [`Config::max_age`].
    pub max_age: Option<Duration>,
    /// A command that must succeed before a stored object is served.
    pub check: Option<Vec<String>>,
    /// The recipe's version; bump it when its meaning changes (default 1).
    pub version: u32,
    /// `trace: false` runs this recipe's command without the syscall tracer; `None`
    /// follows the global `trace`.
    pub trace: Option<bool>,
}

/// One entry of a recipe's `needs`: another recipe, and the arguments its object is
/// built with (`("fx", ["EUR"])`; none for a plain `"calendar"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Need {
    /// The needed recipe.
    pub recipe: String,
    /// Its arguments, as a command recipe's extra words.
    pub args: Vec<String>,
}

impl Need {
    /// A need without arguments.
    pub fn new(recipe: &str) -> Need {
        Need {
            recipe: recipe.to_owned(),
            args: Vec::new(),
        }
    }
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.recipe)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

impl RecipeConfig {
    /// Whether this recipe's command runs under the tracer, given the global setting.
    pub fn traced(&self, global: bool) -> bool {
        self.trace.unwrap_or(global)
    }

    /// A recipe with every key at its default.
    pub(crate) fn new(name: &str) -> RecipeConfig {
        RecipeConfig {
            name: name.to_owned(),
            command: None,
            inputs: Vec::new(),
            env: Vec::new(),
            needs: Vec::new(),
            versions: BTreeMap::new(),
            max_age: None,
            check: None,
            version: 1,
            trace: None,
        }
    }
}

impl Config {
    /// The configuration used when there is no file: the store in
    /// `dir/.trove`, `dir` watched, no counters, no expiry, no recipes.
    pub fn default_in(dir: &Path) -> Config {
        let dir = absolute(dir);
        Config {
            file: None,
            local_file: None,
            store: StoreConfig {
                path: dir.join(".trove"),
                max_size: None,
                variants: StoreConfig::DEFAULT_VARIANTS,
            },
            max_age: None,
            versions: BTreeMap::new(),
            watch: WatchConfig {
                roots: vec![dir.clone()],
                debounce: Duration::from_millis(100),
            },
            trace: true,
            trace_ignore: Vec::new(),
            shared: None,
            recipes: BTreeMap::new(),
            dir,
        }
    }

    /// A problem with the configuration found after it was read, at `place` in its file
    /// (the secret variable `shared.secret_env` names is not set, say).
    pub fn error_at(&self, place: Place, message: String, hint: Option<String>) -> ConfigError {
        ConfigError {
            file: self
                .file
                .clone()
                .unwrap_or_else(|| self.dir.join(FILE_NAME)),
            line: place.line,
            column: place.column,
            message,
            hint,
        }
    }

    /// The recipe configured under `name`.
    pub fn recipe(&self, name: &str) -> Option<&RecipeConfig> {
        self.recipes.get(name)
    }

    /// `name` and everything it needs, transitively, dependencies first and
    /// `name` last; each recipe once. A name with no entry yields just itself.
    ///
    /// ```
    /// # use std::path::Path;
    /// let source = r#"(recipes: {
    ///     "a": (needs: ["b", "c"]), "b": (needs: ["c"]), "c": (),
    /// })"#;
    /// let config = trove_config::Config::parse(source, Path::new("/p/trove.ron"))?;
    /// assert_eq!(config.needs_order("a"), ["c", "b", "a"]);
    /// # Ok::<(), trove_config::ConfigError>(())
    /// ```
    pub fn needs_order(&self, name: &str) -> Vec<String> {
        fn visit<'c>(
            config: &'c Config,
            name: &'c str,
            seen: &mut BTreeSet<&'c str>,
            out: &mut Vec<String>,
        ) {
            // Cycles are refused when the configuration is read; `seen` also
            // stops a hand-built one from recursing forever.
            if !seen.insert(name) {
                return;
            }
            if let Some(recipe) = config.recipes.get(name) {
                for need in &recipe.needs {
                    visit(config, &need.recipe, seen, out);
                }
            }
            out.push(name.to_owned());
        }
        let mut out = Vec::new();
        visit(self, name, &mut BTreeSet::new(), &mut out);
        out
    }
}
