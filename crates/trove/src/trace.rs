//! A trace: every input one build touched, each with the fingerprint it had.
//!
//! Traces are stored in the index as opaque bytes: a format byte, then postcard (format 6:
//! paths interned, absences held by their group, its names one string, and no directory
//! input a file implies, `trace_wire.rs`; formats 5, 4, 3 and 2, still read: before 6 a
//! group's names indices into the names table, before 5 directory inputs a file implies
//! kept, before 4 absences each an input of their own, and in 2 every path whole). A reader
//! that meets another format byte treats the variant as a miss, never as garbage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use trove_fingerprint::{Digest, FileState, GlobMode, ListingState};

/// The trace format this code writes and reads.
///
/// 2: the recipe's definition is part of the trace.
/// 3: the same trace with its file paths interned (`trace_wire.rs`).
/// 4: the layout of 3, where a group of absences holds its members
///    ([`Input::Absences`]) instead of naming inputs of their own.
/// 5: the layout of 4, without the directory inputs a file input implies
///    ([`crate::absence::leave_out_implied_dirs`]); 4, 3 and 2 are still read (their
///    groups upgraded by [`crate::absence::upgrade`], those directory inputs left out).
/// 6: the layout of 5, where a group's names are one string (as [`Input::Absences`]
///    holds them) instead of indices into the names table; 5 is still read as it is.
pub(crate) const TRACE_FORMAT: u8 = 6;

/// Format 5: read by the same decoder as 6, as it is (nothing to upgrade).
pub(crate) const TRACE_FORMAT_IMPLIED: u8 = 5;

/// Format 4: read by the same decoder as 6.
pub(crate) const TRACE_FORMAT_GROUPED: u8 = 4;

/// Format 3: read by the same decoder as 6 (it never holds an `Absences` input).
pub(crate) const TRACE_FORMAT_INDEXED: u8 = 3;

/// The format before paths were interned: still decoded, never written.
const TRACE_FORMAT_PLAIN: u8 = 2;

/// Why a file was read, for explanations and for the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum Role {
    /// A data file read by the recipe (or declared in the configuration).
    Data,
    /// A module, plugin, script or shared library.
    Module,
    /// One of the recipe's own source files.
    Source,
}

/// One input of a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Input {
    /// A file (or its absence) at an absolute path.
    File {
        role: Role,
        path: String,
        state: FileState,
    },
    /// A directory listing.
    Dir { path: String, state: ListingState },
    /// A glob under an absolute root: literal as the configuration wrote it, or
    /// gitignore-aware as recipe code discovers files with `Cx::glob`.
    Glob {
        root: String,
        pattern: String,
        mode: GlobMode,
        state: ListingState,
    },
    /// A directory named as an input: its whole tree (names, kinds, modes); its files are
    /// file inputs of their own.
    Tree { path: String, state: ListingState },
    /// An environment variable's value (or its absence).
    Env { name: String, value: Option<String> },
    /// Another object: its recipe, its arguments (postcard, to re-derive it), its key and
    /// the digest of its output (early cutoff compares this).
    Object {
        recipe: String,
        args_display: String,
        args: Vec<u8>,
        key: Digest,
        output: Digest,
    },
    /// A volatile source: the object expires this long after it was built.
    Volatile { name: String, ttl_ms: u64 },
    /// The compile-time digest of a recipe's sources (when they were not on disk).
    Code { digest: Digest },
    /// An input only a registered fingerprinter can fingerprint (`external.rs`): a
    /// Python module's AST, an installed distribution's version. Appended last, so
    /// traces without one encode as before; an older reader fails to decode a trace
    /// with one and treats the variant as a miss, as it would another format.
    External {
        kind: String,
        name: String,
        value: Option<String>,
    },
    /// How troves before [`Input::Absences`] grouped absences: `members` are indices of
    /// absent file inputs of their own. Decoding a format 3 or 2 trace turns each into an
    /// `Absences` input ([`crate::absence::upgrade`]); nothing writes one, and one a
    /// format 4 row holds anyway vouches for nothing.
    AbsentGroup {
        dir: String,
        stamp: crate::absence::DirStamp,
        members: Vec<u32>,
    },
    /// Absent file inputs anchored under the existing directory `dir`, held together with
    /// its stamp: while a `stat` of `dir` gives the same stamp (not racy), every member is
    /// still absent; otherwise each member is checked on its own (`absence.rs`). `names`
    /// holds each member's path below `dir`, each followed by a NUL
    /// (`stdio.h\0bits/types.h\0`): one allocation for the whole group, which a hit
    /// that the stamp vouches for never splits. Appended last, like `External`: an older
    /// reader fails to decode a trace with one and treats the variant as a miss.
    Absences {
        role: Role,
        dir: String,
        stamp: crate::absence::DirStamp,
        names: String,
    },
}

/// Everything one build depended on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Trace {
    pub(crate) inputs: Vec<Input>,
    /// Every version counter that covered the recipe, by qualified name.
    pub(crate) counters: BTreeMap<String, u64>,
    /// The recipe's definition when it was built, part by part.
    pub(crate) definition: BTreeMap<String, Digest>,
}

impl Trace {
    pub(crate) fn encode(&self) -> Vec<u8> {
        crate::trace_wire::encode(self, TRACE_FORMAT)
    }

    /// The format 2 bytes of this trace (what troves before format 3 wrote, groups of
    /// absences as they stored them), for tests.
    pub(crate) fn encode_plain(&self) -> Vec<u8> {
        let old = crate::absence::downgrade(self);
        postcard::to_extend(&old, vec![TRACE_FORMAT_PLAIN]).unwrap_or_default()
    }

    /// The format 3 bytes of this trace (what troves before format 4 wrote), for tests.
    pub(crate) fn encode_indexed(&self) -> Vec<u8> {
        crate::trace_wire::encode(&crate::absence::downgrade(self), TRACE_FORMAT_INDEXED)
    }

    /// `None` for another format, undecodable bytes or bytes left over after the trace:
    /// the variant is then a miss. Length prefixes are never trusted for allocation
    /// (serde caps preallocation; postcard checks a string's length against the input).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Trace> {
        let (&format, rest) = bytes.split_first()?;
        let mut trace = match format {
            TRACE_FORMAT | TRACE_FORMAT_IMPLIED => return crate::trace_wire::decode(rest),
            TRACE_FORMAT_GROUPED | TRACE_FORMAT_INDEXED => crate::trace_wire::decode(rest)?,
            // Format 2 never held a group of this kind (their names are checked only by
            // the interned formats' decoder).
            TRACE_FORMAT_PLAIN => match postcard::take_from_bytes::<Trace>(rest) {
                Ok((trace, []))
                    if !trace
                        .inputs
                        .iter()
                        .any(|i| matches!(i, Input::Absences { .. })) =>
                {
                    trace
                }
                _ => return None,
            },
            _ => return None,
        };
        crate::absence::upgrade(&mut trace);
        crate::absence::leave_out_implied_dirs(&mut trace);
        Some(trace)
    }

    pub(crate) fn push(&mut self, input: Input) {
        if !self.inputs.contains(&input) {
            self.inputs.push(input);
        }
    }

    /// The file paths this trace reads (for the watcher's coverage check): a group of
    /// absences by its directory.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().filter_map(|i| match i {
            Input::File { path, .. }
            | Input::Dir { path, .. }
            | Input::Tree { path, .. }
            | Input::Absences { dir: path, .. } => Some(path.as_str()),
            Input::Glob { root, .. } => Some(root.as_str()),
            _ => None,
        })
    }
}

/// What a path under the project starts with in a portable trace: `./data/x.csv`. Paths
/// recorded by a build are absolute, so no recorded path starts with it.
const PROJECT: &str = "./";

impl Trace {
    /// The trace as it travels to another machine: every path under `root` (the project)
    /// written relative to it (`./data/x.csv`), so a checkout at another absolute path
    /// validates it; paths outside the project (`/usr/bin/gcc`) stay absolute.
    #[cfg_attr(not(feature = "shared"), allow(dead_code))]
    pub(crate) fn portable(&self, root: &std::path::Path) -> Trace {
        let root = root.to_string_lossy();
        let root = root.trim_end_matches('/');
        self.map_paths(|path| {
            if path == root {
                Some(PROJECT.to_owned())
            } else {
                let rest = path.strip_prefix(root)?.strip_prefix('/')?;
                Some(format!("{PROJECT}{rest}"))
            }
        })
    }

    /// A portable trace made absolute again under this machine's `root`.
    #[cfg_attr(not(feature = "shared"), allow(dead_code))]
    pub(crate) fn localized(&self, root: &std::path::Path) -> Trace {
        self.map_paths(|path| {
            let rest = path.strip_prefix(PROJECT)?;
            Some(if rest.is_empty() {
                root.display().to_string()
            } else {
                root.join(rest).display().to_string()
            })
        })
    }

    /// The trace with every path (and every external input's name) that `f` maps
    /// replaced.
    fn map_paths(&self, f: impl Fn(&str) -> Option<String>) -> Trace {
        let map = |p: &String| f(p).unwrap_or_else(|| p.clone());
        let inputs = self
            .inputs
            .iter()
            .map(|input| match input {
                Input::File { role, path, state } => Input::File {
                    role: *role,
                    path: map(path),
                    state: state.clone(),
                },
                Input::Dir { path, state } => Input::Dir {
                    path: map(path),
                    state: state.clone(),
                },
                Input::Tree { path, state } => Input::Tree {
                    path: map(path),
                    state: state.clone(),
                },
                Input::Glob {
                    root,
                    pattern,
                    mode,
                    state,
                } => Input::Glob {
                    root: map(root),
                    pattern: pattern.clone(),
                    mode: *mode,
                    state: state.clone(),
                },
                // A Python module's source is named by its path.
                Input::External { kind, name, value } => Input::External {
                    kind: kind.clone(),
                    name: map(name),
                    value: value.clone(),
                },
                // The members are named relative to the directory.
                Input::Absences {
                    role,
                    dir,
                    stamp,
                    names,
                } => Input::Absences {
                    role: *role,
                    dir: map(dir),
                    stamp: stamp.clone(),
                    names: names.clone(),
                },
                other => other.clone(),
            })
            .collect();
        Trace {
            inputs,
            counters: self.counters.clone(),
            definition: self.definition.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_portable_trace_names_project_paths_relative_to_the_project() {
        let state = trove_fingerprint::FileState::Absent;
        let trace = Trace {
            inputs: vec![
                Input::File {
                    role: Role::Data,
                    path: "/home/a/proj/data/x.csv".into(),
                    state: state.clone(),
                },
                Input::File {
                    role: Role::Module,
                    path: "/usr/bin/gcc".into(),
                    state: state.clone(),
                },
                Input::File {
                    role: Role::Data,
                    path: "/home/a/project2/y".into(),
                    state,
                },
            ],
            ..Trace::default()
        };
        let portable = trace.portable(std::path::Path::new("/home/a/proj"));
        let paths: Vec<_> = portable.paths().collect();
        assert_eq!(
            paths,
            ["./data/x.csv", "/usr/bin/gcc", "/home/a/project2/y"]
        );
        let there = portable.localized(std::path::Path::new("/srv/ci/checkout"));
        let paths: Vec<_> = there.paths().collect();
        assert_eq!(
            paths,
            [
                "/srv/ci/checkout/data/x.csv",
                "/usr/bin/gcc",
                "/home/a/project2/y"
            ]
        );
    }

    #[test]
    fn a_row_an_older_trove_wrote_loses_the_directory_inputs_a_file_implies_when_decoded() {
        let file = |path: &str, state: FileState| Input::File {
            role: Role::Data,
            path: path.into(),
            state,
        };
        let dir = || FileState::NotAFile {
            kind: trove_fingerprint::FileKind::Dir,
        };
        let present = FileState::Present {
            stat: trove_fingerprint::Stat {
                dev: 1,
                ino: 2,
                len: 3,
                mtime_ns: 4,
                ctime_ns: 5,
                kind: trove_fingerprint::FileKind::File,
            },
            hash: Digest([7; 32]),
            taken_ns: 6,
        };
        let trace = Trace {
            inputs: vec![
                file("/usr/include", dir()),
                file("/usr/include/stdio.h", present),
                file("/opt", dir()),
            ],
            ..Trace::default()
        };
        let written_in = |format: u8| crate::trace_wire::encode(&trace, format);
        let without: Vec<Input> = trace.inputs[1..].to_vec();
        for format in [TRACE_FORMAT_GROUPED, TRACE_FORMAT_INDEXED] {
            let decoded = Trace::decode(&written_in(format)).unwrap();
            assert_eq!(decoded.inputs, without, "format {format}");
        }
        assert_eq!(
            Trace::decode(&trace.encode_plain()).unwrap().inputs,
            without
        );
        // Trove never writes such a format 6 (or 5) row; a hand-made one is read as it
        // is, and its directory inputs are checked on their own.
        assert_eq!(Trace::decode(&trace.encode()), Some(trace.clone()));
        assert_eq!(
            Trace::decode(&written_in(TRACE_FORMAT_IMPLIED)),
            Some(trace)
        );
    }
}
