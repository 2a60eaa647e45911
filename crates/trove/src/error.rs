//! The engine's error types: [`Error`] for a request, [`BuildError`] for a build (one
//! nests the other: a build fails when a dependency's request does).

use std::path::PathBuf;
use std::sync::Arc;

/// Why a request could not be answered.
///
/// Matchable, and open to new variants (match with a wildcard arm). A configuration that
/// cannot be loaded converts into it, so one `?` serves both:
///
/// ```no_run
/// fn open() -> Result<trove::Engine, trove::Error> {
///     trove::Engine::open(trove::Config::load("trove.ron".as_ref())?)
/// }
/// match open() {
///     Err(trove::Error::ConfigFile(e)) => eprintln!("{e}"), // file, line, column, hint
///     Err(e) => eprintln!("error: {e}"),
///     Ok(_engine) => {}
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The arguments could not be encoded into a key.
    #[error("recipe `{recipe}`: {source}")]
    Encode {
        /// The recipe.
        recipe: String,
        /// The cause.
        source: trove_fingerprint::EncodeError,
    },
    /// The recipe's build failed; nothing was stored.
    #[error("recipe `{recipe}`{} failed: {source}", if args.is_empty() { String::new() } else { format!(" {args}") })]
    Build {
        /// The recipe.
        recipe: String,
        /// Its arguments, for people (command words joined; empty for none).
        args: String,
        /// The cause.
        source: BuildError,
    },
    /// The build panicked (reported to callers that waited for it).
    #[error("the build of key {key} panicked")]
    Panicked {
        /// Short key.
        key: String,
    },
    /// A recipe asked, directly or not, for the object it is building.
    #[error("dependency cycle: recipe `{recipe}` asked for an object it is itself building")]
    Cycle {
        /// The recipe.
        recipe: String,
    },
    /// Two recipes with one name but different output types.
    #[error("recipe `{recipe}`: the cached object has another type (two recipes share this name?)")]
    TypeMismatch {
        /// The recipe.
        recipe: String,
    },
    /// The store failed in a way that prevents answering.
    #[error(transparent)]
    Store(#[from] trove_store::StoreError),
    /// The disk tier could not be opened; the engine serves from memory and builds.
    #[error("the store at {} cannot be used: {reason}", path.display())]
    StoreUnavailable {
        /// The store's directory.
        path: PathBuf,
        /// Why it could not be opened.
        reason: String,
    },
    /// The configuration file (or its `trove.local.ron`) could not be read or is invalid:
    /// the error names the file, line and column, with a hint. Its display already starts
    /// with `error: `.
    #[error(transparent)]
    ConfigFile(#[from] trove_config::ConfigError),
    /// `trove status --shared`, `trove gc --shared` and their library calls need a
    /// shared tier, and none is configured.
    #[error("no shared tier is configured (`shared:` in trove.ron)")]
    NoSharedTier,
    /// The shared tier could not do what was asked (it is down, refusing, read-only).
    #[error("shared tier: {0}")]
    SharedTier(String),
    /// The watcher could not start.
    #[error(transparent)]
    Watch(#[from] trove_watch::WatchError),
    /// The arguments stored with an object cannot be used: they do not decode into the
    /// recipe's arguments, or they do not make the object's key again (a damaged
    /// record, or one written by another version of the recipe's argument type).
    #[error("{object}: the stored arguments {problem}")]
    StoredArgs {
        /// The object, for people: `recipe `x``, or its recipe and arguments.
        object: String,
        /// What is wrong with them.
        problem: String,
    },
    /// A recipe was given to rebuild an object another recipe made.
    #[error("{object}: recipe `{given}` cannot rebuild an object of recipe `{recipe}`")]
    WrongRecipe {
        /// The object, for people.
        object: String,
        /// The recipe that made it.
        recipe: String,
        /// The recipe given.
        given: String,
    },
    /// An async request's task was cancelled before it answered (its runtime is
    /// shutting down).
    #[error("recipe `{recipe}`: the request was cancelled")]
    Cancelled {
        /// The recipe.
        recipe: String,
    },
    /// A failure another caller met while this one waited for it.
    #[error("{0}")]
    Shared(Arc<Error>),
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Reading a tracked input failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The input.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A glob was malformed or its walk failed.
    #[error(transparent)]
    Glob(#[from] trove_fingerprint::GlobError),
    /// A dependency could not be served.
    #[error("dependency failed: {0}")]
    Dependency(Box<Error>),
    /// The recipe's own failure.
    #[error("{0}")]
    Failed(String),
    /// A command recipe's command could not be started.
    #[error("cannot run `{program}` (in {}): {source}", dir.display())]
    Spawn {
        /// The program, as the configuration names it.
        program: String,
        /// The working directory it was to run in.
        dir: PathBuf,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// A command recipe's command exited unsuccessfully (nothing is cached).
    #[error("`{command}` exited with {}", code.map_or("a signal".to_owned(), |c| format!("code {c}")))]
    CommandFailed {
        /// The command.
        command: String,
        /// Its exit code, `None` when a signal ended it.
        code: Option<i32>,
    },
    /// The build was interrupted (SIGINT or SIGTERM): its command was stopped.
    #[error("interrupted")]
    Interrupted,
    /// The recipe's own error, kept whole so that its caller (and every caller that
    /// waited for the build) can downcast it: the Python package carries the exception
    /// a Python recipe raised this way.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A module could not be loaded.
    #[error("cannot load module {}: {message}", path.display())]
    Module {
        /// The module.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl BuildError {
    /// A recipe's own failure with a message.
    pub fn msg(message: impl std::fmt::Display) -> BuildError {
        BuildError::Failed(message.to_string())
    }
}
