//! Paths as the configuration resolves them: lexically, without touching the file system.

use std::path::{Component, Path, PathBuf};

/// `path` made absolute against the current directory, without touching the
/// file system; unchanged if the current directory is unknown.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    clean(&std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
}

/// `path` against `dir`, with `.` components removed. `..` is kept: removing
/// it is only right when no symbolic link is involved.
pub(crate) fn resolve(dir: &Path, path: &Path) -> PathBuf {
    clean(&dir.join(path))
}

fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}
