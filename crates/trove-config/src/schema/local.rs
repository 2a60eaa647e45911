//! `trove.local.ron`: a developer's own version counters over the shared file, and
//! whether this machine writes to the shared tier (`shared: (read_only: ..)`).

use super::{RECIPE_KEYS, Reader, TOP_KEYS, suggest};
use crate::config::Config;
use crate::error::ConfigError;
use crate::syntax::{Kind, Node};

const LOCAL_TOP_KEYS: &[&str] = &["versions", "recipes", "shared"];
const LOCAL_RECIPE_KEYS: &[&str] = &["versions"];
const LOCAL_SHARED_KEYS: &[&str] = &["read_only"];
const LOCAL_HINT: &str = "trove.local.ron may only contain `versions: { \"name\": 1 }`, \
                          `recipes: { \"recipe\": (versions: { \"name\": 1 }) }` and \
                          `shared: (read_only: true)`";

impl Reader<'_> {
    /// Applies `trove.local.ron` to `config`: counters replace the main file's per name.
    pub(crate) fn local(&self, root: &Node, config: &mut Config) -> Result<(), ConfigError> {
        let example = "(versions: { \"alice\": 4 })";
        let forbidden = Some((TOP_KEYS, LOCAL_HINT));
        for field in self.fields(root, "trove.local.ron", LOCAL_TOP_KEYS, forbidden, example)? {
            let Some(value) = field.value.unwrap_option() else {
                continue;
            };
            if field.key == "versions" {
                config
                    .versions
                    .extend(self.counters(value, "in trove.local.ron")?);
                continue;
            }
            if field.key == "shared" {
                self.local_shared(value, config)?;
                continue;
            }
            let recipes_example = "recipes: { \"prices\": (versions: { \"alice\": 2 }) }";
            let Kind::Map(entries) = &value.kind else {
                return Err(self.error(
                    value.start,
                    format!(
                        "`recipes` must be a map `{{\"name\": (..)}}`, found {}",
                        value.describe()
                    ),
                    format!("for example: {recipes_example}"),
                ));
            };
            for (key, value) in entries {
                let name = self.recipe_name(key, recipes_example)?;
                let Some(recipe) = config.recipes.get_mut(name) else {
                    let hint = match suggest(name, config.recipes.keys().map(String::as_str)) {
                        Some(close) => format!("did you mean \"{close}\"?"),
                        None => format!(
                            "trove.local.ron can only bump counters of recipes in trove.ron; add \"{name}\": () to its `recipes`"
                        ),
                    };
                    return Err(self.error(
                        key.start,
                        format!("trove.local.ron names unknown recipe \"{name}\""),
                        hint,
                    ));
                };
                let context = format!("recipe \"{name}\"");
                let forbidden = Some((RECIPE_KEYS, LOCAL_HINT));
                for f in self.fields(
                    value,
                    &context,
                    LOCAL_RECIPE_KEYS,
                    forbidden,
                    recipes_example,
                )? {
                    if let Some(v) = f.value.unwrap_option() {
                        recipe
                            .versions
                            .extend(self.counters(v, &format!("in {context}"))?);
                    }
                }
            }
        }
        Ok(())
    }

    /// `shared: (read_only: true)`: this machine reads the shared tier `trove.ron`
    /// configures and never uploads (or, `false`, uploads: CI's own overlay).
    fn local_shared(&self, node: &Node, config: &mut Config) -> Result<(), ConfigError> {
        let example = "shared: (read_only: true)";
        let forbidden = Some((super::shared::SHARED_KEYS, LOCAL_HINT));
        for f in self.fields(
            node,
            "`shared` in trove.local.ron",
            LOCAL_SHARED_KEYS,
            forbidden,
            example,
        )? {
            let Some(v) = f.value.unwrap_option() else {
                continue;
            };
            let read_only = self.boolean(v, "`read_only`", example)?;
            let Some(shared) = config.shared.as_mut() else {
                return Err(self.error(
                    f.key_start,
                    "trove.local.ron sets `shared`, and trove.ron configures no shared tier"
                        .to_owned(),
                    "configure `shared: (url: ..)` in trove.ron first".to_owned(),
                ));
            };
            shared.read_only = read_only;
        }
        Ok(())
    }
}
