//! Turning the names a process used into the paths the report lists.
//!
//! A traced process names files relative to its working directory or a directory file
//! descriptor, through symlinks and `..`. The tracer joins each name to the absolute
//! directory it was relative to (read from `/proc` while the process was stopped) and
//! keeps it raw; [`Resolver`] then walks it component by component the way the kernel
//! does, following symlinks where the system call did, so that `..` after a symlink goes
//! where the kernel went, and noting every symlink on the way (a symlink followed is an
//! input: pointing it elsewhere changes what the command reads). Past the first missing
//! component the rest of the name is applied lexically, which is all there is to follow.

// Off the tracer's platforms only the public types are used.
#![cfg_attr(not(tracer), allow(dead_code))]

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rustc_hash::FxHashMap;

/// The most symlinks one resolution follows, as the kernel's `ELOOP` limit.
const MAX_HOPS: usize = 40;

/// What `lstat` said about one absolute, symlink-free-prefix path.
#[derive(Clone, Debug)]
enum Node {
    Missing,
    Plain,
    Link(PathBuf),
}

/// A path resolved the kernel's way, with the symlinks followed to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) path: PathBuf,
    pub(crate) links: Vec<PathBuf>,
}

/// Resolves raw absolute names against the filesystem, remembering every `lstat`.
///
/// Its map, like the log's and the report's, hashes with `rustc-hash`: it is looked up
/// once per component of every name a command used (thousands per gcc compile), its
/// keys are the command's own paths (a command aiming at collisions slows only its own
/// trace), and SipHash over `Path` was 8 % of the tracer thread's samples on a python
/// build.
#[derive(Default)]
pub(crate) struct Resolver {
    nodes: FxHashMap<PathBuf, Node>,
}

impl Resolver {
    /// Resolves `raw` (absolute) as a system call would: intermediate symlinks are always
    /// followed, the last component only when `follow_last`.
    pub(crate) fn resolve(&mut self, raw: &Path, follow_last: bool) -> Resolved {
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, raw);
        let mut cur = PathBuf::from("/");
        let mut links = Vec::new();
        let mut hops = 0;
        let mut missing = false;
        while let Some(name) = todo.pop() {
            if name == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&name);
            let last = todo.is_empty();
            if missing || (last && !follow_last) {
                cur = next;
                continue;
            }
            match self.node(&next) {
                Node::Link(target) if hops < MAX_HOPS => {
                    hops += 1;
                    links.push(next);
                    if target.is_absolute() {
                        cur = PathBuf::from("/");
                    }
                    push_components(&mut todo, &target);
                }
                Node::Missing => {
                    missing = true;
                    cur = next;
                }
                Node::Link(_) | Node::Plain => cur = next,
            }
        }
        Resolved { path: cur, links }
    }

    fn node(&mut self, path: &Path) -> Node {
        if let Some(node) = self.nodes.get(path) {
            return node.clone();
        }
        // `/proc/self`, `/proc/PID/fd/N`, `/proc/PID/cwd` are the process's own: read
        // here they would be the tracer's. Past `/proc` the name stays as it is (and is
        // filtered out of the report).
        if path.starts_with("/proc") {
            return Node::Plain;
        }
        let node = match fs::symlink_metadata(path) {
            Err(_) => Node::Missing,
            Ok(meta) if meta.file_type().is_symlink() => match fs::read_link(path) {
                Ok(target) => Node::Link(target),
                Err(_) => Node::Missing,
            },
            Ok(_) => Node::Plain,
        };
        self.nodes.insert(path.to_path_buf(), node.clone());
        node
    }
}

/// Pushes the components of `path` onto `todo` so that popping yields them in order;
/// `.` is dropped and `..` kept as a marker for the walker.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let at = todo.len();
    for component in path.components() {
        match component {
            Component::Normal(name) => todo.insert(at, name.to_os_string()),
            Component::ParentDir => todo.insert(at, OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}

/// `path` with `.` removed and `..` applied to the preceding component, without looking
/// at the filesystem. Used to tell whether a name reached its file without symlinks.
pub(crate) fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether the name a tracee opened may have passed a symlink on its way to `exact`,
/// the file the kernel opened (symlinks resolved): when the two differ lexically, or
/// when the name has a `..`, which the kernel applies after following what precedes it
/// (`link/../real/a.h` with `link` -> `real` opens `real/a.h`, the name's lexical form,
/// yet retargeting `link` elsewhere changes the file it opens). The report resolves
/// such a name component by component and records the symlinks it passed.
pub(crate) fn may_pass_a_link(name: &Path, exact: &Path) -> bool {
    lexical(name) != exact || name.components().any(|c| c == Component::ParentDir)
}

/// The paths a report never lists: the kernel's pseudo filesystems, the caller's
/// prefixes (the store) and the configuration's `trace_ignore` globs.
pub(crate) struct Filter {
    prefixes: Vec<PathBuf>,
    globs: GlobSet,
}

impl Filter {
    /// Builds the filter; a glob that does not parse is returned with its error.
    pub(crate) fn new(
        ignore: &[PathBuf],
        globs: &[String],
    ) -> Result<Filter, (String, globset::Error)> {
        let mut prefixes: Vec<PathBuf> = ["/proc", "/sys", "/dev"]
            .iter()
            .map(PathBuf::from)
            .collect();
        prefixes.extend(ignore.iter().cloned());
        let mut builder = GlobSetBuilder::new();
        for glob in globs {
            builder.add(Glob::new(glob).map_err(|e| (glob.clone(), e))?);
        }
        let globs = builder.build().map_err(|e| (globs.join(", "), e))?;
        Ok(Filter { prefixes, globs })
    }

    /// Whether `path` may appear in a report.
    pub(crate) fn keeps(&self, path: &Path) -> bool {
        path.is_absolute()
            && !self.prefixes.iter().any(|prefix| path.starts_with(prefix))
            && !self.globs.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lexical_applies_dot_and_dot_dot() {
        assert_eq!(lexical(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(lexical(Path::new("/../x")), PathBuf::from("/x"));
    }

    #[test]
    fn resolving_goes_where_the_kernel_goes_through_symlinks_and_dot_dot() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir_all(root.join("real/deep")).unwrap();
        fs::write(root.join("real/file"), "x").unwrap();
        symlink(root.join("real/deep"), root.join("link")).unwrap();
        let mut resolver = Resolver::default();

        // `link/..` is `real`, not the directory holding `link`.
        let got = resolver.resolve(&root.join("link/../file"), true);
        assert_eq!(got.path, root.join("real/file"));
        assert_eq!(got.links, vec![root.join("link")]);

        // A missing name past the link is still placed under the link's target.
        let got = resolver.resolve(&root.join("link/none/x.h"), true);
        assert_eq!(got.path, root.join("real/deep/none/x.h"));

        // The last component is not followed for lstat-like calls.
        let got = resolver.resolve(&root.join("link"), false);
        assert_eq!(
            got,
            Resolved {
                path: root.join("link"),
                links: vec![]
            }
        );
    }

    #[test]
    fn a_link_into_proc_is_an_input_and_what_it_reaches_there_is_not_the_tracers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        symlink("/proc/self/fd/0", root.join("stdin")).unwrap();
        let got = Resolver::default().resolve(&root.join("stdin"), true);
        // Not the tracer's own standard input: `/proc/self` is not followed from here.
        assert_eq!(got.path, Path::new("/proc/self/fd/0"));
        assert_eq!(got.links, vec![root.join("stdin")]);
    }

    #[test]
    fn the_filter_drops_pseudo_filesystems_prefixes_and_globs() {
        let filter =
            Filter::new(&[PathBuf::from("/store")], &["/var/cache/**".to_string()]).unwrap();
        assert!(!filter.keeps(Path::new("/proc/self/maps")));
        assert!(!filter.keeps(Path::new("/dev/null")));
        assert!(!filter.keeps(Path::new("/store/v1/x")));
        assert!(!filter.keeps(Path::new("/var/cache/a/b")));
        assert!(filter.keeps(Path::new("/devices/x")));
        assert!(filter.keeps(Path::new("/usr/include/stdio.h")));
        assert!(Filter::new(&[], &["a[".to_string()]).is_err());
    }
}
