//! Command recipes: a recipe from the configuration whose object is a command's stdout.

mod launch;
mod lint;
#[cfg(unix)]
mod proxy;
mod scratch;
mod traced;

use std::process::{Command, Stdio};

use trove_config::RecipeConfig;

use crate::{Blob, BuildError, Cx, Definition, Recipe};

use launch::{Launch, write_copy};
pub use lint::Lint;
#[cfg(unix)]
pub use proxy::{NestedAnswer, NestedRequest, SOCKET_VAR, ask};
use scratch::ScratchDir;
use traced::PROGRAM_ENV;

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
        if let Some(trace) = config.trace {
            definition = definition.with("trace", &trace);
        }
        CommandRecipe {
            name: name.to_owned(),
            config,
            definition,
        }
    }
}

impl CommandRecipe {
    /// The command line for `args`: the configured words, then the extra arguments.
    fn argv(&self, args: &[String]) -> Result<Vec<String>, BuildError> {
        let Some(command) = self.config.command.as_ref().filter(|a| !a.is_empty()) else {
            return Err(BuildError::msg(format!(
                "recipe `{}` has no command: it is built by library code",
                self.name
            )));
        };
        Ok(command.iter().chain(args).cloned().collect())
    }

    /// Whether the command runs under the tracer (`trace` in the configuration, and
    /// the platform's support).
    fn traced(&self, global: bool) -> bool {
        cfg!(target_os = "linux") && self.config.traced(global)
    }
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
        let argv = self.argv(args)?;
        let traced = self.traced(cx.engine.config().trace);
        let mut launch = Launch::new(&cx.engine, &self.name, argv, traced)?;
        for need in &self.config.needs {
            let Some(rc) = cx.engine.config().recipes.get(&need.recipe).cloned() else {
                return Err(BuildError::msg(format!(
                    "recipe `{}` needs unknown recipe `{}`",
                    self.name, need.recipe
                )));
            };
            let blob = cx.get(&CommandRecipe::new(&need.recipe, rc), &need.args)?;
            launch.hand_over(&need.recipe, &blob)?;
        }
        // The variables that choose which programs and libraries run are inputs of
        // every command recipe: another `mytool` first on PATH is another object.
        for name in PROGRAM_ENV {
            cx.env(name);
        }
        let out = cx.blob_writer()?;
        let stdout = out.file().try_clone().map_err(|e| {
            BuildError::msg(format!(
                "cannot hand the object's temp file to the command: {e}"
            ))
        })?;
        let never_inputs = launch.never_inputs().to_vec();
        let ran = launch.run(stdout)?;
        let root = cx.engine.root().to_path_buf();
        cx.track_depfile(&ran.depfile, &root)?;
        for input in crate::nested::read(&ran.nested).map_err(BuildError::msg)? {
            cx.trace.push(input);
        }
        for input in ran.nested_inputs.iter().cloned() {
            cx.trace.push(input);
        }
        if let Some(report) = &ran.report {
            traced::record(
                cx,
                &self.name,
                self.config.max_age.or(cx.engine.config().max_age),
                report,
                &never_inputs,
            )?;
        }
        out.finish()
    }

    fn check(&self, object: &Blob) -> Result<(), String> {
        let Some(argv) = self.config.check.as_ref().filter(|a| !a.is_empty()) else {
            return Ok(());
        };
        let scratch = ScratchDir::new().map_err(|e| e.to_string())?;
        let out = scratch.path("output");
        write_copy(object, &out).map_err(|e| format!("cannot write the object for check: {e}"))?;
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .env("TROVE_OUTPUT", &out)
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
