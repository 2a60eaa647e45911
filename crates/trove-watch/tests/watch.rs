//! The watcher's behaviour on real files, one sentence per test. Nothing here sleeps and
//! hopes: every test waits on the events channel with a generous timeout and asserts what
//! arrived.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use trove_watch::{WatchError, WatchEvent, WatchOptions, Watcher};

/// Long enough for a loaded CI machine; a passing test never waits this long.
const TIMEOUT: Duration = Duration::from_secs(10);

struct Fixture {
    _dir: TempDir,
    /// The canonical root, as the watcher reports paths under it.
    root: PathBuf,
    watcher: Watcher,
    events: Receiver<WatchEvent>,
}

impl Fixture {
    /// A watched temporary directory, after `setup` has prepared its contents.
    fn new(setup: impl FnOnce(&Path)) -> Self {
        Self::with_options(setup, |_| {})
    }

    fn with_options(setup: impl FnOnce(&Path), configure: impl FnOnce(&mut WatchOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let mut options = WatchOptions::new(vec![dir.path().to_owned()]);
        options.debounce = Duration::from_millis(50);
        configure(&mut options);
        let (sender, events) = mpsc::channel();
        let watcher = Watcher::start(options, move |event| {
            let _ = sender.send(event);
        })
        .unwrap();
        let root = watcher.roots()[0].clone();
        Fixture {
            _dir: dir,
            root,
            watcher,
            events,
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The next batch of changed paths.
    fn next_batch(&self) -> Vec<PathBuf> {
        match self.events.recv_timeout(TIMEOUT) {
            Ok(WatchEvent::Changed(paths)) => paths,
            Ok(other) => panic!("expected changed paths, got {other:?}"),
            Err(error) => panic!("no event within {TIMEOUT:?}: {error}"),
        }
    }

    /// Every path delivered until `wanted` has been, in batches; fails if `wanted` does
    /// not arrive in time.
    fn paths_until(&self, wanted: &Path) -> Vec<PathBuf> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while !seen.iter().any(|path| path == wanted) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(WatchEvent::Changed(paths)) => seen.extend(paths),
                Ok(other) => panic!("expected changed paths, got {other:?}"),
                Err(_) => panic!("{} not reported; got {seen:?}", wanted.display()),
            }
        }
        seen
    }
}

#[test]
fn editing_a_file_delivers_its_path() {
    let fx = Fixture::new(|dir| fs::write(dir.join("a.csv"), "1").unwrap());
    fs::write(fx.path("a.csv"), "2").unwrap();
    let seen = fx.paths_until(&fx.path("a.csv"));
    assert!(
        seen.iter().all(|path| *path == fx.path("a.csv")),
        "{seen:?}"
    );
}

#[test]
fn with_no_debounce_every_change_is_delivered_as_it_happens() {
    let fx = Fixture::with_options(
        |dir| fs::write(dir.join("a.csv"), "1").unwrap(),
        |options| options.debounce = Duration::ZERO,
    );
    fs::write(fx.path("a.csv"), "2").unwrap();
    fx.paths_until(&fx.path("a.csv"));
    // Ignored paths stay ignored without the debouncer too.
    fs::write(fx.path(".gitignore"), "*.tmp\n").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match fx.events.recv_timeout(TIMEOUT) {
            Ok(WatchEvent::Rescan { .. }) => break,
            Ok(WatchEvent::Changed(_)) => continue,
            Err(e) => panic!("no rescan after editing .gitignore: {e}"),
        }
    }
    fs::write(fx.path("x.tmp"), "1").unwrap();
    fs::write(fx.path("b.csv"), "1").unwrap();
    // Each event of the .gitignore write may ask for its own rescan; skip those.
    let mut seen = Vec::new();
    while !seen.contains(&fx.path("b.csv")) {
        match fx.events.recv_timeout(TIMEOUT) {
            Ok(WatchEvent::Changed(paths)) => seen.extend(paths),
            Ok(WatchEvent::Rescan { .. }) => {}
            Err(e) => panic!("b.csv not reported; got {seen:?}: {e}"),
        }
    }
    assert!(!seen.contains(&fx.path("x.tmp")), "{seen:?}");
}

#[test]
fn a_batch_is_sorted_and_names_each_path_once() {
    let fx = Fixture::new(|_| {});
    for name in ["c", "a", "b"] {
        fs::write(fx.path(name), "1").unwrap();
        fs::write(fx.path(name), "22").unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let batch = fx.next_batch();
        let mut sorted = batch.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(batch, sorted);
        seen.extend(batch);
        seen.sort();
        seen.dedup();
    }
    assert_eq!(seen, vec![fx.path("a"), fx.path("b"), fx.path("c")]);
}

#[test]
fn creating_and_removing_a_file_delivers_its_path() {
    let fx = Fixture::new(|_| {});
    let new = fx.path("new.csv");
    fs::write(&new, "1").unwrap();
    assert!(fx.paths_until(&new).iter().all(|path| *path == new));
    fs::remove_file(&new).unwrap();
    assert!(fx.paths_until(&new).iter().all(|path| *path == new));
}

#[test]
fn renaming_a_file_delivers_both_names() {
    let fx = Fixture::new(|dir| fs::write(dir.join("old.csv"), "1").unwrap());
    let (old, new) = (fx.path("old.csv"), fx.path("new.csv"));
    fs::rename(&old, &new).unwrap();
    let mut seen = fx.paths_until(&new);
    if !seen.contains(&old) {
        seen.extend(fx.paths_until(&old));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![new, old]);
}

#[test]
fn files_in_a_new_subdirectory_are_delivered() {
    let fx = Fixture::new(|_| {});
    fs::create_dir_all(fx.path("data/eu")).unwrap();
    fs::write(fx.path("data/eu/prices.csv"), "1").unwrap();
    fx.paths_until(&fx.path("data/eu/prices.csv"));
}

#[test]
fn a_directory_moved_in_delivers_the_files_inside_it() {
    let outside = tempfile::tempdir().unwrap();
    fs::create_dir(outside.path().join("batch")).unwrap();
    fs::write(outside.path().join("batch/1.csv"), "1").unwrap();
    let fx = Fixture::new(|_| {});
    fs::rename(outside.path().join("batch"), fx.path("batch")).unwrap();
    fx.paths_until(&fx.path("batch/1.csv"));
}

#[test]
fn a_file_matched_by_gitignore_produces_no_event() {
    let fx = Fixture::new(|dir| fs::write(dir.join(".gitignore"), "*.log\n/build/\n").unwrap());
    fs::write(fx.path("debug.log"), "ignored").unwrap();
    fs::create_dir(fx.path("build")).unwrap();
    fs::write(fx.path("build/out.bin"), "ignored").unwrap();
    fs::write(fx.path("kept.csv"), "reported").unwrap();
    assert_eq!(fx.next_batch(), vec![fx.path("kept.csv")]);
}

#[test]
fn a_nested_gitignore_applies_relative_to_its_own_directory() {
    let fx = Fixture::new(|dir| {
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/.gitignore"), "/local.csv\n").unwrap();
    });
    fs::write(fx.path("sub/local.csv"), "ignored").unwrap();
    fs::write(
        fx.path("local.csv"),
        "reported: the pattern is anchored at sub/",
    )
    .unwrap();
    assert_eq!(fx.next_batch(), vec![fx.path("local.csv")]);
}

#[test]
fn editing_a_gitignore_asks_for_a_rescan() {
    let fx = Fixture::new(|dir| fs::write(dir.join(".gitignore"), "*.log\n").unwrap());
    fs::write(fx.path(".gitignore"), "*.tmp\n").unwrap();
    match fx.events.recv_timeout(TIMEOUT) {
        Ok(WatchEvent::Rescan { reason }) => assert!(reason.contains(".gitignore"), "{reason}"),
        other => panic!("expected a rescan, got {other:?}"),
    }
    // The new patterns apply from then on.
    assert!(fx.watcher.covers(&fx.path("debug.log")));
    assert!(!fx.watcher.covers(&fx.path("scratch.tmp")));
}

#[test]
fn files_inside_ignored_directories_and_git_produce_no_event() {
    let fx = Fixture::with_options(
        |dir| {
            fs::create_dir(dir.join(".trove")).unwrap();
            fs::create_dir(dir.join(".git")).unwrap();
        },
        |options| {
            let store = options.roots[0].join(".trove");
            options.ignore_dirs.push(store);
        },
    );
    fs::write(fx.path(".trove/blob"), "ignored").unwrap();
    fs::write(fx.path(".git/index"), "ignored").unwrap();
    fs::write(fx.path("kept.csv"), "reported").unwrap();
    assert_eq!(fx.next_batch(), vec![fx.path("kept.csv")]);
}

#[test]
fn covers_answers_for_paths_inside_outside_and_ignored() {
    let fx = Fixture::with_options(
        |dir| {
            fs::write(dir.join(".gitignore"), "*.log\ntarget/\n!keep.log\n").unwrap();
            fs::create_dir(dir.join("target")).unwrap();
        },
        |options| {
            let store = options.roots[0].join(".trove");
            options.ignore_dirs.push(store);
        },
    );
    assert!(fx.watcher.covers(&fx.path("data/prices.csv")));
    assert!(fx.watcher.covers(&fx.path("keep.log")));
    assert!(fx.watcher.covers(&fx.root));
    assert!(!fx.watcher.covers(&fx.path("debug.log")));
    assert!(!fx.watcher.covers(&fx.path("target/out.bin")));
    assert!(!fx.watcher.covers(&fx.path(".trove/blob")));
    assert!(!fx.watcher.covers(&fx.path(".git/HEAD")));
    assert!(!fx.watcher.covers(Path::new("/somewhere/else.csv")));
    assert!(!fx.watcher.covers(&fx.root.with_file_name("sibling.csv")));
}

#[test]
fn a_missing_root_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let result = Watcher::start(WatchOptions::new(vec![missing.clone()]), |_| {});
    match result {
        Err(WatchError::Root { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a root error, got {other:?}"),
    }
}

#[test]
fn a_file_as_root_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let error = Watcher::start(WatchOptions::new(vec![file.clone()]), |_| {}).unwrap_err();
    assert!(matches!(&error, WatchError::Root { path, .. } if *path == file));
    assert!(
        error.to_string().contains(&*file.to_string_lossy()),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn a_symlinked_root_is_watched_and_reported_under_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    fs::create_dir(&target).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (sender, events) = mpsc::channel();
    let mut options = WatchOptions::new(vec![link.clone()]);
    options.debounce = Duration::from_millis(50);
    let watcher = Watcher::start(options, move |event| {
        let _ = sender.send(event);
    })
    .unwrap();
    let canonical = target.canonicalize().unwrap();
    assert_eq!(watcher.roots(), std::slice::from_ref(&canonical));

    fs::write(link.join("a.csv"), "1").unwrap();
    match events.recv_timeout(TIMEOUT) {
        Ok(WatchEvent::Changed(paths)) => assert_eq!(paths, vec![canonical.join("a.csv")]),
        other => panic!("expected changed paths, got {other:?}"),
    }
}

#[test]
fn dropping_the_watcher_stops_delivery_and_releases_the_callback() {
    let fx = Fixture::new(|_| {});
    let Fixture {
        _dir: dir,
        watcher,
        events,
        ..
    } = fx;
    drop(watcher);
    fs::write(dir.path().join("late.csv"), "1").unwrap();
    // The callback (and with it the sender) is gone once drop returns.
    assert_eq!(
        events.recv_timeout(TIMEOUT),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn a_single_file_outside_the_roots_is_delivered_and_its_neighbours_are_not() {
    let outside = tempfile::tempdir().unwrap();
    let config = outside.path().join("trove.ron");
    fs::write(&config, "()").unwrap();
    fs::write(outside.path().join("neighbour.txt"), "1").unwrap();
    let fx = Fixture::with_options(|_| {}, |options| options.files.push(config.clone()));
    let config = outside.path().canonicalize().unwrap().join("trove.ron");
    assert!(fx.watcher.covers(&config));
    assert!(!fx.watcher.covers(&config.with_file_name("neighbour.txt")));

    // An editor's save: a temporary file beside it, renamed over it. Only the watched
    // name is delivered, never the temporary one nor the neighbour.
    fs::write(outside.path().join("neighbour.txt"), "2").unwrap();
    fs::write(outside.path().join(".trove.ron.tmp"), "(recipes: {})").unwrap();
    fs::rename(
        outside.path().join(".trove.ron.tmp"),
        outside.path().join("trove.ron"),
    )
    .unwrap();
    let seen = fx.paths_until(&config);
    assert!(seen.iter().all(|path| *path == config), "{seen:?}");

    // A change under the root is still delivered, after nothing but the watched name (the
    // save's events can straddle two debounce windows on a loaded machine, so the name
    // may come once more; the neighbour and the temporary file never do).
    fs::write(fx.path("a.csv"), "1").unwrap();
    let seen = fx.paths_until(&fx.path("a.csv"));
    assert!(
        seen.iter()
            .all(|path| *path == config || *path == fx.path("a.csv")),
        "{seen:?}"
    );
}

#[test]
fn a_single_file_whose_directory_is_missing_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing/trove.ron");
    let mut options = WatchOptions::new(vec![dir.path().to_owned()]);
    options.files.push(file.clone());
    match Watcher::start(options, |_| {}) {
        Err(WatchError::Root { path, .. }) => assert_eq!(path, file),
        other => panic!("expected an error naming the file, got {other:?}"),
    }
}
