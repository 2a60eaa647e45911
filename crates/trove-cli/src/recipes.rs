//! `trove recipes`: the configuration's recipes, for people and for scripts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use trove::RecipeConfig;

use crate::failure::{Diagnostic, Failure};
use crate::project;

/// One recipe as `trove recipes --json` prints it.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub(crate) struct RecipeInfo {
    /// The recipe's name.
    pub(crate) name: String,
    /// The command and its arguments; `None` for a recipe built by library code.
    pub(crate) command: Option<Vec<String>>,
    /// Declared input globs, relative to the project.
    pub(crate) inputs: Vec<String>,
    /// Declared environment variables.
    pub(crate) env: Vec<String>,
    /// Recipes built first.
    pub(crate) needs: Vec<String>,
    /// The recipe's version.
    pub(crate) version: u32,
    /// Version counters of this recipe alone (after `trove.local.ron`).
    pub(crate) versions: BTreeMap<String, u64>,
    /// `max_age` for this recipe, as written (`1d`), if it has its own.
    pub(crate) max_age: Option<String>,
    /// The check command, if any.
    pub(crate) check: Option<Vec<String>>,
}

impl RecipeInfo {
    fn of(rc: &RecipeConfig) -> RecipeInfo {
        RecipeInfo {
            name: rc.name.clone(),
            command: rc.command.clone(),
            inputs: rc.inputs.clone(),
            env: rc.env.clone(),
            needs: need_names(rc),
            version: rc.version,
            versions: rc.versions.clone(),
            max_age: rc.max_age.map(trove::format_duration),
            check: rc.check.clone(),
        }
    }
}

/// The names of the recipes `rc` needs, in the order written.
fn need_names(rc: &RecipeConfig) -> Vec<String> {
    rc.needs.iter().map(|need| need.to_string()).collect()
}

/// Lists the recipes of the configuration (which must exist: exit 2 otherwise).
pub(crate) fn recipes(config_flag: Option<&Path>, json: bool) -> Result<u8, Failure> {
    let config = project::require_config(config_flag, "recipes")?;
    let infos: Vec<RecipeInfo> = config.recipes.values().map(RecipeInfo::of).collect();
    if json {
        crate::output::emit_json(&infos)?;
        return Ok(0);
    }
    if infos.is_empty() {
        Diagnostic::note(format!("no recipes in {}", project::config_label(&config)))
            .hint("add one under `recipes: { ... }`")
            .eprint();
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(render(&infos).as_bytes())?;
    out.flush()?;
    Ok(0)
}

/// The recipes as text: a header line each, then one indented line per declared key.
fn render(infos: &[RecipeInfo]) -> String {
    let mut text = String::new();
    for info in infos {
        text.push_str(&format!("{} (version {})\n", info.name, info.version));
        let mut line = |key: &str, value: String| {
            if !value.is_empty() {
                text.push_str(&format!("  {:<9} {value}\n", format!("{key}:")));
            }
        };
        line(
            "command",
            info.command
                .as_deref()
                .map_or_else(|| "(none: built by library code)".to_owned(), shell_words),
        );
        line("inputs", info.inputs.join(" "));
        line("env", info.env.join(" "));
        line("needs", info.needs.join(" "));
        let versions: Vec<String> = info
            .versions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line("versions", versions.join(" "));
        line("max_age", info.max_age.clone().unwrap_or_default());
        line(
            "check",
            info.check.as_deref().map(shell_words).unwrap_or_default(),
        );
    }
    text
}

/// Words as a shell would need them typed: plain words as they are, others single-quoted.
fn shell_words(words: &[String]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./=:@%+,-".contains(c))
    };
    words
        .iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::shell_words;

    #[test]
    fn commands_are_shown_as_a_shell_would_need_them() {
        let words = |ws: &[&str]| ws.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            shell_words(&words(&["python3", "tools/prices.py"])),
            "python3 tools/prices.py"
        );
        assert_eq!(
            shell_words(&words(&["sh", "-c", "test -s \"$X\"", "it's", ""])),
            r#"sh -c 'test -s "$X"' 'it'\''s' ''"#
        );
    }
}
