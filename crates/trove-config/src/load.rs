//! Obtaining a configuration from files: load (with the local overlay), parse, discover;
//! reading a file within its size limit, and `ron`'s errors turned into positions and
//! hints.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::config::{Config, FILE_NAME, LOCAL_FILE_NAME, MAX_FILE_SIZE};
use crate::error::{ConfigError, line_column};
use crate::paths::{absolute, resolve};
use crate::schema::Reader;
use crate::syntax;
use crate::units::format_size;

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
