//! `trove lint`: what a command recipe reads that its declaration does not cover.

use std::path::Path;

use serde::Serialize;

use super::CommandRecipe;
use super::launch::Launch;
use super::scratch::ScratchDir;
use crate::{BuildError, Engine, Error};

/// What running a command recipe under the tracer found, against its declared `inputs`.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Lint {
    /// The recipe.
    pub recipe: String,
    /// Files under the project it read that no declared input covers, relative to the
    /// project: ready to paste into `inputs`.
    pub undeclared: Vec<String>,
    /// Paths under the project it looked for and did not find (tracked as absences when
    /// traced; a declaration cannot say this).
    pub absent: Vec<String>,
    /// Directories under the project it listed.
    pub listed: Vec<String>,
    /// How many files outside the project it read or ran (tracked when traced).
    pub outside: usize,
    /// Inputs the command wrote into: such an object is never stored.
    pub wrote_inputs: Vec<String>,
    /// Why the tracer could not run, when it could not (then nothing else is known).
    pub trace_unavailable: Option<String>,
}

impl CommandRecipe {
    /// Runs the command once under the tracer, stores nothing, and compares what it
    /// touched with the recipe's declared `inputs`.
    pub fn lint(&self, engine: &Engine, args: &[String]) -> Result<Lint, Error> {
        let failed = |source: BuildError| Error::Build {
            recipe: self.name.clone(),
            args: args.join(" "),
            source,
        };
        let argv = self.argv(args).map_err(failed)?;
        let mut launch = Launch::new(engine, &self.name, argv, true).map_err(failed)?;
        for need in &self.config.needs {
            let Some(rc) = engine.config().recipes.get(&need.recipe).cloned() else {
                return Err(failed(BuildError::msg(format!(
                    "needs unknown recipe `{}`",
                    need.recipe
                ))));
            };
            let blob = engine.get(&CommandRecipe::new(&need.recipe, rc), &need.args)?;
            launch.hand_over(&need.recipe, &blob).map_err(failed)?;
        }
        let scratch = ScratchDir::new().map_err(failed)?;
        let out = scratch.path("stdout");
        let stdout = std::fs::File::create(&out).map_err(|source| {
            failed(BuildError::Io {
                path: out.clone(),
                source,
            })
        })?;
        let ran = launch.run(stdout).map_err(failed)?;
        let mut lint = Lint {
            recipe: self.name.clone(),
            trace_unavailable: ran.trace_unavailable.clone(),
            ..Lint::default()
        };
        let Some(report) = ran.report.as_ref() else {
            return Ok(lint);
        };
        let root = engine.root();
        let declared = Declared::new(&self.config.inputs);
        let mut outside = std::collections::BTreeSet::new();
        for path in report.reads.iter().chain(&report.execs) {
            match path.strip_prefix(root) {
                Ok(rel) if !declared.covers(rel) => lint.undeclared.push(slash(rel)),
                Ok(_) => {}
                Err(_) => {
                    outside.insert(path);
                }
            }
        }
        lint.outside = outside.len();
        for path in &report.absent {
            if let Ok(rel) = path.strip_prefix(root) {
                lint.absent.push(slash(rel));
            }
        }
        for path in &report.dirs {
            if let Ok(rel) = path.strip_prefix(root) {
                lint.listed.push(if rel.as_os_str().is_empty() {
                    ".".to_owned()
                } else {
                    slash(rel)
                });
            }
        }
        lint.wrote_inputs = report
            .wrote_inputs
            .iter()
            .map(|p| engine.display_path(p))
            .collect();
        Ok(lint)
    }
}

/// A path relative to the project, with `/` separators.
fn slash(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The declared inputs, as the engine reads them: globs match literally, a plain path
/// names a file or a directory's whole tree.
struct Declared {
    globs: Vec<globset::GlobMatcher>,
    paths: Vec<String>,
}

impl Declared {
    fn new(inputs: &[String]) -> Declared {
        let mut globs = Vec::new();
        let mut paths = Vec::new();
        for pattern in inputs {
            if pattern.contains(['*', '?', '[', '{']) {
                if let Ok(g) = trove_fingerprint::compile_glob(pattern) {
                    globs.push(g);
                }
            } else {
                paths.push(pattern.trim_end_matches('/').to_owned());
            }
        }
        Declared { globs, paths }
    }

    fn covers(&self, rel: &Path) -> bool {
        let rel = slash(rel);
        self.globs.iter().any(|g| g.is_match(&rel))
            || self
                .paths
                .iter()
                .any(|p| rel == *p || rel.starts_with(&format!("{p}/")))
    }
}
