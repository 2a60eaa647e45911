//! Absent paths validated through their directory.
//!
//! A traced command looks up many paths that are not there (a compiler searches every
//! include directory for every header). Each absence is an input of its own
//! (`Input::File` with `FileState::Absent`), and checking them one `stat` each made a
//! traced object's hit many times slower than a declared one's. When a build is finished,
//! the absences are grouped under the deepest existing directory `D` each one hangs from,
//! and `D`'s stat stamp is recorded as an accelerator input (`Input::AbsentGroup`): on a
//! hit, one `stat` of `D` with the same stamp (and not racy) vouches that every member is
//! still absent, because adding an entry to `D` changes its mtime and ctime. Otherwise the
//! members are checked one by one, as before, and the group's stamp is refreshed. The
//! soundness argument is in ARCHITECTURE.md ("Absences validated through their
//! directory").

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use trove_fingerprint::{FileKind, FileState, Stat};

use crate::trace::{Input, Trace};

mod vouch;

pub(crate) use vouch::{Vouched, vouch};

/// A directory's stat fields and when they were taken (read before the stat).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DirStamp {
    pub(crate) stat: Stat,
    pub(crate) taken_ns: i64,
}

impl DirStamp {
    /// Whether `now` (a stat of the directory, following symlinks) proves the directory's
    /// entries unchanged since the stamp was taken.
    pub(crate) fn vouches(&self, now: &Stat) -> bool {
        *now == self.stat && now.kind == FileKind::Dir && !now.is_racy(self.taken_ns)
    }
}

/// Groups need at least this many members: a group of one costs the same `stat`.
const MIN_MEMBERS: usize = 2;

/// The path's components after the root, if it is a plain absolute path that reads back
/// exactly as written: no `.` or `..`, no doubled or trailing `/`, no character a lossy
/// conversion put in. Other paths are not grouped (they are checked one by one).
fn plain(path: &str) -> Option<Vec<&str>> {
    if path.contains('\u{FFFD}') || !path.starts_with('/') {
        return None;
    }
    let mut names = Vec::new();
    for (i, c) in Path::new(path).components().enumerate() {
        match c {
            Component::RootDir if i == 0 => {}
            Component::Normal(name) => names.push(name.to_str()?),
            _ => return None,
        }
    }
    let rebuilt = format!("/{}", names.join("/"));
    (rebuilt == path && !names.is_empty()).then_some(names)
}

/// The directory an absent path is anchored in: the deepest existing ancestor when it is
/// a directory, or, when the deepest existing ancestor is not a directory (`main.c/x`),
/// that file's parent. `None` when the absence cannot be anchored (an ancestor cannot be
/// looked up, the path exists, a symlink stands in the way): the path is then checked on
/// its own. `lookups` caches stats of ancestors, which many absent paths share.
fn anchor(path: &str, lookups: &mut HashMap<String, Option<FileKind>>) -> Option<String> {
    let names = plain(path)?;
    let prefix = |k: usize| format!("/{}", names[..k].join("/"));
    for k in (0..names.len()).rev() {
        let ancestor = prefix(k);
        let kind = match lookups.get(&ancestor) {
            Some(kind) => *kind,
            None => {
                let kind = Stat::of(Path::new(&ancestor)).ok()?.map(|s| s.kind);
                lookups.insert(ancestor.clone(), kind);
                kind
            }
        };
        match kind {
            None => continue,
            Some(FileKind::Dir) => return Some(ancestor),
            // Not a directory: its parent's entry decides (the root is a directory).
            Some(_) => return (k > 0).then(|| prefix(k - 1)),
        }
    }
    None
}

/// A directory opened to take its stamp and look up its entries by handle, so the stamp
/// and the lookups are about the same directory even if its path is retargeted meanwhile.
struct OpenDir {
    file: std::fs::File,
}

impl OpenDir {
    fn open(dir: &Path) -> Option<OpenDir> {
        let file = std::fs::File::open(dir).ok()?;
        Some(OpenDir { file })
    }

    fn stat(&self) -> Option<Stat> {
        let stat = Stat::from_metadata(&self.file.metadata().ok()?);
        (stat.kind == FileKind::Dir).then_some(stat)
    }

    /// Whether `path` (under this directory, at `dir`) is absent for a reason this
    /// directory's entries alone decide: its first name below the directory has no
    /// entry, or names something that is neither a directory nor a symlink while the path
    /// goes deeper (ENOTDIR). A dangling symlink is not such a reason (its target may
    /// appear elsewhere).
    #[cfg(unix)]
    fn holds(&self, dir: &Path, path: &Path) -> bool {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let Ok(rest) = path.strip_prefix(dir) else {
            return false;
        };
        let mut names = rest.components();
        let Some(Component::Normal(first)) = names.next() else {
            return false;
        };
        let deeper = names.next().is_some();
        let Ok(name) = std::ffi::CString::new(first.as_bytes()) else {
            return false;
        };
        // SAFETY: an all-zero `stat` is a valid value, which fstatat overwrites.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open for the call, `name` is NUL-terminated and `st`
        // is writable; AT_SYMLINK_NOFOLLOW stats the entry itself.
        let rc = unsafe {
            libc::fstatat(
                self.file.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
        }
        let format = st.st_mode & libc::S_IFMT;
        deeper && format != libc::S_IFDIR && format != libc::S_IFLNK
    }

    #[cfg(not(unix))]
    fn holds(&self, _dir: &Path, _path: &Path) -> bool {
        false
    }
}

/// The stamp of `dir` and which of `members` (indices of absent file inputs of `trace`)
/// it vouches for: the stamp is taken first (`taken_ns` before the stat), then each
/// member's absence is checked again in the directory it was taken of. `None` when `dir`
/// cannot be opened as a directory.
fn stamp(dir: &str, trace: &Trace, members: &[u32]) -> Option<(DirStamp, Vec<u32>)> {
    let taken_ns = trove_fingerprint::now_ns();
    let open = OpenDir::open(Path::new(dir))?;
    let stat = open.stat()?;
    let kept = members
        .iter()
        .copied()
        .filter(|&m| match trace.inputs.get(m as usize) {
            Some(Input::File {
                path,
                state: FileState::Absent,
                ..
            }) => open.holds(Path::new(dir), Path::new(path)),
            _ => false,
        })
        .collect();
    Some((DirStamp { stat, taken_ns }, kept))
}

/// Adds a group input for every directory under which at least [`MIN_MEMBERS`] of the
/// trace's absent paths are anchored. Called once a build's trace is complete.
pub(crate) fn group_absences(trace: &mut Trace) {
    let mut lookups = HashMap::new();
    let mut by_dir: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (index, input) in trace.inputs.iter().enumerate() {
        if let Input::File {
            path,
            state: FileState::Absent,
            ..
        } = input
            && let (Some(dir), Ok(index)) = (anchor(path, &mut lookups), u32::try_from(index))
        {
            by_dir.entry(dir).or_default().push(index);
        }
    }
    for (dir, members) in by_dir {
        if members.len() < MIN_MEMBERS {
            continue;
        }
        if let Some((stamp, members)) = stamp(&dir, trace, &members)
            && members.len() >= MIN_MEMBERS
        {
            trace.inputs.push(Input::AbsentGroup {
                dir,
                stamp,
                members,
            });
        }
    }
}

/// After a valid check in which `stale_groups` did not vouch (and their members were
/// checked one by one and found absent): each group gets a new stamp, keeping the members
/// it still vouches for, so the next hit is cheap again. `refreshed` is the trace to
/// store instead (created from `trace` when needed). A stamp that is racy now is not
/// recorded (the next hit would not trust it either).
pub(crate) fn refresh(trace: &Trace, stale_groups: &[usize], refreshed: &mut Option<Trace>) {
    for &g in stale_groups {
        let Some(Input::AbsentGroup { dir, members, .. }) = trace.inputs.get(g) else {
            continue;
        };
        let Some((new, kept)) = stamp(dir, trace, members) else {
            continue;
        };
        if new.stat.is_racy(new.taken_ns) {
            continue;
        }
        let t = refreshed.get_or_insert_with(|| trace.clone());
        if let Some(Input::AbsentGroup { stamp, members, .. }) = t.inputs.get_mut(g) {
            *stamp = new;
            *members = kept;
        }
    }
}

/// The directories of a trace's groups, for tests and the benchmark's description.
#[allow(dead_code)]
pub(crate) fn group_dirs(trace: &Trace) -> Vec<PathBuf> {
    trace
        .inputs
        .iter()
        .filter_map(|i| match i {
            Input::AbsentGroup { dir, .. } => Some(PathBuf::from(dir)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_absolute_paths_are_grouped() {
        assert_eq!(plain("/a/b"), Some(vec!["a", "b"]));
        for odd in [
            "a/b",
            "/a/./b",
            "/a/../b",
            "/a//b",
            "/a/b/",
            "/",
            "/a/\u{FFFD}",
        ] {
            assert_eq!(plain(odd), None, "{odd}");
        }
    }

    #[test]
    fn an_absence_is_anchored_in_its_deepest_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("inc")).unwrap();
        std::fs::write(root.join("main.c"), "").unwrap();
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut lookups = HashMap::new();
        let a = |p: &str, l: &mut HashMap<_, _>| anchor(&s(root.join(p)), l);
        assert_eq!(a("inc/x.h", &mut lookups), Some(s(root.join("inc"))));
        assert_eq!(a("inc/bits/x.h", &mut lookups), Some(s(root.join("inc"))));
        assert_eq!(a("main.c/x", &mut lookups), Some(s(root.clone())));
        assert_eq!(a("main.c/x/y", &mut lookups), Some(s(root.clone())));
        assert_eq!(a("nope/deeper/x", &mut lookups), Some(s(root.clone())));
    }
}
