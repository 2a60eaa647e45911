//! Finding the configuration, opening the engine, and looking recipes up by name.

use std::path::{Path, PathBuf};

use trove::{CommandRecipe, Engine};
use trove_config::Config;

use crate::failure::Failure;

/// The configuration and the engine opened on it.
pub(crate) struct Project {
    /// The configuration in use.
    pub(crate) config: Config,
    /// The engine, with the configuration's command recipes registered.
    pub(crate) engine: Engine,
}

/// Loads the configuration: `--config` / `TROVE_CONFIG`, else `trove.ron` in the working
/// directory or its nearest parent, else the embedded default in the working directory.
pub(crate) fn load_config(flag: Option<&Path>) -> Result<Config, Failure> {
    if let Some(path) = flag {
        return Ok(Config::load(path)?);
    }
    let cwd = working_dir()?;
    match Config::discover(&cwd)? {
        Some(path) => Ok(Config::load(&path)?),
        None => {
            tracing::info!(
                "no trove.ron found; using the default configuration in {}",
                cwd.display()
            );
            Ok(Config::default_in(&cwd))
        }
    }
}

/// Loads the configuration and opens the engine on it.
pub(crate) fn open(flag: Option<&Path>) -> Result<Project, Failure> {
    let config = load_config(flag)?;
    let engine = Engine::open(config.clone())?;
    Ok(Project { config, engine })
}

fn working_dir() -> Result<PathBuf, Failure> {
    std::env::current_dir()
        .map_err(|e| Failure::other(format!("error: cannot read the working directory: {e}")))
}

/// How to name the configuration in messages.
pub(crate) fn config_label(config: &Config) -> String {
    match &config.file {
        Some(file) => file.display().to_string(),
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
        let mut message = format!("error: no recipe `{name}` in {}", config_label(config));
        if known.is_empty() {
            message.push_str(
                "\nhint: no recipes are configured; add one under `recipes: { ... }` in trove.ron",
            );
        } else {
            if let Some(best) = closest(name, &known) {
                message.push_str(&format!("\nhint: did you mean `{best}`?"));
            }
            message.push_str(&format!("\nhint: known recipes: {}", known.join(", ")));
        }
        return Err(Failure::usage(message));
    };
    if rc.command.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(Failure::usage(format!(
            "error: recipe `{name}` has no `command`: it is built by library code, not by the command line\n\
             hint: ask for it through the Rust engine, or give it `command: [\"program\", \"arg\"]` in {}",
            config_label(config)
        )));
    }
    Ok(CommandRecipe::new(name, rc.clone()))
}

/// The known name closest to `name`, if close enough to be a typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= (k.chars().count().max(name.chars().count()) / 3).max(1))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{closest, edit_distance};

    #[test]
    fn a_typo_suggests_the_nearest_recipe() {
        assert_eq!(edit_distance("prcies", "prices"), 2);
        assert_eq!(closest("price", &["calendar", "prices"]), Some("prices"));
        assert_eq!(closest("zzz", &["calendar", "prices"]), None);
    }
}
