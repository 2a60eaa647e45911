//! Absent paths validated through their directory.
//!
//! A traced command looks up many paths that are not there (a compiler searches every
//! include directory for every header). Each absence is an input, and checking them one
//! `stat` each made a traced object's hit many times slower than a declared one's. When a
//! build is finished, the absences are grouped under the deepest existing directory `D`
//! each one hangs from, and the group is one input (`Input::Absences`) holding `D`, its
//! stat stamp and the members' names below it: on a hit, one `stat` of `D` with the same
//! stamp (and not racy) vouches that every member is still absent, because adding an
//! entry to `D` changes its mtime and ctime. Otherwise the members are checked one by
//! one, and the group's stamp is refreshed. A hit the stamp vouches for never looks at
//! the members: the trace holds them as one string, not an input each. The soundness
//! argument is in ARCHITECTURE.md ("Absences validated through their directory").

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use trove_fingerprint::{FileKind, FileState, Stat};

use crate::trace::{Input, Role, Trace};

mod vouch;

pub(crate) use vouch::{Vouched, leave_out_implied_dirs, plain_members, plain_names, vouch};

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

/// The stamp of `dir` and, for each of `paths` (absent paths under it), whether it
/// vouches for it: the stamp is taken first (`taken_ns` before the stat), then each
/// path's absence is checked again in the directory it was taken of. `None` when `dir`
/// cannot be opened as a directory.
fn stamp<'p>(dir: &str, paths: impl Iterator<Item = &'p str>) -> Option<(DirStamp, Vec<bool>)> {
    let taken_ns = trove_fingerprint::now_ns();
    let open = OpenDir::open(Path::new(dir))?;
    let stat = open.stat()?;
    let holds = paths
        .map(|path| open.holds(Path::new(dir), Path::new(path)))
        .collect();
    Some((DirStamp { stat, taken_ns }, holds))
}

/// The names of a group's members, in order (see [`Input::Absences`]).
pub(crate) fn members(names: &str) -> impl Iterator<Item = &str> {
    names.split_terminator('\0')
}

/// Adds member `name` to a group's `names`, as [`members`] reads them back.
pub(crate) fn push_member(names: &mut String, name: &str) {
    names.push_str(name);
    names.push('\0');
}

/// The path of member `name` of a group under `dir` (`.`, the project itself as explain
/// and graph display it, gives the bare name).
pub(crate) fn member_path(dir: &str, name: &str) -> String {
    match dir {
        "/" => format!("/{name}"),
        "." => name.to_owned(),
        _ => format!("{dir}/{name}"),
    }
}

/// `path` below the plain directory `dir`, if it is under it.
fn below<'p>(path: &'p str, dir: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(dir)?;
    if dir == "/" {
        Some(rest)
    } else {
        rest.strip_prefix('/')
    }
}

/// One group made of absent file inputs of the trace: where its first member was, which
/// inputs it takes in, and the group.
struct Made {
    at: usize,
    taken: Vec<usize>,
    group: Input,
}

/// The group of `paths` (indices and paths of absent inputs in one `role`, plain and
/// anchored under `dir`) with a fresh stamp, keeping the members it vouches for.
fn make(role: Role, dir: &str, paths: &[(usize, &str)]) -> Option<Made> {
    let (stamp, holds) = stamp(dir, paths.iter().map(|(_, p)| *p))?;
    let mut names = String::new();
    let mut taken = Vec::new();
    for (&(index, path), holds) in paths.iter().zip(holds) {
        // A name the decoder would refuse (`member_name`) stays an input of its own.
        if let Some(name) = below(path, dir)
            && holds
            && crate::trace_wire::member_name(name)
        {
            push_member(&mut names, name);
            taken.push(index);
        }
    }
    (taken.len() >= MIN_MEMBERS).then(|| Made {
        at: taken[0],
        taken,
        group: Input::Absences {
            role,
            dir: dir.to_owned(),
            stamp,
            names,
        },
    })
}

/// The trace's inputs with each group put where its first member was, every member
/// taken out, and the groups older troves stored ([`Input::AbsentGroup`]) dropped.
fn place(trace: &mut Trace, made: Vec<Made>) {
    let mut gone = vec![false; trace.inputs.len()];
    let mut groups: BTreeMap<usize, Input> = BTreeMap::new();
    for m in made {
        for &t in &m.taken {
            gone[t] = true;
        }
        groups.insert(m.at, m.group);
    }
    let old = std::mem::take(&mut trace.inputs);
    for (index, input) in old.into_iter().enumerate() {
        if let Some(group) = groups.remove(&index) {
            trace.inputs.push(group);
        }
        if !gone[index] && !matches!(input, Input::AbsentGroup { .. }) {
            trace.inputs.push(input);
        }
    }
}

/// Groups the trace's absent paths: every directory under which at least
/// [`MIN_MEMBERS`] of them (in one role) are anchored becomes one [`Input::Absences`] in
/// place of its members. Called once a build's trace is complete.
pub(crate) fn group_absences(trace: &mut Trace) {
    let mut lookups = HashMap::new();
    let mut by_dir: BTreeMap<(String, Role), Vec<(usize, &str)>> = BTreeMap::new();
    for (index, input) in trace.inputs.iter().enumerate() {
        if let Input::File {
            role,
            path,
            state: FileState::Absent,
        } = input
            && let Some(dir) = anchor(path, &mut lookups)
        {
            by_dir.entry((dir, *role)).or_default().push((index, path));
        }
    }
    let made: Vec<Made> = by_dir
        .iter()
        .filter(|(_, paths)| paths.len() >= MIN_MEMBERS)
        .filter_map(|((dir, role), paths)| make(*role, dir, paths))
        .collect();
    if !made.is_empty() {
        place(trace, made);
    }
}

/// Turns the groups an older trove stored ([`Input::AbsentGroup`], naming absent inputs
/// of their own) into [`Input::Absences`], with the stamp they had: their members were
/// checked against it the same way. Members that are not absent plain paths under the
/// group's directory stay inputs of their own; a member two groups name goes to the
/// first.
pub(crate) fn upgrade(trace: &mut Trace) {
    if !trace
        .inputs
        .iter()
        .any(|i| matches!(i, Input::AbsentGroup { .. }))
    {
        return;
    }
    let mut claimed = vec![false; trace.inputs.len()];
    let mut made = Vec::new();
    for input in &trace.inputs {
        let Input::AbsentGroup {
            dir,
            stamp,
            members,
        } = input
        else {
            continue;
        };
        if !vouch::is_plain(dir) {
            continue;
        }
        let mut by_role: BTreeMap<Role, (String, Vec<usize>)> = BTreeMap::new();
        for &m in members {
            let m = m as usize;
            if let Some(Input::File {
                role,
                path,
                state: FileState::Absent,
            }) = trace.inputs.get(m)
                && !claimed[m]
                && let Some(name) = below(path, dir)
                && crate::trace_wire::member_name(name)
            {
                claimed[m] = true;
                let (names, taken) = by_role.entry(*role).or_default();
                push_member(names, name);
                taken.push(m);
            }
        }
        made.extend(by_role.into_iter().map(|(role, (names, taken))| Made {
            at: taken[0],
            taken,
            group: Input::Absences {
                role,
                dir: dir.clone(),
                stamp: stamp.clone(),
                names,
            },
        }));
    }
    place(trace, made);
}

/// The trace as troves before [`Input::Absences`] stored it: every member an absent
/// file input of its own, and an [`Input::AbsentGroup`] naming them, appended last (for
/// the tests that such rows are still served).
pub(crate) fn downgrade(trace: &Trace) -> Trace {
    let mut out = Trace {
        counters: trace.counters.clone(),
        definition: trace.definition.clone(),
        ..Trace::default()
    };
    let mut groups = Vec::new();
    for input in &trace.inputs {
        let Input::Absences {
            role,
            dir,
            stamp,
            names,
        } = input
        else {
            out.inputs.push(input.clone());
            continue;
        };
        let mut indices = Vec::new();
        for name in members(names) {
            indices.push(out.inputs.len() as u32);
            out.inputs.push(Input::File {
                role: *role,
                path: member_path(dir, name),
                state: FileState::Absent,
            });
        }
        groups.push(Input::AbsentGroup {
            dir: dir.clone(),
            stamp: stamp.clone(),
            members: indices,
        });
    }
    out.inputs.extend(groups);
    out
}

/// After a valid check in which `stale_groups` did not vouch (and their members were
/// checked one by one and found absent): each group gets a new stamp, keeping the members
/// it still vouches for (the others become absent inputs of their own, after the group),
/// so the next hit is cheap again. `refreshed` is the trace to store instead (created
/// from `trace` when needed). A stamp that is racy now is not recorded (the next hit would
/// not trust it either).
pub(crate) fn refresh(trace: &Trace, stale_groups: &[usize], refreshed: &mut Option<Trace>) {
    let mut loose: Vec<(usize, Input)> = Vec::new();
    for &g in stale_groups {
        let Some(Input::Absences {
            role, dir, names, ..
        }) = trace.inputs.get(g)
        else {
            continue;
        };
        let paths: Vec<String> = members(names).map(|n| member_path(dir, n)).collect();
        let Some((new, holds)) = stamp(dir, paths.iter().map(String::as_str)) else {
            continue;
        };
        if new.stat.is_racy(new.taken_ns) {
            continue;
        }
        let mut still = String::new();
        for ((path, name), holds) in paths.into_iter().zip(members(names)).zip(holds) {
            if holds {
                push_member(&mut still, name);
            } else {
                loose.push((
                    g,
                    Input::File {
                        role: *role,
                        path,
                        state: FileState::Absent,
                    },
                ));
            }
        }
        let t = refreshed.get_or_insert_with(|| trace.clone());
        if let Some(Input::Absences { stamp, names, .. }) = t.inputs.get_mut(g) {
            *stamp = new;
            *names = still;
        }
    }
    // Inserted from the last group back, so the earlier groups' places hold.
    if let Some(t) = refreshed.as_mut() {
        for (g, input) in loose.into_iter().rev() {
            t.inputs.insert(g + 1, input);
        }
    }
}

/// A stamp of made-up values, for tests of traces that are never validated.
#[cfg(test)]
pub(crate) fn made_up_stamp() -> DirStamp {
    DirStamp {
        stat: Stat {
            dev: 1,
            ino: 2,
            len: 3,
            mtime_ns: 4,
            ctime_ns: 5,
            kind: FileKind::Dir,
        },
        taken_ns: 6,
    }
}

/// The directories of a trace's groups, for tests and the benchmark's description.
#[allow(dead_code)]
pub(crate) fn group_dirs(trace: &Trace) -> Vec<PathBuf> {
    trace
        .inputs
        .iter()
        .filter_map(|i| match i {
            Input::Absences { dir, .. } => Some(PathBuf::from(dir)),
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
    fn an_older_troves_groups_take_in_their_valid_members_wherever_the_group_stood() {
        let file = |path: &str, state: FileState| Input::File {
            role: Role::Data,
            path: path.into(),
            state,
        };
        let stamp = made_up_stamp();
        let present = FileState::NotAFile {
            kind: FileKind::File,
        };
        // The group first (no trove wrote it there): its indices still name the inputs
        // they named, and only absent plain paths under its directory join it.
        let mut trace = Trace {
            inputs: vec![
                Input::AbsentGroup {
                    dir: "/inc".into(),
                    stamp: stamp.clone(),
                    members: vec![1, 2, 3, 4, 1],
                },
                file("/inc/a.h", FileState::Absent),
                file("/inc/b.h", present.clone()),
                file("/other/c.h", FileState::Absent),
                file("/inc/bits/d.h", FileState::Absent),
            ],
            ..Trace::default()
        };
        upgrade(&mut trace);
        assert_eq!(
            trace.inputs,
            [
                Input::Absences {
                    role: Role::Data,
                    dir: "/inc".into(),
                    stamp,
                    names: "a.h\0bits/d.h\0".into(),
                },
                file("/inc/b.h", present),
                file("/other/c.h", FileState::Absent),
            ]
        );
        // And back: what an older trove stored, which upgrades to the same trace.
        let mut again = downgrade(&trace);
        assert_eq!(again.inputs.len(), 5);
        upgrade(&mut again);
        assert_eq!(again, trace);
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
