//! The scratch directory of one run of a command (what trove hands the command: needed
//! objects, the depfile, the nested-request socket), and the sweep of those a `trove`
//! killed with SIGKILL left behind.
//!
//! A scratch directory is removed when its build ends, which a SIGKILL skips. So each one
//! lives in the user's own directory (`$TMPDIR/trove-<uid>`, made with mode 0700 and
//! checked to be the user's and closed to others' writes before it is used; the tracer's
//! look-up library is kept there too when there is no `$XDG_RUNTIME_DIR`, see
//! `trove-trace`'s `preload.rs`) and is held, for as long as its build runs, by
//! an advisory lock (`flock`) on the directory itself. The kernel drops that lock when
//! its process dies, however it dies. The first scratch directory a process makes
//! sweeps the others (directories named as it names them, nothing else): one whose lock
//! can be taken belongs to no live process, and is removed. A directory younger than
//! [`SWEEP_AGE`] is left alone whatever its lock says, since its maker may not have
//! taken the lock yet. The lock, not the pid in the name, decides: a pid may be reused,
//! or belong to another pid namespace sharing `/tmp`.
//!
//! When that directory cannot be used (another user made it, a symlink stands there),
//! scratch directories go straight under `$TMPDIR`, as before, and nothing is swept.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, SystemTime};

use crate::BuildError;

/// A scratch directory younger than this is never swept (its maker may be between
/// making it and locking it).
const SWEEP_AGE: Duration = Duration::from_secs(10);

static SCRATCH: AtomicU64 = AtomicU64::new(0);
static SWEEP: Once = Once::new();

/// A private directory for one command's scratch files, removed with its contents.
pub(crate) struct ScratchDir {
    dir: PathBuf,
    /// The directory opened and locked while the build runs (`None` outside the user's
    /// own directory of them).
    _held: Option<File>,
}

impl ScratchDir {
    pub(crate) fn new() -> Result<ScratchDir, BuildError> {
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            SCRATCH.fetch_add(1, Ordering::Relaxed),
            trove_fingerprint::now_ns()
        );
        let io = |dir: &Path| {
            let dir = dir.to_path_buf();
            move |source| BuildError::Io { path: dir, source }
        };
        let Some(parent) = own_parent() else {
            let dir = std::env::temp_dir().join(format!("trove-{name}"));
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            return Ok(ScratchDir { dir, _held: None });
        };
        SWEEP.call_once(|| sweep(parent));
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        // A directory no one else has opened yet: the lock is ours at once.
        let held = File::open(&dir).and_then(|held| {
            held.try_lock().map_err(std::io::Error::other)?;
            Ok(held)
        });
        match held {
            Ok(held) => Ok(ScratchDir {
                dir,
                _held: Some(held),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(io(&dir)(e))
            }
        }
    }

    /// The directory itself.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Removed while still locked: a sweep never sees it half removed and unlocked.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The user's own directory of scratch directories (`trove_trace::own_directory`: made
/// when missing; `None` when the path holds a symlink, another user's directory, one
/// others may write into, or no directory).
fn own_parent() -> Option<&'static Path> {
    static PARENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            trove_trace::own_directory(&std::env::temp_dir().join(format!("trove-{uid}")))
        })
        .as_deref()
}

/// Removes the scratch directories under `parent` that no live process holds.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !is_scratch_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        if let Err(e) = sweep_one(&path, now) {
            tracing::debug!(dir = %path.display(), "scratch directory left alone: {e}");
        }
    }
}

/// Whether `name` is one [`ScratchDir::new`] gives: three numbers joined by `-`.
fn is_scratch_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes `dir` if it is old enough and its lock can be taken (its process is gone).
fn sweep_one(dir: &Path, now: SystemTime) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let changed = meta.modified()?;
    if !meta.is_dir() || now.duration_since(changed).unwrap_or_default() < SWEEP_AGE {
        return Ok(());
    }
    let file = File::open(dir)?;
    if file.try_lock().is_ok() {
        tracing::debug!(dir = %dir.display(), "removing the scratch directory of a trove that was killed");
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_a_scratch_directory_is_given_are_swept() {
        assert!(is_scratch_name("4242-0-1796312365136624449"));
        for other in [
            "libtrove-preload-7b9e87f5a091441a.so",
            ".partial-4242",
            "4242-0",
            "4242-0-17-1",
            "4242--1",
            "-0-1",
            "42a-0-1",
        ] {
            assert!(!is_scratch_name(other), "{other}");
        }
    }
}
