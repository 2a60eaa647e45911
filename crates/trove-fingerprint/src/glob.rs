//! Globs: literal ones for what the user declared, gitignore-aware ones for discovery.
//!
//! A glob's state covers every entry the pattern matches — files, and the directories,
//! symlinks and special files it matches too (`data/**` matches `data/sub`, so a new empty
//! directory there changes it) — each by name, kind and permission bits. The walk still
//! descends into directories the pattern does not match. The files it matched are
//! returned for the caller to record as file inputs.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::listing::{Entry, Listing, ListingState};

/// Which files a glob may see.
///
/// A glob the user wrote in the configuration is [`Literal`](GlobMode::Literal): it
/// matches exactly what it says, since `.gitignore` must never hide a file the user
/// named. A glob a recipe's code runs to discover its inputs (`Cx::glob`) is
/// [`Discovery`](GlobMode::Discovery): there, build output and scratch files the project
/// ignores are not inputs. A glob must be re-checked in the mode it was recorded in, so a
/// trace that holds globs of both kinds records the mode with each (it serializes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobMode {
    /// Everything the pattern matches: no `.gitignore`, `.ignore` or git exclude file is
    /// read, and hidden files match. The walk never enters a directory in `exclude`, and
    /// enters a `.git` directory only when the pattern's leading literal components name
    /// one (`.git/hooks/*`, `vendor/lib/.git/HEAD`): `**/*.sample` does not look inside
    /// `.git`, whose contents change on every git command.
    Literal,
    /// Honours `.gitignore`, `.ignore` and git's exclude files (whether or not the
    /// directory is a git repository); hidden files match. Never enters a directory in
    /// `exclude` nor a `.git` directory below the pattern's base.
    Discovery,
}

/// Errors from globbing.
#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    /// The pattern is not a valid glob.
    #[error("bad glob pattern `{pattern}`: {source}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What globset said.
        source: globset::Error,
    },
    /// Walking the directory failed.
    #[error("cannot list {}: {source}", path.display())]
    Walk {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Compiles a glob the way trove matches it: `*` and `?` never cross `/`, `**` does.
pub fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, GlobError> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|source| GlobError::Pattern {
            pattern: pattern.to_owned(),
            source,
        })
}

/// Whether a component of a pattern holds glob syntax.
fn is_glob_syntax(component: &str) -> bool {
    component.contains(['*', '?', '[', '{', '\\'])
}

/// The directory a glob's walk starts from: the pattern's leading components that hold no
/// glob syntax (`data/raw/**/*.csv` starts at `data/raw`).
pub fn glob_base(pattern: &str) -> &str {
    let mut end = 0;
    for (i, component) in pattern.split('/').enumerate() {
        if is_glob_syntax(component) {
            break;
        }
        let start = if i == 0 { 0 } else { end + 1 };
        end = (start + component.len()).min(pattern.len());
    }
    if end >= pattern.len() {
        // No glob syntax at all: the pattern names one path; walk its parent.
        return pattern.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
    }
    &pattern[..end]
}

/// Whether the pattern's leading literal components (the whole pattern when it has no
/// glob syntax) name a `.git` directory: then a literal glob looks inside it.
fn starts_inside_git(pattern: &str) -> bool {
    pattern
        .split('/')
        .take_while(|c| !is_glob_syntax(c))
        .any(|c| c == ".git")
}

/// A [`Discovery`](GlobMode::Discovery) glob, for recipe code: the matched files (relative
/// to `root`, sorted) and the glob's state. The same as
/// `glob_with(root, pattern, exclude, GlobMode::Discovery)`, as a pair.
pub fn glob(
    root: &Path,
    pattern: &str,
    exclude: &[PathBuf],
) -> Result<(Vec<String>, ListingState), GlobError> {
    let listing = glob_with(root, pattern, exclude, GlobMode::Discovery)?;
    Ok((listing.files, listing.state))
}

/// Matches `pattern` (relative to `root`, `/`-separated) under `root` in `mode`, never
/// descending into a directory in `exclude`.
///
/// The state covers every entry the pattern matches, directories included; the files
/// (regular files and symlinks to regular files) are returned relative to `root`, sorted,
/// for the caller to fingerprint. `Absent` with no files when the pattern's base
/// directory does not exist.
///
/// ```
/// use trove_fingerprint::{GlobMode, glob_with};
///
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir(dir.path().join("data")).unwrap();
/// std::fs::write(dir.path().join("data/a.bin"), "1").unwrap();
/// std::fs::write(dir.path().join(".gitignore"), "*.bin\n").unwrap();
///
/// let declared = glob_with(dir.path(), "data/*.bin", &[], GlobMode::Literal).unwrap();
/// assert_eq!(declared.files, ["data/a.bin"]);
/// let discovered = glob_with(dir.path(), "data/*.bin", &[], GlobMode::Discovery).unwrap();
/// assert!(discovered.files.is_empty());
/// ```
pub fn glob_with(
    root: &Path,
    pattern: &str,
    exclude: &[PathBuf],
    mode: GlobMode,
) -> Result<Listing, GlobError> {
    let matcher = compile_glob(pattern)?;
    let base = root.join(glob_base(pattern));
    if !base.is_dir() {
        return Ok(Listing::absent());
    }
    let enter_git = mode == GlobMode::Literal && starts_inside_git(pattern);
    let entries = walk(root, &base, exclude, mode, enter_git, |rel| {
        !rel.is_empty() && matcher.is_match(rel)
    })?;
    Ok(Listing::of_entries(entries))
}

/// Walks `base` (under `root`) without following symlinks and returns an entry for each
/// path whose `/`-separated path relative to `root` satisfies `keep` (`""` for `root`
/// itself, listed as `.`).
pub(crate) fn walk(
    root: &Path,
    base: &Path,
    exclude: &[PathBuf],
    mode: GlobMode,
    enter_git: bool,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Entry>, GlobError> {
    let exclude: Vec<PathBuf> = exclude.to_vec();
    let mut builder = ignore::WalkBuilder::new(base);
    match mode {
        GlobMode::Literal => builder.standard_filters(false),
        GlobMode::Discovery => builder.hidden(false).require_git(false),
    };
    // The filter never sees the base itself: a walk that starts inside `.git` runs.
    let walker = builder
        .follow_links(false)
        .filter_entry(move |e| {
            (enter_git || e.file_name() != ".git")
                && !exclude.iter().any(|x| x.as_path() == e.path())
        })
        .build();
    let walk_error = |source: io::Error| GlobError::Walk {
        path: base.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| {
            walk_error(
                e.into_io_error()
                    .unwrap_or_else(|| io::Error::other("walk error")),
            )
        })?;
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if !keep(&rel) {
            continue;
        }
        // An entry removed since its directory was read is not listed: that is the
        // directory's state now.
        let lstat = match std::fs::symlink_metadata(entry.path()) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(walk_error(e)),
        };
        let name = if rel.is_empty() { ".".to_owned() } else { rel };
        entries.push(Entry::new(name, entry.path(), &lstat));
    }
    Ok(entries)
}

/// The whole tree under the directory `dir`: what a directory named as an input covers.
///
/// Like a [literal](GlobMode::Literal) glob of `dir/**` that also lists `dir` itself (as
/// `.`): the state covers every file, directory, symlink and special file below it (names,
/// kinds and permission bits), and [`Listing::files`] holds the files, relative to `dir`,
/// for the caller to fingerprint — together they cover names and contents. `.gitignore`
/// is not read. The walk never enters a directory in `exclude` (the store) nor a `.git`
/// directory inside the tree (a nested repository's internals change on every git
/// command); `dir` itself may be one. Symlinks are listed, not followed.
///
/// `Absent` with no files when `dir` is not a directory.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir_all(dir.path().join("data/raw")).unwrap();
/// std::fs::write(dir.path().join("data/raw/a.csv"), "1").unwrap();
/// let before = trove_fingerprint::tree(&dir.path().join("data"), &[]).unwrap();
/// assert_eq!(before.files, ["raw/a.csv"]);
///
/// std::fs::create_dir(dir.path().join("data/empty")).unwrap();
/// let after = trove_fingerprint::tree(&dir.path().join("data"), &[]).unwrap();
/// assert_ne!(before.state, after.state);
/// ```
pub fn tree(dir: &Path, exclude: &[PathBuf]) -> Result<Listing, GlobError> {
    if !dir.is_dir() {
        return Ok(Listing::absent());
    }
    let entries = walk(dir, dir, exclude, GlobMode::Literal, false, |_| true)?;
    Ok(Listing::of_entries(entries))
}
