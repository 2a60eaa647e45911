//! What the tracer saw, as inputs of the object being built.
//!
//! Every path is fingerprinted after the command exited, so each is a *late* input
//! (see `changed_during_build`): one stamped at or after the build started may have been
//! saved while the command ran, and the object is then returned but not stored.

use std::path::Path;
use std::time::Duration;

use trove_fingerprint::{FileKind, FileState};

use crate::BuildError;
use crate::cx::Cx;
use crate::trace::{Input, Role};

use super::launch::warn_once;

/// The environment variables that choose which programs and libraries a command runs:
/// inputs of every command recipe.
pub(crate) const PROGRAM_ENV: &[&str] = &[
    "PATH",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "LD_AUDIT",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSAFEPATH",
    "PYTHONNOUSERSITE",
    "PERL5LIB",
    "PERLLIB",
    "RUBYLIB",
    "GEM_HOME",
    "GEM_PATH",
    "NODE_PATH",
    "CLASSPATH",
    "JAVA_HOME",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "LIBRARY_PATH",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
];

/// Records a tracer's report in the build's trace.
pub(crate) fn record(
    cx: &mut Cx,
    recipe: &str,
    max_age: Option<Duration>,
    report: &trove_trace::Report,
    never_inputs: &[std::path::PathBuf],
) -> Result<(), BuildError> {
    // Every path at once: what did not change since a recorded fingerprint keeps it, the
    // rest is hashed (`crate::reuse`).
    let mut files: Vec<(Role, &Path)> = report
        .execs
        .iter()
        .map(|p| (Role::Module, p.as_path()))
        .collect();
    for path in report
        .reads
        .iter()
        .chain(&report.symlinks)
        .chain(&report.absent)
        .chain(&report.stats)
    {
        if !report.execs.contains(path) {
            files.push((Role::Data, path.as_path()));
        }
    }
    for ((_, path), tracked) in files.iter().zip(cx.track_files_as(&files)) {
        // A path the command touched but this process cannot fingerprint (no permission)
        // was not readable by the command either: it is left out, and said.
        match tracked {
            Ok(FileState::NotAFile {
                kind: FileKind::Dir,
            }) => {}
            Ok(_) => cx.late.push(path.to_string_lossy().into_owned()),
            Err(e) => tracing::debug!(recipe, "traced path not tracked: {e}"),
        }
    }
    // Listed now, after the command: each listing is the one the command saw only if no
    // one else changed it meanwhile (`changed_during_build`). The command's own changes
    // are its outputs (one made after it listed the directory is a write into its input,
    // `wrote_inputs` below), and trove's own (the store, whose clock stamp is made as the
    // build starts; the scratch directory; the configuration) are never inputs.
    let own = |path: &Path| {
        report.writes.contains(path) || never_inputs.iter().any(|n| n.as_path() == path)
    };
    let written_in: std::collections::HashSet<&Path> =
        report.entries.iter().filter_map(|w| w.parent()).collect();
    for dir in &report.dirs {
        cx.read_dir_late(dir, &own, written_in.contains(dir.as_path()))?;
    }
    if let Some(first) = report.wrote_inputs.iter().next() {
        // The command changed a file it had read (or an entry of a directory it had
        // listed): what it read is gone, so the object cannot be checked against it.
        let shown = cx.engine.display_path(first);
        warn_once(recipe, "wrote-input", || {
            format!(
                "the command wrote into {shown}, which it had read or listed: the object is returned \
                 but not stored (a build must not change its own inputs)"
            )
        });
        cx.unstable = Some(first.to_string_lossy().into_owned());
    }
    if let Some(peer) = report.connects.iter().next() {
        match max_age {
            Some(ttl) => cx.trace.push(Input::Volatile {
                name: format!("network {peer}"),
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            }),
            None => warn_once(recipe, "network", || {
                format!(
                    "the command connected to {peer}: what it fetched is not tracked; give \
                     the recipe a `max_age` so its objects expire"
                )
            }),
        }
    }
    for gap in &report.gaps {
        warn_once(recipe, gap, || format!("the tracer could not see: {gap}"));
    }
    Ok(())
}
