//! Command recipes: a recipe from the configuration whose object is a command's stdout.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use trove_config::RecipeConfig;

use crate::{Blob, BuildError, Cx, Definition, Recipe};

/// A recipe defined by the configuration: runs `command` (argv, no shell) in the
/// configuration's directory with the extra arguments appended; stdout is the object, a
/// [`Blob`]: written straight into a file in the store, never held in memory.
#[derive(Clone, Debug)]
pub struct CommandRecipe {
    name: String,
    config: RecipeConfig,
    /// Its entry in the configuration, fingerprinted part by part.
    definition: Definition,
}

impl CommandRecipe {
    /// The recipe `name` as configured.
    pub fn new(name: &str, config: RecipeConfig) -> CommandRecipe {
        let mut definition = Definition::declared(&config);
        if let Some(command) = &config.command {
            definition = definition.with("command", command);
        }
        if !config.needs.is_empty() {
            definition = definition.with("needs", &config.needs);
        }
        if let Some(check) = &config.check {
            definition = definition.with("check", check);
        }
        CommandRecipe {
            name: name.to_owned(),
            config,
            definition,
        }
    }
}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A scratch file path for this process (depfiles, outputs handed to `check`).
fn scratch_path(dir: &Path, what: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "trove-{what}-{}-{n}-{}",
        std::process::id(),
        trove_fingerprint::now_ns()
    ))
}

/// Removes a scratch file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the command with its stdout written into `stdout`, the object's temp file (the
/// object never passes through this process), and waits for it.
fn run_to_file(command: &mut Command, stdout: File) -> std::io::Result<ExitStatus> {
    command.stdout(stdout).status()
}

/// Writes a blob to a new scratch file for a command to read (the kernel copies it).
fn write_scratch(blob: &Blob, path: &Path) -> std::io::Result<()> {
    let file = File::create(path)?;
    #[cfg(unix)]
    blob.copy_to_fd(&file)?;
    #[cfg(not(unix))]
    blob.copy_to(&mut &file)?;
    Ok(())
}

impl Recipe for CommandRecipe {
    const NAME: &'static str = "command";
    const VERSION: u32 = 1;
    type Args = Vec<String>;
    type Output = Blob;

    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.config.version
    }

    fn max_age(&self) -> Option<std::time::Duration> {
        self.config.max_age
    }

    fn definition(&self) -> Definition {
        self.definition.clone()
    }

    fn build(&self, cx: &mut Cx, args: &Vec<String>) -> Result<Blob, BuildError> {
        let Some(argv) = self.config.command.as_ref().filter(|a| !a.is_empty()) else {
            return Err(BuildError::msg(format!(
                "recipe `{}` has no command: it is built by library code",
                self.name
            )));
        };
        let dir = cx.engine.root().to_path_buf();
        let tmp = std::env::temp_dir();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let mut scratch = Vec::new();
        for need in &self.config.needs {
            let Some(rc) = cx.engine.config().recipes.get(&need.recipe).cloned() else {
                return Err(BuildError::msg(format!(
                    "recipe `{}` needs unknown recipe `{}`",
                    self.name, need.recipe
                )));
            };
            let needed = CommandRecipe::new(&need.recipe, rc);
            let blob = cx.get(&needed, &need.args)?;
            let path = scratch_path(&tmp, "need");
            write_scratch(&blob, &path).map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
            command.env(trove_config::need_var(&need.recipe), &path);
            scratch.push(Scratch(path));
        }
        let depfile = Scratch(scratch_path(&tmp, "depfile"));
        command.env("TROVE_DEPFILE", &depfile.0);
        // A `trove run` inside the command joins this object's trace (nested.rs).
        let nested = Scratch(scratch_path(&tmp, "nested"));
        command.env(crate::nested::NESTED_VAR, &nested.0);
        command.env(
            crate::nested::BUILDING_VAR,
            crate::nested::chain_for_child(),
        );
        let out = cx.blob_writer()?;
        let stdout = out.file().try_clone().map_err(|e| {
            BuildError::msg(format!(
                "cannot hand the object's temp file to the command: {e}"
            ))
        })?;
        let status = run_to_file(&mut command, stdout).map_err(|source| BuildError::Spawn {
            program: argv[0].clone(),
            dir: dir.clone(),
            source,
        })?;
        if !status.success() {
            return Err(BuildError::CommandFailed {
                command: argv.join(" "),
                code: status.code(),
            });
        }
        cx.track_depfile(&depfile.0, &dir)?;
        for input in crate::nested::read(&nested.0).map_err(BuildError::msg)? {
            cx.trace.push(input);
        }
        out.finish()
    }

    fn check(&self, object: &Blob) -> Result<(), String> {
        let Some(argv) = self.config.check.as_ref().filter(|a| !a.is_empty()) else {
            return Ok(());
        };
        let out = Scratch(scratch_path(&std::env::temp_dir(), "output"));
        write_scratch(object, &out.0)
            .map_err(|e| format!("cannot write the object for check: {e}"))?;
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .env("TROVE_OUTPUT", &out.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| format!("cannot run check `{}`: {e}", argv.join(" ")))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{}` exited with {status}", argv.join(" ")))
        }
    }
}
