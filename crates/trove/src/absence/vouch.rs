//! The hit side of absences validated through their directory: one `stat` of each
//! group's directory, and the directory inputs a group's `stat` or a file's check already
//! answers left out (see the parent module and ARCHITECTURE.md).
//!
//! This runs on every disk hit of a traced object, over every input of its trace, so it
//! avoids work per input: a group vouched for is one mark (its members are never split
//! out of their string), one map of the trace's directory inputs serves both passes, its
//! keys hashed with `rustc-hash` (the keys are the trace's own paths, not chosen by
//! anyone who could aim at collisions, and the map holds a few dozen), and a path or a
//! group's names are checked for being plain in one pass over their bytes.

use std::path::Path;

use rustc_hash::{FxHashMap, FxHashSet};
use trove_fingerprint::{FileKind, FileState, Stat};

use crate::trace::{Input, Trace};

/// The trace's directory inputs by path: made once per validation, when first needed.
type DirInputs<'t> = FxHashMap<&'t str, usize>;

/// What the groups of a trace settled before its files are checked.
#[derive(Default)]
pub(crate) struct Vouched {
    /// Per input: no check of its own is needed (a group its stamp vouches for, a
    /// directory input a group's or a file's `stat` answers).
    pub(crate) skip: Vec<bool>,
    /// Groups whose stamp did not vouch (index of the group input): their members are
    /// checked one by one, and the group refreshed if the trace turns out valid.
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

/// Stats the directory of each `wanted` group once and marks every group whose stamp
/// still holds; then leaves out the directory inputs a file's check answers
/// ([`defer_dirs_under_files`]).
pub(crate) fn vouch(trace: &Trace, wanted: impl Fn(usize) -> bool) -> Vouched {
    let mut out = Vouched::default();
    let mut dir_inputs: Option<DirInputs<'_>> = None;
    for (g, input) in trace.inputs.iter().enumerate() {
        let Input::Absences {
            dir, stamp, names, ..
        } = input
        else {
            continue;
        };
        if !wanted(g) {
            continue;
        }
        let now = Stat::of(Path::new(dir));
        let plain_dir = is_plain(dir);
        if let Ok(Some(now)) = &now
            && now.kind == FileKind::Dir
            && plain_dir
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
        // Only under a plain directory: the members' names are plain relative paths
        // (the decoder refuses a trace holding another, `trace_wire::member_name`).
        match now {
            Ok(Some(now)) if stamp.vouches(&now) && plain_dir => {
                out.mark(trace.inputs.len(), g);
                out.count += names.as_bytes().iter().filter(|&&b| b == 0).count() as u64;
            }
            _ => out.stale_groups.push(g),
        }
    }
    defer_dirs_under_files(trace, &mut out, &mut dir_inputs, wanted);
    out
}

/// Whether `path` is plain in the sense of [`super::plain`] (absolute, no `.` or `..`, no
/// doubled or trailing `/`, no replacement character), in one pass without allocating.
pub(super) fn is_plain(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(plain_relative)
}

/// Whether `rel` is one or more names joined by single `/`s, none of them `.` or `..`,
/// with no replacement character (put in by a lossy conversion): one pass over its bytes.
pub(crate) fn plain_relative(rel: &str) -> bool {
    let b = rel.as_bytes();
    // Where the current name starts.
    let mut start = 0;
    for i in 0..=b.len() {
        if i == b.len() || b[i] == b'/' {
            let name = &b[start..i];
            if name.is_empty() || name == b"." || name == b".." {
                return false;
            }
            start = i + 1;
        } else if b[i] == 0xEF && b.get(i + 1..i + 3) == Some(&[0xBF, 0xBD][..]) {
            return false;
        }
    }
    true
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
fn defer_dirs_under_files<'t>(
    trace: &'t Trace,
    out: &mut Vouched,
    dirs: &mut Option<DirInputs<'t>>,
    wanted: impl Fn(usize) -> bool,
) {
    // Ancestors already walked up from: every one above them was walked too.
    let mut walked: FxHashSet<&str> = FxHashSet::default();
    let mut answered: Vec<usize> = Vec::new();
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
        let Some(slash) = path.as_bytes().iter().rposition(|&b| b == b'/') else {
            continue;
        };
        if walked.contains(&path[..slash]) {
            // Files of one directory usually follow each other: theirs was walked up
            // from already (and everything above it), so this one answers nothing new.
            continue;
        }
        if !is_plain(path) {
            continue;
        }
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
fn directory_inputs(trace: &Trace) -> DirInputs<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::absence::{group_absences, group_dirs, plain};

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
        // The group took its members' place: it, then the three directories.
        assert_eq!(trace.inputs.len(), 4);
        let v = vouch(&trace, |_| true);
        assert!(v.skips(1) && v.skips(2) && !v.skips(3));
        assert_eq!(v.dirs, 2);
        // The directory was just made (racy): the group does not vouch.
        assert_eq!((v.count, v.stale_groups.clone()), (0, vec![0]));
        std::fs::remove_dir(root.join("inc1")).unwrap();
        std::fs::write(root.join("inc1"), "now a file").unwrap();
        let v = vouch(&trace, |_| true);
        assert!(!v.skips(1) && !v.skips(2) && v.dirs == 0);
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
        let v = vouch(&trace, |_| true);
        // `/usr/lib` has only an absence below it, `/opt` only a path with `..`.
        assert_eq!(v.deferred, [0, 1, 2]);
        // A file the check will not look at answers nothing.
        let v = vouch(&trace, |i| i != 4 && i != 8);
        assert!(v.deferred.is_empty());
        // The second file of a directory answers as the first did.
        let v = vouch(&trace, |i| i != 4);
        assert_eq!(v.deferred, [0, 1, 2]);
    }
}
