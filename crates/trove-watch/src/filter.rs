//! Which paths the watcher reports: those under a root, outside the ignored directories
//! and `.git`, and not excluded by a `.gitignore`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use ignore::WalkBuilder;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The name of git's own directory, never reported.
const GIT_DIR: &str = ".git";
/// The name of the files whose patterns are honoured.
pub(crate) const GITIGNORE: &str = ".gitignore";

/// The `.gitignore` files of one root, each matching relative to its own directory.
#[derive(Debug)]
struct RootIgnores {
    root: PathBuf,
    /// By the directory holding the `.gitignore` file.
    gitignores: HashMap<PathBuf, Gitignore>,
}

impl RootIgnores {
    /// Reads every `.gitignore` under `root`, skipping directories that are ignored
    /// already (by `.git`, `ignore_dirs`, or a `.gitignore` above them).
    fn load(root: &Path, ignore_dirs: &[PathBuf]) -> Self {
        let ignore_dirs = ignore_dirs.to_vec();
        let files: Vec<PathBuf> = WalkBuilder::new(root)
            // Only our own rules: .gitignore anywhere (not only inside a git repository),
            // hidden files included (.gitignore is one), no .ignore or global excludes.
            .standard_filters(false)
            .git_ignore(true)
            .require_git(false)
            .filter_entry(move |entry| {
                entry.file_name() != OsStr::new(GIT_DIR)
                    && !ignore_dirs.iter().any(|dir| entry.path().starts_with(dir))
            })
            .build()
            .filter_map(Result::ok)
            .filter(|entry| {
                entry.file_name() == OsStr::new(GITIGNORE)
                    && entry.file_type().is_some_and(|t| t.is_file())
            })
            .map(ignore::DirEntry::into_path)
            .collect();
        let mut gitignores = HashMap::new();
        for file in files {
            let Some(dir) = file.parent() else { continue };
            let mut builder = GitignoreBuilder::new(dir);
            if let Some(error) = builder.add(&file) {
                // A bad line must not stop the watcher; the other lines still apply.
                tracing::warn!(path = %file.display(), %error, "ignoring part of a .gitignore");
            }
            match builder.build() {
                Ok(gitignore) => {
                    gitignores.insert(dir.to_path_buf(), gitignore);
                }
                Err(error) => {
                    tracing::warn!(path = %file.display(), %error, "ignoring a .gitignore");
                }
            }
        }
        RootIgnores {
            root: root.to_path_buf(),
            gitignores,
        }
    }

    /// Git's rule, top down: an entry is excluded if the nearest `.gitignore` with a
    /// matching pattern excludes it, and nothing under an excluded directory comes back.
    fn excludes(&self, path: &Path, is_dir: bool) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        let components: Vec<Component<'_>> = relative.components().collect();
        let mut current = self.root.clone();
        for (index, component) in components.iter().enumerate() {
            current.push(component);
            let entry_is_dir = index + 1 < components.len() || is_dir;
            let Some(parent) = current.parent() else {
                continue;
            };
            // The deepest .gitignore with an opinion on this entry decides.
            for dir in parent.ancestors() {
                if let Some(gitignore) = self.gitignores.get(dir) {
                    let decision = gitignore.matched(&current, entry_is_dir);
                    if decision.is_ignore() {
                        return true;
                    }
                    if decision.is_whitelist() {
                        break;
                    }
                }
                if dir == self.root {
                    break;
                }
            }
        }
        false
    }
}

/// The filter for every root of one watcher.
#[derive(Debug)]
pub(crate) struct Filter {
    roots: Vec<RootIgnores>,
    ignore_dirs: Vec<PathBuf>,
    /// Single files reported wherever they are (canonical directory, then name).
    files: Vec<PathBuf>,
}

impl Filter {
    /// Reads the `.gitignore` files of `roots` (canonical) now; `files` are reported
    /// wherever they are.
    pub(crate) fn load(roots: &[PathBuf], ignore_dirs: Vec<PathBuf>, files: Vec<PathBuf>) -> Self {
        let roots = roots
            .iter()
            .map(|root| RootIgnores::load(root, &ignore_dirs))
            .collect();
        Filter {
            roots,
            ignore_dirs,
            files,
        }
    }

    /// Reads the `.gitignore` files of the root holding `path` again.
    pub(crate) fn reload_root_of(&mut self, path: &Path) {
        if let Some(index) = self.root_index(path) {
            let root = self.roots[index].root.clone();
            self.roots[index] = RootIgnores::load(&root, &self.ignore_dirs);
        }
    }

    /// The innermost root holding `path` (roots may nest).
    fn root_index(&self, path: &Path) -> Option<usize> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(_, root)| path.starts_with(&root.root))
            .max_by_key(|(_, root)| root.root.components().count())
            .map(|(index, _)| index)
    }

    /// Whether a change to `path` is reported: it is one of the single files, or it is
    /// under a root, not inside an ignored directory or a `.git` directory, and not
    /// excluded by a `.gitignore`.
    pub(crate) fn covers(&self, path: &Path, is_dir: bool) -> bool {
        if self.files.iter().any(|file| file == path) {
            return true;
        }
        let Some(index) = self.root_index(path) else {
            return false;
        };
        let root = &self.roots[index];
        if self.ignore_dirs.iter().any(|dir| path.starts_with(dir)) {
            return false;
        }
        let relative = path.strip_prefix(&root.root).unwrap_or(path);
        if relative
            .components()
            .any(|component| component.as_os_str() == OsStr::new(GIT_DIR))
        {
            return false;
        }
        !root.excludes(path, is_dir)
    }
}
