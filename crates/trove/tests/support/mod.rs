//! Helpers shared by the engine tests: a build log, a recipe made of a closure, a
//! temporary project directory, and file-time helpers.

#![allow(dead_code)]

use std::fs::{File, FileTimes};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use trove::{BuildError, Cx, Engine, Recipe};

/// Every build that ran, in order, as `"recipe args"`.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub(crate) fn new() -> Log {
        Log::default()
    }

    pub(crate) fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    /// The builds since the last call, emptying the log.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The builds logged so far (since the last [`Log::take`]), in order.
    pub(crate) fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// How many builds are logged.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

type BuildFn<T> = dyn Fn(&mut Cx, &String) -> Result<T, BuildError> + Send + Sync;
type CheckFn<T> = dyn Fn(&T) -> Result<(), String> + Send + Sync;

/// A recipe whose name, version and build are chosen by the test. Every build is logged
/// as `"name args"` before the closure runs.
pub(crate) struct Probe<T> {
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    pub(crate) max_age: Option<Duration>,
    pub(crate) log: Log,
    build: Arc<BuildFn<T>>,
    check: Option<Arc<CheckFn<T>>>,
}

impl<T> Clone for Probe<T> {
    fn clone(&self) -> Self {
        Probe {
            name: self.name,
            version: self.version,
            max_age: self.max_age,
            log: self.log.clone(),
            build: self.build.clone(),
            check: self.check.clone(),
        }
    }
}

impl<T> Probe<T> {
    pub(crate) fn new(
        name: &'static str,
        log: &Log,
        build: impl Fn(&mut Cx, &String) -> Result<T, BuildError> + Send + Sync + 'static,
    ) -> Probe<T> {
        Probe {
            name,
            version: 1,
            max_age: None,
            log: log.clone(),
            build: Arc::new(build),
            check: None,
        }
    }

    pub(crate) fn with_check(
        mut self,
        check: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Probe<T> {
        self.check = Some(Arc::new(check));
        self
    }

    pub(crate) fn with_max_age(mut self, max_age: Duration) -> Probe<T> {
        self.max_age = Some(max_age);
        self
    }
}

impl<T> Recipe for Probe<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    const NAME: &'static str = "probe";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = T;

    fn build(&self, cx: &mut Cx, args: &String) -> Result<T, BuildError> {
        self.log.push(format!("{} {args}", self.name));
        (self.build)(cx, args)
    }

    fn check(&self, object: &T) -> Result<(), String> {
        match &self.check {
            Some(check) => check(object),
            None => Ok(()),
        }
    }

    fn name(&self) -> &str {
        self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn max_age(&self) -> Option<Duration> {
        self.max_age
    }
}

/// A recipe that reads the file named by its argument and returns its text.
pub(crate) fn text(name: &'static str, log: &Log) -> Probe<String> {
    Probe::new(name, log, |cx, path| cx.read_to_string(path))
}

/// The mtimes of the files under `dir`, the store left out.
fn walk_mtimes(dir: &Path) -> Vec<SystemTime> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == ".trove") {
            continue;
        }
        if path.is_dir() {
            out.extend(walk_mtimes(&path));
        } else if let Ok(m) = entry.metadata() {
            out.extend(m.modified().ok());
        }
    }
    out
}

/// A temporary project directory with its store in `.trove`.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating its directories) in place.
    pub(crate) fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Waits until the clock files are stamped with has moved past every file written so
    /// far, so a build starting now cannot mistake them for files saved while it ran
    /// (which it would not store). Polls a scratch file's mtime, with a deadline.
    pub(crate) fn settle(&self) {
        let newest = walk_mtimes(self.root()).into_iter().max();
        let probe = self.root().join(".settle");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            std::fs::write(&probe, b"").unwrap();
            let now = mtime(&probe);
            std::fs::remove_file(&probe).unwrap();
            if newest.is_none_or(|n| now > n) {
                return;
            }
            assert!(Instant::now() < deadline, "the file clock never moved");
            std::thread::yield_now();
        }
    }

    pub(crate) fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap();
    }

    /// A new engine on the project's store (a new process, as far as the tiers go).
    pub(crate) fn engine(&self) -> Engine {
        Engine::open_in(self.root()).unwrap()
    }

    /// Every blob file of the store.
    pub(crate) fn blobs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = self.path(".trove/v1/blobs");
        for shard in std::fs::read_dir(root).into_iter().flatten().flatten() {
            if !shard.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
    }
}

pub(crate) fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

pub(crate) fn set_mtime(path: &Path, t: SystemTime) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// Polls `condition` until it holds, for at most `limit`; returns whether it held.
pub(crate) fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the calling test again, alone, in a process of its own with `env` set (`None`:
/// removed) in its environment, and returns `false` (the caller returns too); in that process it returns
/// `true` and the test goes on. For tests that change environment variables: `set_var`
/// while another thread reads the environment is undefined behaviour, and the tests of
/// one binary run on parallel threads. `test` is the test's path in its binary.
pub(crate) fn in_own_process(test: &str, env: &[(&str, Option<&str>)]) -> bool {
    const ALONE: &str = "TROVE_TEST_ALONE";
    if std::env::var(ALONE).is_ok_and(|t| t == test) {
        return true;
    }
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(ALONE, test);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let out = command.output().expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test}, in a process of its own:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Compiles a tiny C shared library exporting `int value(void)` returning `value`.
pub(crate) fn compile_library(out: &Path, value: i32) {
    let src = out.with_extension(format!("{value}.c"));
    std::fs::write(&src, format!("int value(void) {{ return {value}; }}\n")).unwrap();
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) is needed for the module tests");
    assert!(status.success(), "cc failed");
}

/// Past the racy window (two seconds): a fingerprint or directory stamp taken before this
/// wait is trusted by a `stat` alone.
pub(crate) const PAST_RACY: Duration = Duration::from_millis(2_100);

/// A search through two include directories, as a compiler does: each of the
/// comma-separated names is looked up in `inc1/` then `inc2/` (`cx.try_read`, so every
/// miss is an absence), and the first found is read.
pub(crate) fn include_search(log: &Log) -> Probe<String> {
    Probe::new("search", log, |cx, names: &String| {
        let mut out = Vec::new();
        for name in names.split(',') {
            for dir in ["inc1", "inc2"] {
                if let Some(bytes) = cx.try_read(format!("{dir}/{name}"))? {
                    out.push(String::from_utf8_lossy(&bytes).into_owned());
                    break;
                }
            }
        }
        Ok(out.join(" "))
    })
}
