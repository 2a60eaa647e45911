//! The report of a traced run, and the log it is made from.
//!
//! While the command runs the tracer appends to a [`Log`]: one entry per distinct (use,
//! name), in the order the uses happened, names kept as the process gave them. Only after
//! the command has ended are names resolved ([`Resolver`]), filtered ([`Filter`]) and
//! folded into a [`Report`]; the order matters for one rule: a path the build wrote
//! before it used it as an input is the build's own output, not an input.

// Off the tracer's platforms only the public types are used.
#![cfg_attr(not(tracer), allow(dead_code))]

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::paths::{Filter, Resolver};

/// What a traced command touched: sets of absolute paths, sorted and deduplicated.
///
/// Paths under `/proc`, `/sys` and `/dev`, under the caller's ignored prefixes, and
/// matching its ignore globs are never listed. A path the command wrote before it used it
/// (created, truncated, renamed onto, ...) is an output and appears only in
/// [`writes`](Report::writes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Regular files opened for reading that existed (content inputs), including the
    /// programs in [`execs`](Report::execs), the dynamic loader the kernel mapped for
    /// them and the libraries they opened.
    pub reads: BTreeSet<PathBuf>,
    /// Paths opened, stat'ed, probed or executed that did not exist (`ENOENT`,
    /// `ENOTDIR`): include paths, import paths and `PATH` entries searched in vain.
    pub absent: BTreeSet<PathBuf>,
    /// Directories whose entries were listed (`getdents`).
    pub dirs: BTreeSet<PathBuf>,
    /// Paths that were stat'ed, accessed, or opened without reading content (directories,
    /// `O_PATH`) and existed, but are not in `reads` or `dirs`: existence and metadata
    /// inputs.
    pub stats: BTreeSet<PathBuf>,
    /// Programs executed: the files the kernel ran, symlinks resolved (the links named
    /// on the way are in [`symlinks`](Report::symlinks)), and for a script both the
    /// script and its interpreter.
    pub execs: BTreeSet<PathBuf>,
    /// Symlinks the command followed or read with `readlink` (pointing one elsewhere
    /// changes what the command sees).
    pub symlinks: BTreeSet<PathBuf>,
    /// Paths the command created, wrote, truncated, renamed, unlinked, made, or changed
    /// the mode or times of.
    pub writes: BTreeSet<PathBuf>,
    /// The paths in [`writes`](Report::writes) the command created, removed or renamed,
    /// or changed the mode of: each changed the listing of its directory.
    pub entries: BTreeSet<PathBuf>,
    /// Inputs the command wrote after using them (read, executed, listed or followed
    /// them first): a write into one of the object's own inputs.
    pub wrote_inputs: BTreeSet<PathBuf>,
    /// Network peers the command connected or tried to connect to (`AF_INET`,
    /// `AF_INET6`), as `ip:port` or `[ip6]:port`, whatever the result.
    pub connects: BTreeSet<String>,
    /// Unix-domain sockets the command connected to successfully: a path, or `@name`
    /// for an abstract socket. Local services, reported apart from the network.
    pub unix_connects: BTreeSet<String>,
    /// What the tracer could not see, as sentences (for example a process making
    /// system calls of another architecture). Empty when the trace is complete.
    pub gaps: BTreeSet<String>,
    /// How many uses the preloaded library logged without a stop (a measure of the
    /// tracer, not an input: the same uses are recorded either way).
    pub buffered: usize,
}

/// How a process used a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Use {
    /// Opened for reading and the open succeeded.
    Read,
    /// Looked up and not found.
    Absent,
    /// Looked up (stat, access, chdir, `O_PATH`) and found.
    Stat,
    /// Listed.
    List,
    /// Executed.
    Exec,
    /// Read with `readlink`: the name itself is a symlink input.
    Link,
    /// Contributes only the symlinks on the way to it (the file itself is recorded by
    /// another entry, under the name the kernel gave it).
    Via,
    /// Written (content, times), or truncated.
    Write,
    /// Created, removed, renamed or its mode changed: the listing of its directory
    /// changed too.
    Entry,
}

/// A name as recorded by the tracer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Name {
    /// The path the kernel reports for an open file descriptor: absolute, symlink-free.
    Exact(PathBuf),
    /// The name the process passed, joined to the absolute directory it was relative to;
    /// `follow` is whether the system call follows a symlink in the last component.
    Raw { path: PathBuf, follow: bool },
}

/// The tracer's record of one run, in the order things happened.
#[derive(Debug, Default)]
pub(crate) struct Log {
    seen: FxHashSet<(Use, Name)>,
    entries: Vec<(Use, Name)>,
    pub(crate) connects: BTreeSet<String>,
    pub(crate) unix_connects: BTreeSet<String>,
    pub(crate) gaps: BTreeSet<String>,
    /// Uses that came through the preloaded library's buffer (`crate::preload`).
    pub(crate) buffered: usize,
}

impl Log {
    /// Records a use; only the first of identical uses is kept, which is all the
    /// write-before-read rule needs.
    pub(crate) fn record(&mut self, what: Use, name: Name) {
        let entry = (what, name);
        if !self.seen.contains(&entry) {
            self.seen.insert(entry.clone());
            self.entries.push(entry);
        }
    }

    /// The uses recorded so far, in order.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[(Use, Name)] {
        &self.entries
    }

    /// Resolves, filters and folds the log into a report.
    pub(crate) fn into_report(self, filter: &Filter) -> Report {
        let mut resolver = Resolver::default();
        let mut states = States::default();
        for (what, name) in self.entries {
            let (path, links) = match name {
                Name::Exact(path) => (path, Vec::new()),
                Name::Raw { path, follow } => {
                    let resolved = resolver.resolve(&path, follow);
                    (resolved.path, resolved.links)
                }
            };
            for link in links {
                states.input(link, LINK);
            }
            match what {
                Use::Read => states.input(path, READ),
                Use::Absent => states.input(path, ABSENT),
                Use::Stat => states.input(path, STAT),
                Use::List => states.input(path, LIST),
                Use::Exec => states.input(path, EXEC),
                Use::Link => states.input(path, LINK),
                Use::Via => {}
                Use::Write => states.write(path),
                Use::Entry => {
                    states.entry(&path);
                    states.write(path);
                }
            }
        }
        let mut report = Report {
            connects: self.connects,
            unix_connects: self.unix_connects,
            gaps: self.gaps,
            buffered: self.buffered,
            ..Report::default()
        };
        for (path, bits) in states.0 {
            if filter.keeps(&path) {
                classify(&mut report, path, bits);
            }
        }
        report
    }
}

const READ: u16 = 1;
const ABSENT: u16 = 1 << 1;
const STAT: u16 = 1 << 2;
const LIST: u16 = 1 << 3;
const EXEC: u16 = 1 << 4;
const LINK: u16 = 1 << 5;
const WRITTEN: u16 = 1 << 6;
/// Written before any use as an input: the build's own output.
const OUTPUT: u16 = 1 << 7;
/// Used as a content input (read, executed, listed, followed), then written.
const WROTE_INPUT: u16 = 1 << 8;
/// Created, removed, renamed or its mode changed.
const ENTRY: u16 = 1 << 9;

/// Per resolved path, what happened to it.
#[derive(Default)]
struct States(FxHashMap<PathBuf, u16>);

impl States {
    fn input(&mut self, path: PathBuf, bit: u16) {
        let bits = self.0.entry(path).or_default();
        if *bits & OUTPUT == 0 {
            *bits |= bit;
        }
    }

    /// An entry of `path`'s directory made, removed, renamed or its mode changed: if the
    /// directory was listed before, the listing the command saw is gone, so the directory
    /// is an input written after its use. (Writing an entry's content changes nothing a
    /// listing records.)
    fn entry(&mut self, path: &std::path::Path) {
        if let Some(parent) = path.parent()
            && let Some(bits) = self.0.get_mut(parent)
            && *bits & (LIST | OUTPUT) == LIST
        {
            *bits |= WROTE_INPUT;
        }
        *self.0.entry(path.to_path_buf()).or_default() |= ENTRY;
    }

    fn write(&mut self, path: PathBuf) {
        let bits = self.0.entry(path).or_default();
        *bits |= WRITTEN;
        if *bits & OUTPUT != 0 {
            return;
        }
        if *bits & (READ | EXEC | LIST | LINK) != 0 {
            *bits |= WROTE_INPUT;
        } else {
            // Found absent or stat'ed, then made by the build: its own output, whose
            // earlier absence or metadata is no input (the next run finds it present).
            *bits = (*bits & !(ABSENT | STAT)) | OUTPUT;
        }
    }
}

fn classify(report: &mut Report, path: PathBuf, bits: u16) {
    if bits & WRITTEN != 0 {
        report.writes.insert(path.clone());
    }
    if bits & ENTRY != 0 {
        report.entries.insert(path.clone());
    }
    if bits & WROTE_INPUT != 0 {
        report.wrote_inputs.insert(path.clone());
    }
    if bits & OUTPUT != 0 {
        return;
    }
    if bits & LINK != 0 {
        report.symlinks.insert(path.clone());
    }
    if bits & EXEC != 0 {
        report.execs.insert(path.clone());
        report.reads.insert(path.clone());
    }
    if bits & READ != 0 {
        // Opened for reading: content when it is a regular file (or was, if it is gone
        // now); a directory or special file opened is only known to exist.
        match fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                if bits & LIST == 0 {
                    report.stats.insert(path.clone());
                }
            }
            _ => {
                report.reads.insert(path.clone());
            }
        }
    }
    if bits & LIST != 0 {
        report.dirs.insert(path.clone());
    }
    if bits & STAT != 0 && bits & (READ | EXEC | LIST) == 0 {
        report.stats.insert(path.clone());
    }
    if bits & ABSENT != 0 && bits & (READ | EXEC | LIST | STAT | LINK) == 0 {
        report.absent.insert(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(path: &str) -> Name {
        Name::Exact(PathBuf::from(path))
    }

    fn report(entries: &[(Use, Name)]) -> Report {
        let mut log = Log::default();
        for (what, name) in entries {
            log.record(*what, name.clone());
        }
        log.into_report(&Filter::new(&[], &[]).unwrap())
    }

    fn set(paths: &[&str]) -> BTreeSet<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn a_path_written_before_it_is_read_is_an_output() {
        let got = report(&[
            (Use::Write, exact("/w/out.txt")),
            (Use::Read, exact("/w/out.txt")),
        ]);
        assert_eq!(got.reads, set(&[]));
        assert_eq!(got.writes, set(&["/w/out.txt"]));
        assert_eq!(got.wrote_inputs, set(&[]));
    }

    #[test]
    fn a_path_read_then_written_is_a_wrote_input() {
        let got = report(&[
            (Use::Read, exact("/w/in.txt")),
            (Use::Write, exact("/w/in.txt")),
        ]);
        assert_eq!(got.reads, set(&["/w/in.txt"]));
        assert_eq!(got.wrote_inputs, set(&["/w/in.txt"]));
    }

    #[test]
    fn an_entry_made_in_a_directory_listed_before_makes_the_directory_a_wrote_input() {
        // Listed, then an entry made in it: the listing the command saw is gone.
        let got = report(&[(Use::List, exact("/w/d")), (Use::Entry, exact("/w/d/new"))]);
        assert_eq!(got.dirs, set(&["/w/d"]));
        assert_eq!(got.wrote_inputs, set(&["/w/d"]));
        assert_eq!(got.writes, set(&["/w/d/new"]));
        assert_eq!(got.entries, set(&["/w/d/new"]));
        // Made first, then listed: the command saw the entry, as the next run will.
        let got = report(&[(Use::Entry, exact("/w/d/new")), (Use::List, exact("/w/d"))]);
        assert_eq!(got.dirs, set(&["/w/d"]));
        assert_eq!(got.wrote_inputs, set(&[]));
        // An entry's content written: nothing a listing records changed.
        let got = report(&[(Use::List, exact("/w/d")), (Use::Write, exact("/w/d/log"))]);
        assert_eq!(got.wrote_inputs, set(&[]));
        assert_eq!(got.writes, set(&["/w/d/log"]));
        assert_eq!(got.entries, set(&[]));
        // An entry made deeper down is not an entry of the listed directory.
        let got = report(&[
            (Use::List, exact("/w/d")),
            (Use::Entry, exact("/w/d/sub/new")),
        ]);
        assert_eq!(got.wrote_inputs, set(&[]));
    }

    #[test]
    fn a_path_probed_absent_then_created_is_an_output_not_an_absence() {
        let got = report(&[
            (Use::Absent, exact("/w/gen.h")),
            (Use::Write, exact("/w/gen.h")),
        ]);
        assert_eq!(got.absent, set(&[]));
        assert_eq!(got.wrote_inputs, set(&[]));
        assert_eq!(got.writes, set(&["/w/gen.h"]));
    }

    #[test]
    fn a_stat_of_a_file_also_read_is_only_a_read() {
        let got = report(&[(Use::Stat, exact("/w/a")), (Use::Read, exact("/w/a"))]);
        assert_eq!(got.reads, set(&["/w/a"]));
        assert_eq!(got.stats, set(&[]));
    }

    #[test]
    fn ignored_paths_are_never_reported() {
        let got = report(&[
            (Use::Read, exact("/proc/self/status")),
            (Use::Write, exact("/dev/null")),
        ]);
        assert_eq!(got, Report::default());
    }
}
