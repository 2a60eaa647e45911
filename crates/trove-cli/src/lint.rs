//! `trove lint`: what command recipes read that their declarations do not cover.

use std::io::Write;

use crate::cli::LintArgs;
use crate::failure::Failure;
use crate::project::{self, Project};

pub(crate) fn lint(project: &Project, args: &LintArgs) -> Result<u8, Failure> {
    let names: Vec<String> = match &args.recipe {
        Some(name) => vec![name.clone()],
        None => project
            .config
            .recipes
            .iter()
            .filter(|(_, rc)| rc.command.is_some())
            .map(|(name, _)| name.clone())
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    for name in names {
        let recipe = project::command_recipe(&project.config, &name)?;
        let lint = recipe.lint(&project.engine, &[])?;
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&lint).map_err(std::io::Error::other)?
            )?;
            continue;
        }
        if let Some(why) = &lint.trace_unavailable {
            writeln!(out, "{name}: cannot trace ({why})")?;
            continue;
        }
        if lint.undeclared.is_empty() && lint.wrote_inputs.is_empty() {
            writeln!(
                out,
                "{name}: the declared inputs cover everything it read in the project \
                 ({} files outside it are tracked when traced)",
                lint.outside
            )?;
        } else if !lint.undeclared.is_empty() {
            writeln!(out, "{name}: reads files its declaration does not cover:")?;
            let quoted: Vec<String> = lint.undeclared.iter().map(|p| format!("{p:?}")).collect();
            writeln!(out, "    inputs: [{}],", quoted.join(", "))?;
        }
        for path in &lint.wrote_inputs {
            writeln!(
                out,
                "  writes into its input {path}: such an object is never stored"
            )?;
        }
        if !lint.absent.is_empty() {
            writeln!(
                out,
                "  looked for and did not find: {}",
                lint.absent.join(", ")
            )?;
        }
        if !lint.listed.is_empty() {
            writeln!(out, "  listed: {}", lint.listed.join(", "))?;
        }
    }
    Ok(0)
}
