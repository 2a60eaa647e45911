//! How paths and globs are spelled as input names, and how a glob input is matched
//! against a changed path.
//!
//! The engine records inputs by name and the watcher reports paths; both sides must
//! spell a path the same way for the reverse index to find it, so the spelling lives
//! here, in one place, next to the code that reads it back.

use std::path::{MAIN_SEPARATOR, Path};

use globset::{GlobBuilder, GlobMatcher};

/// Separates a glob input's root directory from its pattern in the input name.
///
/// NUL cannot occur in a path on any platform trove supports, nor in a sensible glob
/// pattern, so splitting on the first NUL is unambiguous.
const GLOB_SEPARATOR: char = '\0';

/// The input name of a path-like input (`File`, `Dir`, `Module`, `Source`).
///
/// This is the path's lossy UTF-8 spelling, unchanged: no normalisation, no
/// canonicalisation. Give it the same absolute paths the watcher reports (canonical
/// root joined with the relative path), or the reverse index cannot match them.
///
/// ```
/// use std::path::Path;
/// assert_eq!(trove_graph::path_input_name(Path::new("/p/data/a.csv")), "/p/data/a.csv");
/// ```
pub fn path_input_name(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The input name of a glob input: `root`, a NUL character, then `pattern`.
///
/// `pattern` is matched against paths *relative to* `root`, with `/` as the separator;
/// `*` and `?` do not cross a `/`, and `**` matches any number of directories,
/// including none (so `data/**/*.csv` matches `data/new.csv`). Displays (DOT, JSON) show
/// the name as `root/pattern`.
///
/// ```
/// use std::path::Path;
/// let name = trove_graph::glob_input_name(Path::new("/p"), "data/**/*.csv");
/// assert_eq!(name, "/p\0data/**/*.csv");
/// assert!(trove_graph::glob_matches(&name, Path::new("/p/data/new.csv")));
/// assert!(!trove_graph::glob_matches(&name, Path::new("/p/data/new.txt")));
/// ```
pub fn glob_input_name(root: &Path, pattern: &str) -> String {
    let mut name = path_input_name(root);
    name.push(GLOB_SEPARATOR);
    name.push_str(pattern);
    name
}

/// Whether a change to `path` can change what the glob input `name` (made by
/// [`glob_input_name`]) lists.
///
/// True when `path` is under the glob's root and its relative path matches the pattern,
/// and also when `path` is the root itself (the root was removed or replaced). A pattern
/// that does not compile matches every path under its root: a glob that cannot be
/// understood must not hide a change.
pub fn glob_matches(name: &str, path: &Path) -> bool {
    CompiledGlob::new(name).matches(path)
}

/// Splits a glob input name into its root and pattern. A name without the separator is
/// all pattern, with an empty root.
pub(crate) fn split_glob_name(name: &str) -> (&str, &str) {
    name.split_once(GLOB_SEPARATOR).unwrap_or(("", name))
}

/// A glob input name as people read it: `root/pattern`.
pub(crate) fn display_glob_name(name: &str) -> String {
    let (root, pattern) = split_glob_name(name);
    if root.is_empty() {
        pattern.to_owned()
    } else if root.ends_with(MAIN_SEPARATOR) || root.ends_with('/') {
        format!("{root}{pattern}")
    } else {
        format!("{root}/{pattern}")
    }
}

/// A glob input with its pattern compiled once, kept in the graph so the watcher's
/// per-event lookups do not recompile it.
#[derive(Clone, Debug)]
pub(crate) struct CompiledGlob {
    root: String,
    /// `None` when the pattern does not compile: then everything under the root matches.
    matcher: Option<GlobMatcher>,
}

impl CompiledGlob {
    pub(crate) fn new(name: &str) -> Self {
        let (root, pattern) = split_glob_name(name);
        // The same options as trove-fingerprint's `compile_glob`, so the watcher marks
        // exactly the paths the glob would list.
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .ok()
            .map(|glob| glob.compile_matcher());
        CompiledGlob {
            root: root.to_owned(),
            matcher,
        }
    }

    /// The root directory, spelled as an input name.
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    pub(crate) fn matches(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        if relative.as_os_str().is_empty() {
            return true;
        }
        match &self.matcher {
            Some(matcher) => matcher.is_match(relative),
            None => true,
        }
    }
}
