//! Starting a command recipe's command: a scratch directory for what trove hands it
//! (needed objects, the depfile, the nested-request file), its environment, and the run
//! itself through `trove-trace` (its own process group, the tracer when asked for).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::scratch::ScratchDir;
use crate::{Blob, BuildError, Engine};

/// What one run of a command leaves for the build to record.
pub(crate) struct Ran {
    /// The file the command may have listed its inputs in.
    pub(crate) depfile: PathBuf,
    /// The file nested trove requests were recorded in.
    pub(crate) nested: PathBuf,
    /// What the tracer saw, when the command ran under it.
    pub(crate) report: Option<trove_trace::Report>,
    /// Why the tracer could not run, when it was asked for and could not.
    pub(crate) trace_unavailable: Option<String>,
    /// The object inputs of nested `trove run`s this build answered.
    pub(crate) nested_inputs: Vec<crate::trace::Input>,
    /// Removed (with everything in it) when the build is done.
    _scratch: ScratchDir,
}

/// A command about to run.
pub(crate) struct Launch {
    engine: Engine,
    recipe: String,
    argv: Vec<String>,
    dir: PathBuf,
    env: Vec<(String, String)>,
    trace: bool,
    ignore: Vec<PathBuf>,
    ignore_globs: Vec<String>,
    scratch: ScratchDir,
}

impl Launch {
    /// Prepares `argv` to run in the project directory, traced when `trace` is set.
    pub(crate) fn new(
        engine: &Engine,
        recipe: &str,
        argv: Vec<String>,
        trace: bool,
    ) -> Result<Launch, BuildError> {
        let scratch = ScratchDir::new()?;
        let config = engine.config();
        // Never inputs: the store, what trove hands the command, and the configuration
        // files (a recipe's definition covers them part by part; a nested `trove run`
        // reads them whole).
        let mut ignore = vec![
            engine.store_root().to_path_buf(),
            scratch.dir().to_path_buf(),
        ];
        ignore.extend(config.file.iter().cloned());
        ignore.push(config.dir.join(trove_config::LOCAL_FILE_NAME));
        let env = vec![
            (
                "TROVE_DEPFILE".to_owned(),
                path_string(&scratch.path("depfile")),
            ),
            (
                crate::nested::NESTED_VAR.to_owned(),
                path_string(&scratch.path("nested")),
            ),
            (
                crate::nested::BUILDING_VAR.to_owned(),
                crate::nested::chain_for_child(),
            ),
            (
                "TROVE_NESTED_SOCKET".to_owned(),
                path_string(&scratch.path("nested.sock")),
            ),
        ];
        Ok(Launch {
            engine: engine.clone(),
            recipe: recipe.to_owned(),
            argv,
            dir: engine.root().to_path_buf(),
            env,
            trace,
            ignore,
            ignore_globs: config.trace_ignore.clone(),
            scratch,
        })
    }

    /// The paths that are never the command's inputs: the store, the scratch directory
    /// trove hands the command, the configuration files.
    pub(crate) fn never_inputs(&self) -> &[PathBuf] {
        &self.ignore
    }

    /// Hands a needed object to the command as a file in `$TROVE_NEED_<NAME>`.
    pub(crate) fn hand_over(&mut self, need: &str, blob: &Blob) -> Result<(), BuildError> {
        let path = self.scratch.path(&format!("need-{need}"));
        write_copy(blob, &path).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
        self.env
            .push((trove_config::need_var(need), path_string(&path)));
        Ok(())
    }

    /// Runs the command with its stdout in `stdout` and waits for it; a failure to start
    /// or a non-zero exit is an error (nothing is cached).
    pub(crate) fn run(self, stdout: File) -> Result<Ran, BuildError> {
        let spec = trove_trace::Spec {
            argv: self.argv.clone(),
            dir: self.dir.clone(),
            env: self.env,
            stdout,
            trace: self.trace,
            ignore: self.ignore,
            ignore_globs: self.ignore_globs,
        };
        #[cfg(unix)]
        let proxy = super::proxy::Proxy::start(&self.engine, self.scratch.path("nested.sock"))
            .map_err(|source| BuildError::Io {
                path: self.scratch.path("nested.sock"),
                source,
            })?;
        let outcome = trove_trace::run(spec).map_err(|e| match e {
            trove_trace::RunError::Spawn {
                program,
                dir,
                source,
            } => BuildError::Spawn {
                program,
                dir,
                source,
            },
            trove_trace::RunError::Interrupted => BuildError::Interrupted,
            other => BuildError::msg(format!("cannot run `{}`: {other}", self.argv.join(" "))),
        })?;
        if let Some(why) = &outcome.trace_unavailable {
            warn_untraced(why);
        }
        if !outcome.status.success() {
            return Err(BuildError::CommandFailed {
                command: self.argv.join(" "),
                code: outcome.status.code(),
            });
        }
        tracing::debug!(recipe = %self.recipe, "command done");
        Ok(Ran {
            depfile: self.scratch.path("depfile"),
            nested: self.scratch.path("nested"),
            report: outcome.report,
            trace_unavailable: outcome.trace_unavailable,
            #[cfg(unix)]
            nested_inputs: proxy.finish(),
            #[cfg(not(unix))]
            nested_inputs: Vec::new(),
            _scratch: self.scratch,
        })
    }
}

/// Says once per process that commands run without the tracer, and why.
fn warn_untraced(why: &str) {
    static SAID: OnceLock<()> = OnceLock::new();
    if SAID.set(()).is_ok() {
        tracing::warn!(
            "command recipes run without the syscall tracer ({why}); only declared inputs \
             and depfiles are tracked. Set `trace: false` in trove.ron to silence this."
        );
    }
}

/// Says once per recipe and process.
pub(crate) fn warn_once(recipe: &str, what: &str, message: impl FnOnce() -> String) {
    static SAID: OnceLock<Mutex<std::collections::BTreeSet<(String, String)>>> = OnceLock::new();
    let said = SAID.get_or_init(Default::default);
    if said
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((recipe.to_owned(), what.to_owned()))
    {
        tracing::warn!(recipe, "{}", message());
    }
}

fn path_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Writes a blob to a new file for a command to read (the kernel copies it: a hard link
/// would let the command write into the stored blob).
pub(crate) fn write_copy(blob: &Blob, path: &Path) -> std::io::Result<()> {
    let file = File::create(path)?;
    #[cfg(unix)]
    blob.copy_to_fd(&file)?;
    #[cfg(not(unix))]
    blob.copy_to(&mut &file)?;
    Ok(())
}
