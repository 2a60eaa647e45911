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

/// Whether `path` lies strictly under the directory `dir` (both plain absolute paths).
fn under(path: &str, dir: &str) -> bool {
    match path.strip_prefix(dir) {
        Some(rest) => dir == "/" || rest.starts_with('/'),
        None => false,
    }
}

/// What the groups of a trace settled before its files are checked.
#[derive(Default)]
pub(crate) struct Vouched {
    /// Per input: its absence is vouched for by its group (no `stat` needed).
    pub(crate) skip: Vec<bool>,
    /// Groups whose stamp did not vouch (index of the group input): refreshed if the
    /// trace turns out valid.
    pub(crate) stale_groups: Vec<usize>,
    /// How many absences were vouched for.
    pub(crate) count: u64,
    /// How many directory inputs (a directory recorded at a group's path or above it)
    /// the groups' `stat`s checked: they need no `stat` of their own either.
    pub(crate) dirs: u64,
    /// Directory inputs a file input below them stands in for (`defer_dirs_under_files`),
    /// in trace order.
    pub(crate) deferred: Vec<usize>,
}

/// Stats each group's directory once (only groups with a member `wanted`) and marks the
/// members of every group whose stamp still holds.
pub(crate) fn vouch(trace: &Trace, wanted: impl Fn(usize) -> bool) -> Vouched {
    let mut out = Vouched::default();
    // The trace's directory inputs by path, made when the first group is met.
    let mut dir_inputs: Option<HashMap<&str, usize>> = None;
    for (g, input) in trace.inputs.iter().enumerate() {
        let Input::AbsentGroup {
            dir,
            stamp,
            members,
        } = input
        else {
            continue;
        };
        // Only members that are what a group may vouch for: absent file inputs under
        // the group's directory.
        let valid = |m: &u32| match trace.inputs.get(*m as usize) {
            Some(Input::File {
                path,
                state: FileState::Absent,
                ..
            }) => under(path, dir),
            _ => false,
        };
        if !members.iter().any(|&m| wanted(m as usize)) {
            continue;
        }
        let now = Stat::of(Path::new(dir));
        if let Ok(Some(now)) = &now
            && now.kind == FileKind::Dir
            && is_plain(dir)
        {
            // A directory input at this path or above it is checked by this very `stat`:
            // what `check_file` asks of a recorded directory is that the path still leads
            // to a directory, and resolving `dir` went through each of its ancestors as
            // a directory (`is_plain`: no `..` to step back out of one).
            let dirs = dir_inputs.get_or_insert_with(|| directory_inputs(trace));
            for path in std::iter::once(dir.as_str()).chain(ancestors(dir)) {
                if let Some(&d) = dirs.get(path)
                    && wanted(d)
                    && !out.skips(d)
                {
                    out.mark(trace.inputs.len(), d);
                    out.dirs += 1;
                }
            }
        }
        match now {
            Ok(Some(now)) if stamp.vouches(&now) => {
                for &m in members.iter().filter(|m| valid(m)) {
                    if !out.skips(m as usize) {
                        out.mark(trace.inputs.len(), m as usize);
                        out.count += 1;
                    }
                }
            }
            _ => out.stale_groups.push(g),
        }
    }
    out
}

/// Whether `path` is plain in the sense of [`plain`] (absolute, no `.` or `..`, no doubled
/// or trailing `/`, no replacement character), without allocating.
fn is_plain(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains('\u{FFFD}')
        && path[1..]
            .split('/')
            .all(|n| !n.is_empty() && n != "." && n != "..")
}

/// The proper ancestors of a plain path, nearest first, up to `/`, as slices of it.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut end = Some(path.len());
    std::iter::from_fn(move || {
        let slash = path[..end?].rfind('/')?;
        end = (slash > 0).then_some(slash);
        Some(if slash == 0 { "/" } else { &path[..slash] })
    })
}

/// Directory inputs a file input's check answers: for each directory input (recorded
/// `NotAFile { kind: Dir }`, wanted, not already answered by a group) at a plain path
/// with a file input recorded present at a plain path below it, also wanted and not
/// vouched for, the directory's own `stat` is left out and the file's check stands in
/// for it. A file's check finds the file at its path or the trace is invalid, and
/// resolving the path went through each ancestor as a directory (symlinks followed, as
/// the directory input's own `stat` follows them). The directories left out are listed
/// in `deferred`, in trace order: when a later check fails, they are checked first so the
/// first changed input in trace order still gives the reason.
pub(crate) fn defer_dirs_under_files(
    trace: &Trace,
    out: &mut Vouched,
    wanted: impl Fn(usize) -> bool,
) {
    let mut dirs: Option<HashMap<&str, usize>> = None;
    // Ancestors already walked up from: every one above them was walked too.
    let mut walked: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut answered: Vec<usize> = Vec::new();
    // The directory of the last file walked up from (a plain path): files of one
    // directory usually follow each other, and theirs was walked already.
    let mut last_parent: Option<&str> = None;
    for (index, input) in trace.inputs.iter().enumerate() {
        let Input::File {
            path,
            state: FileState::Present { .. },
            ..
        } = input
        else {
            continue;
        };
        if !wanted(index) || out.skips(index) {
            continue;
        }
        if let (Some(last), Some((parent, _))) = (last_parent, path.rsplit_once('/'))
            && parent == last
            && is_plain(&path[parent.len()..])
        {
            continue;
        }
        if !is_plain(path) {
            continue;
        }
        last_parent = path.rsplit_once('/').map(|(parent, _)| parent);
        let dirs = dirs.get_or_insert_with(|| directory_inputs(trace));
        if dirs.is_empty() {
            return;
        }
        for ancestor in ancestors(path) {
            if !walked.insert(ancestor) {
                break;
            }
            if let Some(&d) = dirs.get(ancestor) {
                answered.push(d);
            }
        }
    }
    answered.sort_unstable();
    for d in answered {
        if wanted(d) && !out.skips(d) {
            out.mark(trace.inputs.len(), d);
            out.deferred.push(d);
        }
    }
}

impl Vouched {
    pub(crate) fn skips(&self, index: usize) -> bool {
        self.skip.get(index).copied().unwrap_or(false)
    }

    fn mark(&mut self, inputs: usize, index: usize) {
        if self.skip.is_empty() {
            self.skip = vec![false; inputs];
        }
        self.skip[index] = true;
    }
}

/// The file inputs of a trace that recorded a directory, by path.
fn directory_inputs(trace: &Trace) -> HashMap<&str, usize> {
    trace
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(index, input)| match input {
            Input::File {
                path,
                state:
                    FileState::NotAFile {
                        kind: FileKind::Dir,
                    },
                ..
            } => Some((path.as_str(), index)),
            _ => None,
        })
        .collect()
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
    fn a_groups_stat_checks_the_directory_inputs_at_and_above_it_and_only_while_it_is_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("inc1")).unwrap();
        std::fs::create_dir(root.join("other")).unwrap();
        let file = |rel: &str, state: FileState| Input::File {
            role: crate::trace::Role::Data,
            path: root.join(rel).to_string_lossy().into_owned(),
            state,
        };
        let dir = FileState::NotAFile {
            kind: FileKind::Dir,
        };
        let mut trace = Trace {
            inputs: vec![
                file("inc1/a.h", FileState::Absent),
                file("inc1/b.h", FileState::Absent),
                file("", dir.clone()),
                file("inc1", dir.clone()),
                file("other", dir),
            ],
            ..Trace::default()
        };
        trace.inputs[2] = Input::File {
            role: crate::trace::Role::Data,
            path: root.to_string_lossy().into_owned(),
            state: FileState::NotAFile {
                kind: FileKind::Dir,
            },
        };
        group_absences(&mut trace);
        assert_eq!(group_dirs(&trace), [root.join("inc1")]);
        let v = vouch(&trace, |_| true);
        assert!(v.skips(2) && v.skips(3) && !v.skips(4));
        assert_eq!(v.dirs, 2);
        // Only the members a group may vouch for: the directory was just made (racy).
        assert_eq!((v.count, v.stale_groups.len()), (0, 1));
        std::fs::remove_dir(root.join("inc1")).unwrap();
        std::fs::write(root.join("inc1"), "now a file").unwrap();
        let v = vouch(&trace, |_| true);
        assert!(!v.skips(2) && !v.skips(3) && v.dirs == 0);
    }

    #[test]
    fn ancestors_and_plain_paths_agree_with_plain() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/a").collect::<Vec<_>>(), ["/"]);
        for path in [
            "/a/b", "/a", "a/b", "/a/./b", "/a/../b", "/a//b", "/a/b/", "/", "/a/.",
        ] {
            assert_eq!(is_plain(path), plain(path).is_some(), "{path}");
        }
    }

    #[test]
    fn a_present_file_answers_the_directory_inputs_above_it_only() {
        let dir = FileState::NotAFile {
            kind: FileKind::Dir,
        };
        let present = FileState::Present {
            stat: Stat {
                dev: 1,
                ino: 2,
                len: 3,
                mtime_ns: 4,
                ctime_ns: 5,
                kind: FileKind::File,
            },
            hash: trove_fingerprint::Digest([0; 32]),
            taken_ns: 6,
        };
        let file = |path: &str, state: &FileState| Input::File {
            role: crate::trace::Role::Data,
            path: path.into(),
            state: state.clone(),
        };
        let trace = Trace {
            inputs: vec![
                file("/", &dir),
                file("/usr", &dir),
                file("/usr/include", &dir),
                file("/usr/lib", &dir),
                file("/usr/include/stdio.h", &present),
                file("/usr/lib/absent.so", &FileState::Absent),
                file("/opt/x/../y", &present),
                file("/opt", &dir),
                file("/usr/include/stdlib.h", &present),
                file("/usr/include/..", &present),
            ],
            ..Trace::default()
        };
        let mut v = Vouched::default();
        defer_dirs_under_files(&trace, &mut v, |_| true);
        // `/usr/lib` has only an absence below it, `/opt` only a path with `..`.
        assert_eq!(v.deferred, [0, 1, 2]);
        // A file the check will not look at answers nothing.
        let mut v = Vouched::default();
        defer_dirs_under_files(&trace, &mut v, |i| i != 4 && i != 8);
        assert!(v.deferred.is_empty());
        // The second file of a directory answers as the first did.
        let mut v = Vouched::default();
        defer_dirs_under_files(&trace, &mut v, |i| i != 4);
        assert_eq!(v.deferred, [0, 1, 2]);
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
