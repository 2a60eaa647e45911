//! The hit side of absences validated through their directory: one `stat` of each
//! group's directory, and the directory inputs that `stat` answers left out; and the
//! directory inputs a file input implies, left out of the trace itself when it is
//! recorded (see the parent module and ARCHITECTURE.md).
//!
//! The vouching runs on every disk hit of a traced object, so it avoids work per input:
//! a group vouched for is one mark (its members are never split out of their string),
//! the map of the trace's directory inputs is made only when a group's `stat` found a
//! directory, its keys hashed with `rustc-hash` (the keys are the trace's own paths, not
//! chosen by anyone who could aim at collisions, and the map holds a few dozen), and a
//! path is checked for being plain without allocating.

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
    /// directory input a group's `stat` answers).
    pub(crate) skip: Vec<bool>,
    /// Groups whose stamp did not vouch (index of the group input): their members are
    /// checked one by one, and the group refreshed if the trace turns out valid.
    pub(crate) stale_groups: Vec<usize>,
    /// How many absences were vouched for.
    pub(crate) count: u64,
    /// How many directory inputs (a directory recorded at a group's path or above it)
    /// the groups' `stat`s checked: they need no `stat` of their own either.
    pub(crate) dirs: u64,
}

/// Stats the directory of each `wanted` group once and marks every group whose stamp
/// still holds, and the directory inputs at or above a group's directory while it is one.
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
                out.count += count_nuls(names.as_bytes()) as u64;
            }
            _ => out.stale_groups.push(g),
        }
    }
    out
}

/// Leaves out of a trace the directory inputs its file inputs imply: a path recorded as
/// leading to a directory (`NotAFile { kind: Dir }`: `/usr`, `/usr/include`, `inc1`) with
/// a file recorded present at a plain path below it. Every validation checks that file,
/// and its check either finds a file at its path (then resolving the path went through
/// each directory above it, symlinks followed as the directory input's own `stat` follows
/// them) or fails, and then the trace is invalid whatever the directory says: the
/// directory's own `stat` could change no answer, only the wording of a reason. Called
/// when a build's trace is complete and when a row an older trove wrote (which kept them)
/// is decoded.
pub(crate) fn leave_out_implied_dirs(trace: &mut Trace) {
    // Every proper ancestor of a present file's plain path.
    let mut implied: FxHashSet<&str> = FxHashSet::default();
    for input in &trace.inputs {
        let Input::File {
            path,
            state: FileState::Present { .. },
            ..
        } = input
        else {
            continue;
        };
        // Files of one directory usually follow each other: once a parent was walked up
        // from, so was everything above it.
        let parent = path.rfind('/').map_or("", |slash| &path[..slash]);
        if implied.contains(parent) || !is_plain(path) {
            continue;
        }
        for ancestor in ancestors(path) {
            if !implied.insert(ancestor) {
                break;
            }
        }
    }
    if implied.is_empty() {
        return;
    }
    // `implied` borrows the inputs' paths, so what to keep is decided before the trace's
    // inputs are changed.
    let keep: Vec<bool> = trace
        .inputs
        .iter()
        .map(|input| {
            !matches!(input, Input::File {
                path,
                state: FileState::NotAFile { kind: FileKind::Dir },
                ..
            } if implied.contains(path.as_str()))
        })
        .collect();
    let mut keep = keep.into_iter();
    trace.inputs.retain(|_| keep.next().unwrap_or(true));
}

/// Whether `path` is plain in the sense of [`super::plain`] (absolute, no `.` or `..`, no
/// doubled or trailing `/`, no replacement character), without allocating.
pub(super) fn is_plain(path: &str) -> bool {
    path.strip_prefix('/')
        .is_some_and(|rel| plain_names(rel, false))
}

/// Whether `rel` is one or more names joined by single `/`s, none of them `.` or `..`,
/// with no replacement character (put in by a lossy conversion), and when `no_nul`
/// holding no NUL either, in one pass over the bytes.
///
/// Each distinct member name of a trace is checked at every decode of its row (218
/// names of 15 bytes on average for a gcc compile). In a loop over the same names a
/// search for `/` (`split`) is faster; on a hit, with a new engine and cold caches, one
/// search for `/` and one for NUL per name cost more to start than to run: this pass took
/// the traced/declared hit pairs from 1.27-1.29 to 1.19-1.25 (BENCHMARKS.md, "Cold-cache
/// costs of the traced hit").
pub(crate) fn plain_names(rel: &str, no_nul: bool) -> bool {
    let bytes = rel.as_bytes();
    let mut start = 0;
    let mut ascii = true;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'/' {
            if !plain_name(&bytes[start..i]) {
                return false;
            }
            start = i + 1;
        } else if b == 0 && no_nul {
            return false;
        }
        ascii &= b.is_ascii();
    }
    plain_name(&bytes[start..]) && (ascii || !rel.contains('\u{FFFD}'))
}

/// Whether `joined` holds a group's names as [`Input::Absences`] keeps them (each member
/// followed by a NUL), every member plain in the sense of [`plain_names`] with `no_nul`:
/// what the format 6 decoder asks of a group's names, which it reads as one string.
///
/// A member is bad exactly when a delimiter (its start, a `/` or its closing NUL) is
/// followed by another, by `.` and a delimiter, or by `..` and a delimiter. So the
/// string is checked position by position for those patterns, in a loop the compiler
/// vectorizes (no branch per byte): on a gcc trace's few KiB of names it replaced a
/// check per distinct name, two varint passes per member and a copy per member.
pub(crate) fn plain_members(joined: &str) -> bool {
    let b = joined.as_bytes();
    match b.last() {
        None => return true,
        Some(&last) if last != 0 => return false,
        Some(_) => {}
    }
    // The first member starts at 0 as every other starts after a NUL.
    if bad_after(b, 0) {
        return false;
    }
    // Every position with three bytes after it, without a branch per position; the
    // last few one by one.
    let n = b.len().saturating_sub(3);
    let delim = |c: u8| (c == 0) | (c == b'/');
    let mut bad = false;
    if n > 0 {
        for (((&c0, &c1), &c2), &c3) in b[..n]
            .iter()
            .zip(&b[1..n + 1])
            .zip(&b[2..n + 2])
            .zip(&b[3..n + 3])
        {
            let (d1, d2) = (c1 == b'.', c2 == b'.');
            bad |= delim(c0) & (delim(c1) | (d1 & (delim(c2) | (d2 & delim(c3)))));
        }
    }
    if bad || (n..b.len()).any(|i| delim(b[i]) && bad_after(b, i + 1)) {
        return false;
    }
    b.is_ascii() || !joined.contains('\u{FFFD}')
}

/// Whether the name starting at `start` of a group's joined names (just after a
/// delimiter) is empty, `.` or `..`. Past the end is no name at all.
fn bad_after(b: &[u8], start: usize) -> bool {
    let at = |i: usize| b.get(start + i).copied();
    let ends = |c: Option<u8>| matches!(c, Some(0 | b'/'));
    match at(0) {
        None => false,
        Some(0 | b'/') => true,
        Some(b'.') => ends(at(1)) || (at(1) == Some(b'.') && ends(at(2))),
        Some(_) => false,
    }
}

/// Whether one name between `/`s is neither empty, `.` nor `..`.
fn plain_name(name: &[u8]) -> bool {
    !matches!(name, b"" | b"." | b"..")
}

/// How many NUL bytes `bytes` holds (a group's member count: each name ends with one),
/// eight bytes at a time. The plain `filter(..).count()` compiles to a loop over four
/// bytes at a time that was half of the vouching pass's own time on a gcc trace.
fn count_nuls(bytes: &[u8]) -> usize {
    const LOW7: u64 = u64::from_ne_bytes([0x7F; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let (words, rest) = bytes.as_chunks::<8>();
    let mut nuls = 0;
    for word in words {
        let x = u64::from_ne_bytes(*word);
        // Each byte's high bit set when the byte is not zero: adding 0x7F to its low
        // seven bits sets it unless they are all zero (and never carries out of the byte).
        let nonzero = (((x & LOW7) + LOW7) | x) & HIGH;
        nuls += 8 - nonzero.count_ones() as usize;
    }
    nuls + rest.iter().filter(|&&b| b == 0).count()
}

/// The proper ancestors of a plain path, nearest first, up to `/`, as slices of it.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut end = Some(path.len());
    std::iter::from_fn(move || {
        // A byte search (a `/` is never part of a longer UTF-8 sequence): `rfind('/')`
        // set up a char searcher per call, and its 18 groups' walks up to `/` made a gcc
        // object's vouching 45,000 instructions per hit against 35,800 now (callgrind).
        let slash = path.as_bytes()[..end?].iter().rposition(|&b| b == b'/')?;
        end = (slash > 0).then_some(slash);
        Some(if slash == 0 { "/" } else { &path[..slash] })
    })
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

    /// Names on each side of every rule: empty, `.` and `..` parts, doubled, leading and
    /// trailing `/`, non-ASCII, a replacement character.
    const TRICKY: &[&str] = &[
        "a",
        "a/b",
        "a.h",
        ".a",
        "a.",
        "..a",
        "a..",
        "...",
        ".",
        "..",
        "",
        "/",
        "a/",
        "/a",
        "a//b",
        "a/./b",
        "a/../b",
        "a/.",
        "a/..",
        "./a",
        "../a",
        "é/ü.h",
        "a\u{FFFD}b",
    ];

    #[test]
    fn plain_names_answers_as_a_split_on_slashes_does() {
        let split = |rel: &str, no_nul: bool| {
            !(rel.contains('\u{FFFD}') || no_nul && rel.contains('\0'))
                && rel.split('/').all(|n| !matches!(n, "" | "." | ".."))
        };
        // NULs, a lone replacement character, wider UTF-8.
        let more = ["\u{FFFD}", "a\0b", "\0", "a/\0", "日本/語.h"];
        for rel in TRICKY.iter().chain(&more) {
            for no_nul in [false, true] {
                assert_eq!(
                    plain_names(rel, no_nul),
                    split(rel, no_nul),
                    "{rel:?} {no_nul}"
                );
            }
        }
    }

    #[test]
    fn joined_members_are_plain_exactly_when_each_member_is() {
        let reference = |joined: &str| {
            joined.is_empty()
                || (joined.ends_with('\0')
                    && joined.split_terminator('\0').all(|m| plain_names(m, true)))
        };
        let names: Vec<&str> = TRICKY
            .iter()
            .copied()
            .chain(["bits/types.h", "x86_64-linux-gnu/bits/stdio.h"])
            .collect();
        // Every sequence of up to three of them, each closed by a NUL (or the last one
        // not), so each bad name meets every position relative to the vectorized loop's
        // end and to its neighbours.
        let mut checked = 0;
        for &a in &names {
            for &b in &names {
                for &c in &names {
                    let joined = format!("{a}\0{b}\0{c}\0");
                    assert_eq!(plain_members(&joined), reference(&joined), "{joined:?}");
                    let open = format!("{a}\0{b}\0{c}");
                    assert_eq!(plain_members(&open), reference(&open), "{open:?}");
                    checked += 2;
                }
            }
        }
        assert_eq!(checked, 2 * names.len().pow(3));
        // Long runs: a bad name at each offset of a long string of good ones.
        for bad in [".", "..", "", "a//b", "a/", "/a", "\u{FFFD}"] {
            for at in 0..40 {
                let mut joined = String::new();
                for i in 0..40 {
                    joined.push_str(if i == at { bad } else { "stdio.h" });
                    joined.push('\0');
                }
                assert!(!plain_members(&joined), "{bad:?} at {at}");
            }
        }
        assert!(plain_members(""));
        assert!(plain_members(&"a.h\0".repeat(100)));
        // Every string of up to five bytes of the bytes that matter (the fuzzer found
        // the loop's slices out of range on a two-byte string).
        let mut short = vec![String::new()];
        for _ in 0..5 {
            short = short
                .iter()
                .flat_map(|s| ["a", ".", "/", "\0"].map(|c| format!("{s}{c}")))
                .collect();
            for joined in &short {
                assert_eq!(plain_members(joined), reference(joined), "{joined:?}");
            }
        }
    }

    #[test]
    fn nuls_are_counted_in_every_position_and_beside_any_byte() {
        for len in 0..40 {
            for seed in 0..64u32 {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| match (i as u32 * 7 + seed * 13) % 5 {
                        0 => 0,
                        1 => 0x80,
                        2 => 0xFF,
                        3 => 0x01,
                        _ => b'a',
                    })
                    .collect();
                let want = bytes.iter().filter(|&&b| b == 0).count();
                assert_eq!(count_nuls(&bytes), want, "{bytes:?}");
            }
        }
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
    fn only_the_directory_inputs_above_a_present_file_are_left_out() {
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
        let inputs = vec![
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
            file("/usr/include/sys", &dir),
            file("/srv", &present),
        ];
        let mut trace = Trace {
            inputs: inputs.clone(),
            ..Trace::default()
        };
        leave_out_implied_dirs(&mut trace);
        // `/usr/lib` has only an absence below it, `/opt` only a path with `..`,
        // `/usr/include/sys` nothing; a present file implies no directory at its own path.
        let expected: Vec<Input> = inputs
            .iter()
            .enumerate()
            .filter(|(i, _)| ![0, 1, 2].contains(i))
            .map(|(_, input)| input.clone())
            .collect();
        assert_eq!(trace.inputs, expected);
        // Nothing present below them: every directory stays.
        let mut trace = Trace {
            inputs: vec![
                file("/usr", &dir),
                file("/usr/lib/absent.so", &FileState::Absent),
            ],
            ..Trace::default()
        };
        let before = trace.clone();
        leave_out_implied_dirs(&mut trace);
        assert_eq!(trace, before);
    }
}
