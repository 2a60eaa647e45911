//! `trove watch`: report (and optionally rebuild) the objects each change makes stale.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use trove::{CommandRecipe, Residency};
use trove_graph::{Graph, Node};
use trove_watch::{WatchEvent, WatchOptions, Watcher};

use crate::cli::WatchArgs;
use crate::failure::Failure;
use crate::human;
use crate::project::Project;

/// Watches until killed.
pub(crate) fn watch(project: &Project, args: &WatchArgs) -> Result<u8, Failure> {
    let config = &project.config;
    let options = WatchOptions {
        roots: config.watch.roots.clone(),
        debounce: config.watch.debounce,
        ignore_dirs: vec![config.store.path.clone()],
    };
    let (tx, rx) = mpsc::channel();
    let watcher = Watcher::start(options, move |event| {
        let _ = tx.send(event);
    })?;
    // The watcher reports canonical paths; the store records paths as the configuration
    // spells them. Where the two differ (a symlinked temp dir, `..` in a root), each
    // changed path is also looked up under the configured spelling.
    let aliases: Vec<(PathBuf, PathBuf)> = watcher
        .roots()
        .iter()
        .cloned()
        .zip(config.watch.roots.iter().cloned())
        .filter(|(canonical, given)| canonical != given)
        .collect();
    let canonical_dir = config
        .dir
        .canonicalize()
        .unwrap_or_else(|_| config.dir.clone());
    let watch = Watch {
        project,
        args,
        aliases,
        bases: vec![config.dir.clone(), canonical_dir],
    };
    let roots: Vec<String> = watcher.roots().iter().map(|r| watch.show_path(r)).collect();
    eprintln!("watching {}", roots.join(", "));
    for event in rx {
        match event {
            WatchEvent::Changed(paths) => watch.changed(&paths)?,
            WatchEvent::Rescan { reason } => watch.rescan(&reason)?,
        }
    }
    drop(watcher);
    Ok(0)
}

/// What the loop needs to answer one event.
struct Watch<'a> {
    project: &'a Project,
    args: &'a WatchArgs,
    /// `(canonical root, configured root)` where they differ.
    aliases: Vec<(PathBuf, PathBuf)>,
    /// Directories paths are shown relative to.
    bases: Vec<PathBuf>,
}

impl Watch<'_> {
    fn show_path(&self, path: &Path) -> String {
        let bases: Vec<&Path> = self.bases.iter().map(PathBuf::as_path).collect();
        let shown = human::relative(path, &bases);
        if shown.is_empty() || path == self.bases[0] || path == self.bases[1] {
            ".".to_owned()
        } else {
            shown
        }
    }

    /// The graph of what the store holds now (other processes may have built since).
    fn graph(&self) -> Result<Graph, Failure> {
        Ok(self.project.engine.graph()?)
    }

    fn changed(&self, paths: &[PathBuf]) -> Result<(), Failure> {
        let mut lookup: Vec<PathBuf> = paths.to_vec();
        for path in paths {
            for (canonical, given) in &self.aliases {
                if let Ok(rest) = path.strip_prefix(canonical) {
                    lookup.push(given.join(rest));
                }
            }
        }
        let graph = self.graph()?;
        let stale = graph.stale_after_paths(&lookup);
        if stale.is_empty() {
            tracing::debug!(?paths, "changed, nothing stale");
            return Ok(());
        }
        for (key, path) in &stale {
            let (recipe, args) = object_name(&graph, key);
            let shown = self.show_path(path);
            if self.args.json {
                human::emit(
                    &serde_json::json!({
                        "event": "stale",
                        "recipe": recipe,
                        "args": human::args_value(&args),
                        "key": trove::Digest(*key).hex(),
                        "path": shown,
                    })
                    .to_string(),
                )?;
            } else {
                human::emit(&format!(
                    "stale: {}: {shown} changed",
                    trove::object_label(&recipe, &args)
                ))?;
            }
        }
        if self.args.rebuild {
            let keys: Vec<[u8; 32]> = stale.iter().map(|(k, _)| *k).collect();
            self.rebuild(&graph, &keys)?;
        }
        Ok(())
    }

    /// Events may have been lost: every stored object is validated again.
    fn rescan(&self, reason: &str) -> Result<(), Failure> {
        eprintln!("notice: changes may have been missed ({reason}); checking every object");
        let entries = self.project.engine.status()?;
        let mut keys = Vec::new();
        for entry in entries {
            let Residency::Stale(why) = &entry.residency else {
                continue;
            };
            if keys.contains(&entry.key.0) {
                continue;
            }
            keys.push(entry.key.0);
            if self.args.json {
                human::emit(
                    &serde_json::json!({
                        "event": "stale",
                        "recipe": entry.recipe,
                        "args": human::args_value(&entry.args),
                        "key": entry.key.hex(),
                        "reason": why.to_string(),
                    })
                    .to_string(),
                )?;
            } else {
                human::emit(&format!(
                    "stale: {}: {why}",
                    trove::object_label(&entry.recipe, &entry.args)
                ))?;
            }
        }
        if self.args.rebuild && !keys.is_empty() {
            let graph = self.graph()?;
            let ordered = graph.dependents(&keys);
            self.rebuild(&graph, &ordered)?;
        }
        Ok(())
    }

    /// Rebuilds the command-recipe objects among `keys`, in the order given (dependencies
    /// first). A failure is reported and the loop goes on.
    fn rebuild(&self, graph: &Graph, keys: &[[u8; 32]]) -> Result<(), Failure> {
        let config = &self.project.config;
        for key in keys {
            let (recipe, args) = object_name(graph, key);
            let label = trove::object_label(&recipe, &args);
            let rc = config
                .recipe(&recipe)
                .filter(|rc| rc.command.as_ref().is_some_and(|c| !c.is_empty()));
            let (Some(rc), Ok(argv)) = (rc, serde_json::from_str::<Vec<String>>(&args)) else {
                self.report(
                    key,
                    &recipe,
                    &args,
                    "skipped",
                    "not a command recipe of this configuration",
                )?;
                continue;
            };
            let command = CommandRecipe::new(&recipe, rc.clone());
            match self.project.engine.get_explained(&command, &argv) {
                Ok(served) => {
                    let reason = served.reason.to_string();
                    if self.args.json {
                        self.report(key, &recipe, &args, "rebuilt", &reason)?;
                    } else {
                        human::emit(&format!("rebuilt: {label} ({reason})"))?;
                    }
                }
                Err(e) => self.report(key, &recipe, &args, "failed", &e.to_string())?,
            }
        }
        Ok(())
    }

    /// Reports a rebuild outcome: a JSON line on stdout, or a line of text (on stderr
    /// for anything but success).
    fn report(
        &self,
        key: &[u8; 32],
        recipe: &str,
        args: &str,
        event: &str,
        reason: &str,
    ) -> Result<(), Failure> {
        if self.args.json {
            human::emit(
                &serde_json::json!({
                    "event": event,
                    "recipe": recipe,
                    "args": human::args_value(args),
                    "key": trove::Digest(*key).hex(),
                    "reason": reason,
                })
                .to_string(),
            )?;
        } else {
            eprintln!("{event}: {} ({reason})", trove::object_label(recipe, args));
        }
        Ok(())
    }
}

/// The recipe and stored arguments of the object `key` in `graph`.
fn object_name(graph: &Graph, key: &[u8; 32]) -> (String, String) {
    match graph.object_id(key).and_then(|id| graph.node(id)) {
        Some(Node::Object { recipe, args, .. }) => (recipe.clone(), args.clone()),
        _ => (String::new(), String::new()),
    }
}
