//! Finding the configuration, opening the engine, and looking recipes up by name.

use std::path::{Path, PathBuf};

use trove::{CommandRecipe, Config, Engine};

use crate::failure::{Diagnostic, Failure};

/// The configuration and the engine opened on it.
pub(crate) struct Project {
    /// The configuration in use.
    pub(crate) config: Config,
    /// The engine, with the configuration's command recipes registered.
    pub(crate) engine: Engine,
}

/// Where the configuration was looked for, and what was found.
pub(crate) struct Search {
    /// The working directory.
    cwd: PathBuf,
    /// The configuration file given (`--config`, `TROVE_CONFIG`) or found upward.
    file: Option<PathBuf>,
    /// Whether `file` was found upward rather than given.
    discovered: bool,
}

impl Search {
    /// Looks for the configuration: `--config` / `TROVE_CONFIG`, else `trove.ron` in the
    /// working directory or its nearest parent.
    pub(crate) fn run(flag: Option<&Path>) -> Result<Search, Failure> {
        let cwd = working_dir()?;
        let (file, discovered) = match flag {
            Some(path) => (Some(path.to_owned()), false),
            None => (Config::discover(&cwd)?, true),
        };
        Ok(Search {
            cwd,
            file,
            discovered,
        })
    }

    /// The configuration found, or the embedded default in the working directory.
    pub(crate) fn load(&self) -> Result<Config, Failure> {
        match &self.file {
            // A file found by looking upward is named in errors relative to its project
            // (`trove.ron:3:7`); one given with --config as it was given.
            Some(path) if self.discovered => Config::load(path).map_err(|mut e| {
                if let Some(dir) = path.parent()
                    && let Ok(rel) = e.file.strip_prefix(dir)
                {
                    e.file = rel.to_owned();
                }
                Failure::from(e)
            }),
            Some(path) => Ok(Config::load(path)?),
            None => {
                tracing::info!(
                    "no trove.ron found; using the default configuration in {}",
                    self.cwd.display()
                );
                Ok(Config::default_in(&self.cwd))
            }
        }
    }

    /// Hints saying where trove looked, for when it found no configuration.
    fn hints(&self) -> [String; 2] {
        let searched: Vec<String> = std::path::absolute(&self.cwd)
            .unwrap_or_else(|_| self.cwd.clone())
            .ancestors()
            .map(|dir| dir.display().to_string())
            .collect();
        [
            format!("looked for {} in {}", trove::FILE_NAME, searched.join(", ")),
            "run trove inside a project, or name its configuration with --config PATH (or TROVE_CONFIG)"
                .to_owned(),
        ]
    }
}

/// Loads the configuration: `--config` / `TROVE_CONFIG`, else `trove.ron` in the working
/// directory or its nearest parent, else the embedded default in the working directory.
pub(crate) fn load_config(flag: Option<&Path>) -> Result<Config, Failure> {
    Search::run(flag)?.load()
}

/// Loads the configuration and opens the engine on it (creating the store if needed).
pub(crate) fn open(flag: Option<&Path>) -> Result<Project, Failure> {
    let config = load_config(flag)?;
    let engine = Engine::open(config.clone())?;
    Ok(Project { config, engine })
}

/// The configuration, for a command that cannot do without one (`why`, `recipes`,
/// `run`): without a `trove.ron` it is a usage error that says where trove looked.
pub(crate) fn require_config(flag: Option<&Path>, command: &str) -> Result<Config, Failure> {
    let search = Search::run(flag)?;
    if search.file.is_none() {
        return Err(Failure::usage(
            Diagnostic::error(format!(
                "`trove {command}` needs a configuration, and no {} was found",
                trove::FILE_NAME
            ))
            .hints(search.hints()),
        ));
    }
    search.load()
}

/// [`require_config`], then the engine on it.
pub(crate) fn open_configured(flag: Option<&Path>, command: &str) -> Result<Project, Failure> {
    let config = require_config(flag, command)?;
    let engine = Engine::open(config.clone())?;
    Ok(Project { config, engine })
}

/// The project for a command that only looks at the store (`status`, `graph`, `verify`,
/// `gc`): it never creates one. `None`, after a note on stderr, when there is no store to
/// look at — no configuration and no `.trove` in the working directory, or a configured
/// store that nothing has been built into yet — and the command reports an empty one.
pub(crate) fn open_existing(flag: Option<&Path>) -> Result<Option<Project>, Failure> {
    let search = Search::run(flag)?;
    let config = search.load()?;
    if config.store.path.exists() {
        let engine = Engine::open(config.clone())?;
        return Ok(Some(Project { config, engine }));
    }
    if search.file.is_none() {
        Diagnostic::note(format!(
            "no {} here and no store at {}: nothing to show",
            trove::FILE_NAME,
            config.store.path.display()
        ))
        .hints(search.hints())
        .eprint();
    } else {
        Diagnostic::note(format!(
            "nothing has been stored yet: the store {} does not exist ({})",
            crate::human::in_project(&config.store.path, &config.dir),
            config_label(&config)
        ))
        .eprint();
    }
    Ok(None)
}

fn working_dir() -> Result<PathBuf, Failure> {
    std::env::current_dir().map_err(|e| {
        Failure::other(Diagnostic::error(format!(
            "cannot read the working directory: {e}"
        )))
    })
}

/// How to name the configuration in messages: its file relative to the project.
pub(crate) fn config_label(config: &Config) -> String {
    match &config.file {
        Some(file) => crate::human::in_project(file, &config.dir),
        None => format!(
            "the default configuration (no trove.ron in {} or its parents)",
            config.dir.display()
        ),
    }
}

/// The command recipe `name`, or a usage failure saying what exists.
pub(crate) fn command_recipe(config: &Config, name: &str) -> Result<CommandRecipe, Failure> {
    let Some(rc) = config.recipe(name) else {
        let known: Vec<&str> = config.recipes.keys().map(String::as_str).collect();
        let mut error =
            Diagnostic::error(format!("no recipe `{name}` in {}", config_label(config)));
        if known.is_empty() {
            error = error
                .hint("no recipes are configured; add one under `recipes: { ... }` in trove.ron");
        } else {
            if let Some(best) = trove::did_you_mean(name, known.iter().copied()) {
                error = error.hint(format!("did you mean `{best}`?"));
            }
            error = error.hint(format!("known recipes: {}", known.join(", ")));
        }
        return Err(Failure::usage(error));
    };
    if rc.command.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(Failure::usage(
            Diagnostic::error(format!(
                "recipe `{name}` has no `command`: it is built by library code, not by the command line"
            ))
            .hint(format!(
                "ask for it through the Rust engine, or give it `command: [\"program\", \"arg\"]` in {}",
                config_label(config)
            )),
        ));
    }
    Ok(CommandRecipe::new(name, rc.clone()))
}
