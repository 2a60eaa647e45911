//! Directory listings and gitignore-aware globs.
//!
//! A listing or a glob is an input of its own: its fingerprint is the blake3 of the sorted
//! names it produced, so a file that appears or disappears changes it. The files a glob
//! matched are recorded separately, each as a file input.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Digest;

/// The state of a directory listing or a glob, as recorded in a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListingState {
    /// The directory (or a glob's base directory) did not exist.
    Absent,
    /// blake3 of the sorted names, and how many there were.
    Names {
        /// blake3 over the length-prefixed sorted names.
        hash: Digest,
        /// Number of names.
        count: u64,
    },
}

impl ListingState {
    fn of_names(names: &[String]) -> ListingState {
        let mut h = blake3::Hasher::new_derive_key("trove listing v1");
        for n in names {
            h.update(&(n.len() as u64).to_le_bytes());
            h.update(n.as_bytes());
        }
        ListingState::Names {
            hash: Digest(*h.finalize().as_bytes()),
            count: names.len() as u64,
        }
    }

    /// A short description for explanations.
    pub fn describe(&self) -> String {
        match self {
            ListingState::Absent => "absent".into(),
            ListingState::Names { hash, count } => {
                format!("{count} names, blake3 {}..", hash.short())
            }
        }
    }
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

/// Lists a directory: sorted entry names, a directory's name followed by `/`.
///
/// Returns the names and the listing's state; `Absent` (and no names) when `path` is not a
/// directory.
pub fn list_dir(path: &Path) -> io::Result<(Vec<String>, ListingState)> {
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok((Vec::new(), ListingState::Absent));
        }
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry?;
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let state = ListingState::of_names(&names);
    Ok((names, state))
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

/// The directory a glob's walk starts from: the pattern's leading components that hold no
/// glob syntax (`data/raw/**/*.csv` starts at `data/raw`).
pub fn glob_base(pattern: &str) -> &str {
    let mut end = 0;
    for (i, component) in pattern.split('/').enumerate() {
        if component.contains(['*', '?', '[', '{', '\\']) {
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

/// Matches `pattern` (relative to `root`, `/`-separated) against the files under `root`,
/// honouring `.gitignore`, `.ignore` and git's exclude files, and never descending into
/// `.git` or any directory in `exclude`. Returns the matched paths relative to `root`,
/// sorted, and the glob's state.
pub fn glob(
    root: &Path,
    pattern: &str,
    exclude: &[PathBuf],
) -> Result<(Vec<String>, ListingState), GlobError> {
    let matcher = compile_glob(pattern)?;
    let base = root.join(glob_base(pattern));
    if !base.is_dir() {
        return Ok((Vec::new(), ListingState::Absent));
    }
    let exclude: Vec<PathBuf> = exclude.to_vec();
    let walker = ignore::WalkBuilder::new(&base)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(move |e| {
            e.file_name() != ".git" && !exclude.iter().any(|x| x.as_path() == e.path())
        })
        .build();
    let mut names = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| GlobError::Walk {
            path: base.clone(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("walk error")),
        })?;
        let is_file = entry
            .file_type()
            .map(|t| t.is_file() || t.is_symlink())
            .unwrap_or(false);
        if !is_file {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if matcher.is_match(&rel) {
            names.push(rel);
        }
    }
    names.sort();
    let state = ListingState::of_names(&names);
    Ok((names, state))
}
