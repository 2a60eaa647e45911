//! Failures and their exit codes: 2 for usage and configuration, a failing command's own
//! code, 1 for everything else.

use std::process::ExitCode;

use trove::{BuildError, ConfigError, Error};

/// A command that could not do its job: the message for stderr (already starting with
/// `error:`, possibly followed by `hint:` lines) and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The process exit code.
    pub(crate) code: u8,
    /// What to print on stderr; empty to print nothing (stdout was closed by the reader).
    pub(crate) message: String,
}

impl Failure {
    /// A usage or configuration problem: exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Any other failure: exit code 1.
    pub(crate) fn other(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// Prints the message and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("{}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        // Its Display already reads `error: file:line:col: ...` and `hint: ...`.
        Failure::usage(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`trove run x | head`): not our failure to report.
            return Failure {
                code: 0,
                message: String::new(),
            };
        }
        Failure::other(format!("error: cannot write the output: {e}"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        if let Error::ConfigFile(config) = innermost(&e) {
            return Failure::from(config.clone());
        }
        if let Some(code) = command_exit_code(&e) {
            // A signal has no exit code; 1 says "failed" without pretending otherwise.
            let code = code.and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0);
            return Failure {
                code: code.unwrap_or(1),
                message: format!(
                    "error: {e}\nhint: nothing was cached; the command runs again next time"
                ),
            };
        }
        let mut message = format!("error: {e}");
        let code = match innermost(&e) {
            Error::Watch(_) => {
                message.push_str(
                    "\nhint: check `watch: (roots: [...])` in trove.ron; every root must be an existing directory",
                );
                1
            }
            Error::Build {
                source:
                    BuildError::Spawn {
                        program, source, ..
                    },
                ..
            } if source.kind() == std::io::ErrorKind::NotFound => {
                message.push_str(&format!(
                    "\nhint: is `{program}` installed and on PATH? (the command runs without a shell, in the configuration's directory)"
                ));
                1
            }
            Error::Build {
                source: BuildError::Io { path, source },
                ..
            } if source.kind() == std::io::ErrorKind::NotFound => {
                message.push_str(&format!(
                    "\nhint: `{}` does not exist; a recipe reading it is rebuilt once it does",
                    path.display()
                ));
                1
            }
            Error::Store(_) => {
                message.push_str(
                    "\nhint: `trove verify` checks the store and quarantines what is corrupt",
                );
                1
            }
            Error::Cycle { .. } => {
                message.push_str("\nhint: check the `needs` of the recipes involved");
                1
            }
            _ => 1,
        };
        Failure { code, message }
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
