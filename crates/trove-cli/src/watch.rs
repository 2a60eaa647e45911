//! `trove watch`: report (and optionally rebuild) the stored objects that really go stale,
//! from the engine's stream of stale objects. Data (one line per object) on stdout,
//! diagnostics on stderr.

use std::path::{Path, PathBuf};

use serde::Serialize;
use trove::{CommandRecipe, Engine, Reason, StaleEvent, StoredArgs, WatchUpdate};

use crate::cli::WatchArgs;
use crate::failure::{Diagnostic, Failure, Level};
use crate::human;
use crate::project::Project;

/// One line of `trove watch --json`.
#[derive(Serialize)]
struct Line<'a> {
    /// `stale`, or a rebuild's outcome: `rebuilt`, `fresh`, `failed`, `skipped`.
    event: &'a str,
    recipe: &'a str,
    args: &'a StoredArgs,
    key: String,
    reason: String,
}

/// Watches until killed.
pub(crate) fn watch(project: &Project, args: &WatchArgs) -> Result<u8, Failure> {
    let mut stream = project.engine.watch_stale()?;
    let roots: Vec<String> = stream
        .roots()
        .iter()
        .map(|root| show_path(stream.engine(), root))
        .collect();
    warn_unwatched(stream.engine(), stream.unwatched());
    // Printed once the watch is registered and the store read: from here on, every
    // change is seen.
    eprintln!("watching {}", roots.join(", "));
    loop {
        let update = match stream.recv() {
            Ok(update) => update,
            Err(e) => {
                Diagnostic::error(e.to_string()).eprint();
                continue;
            }
        };
        match update {
            WatchUpdate::Stale(event) => {
                report(args, "stale", &event, &event.why.to_string())?;
                if args.rebuild {
                    rebuild(stream.engine(), args, &event)?;
                }
            }
            WatchUpdate::Rescan { reason } => {
                Diagnostic::note(format!(
                    "changes may have been missed ({reason}); checking every object"
                ))
                .eprint();
            }
            WatchUpdate::ConfigReloaded { path } => {
                eprintln!("reloaded {}", show_path(stream.engine(), &path));
            }
            WatchUpdate::ConfigRejected { error } => {
                let file = show_path(stream.engine(), &error.file);
                Diagnostic::config(Level::Warning, &error, &file).eprint();
                Diagnostic::note("still running with the previous configuration").eprint();
            }
            _ => {}
        }
    }
}

/// A stale object or a rebuild's outcome: a JSON line or a line of text on stdout
/// (failures and skips as text go to stderr: they are diagnostics).
fn report(args: &WatchArgs, event: &str, stale: &StaleEvent, reason: &str) -> Result<(), Failure> {
    if args.json {
        let line = Line {
            event,
            recipe: &stale.recipe,
            args: &stale.args,
            key: stale.key.hex(),
            reason: reason.to_owned(),
        };
        crate::output::emit_json(&line)?;
    } else {
        let label = stale.label();
        match event {
            "stale" => human::emit(&format!("stale: {label}: {reason}"))?,
            "rebuilt" | "fresh" => human::emit(&format!("{event}: {label} ({reason})"))?,
            _ => eprintln!("{event}: {label} ({reason})"),
        }
    }
    Ok(())
}

/// Serves the stale object again through its command recipe (which rebuilds it). The
/// arguments come typed from the event, checked against its key. A failure is reported
/// and the watch goes on.
fn rebuild(engine: &Engine, args: &WatchArgs, event: &StaleEvent) -> Result<(), Failure> {
    let rc = engine
        .config()
        .recipe(&event.recipe)
        .filter(|rc| rc.command.as_ref().is_some_and(|c| !c.is_empty()));
    let Some(rc) = rc else {
        let why = "not a command recipe of this configuration";
        return report(args, "skipped", event, why);
    };
    let command = CommandRecipe::new(&event.recipe, rc.clone());
    let words = match event.args_for(&command) {
        Ok(words) => words,
        Err(e) => return report(args, "skipped", event, &e.to_string()),
    };
    match engine.get_explained(&command, &words) {
        Ok(served) => {
            let outcome = match served.reason {
                Reason::HitMemory | Reason::HitDisk | Reason::HitShared => "fresh",
                _ => "rebuilt",
            };
            report(args, outcome, event, &served.reason.to_string())
        }
        Err(e) => report(args, "failed", event, &e.to_string()),
    }
}

/// Names, once, the inputs no watched root holds, and how to add a root for them.
fn warn_unwatched(engine: &Engine, unwatched: &[PathBuf]) {
    if unwatched.is_empty() {
        return;
    }
    let config = engine.config();
    let one = unwatched.len() == 1;
    let (them, their) = if one {
        ("it", "its")
    } else {
        ("them", "their")
    };
    let mut message = if one {
        "1 tracked input lies outside every watch root; changes to it are not reported:".to_owned()
    } else {
        format!(
            "{} tracked inputs lie outside every watch root; changes to them are not reported:",
            unwatched.len()
        )
    };
    for path in unwatched {
        message.push_str(&format!("\n  {}", show_path(engine, path)));
    }
    let mut roots: Vec<String> = config
        .watch
        .roots
        .iter()
        .map(|root| show_path(engine, root))
        .collect();
    for path in unwatched {
        let shown = show_path(engine, path.parent().unwrap_or(path));
        if !roots.contains(&shown) {
            roots.push(shown);
        }
    }
    let roots: Vec<String> = roots.iter().map(|r| format!("{r:?}")).collect();
    let file = config
        .file
        .as_deref()
        .map_or("trove.ron".to_owned(), |f| show_path(engine, f));
    Diagnostic::warning(message)
        .hint(format!(
            "to watch {them}, add {their} directory to the roots in {file}: `watch: (roots: [{}])`",
            roots.join(", ")
        ))
        .eprint();
}

/// A path relative to the project (`.` for the project itself), else as it is.
fn show_path(engine: &Engine, path: &Path) -> String {
    let dir = engine.config().dir.as_path();
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if path == dir || path == canonical {
        return ".".to_owned();
    }
    human::relative(path, &[dir, &canonical])
}
