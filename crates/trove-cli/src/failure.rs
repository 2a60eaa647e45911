//! Diagnostics and failures: the one way a message reaches stderr (`error:`, `warning:`
//! or `note:`, then one `hint:` line each, as cargo and uv write them), and the exit
//! codes: 2 for usage and configuration, a failing command's own code, 1 for the rest.

use std::fmt;
use std::process::ExitCode;

use trove::{BuildError, ConfigError, Error};

/// How serious a diagnostic is: the word it starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// The command could not do its job.
    Error,
    /// Something the user should fix; the command goes on.
    Warning,
    /// Something worth knowing.
    Note,
}

/// A message for stderr: a level, what happened (it may span lines), and hints on what
/// to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Diagnostic {
    level: Level,
    message: String,
    hints: Vec<String>,
}

impl Diagnostic {
    /// `error: message`.
    pub(crate) fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Level::Error, message)
    }

    /// `warning: message`.
    pub(crate) fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Level::Warning, message)
    }

    /// `note: message`.
    pub(crate) fn note(message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Level::Note, message)
    }

    fn new(level: Level, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            level,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// A configuration problem at `level`: its place (`file:line:column`, the file alone
    /// when it has no position), its message and its hint. `file` is how to name the
    /// file (relative to the project, or as given).
    pub(crate) fn config(level: Level, error: &ConfigError, file: &str) -> Diagnostic {
        let mut place = file.to_owned();
        if error.line > 0 {
            place.push_str(&format!(":{}:{}", error.line, error.column));
        }
        Diagnostic::new(level, format!("{place}: {}", error.message)).hints(error.hint.clone())
    }

    /// Adds a `hint:` line.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hints.push(hint.into());
        self
    }

    /// Adds `hint:` lines.
    pub(crate) fn hints(mut self, hints: impl IntoIterator<Item = String>) -> Diagnostic {
        self.hints.extend(hints);
        self
    }

    /// Writes it to stderr.
    pub(crate) fn eprint(&self) {
        eprintln!("{self}");
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        };
        write!(f, "{level}: {}", self.message)?;
        for hint in &self.hints {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// A command that could not do its job: what to say on stderr and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The process exit code.
    pub(crate) code: u8,
    /// What to print on stderr; `None` to print nothing (stdout was closed by the reader).
    pub(crate) diagnostic: Option<Diagnostic>,
}

impl Failure {
    /// A usage or configuration problem: exit code 2.
    pub(crate) fn usage(error: Diagnostic) -> Failure {
        Failure {
            code: 2,
            diagnostic: Some(error),
        }
    }

    /// Any other failure: exit code 1.
    pub(crate) fn other(error: Diagnostic) -> Failure {
        Failure {
            code: 1,
            diagnostic: Some(error),
        }
    }

    /// Prints the diagnostic and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        if let Some(diagnostic) = &self.diagnostic {
            diagnostic.eprint();
        }
        ExitCode::from(self.code)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        let file = e.file.display().to_string();
        Failure::usage(Diagnostic::config(Level::Error, &e, &file))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`trove run x | head`): not our failure to report.
            return Failure {
                code: 0,
                diagnostic: None,
            };
        }
        Failure::other(Diagnostic::error(format!("cannot write the output: {e}")))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        if let Error::ConfigFile(config) = innermost(&e) {
            return Failure::from(config.clone());
        }
        if let Some(code) = crate::interrupt::exit_code() {
            // Interrupted: the command was stopped and nothing stored.
            return Failure {
                code,
                diagnostic: Some(Diagnostic::error(
                    "interrupted; the command was stopped and nothing was stored",
                )),
            };
        }
        let error = Diagnostic::error(e.to_string());
        if let Some(code) = command_exit_code(&e) {
            // A signal has no exit code; 1 says "failed" without pretending otherwise.
            let code = code.and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0);
            return Failure {
                code: code.unwrap_or(1),
                diagnostic: Some(
                    error.hint("nothing was cached; the command runs again next time"),
                ),
            };
        }
        let error = match innermost(&e) {
            Error::Watch(_) => error.hint(
                "check `watch: (roots: [...])` in trove.ron; every root must be an existing directory",
            ),
            Error::Build {
                source:
                    BuildError::Spawn {
                        program, source, ..
                    },
                ..
            } if source.kind() == std::io::ErrorKind::NotFound => error.hint(format!(
                "is `{program}` installed and on PATH? (the command runs without a shell, in the configuration's directory)"
            )),
            Error::Build {
                source: BuildError::Io { path, source },
                ..
            } if source.kind() == std::io::ErrorKind::NotFound => error.hint(format!(
                "`{}` does not exist; a recipe reading it is rebuilt once it does",
                path.display()
            )),
            Error::Store(_) => {
                error.hint("`trove verify` checks the store and quarantines what is corrupt")
            }
            Error::Cycle { .. } => error.hint("check the `needs` of the recipes involved"),
            _ => error,
        };
        Failure::other(error)
    }
}

/// The exit code of the failing command behind `e`, if a command failing is what it is
/// (directly, through a waiter sharing the failure, or through a failed `needs`).
/// `Some(None)` when a signal ended the command.
pub(crate) fn command_exit_code(e: &Error) -> Option<Option<i32>> {
    match e {
        Error::Build { source, .. } => match source {
            BuildError::CommandFailed { code, .. } => Some(*code),
            BuildError::Dependency(inner) => command_exit_code(inner),
            _ => None,
        },
        Error::Shared(inner) => command_exit_code(inner),
        _ => None,
    }
}

/// The error at the bottom of shared and dependency wrappers.
fn innermost(e: &Error) -> &Error {
    match e {
        Error::Shared(inner) => innermost(inner),
        Error::Build {
            source: BuildError::Dependency(inner),
            ..
        } => innermost(inner),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::{Diagnostic, Level};

    #[test]
    fn a_diagnostic_is_its_level_and_message_then_one_hint_a_line() {
        let d = Diagnostic::error("no recipe `prics`")
            .hint("did you mean `prices`?")
            .hint("known recipes: calendar, prices");
        assert_eq!(
            d.to_string(),
            "error: no recipe `prics`\nhint: did you mean `prices`?\nhint: known recipes: calendar, prices"
        );
        assert_eq!(
            Diagnostic::note("nothing to show").to_string(),
            "note: nothing to show"
        );
        let e = trove::ConfigError {
            file: "trove.ron".into(),
            line: 7,
            column: 13,
            message: "unknown key `inptus`".into(),
            hint: Some("did you mean `inputs`?".into()),
        };
        // The same text as the configuration error's own display.
        assert_eq!(
            Diagnostic::config(Level::Error, &e, "trove.ron").to_string(),
            e.to_string()
        );
    }
}
