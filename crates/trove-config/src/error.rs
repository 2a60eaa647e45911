//! The one error type of this crate: a message for a person, with a place.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem, with the file, line and column it is about and
/// usually a hint on how to fix it.
///
/// Displayed as
///
/// ```text
/// error: trove.ron:7:13: unknown key `inptus` in recipe "prices"
/// hint: did you mean `inputs`?
/// ```
///
/// `line` and `column` are 1-based (columns count characters, not bytes).
/// Both are 0 when the problem has no place in the file, for example when the
/// file cannot be read; the message then names the path and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in, as it was given (not canonicalised).
    pub file: PathBuf,
    /// 1-based line, or 0 when there is no position.
    pub line: usize,
    /// 1-based column in characters, or 0 when there is no position.
    pub column: usize,
    /// What is wrong, as one sentence without a trailing period.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        render(self, f)
    }
}

fn render(e: &ConfigError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "error: {}:", e.file.display())?;
    if e.line > 0 {
        write!(f, "{}:{}:", e.line, e.column)?;
    }
    write!(f, " {}", e.message)?;
    if let Some(hint) = &e.hint {
        write!(f, "\nhint: {hint}")?;
    }
    Ok(())
}

impl ConfigError {
    /// An error about the file as a whole (no line or column).
    pub(crate) fn whole_file(file: &Path, message: String, hint: Option<String>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message,
            hint,
        }
    }

    /// An error at byte `offset` of `src`.
    pub(crate) fn at(
        file: &Path,
        src: &str,
        offset: usize,
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        let (line, column) = line_column(src, offset);
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            message,
            hint,
        }
    }
}

/// The 1-based line and character column of byte `offset` in `src`.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = 1 + before.matches('\n').count();
    let column = 1 + before[line_start..].chars().count();
    (line, column)
}
