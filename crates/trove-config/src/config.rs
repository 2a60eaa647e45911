//! The configuration types and the ways to obtain one: load, parse, discover, default.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, line_column};
use crate::schema::Reader;
use crate::syntax;
use crate::units::format_size;

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
    /// Recipes configured by name.
    pub recipes: BTreeMap<String, RecipeConfig>,
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
        }
    }
}

impl Config {
    /// Reads the configuration at `path` and, when it exists, the
    /// `trove.local.ron` beside it, whose counters replace the main file's.
    ///
    /// Errors name `path` (or the local file) as given.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = read_source(path)?;
        let mut config = Config::parse(&source, path)?;
        let local = path.with_file_name(LOCAL_FILE_NAME);
        match read_source_if_exists(&local)? {
            None => {}
            Some(source) => {
                apply_local(&source, &local, &mut config)?;
                config.local_file = Some(config.dir.join(LOCAL_FILE_NAME));
            }
        }
        Ok(config)
    }

    /// Parses `source` as the configuration file `file`, without a local
    /// overlay. Nothing is read from disk; `file` is used for messages and its
    /// directory (made absolute against the current directory) for resolving paths.
    pub fn parse(source: &str, file: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default_in(file.parent().unwrap_or(Path::new("")));
        config.file = Some(absolute(file));
        check_size(source.len() as u64, file)?;
        let tree = read_tree(source, file)?;
        // Relative paths from the file; resolved once everything is read.
        config.store.path = PathBuf::from(".trove");
        config.watch.roots = vec![PathBuf::from(".")];
        Reader { file, src: source }.config(&tree, &mut config)?;
        config.store.path = resolve(&config.dir, &config.store.path);
        config.watch.roots = config
            .watch
            .roots
            .iter()
            .map(|root| resolve(&config.dir, root))
            .collect();
        Ok(config)
    }

    /// Finds `trove.ron` in `start` or the nearest of its parents.
    ///
    /// `Ok(None)` when there is none up to the root; an error only when a
    /// candidate cannot be examined for another reason than its absence.
    pub fn discover(start: &Path) -> Result<Option<PathBuf>, ConfigError> {
        let start = absolute(start);
        for dir in start.ancestors() {
            let candidate = dir.join(FILE_NAME);
            match std::fs::metadata(&candidate) {
                Ok(meta) if meta.is_file() => return Ok(Some(candidate)),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) => {}
                Err(e) => {
                    return Err(ConfigError::whole_file(
                        &candidate,
                        format!("cannot examine {}: {e}", candidate.display()),
                        Some("pass the configuration explicitly with --config".to_owned()),
                    ));
                }
            }
        }
        Ok(None)
    }

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
            recipes: BTreeMap::new(),
            dir,
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

/// Checks `source` with `ron`, then reads it into a tree with positions.
fn read_tree(source: &str, file: &Path) -> Result<syntax::Node, ConfigError> {
    if source.trim().is_empty() {
        return Err(ConfigError::at(
            file,
            source,
            source.len(),
            "the file is empty".to_owned(),
            Some("write `()` for a configuration with every default".to_owned()),
        ));
    }
    if source.starts_with('\u{feff}') {
        return Err(ConfigError::at(
            file,
            source,
            0,
            "the file starts with a byte order mark".to_owned(),
            Some("save the file as UTF-8 without a BOM".to_owned()),
        ));
    }
    // `ron` is the authority on syntax: what passes here is RON any tool reads.
    // Its recursion limit also turns absurd nesting into an error.
    if let Err(e) = ron::Options::default().from_str::<serde::de::IgnoredAny>(source) {
        use ron::error::Error as E;
        // `ron` reports a file cut short as whatever it expected next, at the
        // last token; say what happened instead.
        let end = line_column(source, source.trim_end().len());
        let at_end = (e.span.end.line, e.span.end.col) >= end;
        let expected_more = matches!(
            e.code,
            E::Eof
                | E::ExpectedComma
                | E::ExpectedArrayEnd
                | E::ExpectedMapEnd
                | E::ExpectedMapColon
                | E::ExpectedStructLikeEnd
                | E::ExpectedOptionEnd
        );
        if at_end && expected_more {
            return Err(ConfigError::at(
                file,
                source,
                source.trim_end().len(),
                "unexpected end of file".to_owned(),
                Some("a `(`, `[`, `{` or `\"` is not closed".to_owned()),
            ));
        }
        let mut err = ron_error(&e, source, file);
        // Point at the text, not at the space before it, and at the start
        // of an unclosed comment rather than somewhere inside it.
        let mut offset = byte_offset(source, err.line, err.column);
        if e.code == E::UnclosedBlockComment {
            let upto = (offset + 2).min(source.len());
            offset = source
                .get(..upto)
                .and_then(|s| s.rfind("/*"))
                .unwrap_or(offset);
        }
        let text = offset + (source[offset..].len() - source[offset..].trim_start().len());
        (err.line, err.column) = line_column(source, text);
        return Err(err);
    }
    syntax::parse(source).map_err(|e| {
        ConfigError::at(
            file,
            source,
            e.offset,
            format!("syntax error: {}", e.message),
            Some("this RON construct is not supported in trove.ron".to_owned()),
        )
    })
}

/// The byte offset of a 1-based line and character column.
fn byte_offset(src: &str, line: usize, column: usize) -> usize {
    let line_start: usize = src
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    src[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(src.len(), |(i, _)| line_start + i)
}

fn apply_local(source: &str, file: &Path, config: &mut Config) -> Result<(), ConfigError> {
    check_size(source.len() as u64, file)?;
    let tree = read_tree(source, file)?;
    Reader { file, src: source }.local(&tree, config)
}

fn ron_error(e: &ron::error::SpannedError, source: &str, file: &Path) -> ConfigError {
    use ron::error::Error as E;
    const SYNTAX: &str = "trove.ron is RON: `(key: value, ..)` for the configuration and each recipe, \
                          `{\"name\": value}` for maps, `[a, b]` for lists, strings in double quotes";
    let (message, hint) = match &e.code {
        E::Eof => (
            "unexpected end of file".to_owned(),
            "a `(`, `[`, `{` or `\"` is not closed".to_owned(),
        ),
        E::ExpectedComma => ("expected `,`".to_owned(), comma_hint(source, e.span.start)),
        E::ExpectedStringEnd => (
            "unclosed string".to_owned(),
            "close the string with `\"`; write a quote inside a string as `\\\"`".to_owned(),
        ),
        E::ExceededRecursionLimit => (
            "the file is nested too deeply".to_owned(),
            "a configuration nests only a few levels: `(recipes: {\"name\": (inputs: [..])})`"
                .to_owned(),
        ),
        E::TrailingCharacters => (
            "unexpected text after the configuration".to_owned(),
            "the whole configuration is one `( .. )`; move these keys inside it".to_owned(),
        ),
        E::UnclosedBlockComment => (
            "unclosed `/*` comment".to_owned(),
            "close it with `*/`".to_owned(),
        ),
        E::ExpectedMapColon => (
            "expected `:` after a map key".to_owned(),
            "map entries are `\"key\": value`".to_owned(),
        ),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            let text = match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            };
            (format!("syntax error: {text}"), SYNTAX.to_owned())
        }
    };
    ConfigError {
        file: file.to_owned(),
        line: e.span.start.line,
        column: e.span.start.col,
        message,
        hint: Some(hint),
    }
}

/// What most likely went wrong where `ron` expected a comma.
fn comma_hint(source: &str, at: ron::error::Position) -> String {
    let offset = byte_offset(source, at.line, at.col);
    let before = source[..offset].trim_end();
    let after = &source[offset..];
    // `max_age: 30d`: a unit right after a number.
    if before.ends_with(|c: char| c.is_ascii_digit())
        && after.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return "durations and sizes are strings: `max_age: \"30d\"`, `max_size: \"20GiB\"`"
            .to_owned();
    }
    // `(max_age "30d")`: a key without its colon.
    let word_len = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum::<usize>();
    let word = &before[before.len() - word_len..];
    let opener = before[..before.len() - word_len].trim_end();
    if !word.is_empty() && (opener.ends_with('(') || opener.ends_with(',')) {
        return format!("if `{word}` is a key, follow it with `:`: `{word}: ..`");
    }
    "separate entries with commas: `(a: 1, b: 2)`".to_owned()
}

fn check_size(len: u64, file: &Path) -> Result<(), ConfigError> {
    if len <= MAX_FILE_SIZE {
        return Ok(());
    }
    let size = format_size(len);
    let size = if len.is_multiple_of(1 << 20) {
        size
    } else {
        format!("{size} ({len} bytes)")
    };
    Err(ConfigError::whole_file(
        file,
        format!(
            "config file is {size}; the limit is {}",
            format_size(MAX_FILE_SIZE)
        ),
        Some("a configuration is a few kilobytes; is this the right file?".to_owned()),
    ))
}

/// Reads a configuration file: at most [`MAX_FILE_SIZE`] bytes, UTF-8.
fn read_source(path: &Path) -> Result<String, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| unreadable(path, &e))?;
    read_open_file(file, path)
}

/// Like [`read_source`], but `Ok(None)` when the file does not exist.
fn read_source_if_exists(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::File::open(path) {
        Ok(file) => read_open_file(file, path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(path, &e)),
    }
}

fn unreadable(path: &Path, e: &io::Error) -> ConfigError {
    ConfigError::whole_file(path, format!("cannot read {}: {e}", path.display()), None)
}

fn read_open_file(file: std::fs::File, path: &Path) -> Result<String, ConfigError> {
    // Check the length first, and cap the read too: the length of a pipe or a
    // growing file is not known in advance.
    let len = file.metadata().map_err(|e| unreadable(path, &e))?.len();
    check_size(len, path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path, &e))?;
    check_size(bytes.len() as u64, path)?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&e.as_bytes()[..offset]).unwrap_or("");
        let (line, column) = line_column(valid, offset);
        ConfigError {
            file: path.to_owned(),
            line,
            column,
            message: format!("the file is not valid UTF-8 (byte offset {offset})"),
            hint: Some("save the file as UTF-8".to_owned()),
        }
    })
}

/// `path` made absolute against the current directory, without touching the
/// file system; unchanged if the current directory is unknown.
fn absolute(path: &Path) -> PathBuf {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    clean(&std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
}

/// `path` against `dir`, with `.` components removed. `..` is kept: removing
/// it is only right when no symbolic link is involved.
fn resolve(dir: &Path, path: &Path) -> PathBuf {
    clean(&dir.join(path))
}

fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}
