//! From a syntax tree with positions to a checked [`Config`].
//!
//! Every check that can fail names the byte offset of the key or value it is
//! about, so the error can say `trove.ron:7:13`. Numbers, durations, sizes and
//! counters are read in `scalars.rs`; the `trove.local.ron` overlay in `local.rs`.

mod local;
mod needs;
mod scalars;
mod shared;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, RecipeConfig};
use crate::error::ConfigError;
pub(crate) use crate::suggest::did_you_mean as suggest;
use crate::syntax::{Field, Kind, Node};

const TOP_KEYS: &[&str] = &[
    "store",
    "max_age",
    "versions",
    "watch",
    "trace",
    "trace_ignore",
    "shared",
    "recipes",
];
const STORE_KEYS: &[&str] = &["path", "max_size", "variants"];
const WATCH_KEYS: &[&str] = &["roots", "debounce_ms"];
const RECIPE_KEYS: &[&str] = &[
    "command", "inputs", "env", "needs", "versions", "max_age", "check", "version", "trace",
];

/// Reads checked values out of one file's syntax tree.
pub(crate) struct Reader<'a> {
    pub(crate) file: &'a Path,
    pub(crate) src: &'a str,
}

/// Where a recipe's `needs` entries are, for the checks that need every recipe.
pub(super) struct NeedsAt {
    pub(super) recipe: String,
    /// Each entry's name and the byte offset of its string.
    pub(super) entries: Vec<(String, usize)>,
}

impl Reader<'_> {
    fn error(
        &self,
        offset: usize,
        message: String,
        hint: impl Into<Option<String>>,
    ) -> ConfigError {
        ConfigError::at(self.file, self.src, offset, message, hint.into())
    }

    /// The fields of a struct, refusing unknown and repeated keys.
    ///
    /// `context` completes "unknown key `x` in ..." (e.g. `recipe "prices"`);
    /// `forbidden` lists keys that exist elsewhere but not here, with the
    /// hint to give for them.
    fn fields<'n>(
        &self,
        node: &'n Node,
        context: &str,
        known: &[&str],
        forbidden: Option<(&[&str], &str)>,
        example: &str,
    ) -> Result<&'n [Field], ConfigError> {
        let Kind::Struct(fields) = &node.kind else {
            return Err(self.error(
                node.start,
                format!(
                    "{context} must be a struct `(key: value, ..)`, found {}",
                    node.describe()
                ),
                format!("for example: {example}"),
            ));
        };
        for (i, field) in fields.iter().enumerate() {
            if !known.contains(&field.key.as_str()) {
                if let Some((keys, hint)) = forbidden
                    && keys.contains(&field.key.as_str())
                {
                    return Err(self.error(
                        field.key_start,
                        format!("`{}` cannot be set in trove.local.ron", field.key),
                        hint.to_owned(),
                    ));
                }
                return Err(self.error(
                    field.key_start,
                    format!("unknown key `{}` in {context}", field.key),
                    suggest(&field.key, known.iter().copied())
                        .map(|k| format!("did you mean `{k}`?"))
                        .unwrap_or_else(|| format!("known keys: {}", list(known))),
                ));
            }
            if let Some(first) = fields[..i].iter().find(|f| f.key == field.key) {
                let (line, column) = crate::error::line_column(self.src, first.key_start);
                return Err(self.error(
                    field.key_start,
                    format!("`{}` is set twice in {context}", field.key),
                    format!("it is first set at {line}:{column}; remove one of them"),
                ));
            }
        }
        Ok(fields)
    }

    fn string<'n>(
        &self,
        node: &'n Node,
        what: &str,
        example: &str,
    ) -> Result<&'n str, ConfigError> {
        match &node.kind {
            Kind::Str(s) => Ok(s),
            _ => Err(self.error(
                node.start,
                format!("{what} must be a string, found {}", node.describe()),
                format!("for example: {example}"),
            )),
        }
    }

    /// A list of strings, each with its byte offset.
    fn strings<'n>(
        &self,
        node: &'n Node,
        what: &str,
        example: &str,
    ) -> Result<Vec<(&'n str, usize)>, ConfigError> {
        let Kind::List(items) = &node.kind else {
            return Err(self.error(
                node.start,
                format!(
                    "{what} must be a list of strings, found {}",
                    node.describe()
                ),
                format!("for example: {example}"),
            ));
        };
        items
            .iter()
            .map(|item| match &item.kind {
                Kind::Str(s) => Ok((s.as_str(), item.start)),
                _ => Err(self.error(
                    item.start,
                    format!(
                        "{what} must contain only strings, found {}",
                        item.describe()
                    ),
                    format!("for example: {example}"),
                )),
            })
            .collect()
    }

    /// A list of glob patterns, each checked.
    fn globs(&self, node: &Node, what: &str, example: &str) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for (pattern, at) in self.strings(node, what, example)? {
            if let Err(e) = globset::Glob::new(pattern) {
                return Err(self.error(
                    at,
                    format!("invalid glob {pattern:?} in {what}: {}", glob_reason(&e)),
                    "globs look like \"tools/prices.py\", \"data/*.csv\" or \"data/**/*.{csv,tsv}\"; \
                     escape a literal `*`, `?`, `[` or `{` as `[*]`"
                        .to_owned(),
                ));
            }
            out.push(pattern.to_owned());
        }
        Ok(out)
    }

    /// `true` or `false`.
    fn boolean(&self, node: &Node, what: &str, example: &str) -> Result<bool, ConfigError> {
        match node.kind {
            Kind::Bool(b) => Ok(b),
            _ => Err(self.error(
                node.start,
                format!("{what} must be true or false, found {}", node.describe()),
                format!("for example: {example}"),
            )),
        }
    }

    /// A command line: a non-empty list of strings with a non-empty program.
    fn command(&self, node: &Node, what: &str, example: &str) -> Result<Vec<String>, ConfigError> {
        let words = self.strings(node, what, example)?;
        match words.first() {
            None => Err(self.error(
                node.start,
                format!("{what} is empty"),
                format!("give the program and its arguments, for example: {example}"),
            )),
            Some(&("", at)) => Err(self.error(
                at,
                format!("the program name in {what} is empty"),
                format!("for example: {example}"),
            )),
            Some(_) => Ok(words.into_iter().map(|(w, _)| w.to_owned()).collect()),
        }
    }

    /// The main configuration file. Paths stay relative; the caller resolves them.
    pub(crate) fn config(&self, root: &Node, config: &mut Config) -> Result<(), ConfigError> {
        let fields = self.fields(
            root,
            "the configuration",
            TOP_KEYS,
            None,
            "(max_age: \"30d\")",
        )?;
        let mut needs = Vec::new();
        for field in fields {
            let Some(value) = field.value.unwrap_option() else {
                continue;
            };
            match field.key.as_str() {
                "store" => {
                    let example = "store: (path: \".trove\", max_size: \"20GiB\", variants: 4)";
                    for f in self.fields(value, "`store`", STORE_KEYS, None, example)? {
                        let Some(v) = f.value.unwrap_option() else {
                            continue;
                        };
                        match f.key.as_str() {
                            "path" => {
                                config.store.path =
                                    self.string(v, "`path`", "path: \".trove\"")?.into();
                            }
                            "max_size" => config.store.max_size = Some(self.size(v, "max_size")?),
                            _ => config.store.variants = self.variants(v)?,
                        }
                    }
                }
                "max_age" => config.max_age = Some(self.duration(value, "max_age")?),
                "versions" => config.versions = self.counters(value, "in the configuration")?,
                "watch" => {
                    let example = "watch: (roots: [\"src\", \"data\"], debounce_ms: 100)";
                    for f in self.fields(value, "`watch`", WATCH_KEYS, None, example)? {
                        let Some(v) = f.value.unwrap_option() else {
                            continue;
                        };
                        match f.key.as_str() {
                            "roots" => {
                                config.watch.roots = self
                                    .strings(v, "`roots`", "roots: [\"src\", \"data\"]")?
                                    .into_iter()
                                    .map(|(root, _)| root.into())
                                    .collect();
                            }
                            _ => {
                                let ms =
                                    self.uint(v, "`debounce_ms`", u64::MAX, "debounce_ms: 100")?;
                                config.watch.debounce = Duration::from_millis(ms);
                            }
                        }
                    }
                }
                "trace" => config.trace = self.boolean(value, "`trace`", "trace: false")?,
                "trace_ignore" => {
                    config.trace_ignore =
                        self.globs(value, "`trace_ignore`", "trace_ignore: [\"/var/cache/**\"]")?;
                }
                "shared" => config.shared = Some(self.shared(value)?),
                _ => self.recipes(value, config, &mut needs)?,
            }
        }
        self.check_needs(config, &needs)
    }

    fn recipes(
        &self,
        node: &Node,
        config: &mut Config,
        needs: &mut Vec<NeedsAt>,
    ) -> Result<(), ConfigError> {
        const EXAMPLE: &str =
            "recipes: { \"prices\": (command: [\"python3\", \"tools/prices.py\"]) }";
        let Kind::Map(entries) = &node.kind else {
            return Err(self.error(
                node.start,
                format!(
                    "`recipes` must be a map `{{\"name\": (..)}}`, found {}",
                    node.describe()
                ),
                format!("for example: {EXAMPLE}"),
            ));
        };
        let mut first_at = BTreeMap::new();
        for (key, value) in entries {
            let name = self.recipe_name(key, EXAMPLE)?;
            if let Some(&first) = first_at.get(name) {
                let (line, column) = crate::error::line_column(self.src, first);
                return Err(self.error(
                    key.start,
                    format!("recipe \"{name}\" is defined twice"),
                    format!("it is first defined at {line}:{column}; merge the two"),
                ));
            }
            first_at.insert(name, key.start);
            let recipe = self.recipe(name, value, needs)?;
            config.recipes.insert(name.to_owned(), recipe);
        }
        Ok(())
    }

    fn recipe_name<'n>(&self, key: &'n Node, example: &str) -> Result<&'n str, ConfigError> {
        let name = self.string(key, "a recipe name", example)?;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() {
            return Err(self.error(
                key.start,
                "a recipe name is empty".to_owned(),
                format!("for example: {example}"),
            ));
        }
        if let Some(bad) = name.chars().find(|&c| !valid(c)) {
            return Err(self.error(
                key.start,
                format!("recipe name \"{name}\" contains {bad:?}"),
                "recipe names may only contain letters, digits, `_`, `.` and `-`".to_owned(),
            ));
        }
        Ok(name)
    }

    fn recipe(
        &self,
        name: &str,
        node: &Node,
        needs: &mut Vec<NeedsAt>,
    ) -> Result<RecipeConfig, ConfigError> {
        let context = format!("recipe \"{name}\"");
        let example =
            "\"prices\": (command: [\"python3\", \"tools/prices.py\"], inputs: [\"data/*.csv\"])";
        let mut recipe = RecipeConfig::new(name);
        for f in self.fields(node, &context, RECIPE_KEYS, None, example)? {
            let Some(v) = f.value.unwrap_option() else {
                continue;
            };
            match f.key.as_str() {
                "command" => {
                    recipe.command = Some(self.command(
                        v,
                        "`command`",
                        "command: [\"python3\", \"tools/prices.py\"]",
                    )?);
                }
                "check" => {
                    recipe.check = Some(self.command(
                        v,
                        "`check`",
                        "check: [\"sh\", \"-c\", \"test -s \\\"$TROVE_OUTPUT\\\"\"]",
                    )?);
                }
                "inputs" => {
                    recipe.inputs = self.globs(v, "`inputs`", "inputs: [\"data/**/*.csv\"]")?;
                }
                "trace" => recipe.trace = Some(self.boolean(v, "`trace`", "trace: false")?),
                "env" => {
                    for (var, at) in self.strings(v, "`env`", "env: [\"MARKET\"]")? {
                        let problem = if var.is_empty() {
                            Some("an environment variable name is empty".to_owned())
                        } else if var.contains('=') {
                            Some(format!("environment variable name {var:?} contains `=`"))
                        } else if var.contains('\0') {
                            Some(format!(
                                "environment variable name {var:?} contains a NUL byte"
                            ))
                        } else {
                            None
                        };
                        if let Some(message) = problem {
                            return Err(self.error(
                                at,
                                message,
                                "list variable names only, for example: env: [\"MARKET\"]; \
                                 their values are read when the recipe runs"
                                    .to_owned(),
                            ));
                        }
                        recipe.env.push(var.to_owned());
                    }
                }
                "needs" => {
                    let entries = self.needs(v)?;
                    needs.push(NeedsAt {
                        recipe: name.to_owned(),
                        entries: entries
                            .iter()
                            .map(|(n, at)| (n.recipe.clone(), *at))
                            .collect(),
                    });
                    recipe.needs = entries.into_iter().map(|(n, _)| n).collect();
                }
                "versions" => recipe.versions = self.counters(v, &format!("in {context}"))?,
                "max_age" => recipe.max_age = Some(self.duration(v, "max_age")?),
                _ => {
                    let n = self.uint(v, "`version`", u64::from(u32::MAX), "version: 2")?;
                    recipe.version = u32::try_from(n).unwrap_or(u32::MAX);
                }
            }
        }
        Ok(recipe)
    }
}

pub(super) fn list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// globset's message without the pattern it repeats.
fn glob_reason(e: &globset::Error) -> String {
    e.kind().to_string()
}

/// The environment variable a needed recipe's output path is passed in:
/// `TROVE_NEED_` and the name upper-cased, every other character as `_`.
pub fn need_var(name: &str) -> String {
    let mut var = String::from("TROVE_NEED_");
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var
}
