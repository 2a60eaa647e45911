//! The engine's rules, each pinned by which builds ran and why.

mod support;
mod watching;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use support::{
    Log, Probe, Project, compile_library, in_own_process, mtime, set_mtime, text, wait_until,
};
use trove::{BuildError, Config, Cx, Engine, GcOptions, Reason, Recipe, Residency, Why};

fn arg(s: &str) -> String {
    s.to_owned()
}

fn built(reason: &Reason) -> String {
    match reason {
        Reason::Built(_) => reason.to_string(),
        other => panic!("expected a build, got `{other}`"),
    }
}

// ---------------------------------------------------------------- tiers

#[test]
fn the_first_get_builds_the_second_hits_memory_and_a_new_engine_hits_disk() {
    let p = Project::new();
    p.write("a.txt", "hello");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    let first = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*first.value, "hello");
    assert_eq!(first.reason, Reason::Built(Why::NoEntry));
    assert_eq!(first.reason.to_string(), "built: no entry");
    let second = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(second.reason, Reason::HitMemory);
    assert!(Arc::ptr_eq(&first.value, &second.value));
    assert_eq!(log.take(), ["text a.txt"]);
    drop(e);

    let e = p.engine();
    let third = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(third.reason, Reason::HitDisk);
    assert_eq!(*third.value, "hello");
    assert_eq!(third.digest, first.digest);
    assert!(log.take().is_empty());
}

// ---------------------------------------------------------------- files

#[test]
fn editing_a_tracked_file_rebuilds_and_names_the_path_and_both_hashes() {
    let p = Project::new();
    p.write("data/prices.csv", "1,2");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("data/prices.csv")).unwrap();
    p.write("data/prices.csv", "1,2,3");
    let s = e.get_explained(&r, &arg("data/prices.csv")).unwrap();
    assert_eq!(*s.value, "1,2,3");
    let reason = built(&s.reason);
    assert!(
        reason.starts_with("built: data/prices.csv changed (blake3 "),
        "{reason}"
    );
    let old = blake3::hash(b"1,2").to_hex()[..8].to_owned();
    let new = blake3::hash(b"1,2,3").to_hex()[..8].to_owned();
    assert!(
        reason.contains(&format!("(blake3 {old}.. -> {new}..)")),
        "{reason}"
    );
    assert_eq!(log.take(), ["text data/prices.csv", "text data/prices.csv"]);
}

#[test]
fn a_content_identical_rewrite_or_a_touch_does_not_rebuild() {
    let p = Project::new();
    let path = p.write("a.txt", "same");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("a.txt")).unwrap();
    // A rewrite with the same bytes (new ctime, maybe new mtime).
    p.write("a.txt", "same");
    assert_eq!(
        e.get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitMemory
    );
    // A touch that moves the mtime.
    set_mtime(&path, SystemTime::now() + Duration::from_secs(60));
    assert_eq!(
        e.get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitMemory
    );
    // The refreshed metadata holds: still no build, in this engine and a new one.
    assert_eq!(
        e.get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitMemory
    );
    drop(e);
    assert_eq!(
        p.engine().get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
    assert_eq!(log.take(), ["text a.txt"]);
}

#[test]
fn a_same_size_edit_with_the_old_mtime_restored_rebuilds() {
    let p = Project::new();
    let path = p.write("a.txt", "aaaa");
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&path, old);
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("a.txt")).unwrap();
    p.write("a.txt", "bbbb");
    set_mtime(&path, old);
    assert_eq!(mtime(&path), old);
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, "bbbb");
    assert!(built(&s.reason).contains("a.txt changed"));
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn replacing_a_file_like_cp_p_with_an_older_mtime_rebuilds() {
    let p = Project::new();
    let path = p.write("a.txt", "original");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("a.txt")).unwrap();
    let staged = p.write("staged.tmp", "replaced");
    set_mtime(&staged, mtime(&path));
    std::fs::rename(&staged, &path).unwrap();
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, "replaced");
    assert!(built(&s.reason).contains("a.txt changed"));
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn a_racy_same_size_rewrite_with_its_mtime_restored_rebuilds() {
    let p = Project::new();
    let path = p.write("a.txt", "1111");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("a.txt")).unwrap();
    let before = mtime(&path);
    p.write("a.txt", "2222");
    set_mtime(&path, before);
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, "2222");
    assert!(built(&s.reason).contains("a.txt changed"));
    // A new engine serves the new content, never the old one.
    drop(e);
    assert_eq!(*p.engine().get(&r, &arg("a.txt")).unwrap(), "2222");
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn creating_a_file_that_was_absent_when_read_rebuilds() {
    let p = Project::new();
    let log = Log::new();
    let r = Probe::new("maybe", &log, |cx, path| {
        Ok(cx
            .try_read(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    });
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg("later.txt")).unwrap(), None);
    assert_eq!(
        e.get_explained(&r, &arg("later.txt")).unwrap().reason,
        Reason::HitMemory
    );
    p.write("later.txt", "here");
    let s = e.get_explained(&r, &arg("later.txt")).unwrap();
    assert_eq!(*s.value, Some("here".to_owned()));
    let reason = built(&s.reason);
    assert!(
        reason.contains("later.txt changed (absent -> blake3"),
        "{reason}"
    );
    assert_eq!(log.all(), ["maybe later.txt", "maybe later.txt"]);
}

// ---------------------------------------------------------------- listings

fn glob_recipe(log: &Log) -> Probe<Vec<String>> {
    Probe::new("glob", log, |cx, pattern| {
        let root = cx.resolve("");
        Ok(cx
            .glob(pattern)?
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect())
    })
}

#[test]
fn files_appearing_or_vanishing_under_a_glob_rebuild_but_unmatched_and_ignored_ones_do_not() {
    let p = Project::new();
    p.write("data/a.csv", "a");
    p.write("data/sub/b.csv", "b");
    p.write(".gitignore", "data/ignored/\n");
    let log = Log::new();
    let r = glob_recipe(&log);
    let e = p.engine();
    let pattern = arg("data/**/*.csv");
    assert_eq!(
        *e.get(&r, &pattern).unwrap(),
        ["data/a.csv", "data/sub/b.csv"]
    );

    p.write("data/x.txt", "not a csv");
    p.write("data/ignored/c.csv", "ignored");
    assert_eq!(
        e.get_explained(&r, &pattern).unwrap().reason,
        Reason::HitMemory
    );

    p.write("data/sub/deeper/c.csv", "c");
    let s = e.get_explained(&r, &pattern).unwrap();
    assert!(
        built(&s.reason).contains("glob data/**/*.csv changed"),
        "{}",
        s.reason
    );
    assert_eq!(s.value.len(), 3);

    p.remove("data/a.csv");
    let s = e.get_explained(&r, &pattern).unwrap();
    assert!(built(&s.reason).contains("data/**/*.csv"), "{}", s.reason);
    assert_eq!(*s.value, ["data/sub/b.csv", "data/sub/deeper/c.csv"]);

    // A matched file's content is tracked too.
    p.write("data/sub/b.csv", "bb");
    let s = e.get_explained(&r, &pattern).unwrap();
    assert!(
        built(&s.reason).contains("data/sub/b.csv changed"),
        "{}",
        s.reason
    );
    assert_eq!(
        log.all(),
        [
            "glob data/**/*.csv",
            "glob data/**/*.csv",
            "glob data/**/*.csv",
            "glob data/**/*.csv"
        ]
    );
}

#[test]
fn a_directory_listing_change_rebuilds() {
    let p = Project::new();
    p.write("plugins/a", "");
    let log = Log::new();
    let r = Probe::new("ls", &log, |cx, dir| cx.read_dir(dir));
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg("plugins")).unwrap(), ["a"]);
    // Editing a listed file's content is not a listing change.
    p.write("plugins/a", "content");
    assert_eq!(
        e.get_explained(&r, &arg("plugins")).unwrap().reason,
        Reason::HitMemory
    );
    p.write("plugins/b/x", "");
    let s = e.get_explained(&r, &arg("plugins")).unwrap();
    assert!(
        built(&s.reason).contains("plugins/ listing changed"),
        "{}",
        s.reason
    );
    assert_eq!(*s.value, ["a", "b/"]);
    assert_eq!(log.all(), ["ls plugins", "ls plugins"]);
}

// ---------------------------------------------------------------- environment

fn env_recipe(log: &Log) -> Probe<Option<String>> {
    Probe::new("env", log, |cx, name| Ok(cx.env(name)))
}

#[test]
fn changing_a_tracked_environment_variable_rebuilds() {
    const VAR: &str = "TROVE_TEST_ENV_CHANGE";
    if !in_own_process(
        "changing_a_tracked_environment_variable_rebuilds",
        &[(VAR, Some("one"))],
    ) {
        return;
    }
    let p = Project::new();
    let log = Log::new();
    let r = env_recipe(&log);
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg(VAR)).unwrap(), Some("one".into()));
    assert_eq!(
        e.get_explained(&r, &arg(VAR)).unwrap().reason,
        Reason::HitMemory
    );
    // SAFETY: this process runs this test alone (`in_own_process`), on one thread.
    unsafe { std::env::set_var(VAR, "two") };
    let s = e.get_explained(&r, &arg(VAR)).unwrap();
    assert_eq!(*s.value, Some("two".into()));
    assert_eq!(
        built(&s.reason),
        format!("built: env {VAR} changed (\"one\" -> \"two\")")
    );
    assert_eq!(log.take(), [format!("env {VAR}"), format!("env {VAR}")]);
}

#[test]
fn setting_a_tracked_environment_variable_that_was_unset_rebuilds() {
    const VAR: &str = "TROVE_TEST_ENV_UNSET_THEN_SET";
    if !in_own_process(
        "setting_a_tracked_environment_variable_that_was_unset_rebuilds",
        &[(VAR, None)],
    ) {
        return;
    }
    let p = Project::new();
    let log = Log::new();
    let r = env_recipe(&log);
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg(VAR)).unwrap(), None);
    // SAFETY: this process runs this test alone (`in_own_process`), on one thread.
    unsafe { std::env::set_var(VAR, "now") };
    let s = e.get_explained(&r, &arg(VAR)).unwrap();
    assert_eq!(
        built(&s.reason),
        format!("built: env {VAR} changed (unset -> \"now\")")
    );
    assert_eq!(log.take(), [format!("env {VAR}"), format!("env {VAR}")]);
}

// ---------------------------------------------------------------- modules

#[test]
fn rebuilding_a_module_loaded_through_cx_rebuilds() {
    let p = Project::new();
    let lib = p.path("libplugin_cx.so");
    compile_library(&lib, 1);
    let log = Log::new();
    let r = Probe::new("module", &log, |cx, path| {
        // SAFETY: the library is built by this test and its initialisers do nothing.
        let module = unsafe { cx.load_module(path)? };
        let trove::Module::Library(lib) = module else {
            return Err(BuildError::msg("not a library"));
        };
        // SAFETY: the test library exports `int value(void)`.
        let value = unsafe { lib.get::<unsafe extern "C" fn() -> i32>(b"value") }
            .map_err(BuildError::msg)?;
        // SAFETY: as above.
        Ok(unsafe { value() })
    });
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg("libplugin_cx.so")).unwrap(), 1);
    assert_eq!(
        e.get_explained(&r, &arg("libplugin_cx.so")).unwrap().reason,
        Reason::HitMemory
    );
    compile_library(&lib, 2);
    let s = e.get_explained(&r, &arg("libplugin_cx.so")).unwrap();
    assert!(
        built(&s.reason).contains("libplugin_cx.so changed"),
        "{}",
        s.reason
    );
    assert_eq!(
        log.all(),
        ["module libplugin_cx.so", "module libplugin_cx.so"]
    );
}

#[test]
fn editing_a_script_loaded_through_cx_rebuilds() {
    let p = Project::new();
    p.write("tools/step.py", "print(1)\n");
    let log = Log::new();
    let r = Probe::new("script", &log, |cx, path| {
        let bytes = cx.load_script(path)?;
        Ok(bytes.len())
    });
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg("tools/step.py")).unwrap(), 9);
    p.write("tools/step.py", "print(22)\n");
    let s = e.get_explained(&r, &arg("tools/step.py")).unwrap();
    assert!(
        built(&s.reason).contains("tools/step.py changed"),
        "{}",
        s.reason
    );
    assert_eq!(log.all(), ["script tools/step.py", "script tools/step.py"]);
}

/// Libraries a plugin host keeps loaded for the life of the process.
static PLUGINS: std::sync::Mutex<Vec<libloading::Library>> = std::sync::Mutex::new(Vec::new());

/// Loads the library named by its argument behind the engine's back (only
/// `/proc/self/maps` can see it) and keeps it loaded, as a plugin host does.
fn plugin_host(log: &Log) -> Probe<i32> {
    Probe::new("host", log, |cx, path| {
        let path = cx.resolve(path);
        // SAFETY: the library is built by this test and its initialisers do nothing.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(BuildError::msg)?;
        // SAFETY: the test library exports `int value(void)`.
        let v = unsafe { lib.get::<unsafe extern "C" fn() -> i32>(b"value") }
            .map(|value| unsafe { value() })
            .map_err(BuildError::msg)?;
        PLUGINS.lock().unwrap().push(lib);
        Ok(v)
    })
}

#[test]
fn a_shared_library_mapped_during_the_build_without_cx_is_tracked() {
    let p = Project::new();
    let lib = p.path("libplugin_direct.so");
    compile_library(&lib, 10);
    let log = Log::new();
    let r = plugin_host(&log);
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg("libplugin_direct.so")).unwrap(), 10);
    assert_eq!(
        e.get_explained(&r, &arg("libplugin_direct.so"))
            .unwrap()
            .reason,
        Reason::HitMemory
    );
    compile_library(&lib, 11);
    let s = e.get_explained(&r, &arg("libplugin_direct.so")).unwrap();
    assert!(
        built(&s.reason).contains("libplugin_direct.so changed"),
        "{}",
        s.reason
    );
    // The process still runs the old library (the loader hands back the mapped one), so
    // what it built must not be stored as if it came from the new file.
    assert!(!matches!(
        e.residency(&r, &arg("libplugin_direct.so")).unwrap(),
        Residency::OnDisk | Residency::InMemory
    ));
    assert_eq!(
        log.all(),
        ["host libplugin_direct.so", "host libplugin_direct.so"]
    );
}

#[test]
fn a_shared_library_an_earlier_build_left_mapped_is_tracked_by_later_builds() {
    let p = Project::new();
    let lib = p.path("libplugin_kept.so");
    compile_library(&lib, 20);
    let log = Log::new();
    let r = plugin_host(&log);
    let e = p.engine();
    // The first build maps the library; the second (another key of the same recipe)
    // finds it already mapped, so the maps before and after its build are the same.
    assert_eq!(*e.get(&r, &arg("libplugin_kept.so")).unwrap(), 20);
    assert_eq!(*e.get(&r, &arg("./libplugin_kept.so")).unwrap(), 20);
    compile_library(&lib, 21);
    let s = e.get_explained(&r, &arg("./libplugin_kept.so")).unwrap();
    assert!(
        built(&s.reason).contains("libplugin_kept.so changed"),
        "{}",
        s.reason
    );
    assert_eq!(
        log.all(),
        [
            "host libplugin_kept.so",
            "host ./libplugin_kept.so",
            "host ./libplugin_kept.so"
        ]
    );
}

// ---------------------------------------------------------------- objects

/// B sums the numbers in a file (insensitive to whitespace); A doubles B's sum.
fn sum_and_double(log: &Log) -> (Probe<i64>, Probe<i64>) {
    let b = Probe::new("sum", log, |cx, path| {
        Ok(cx
            .read_to_string(path)?
            .split_whitespace()
            .map(|n| n.parse::<i64>().unwrap())
            .sum())
    });
    let dep = b.clone();
    let a = Probe::new("double", log, move |cx, path| Ok(*cx.get(&dep, path)? * 2));
    (a, b)
}

#[test]
fn a_dependency_rebuilt_to_identical_output_does_not_rebuild_its_dependent() {
    let p = Project::new();
    p.write("n.txt", "1 2 3");
    let log = Log::new();
    let (a, _) = sum_and_double(&log);
    let e = p.engine();
    assert_eq!(*e.get(&a, &arg("n.txt")).unwrap(), 12);
    assert_eq!(log.take(), ["double n.txt", "sum n.txt"]);

    p.write("n.txt", "1  2  3\n");
    let s = e.get_explained(&a, &arg("n.txt")).unwrap();
    assert_eq!(s.reason, Reason::HitMemory);
    assert_eq!(*s.value, 12);
    assert_eq!(log.take(), ["sum n.txt"]);

    p.write("n.txt", "1 2 3 4");
    let s = e.get_explained(&a, &arg("n.txt")).unwrap();
    assert_eq!(*s.value, 20);
    let reason = built(&s.reason);
    assert!(
        reason.contains("dependency sum \"n.txt\" changed"),
        "{reason}"
    );
    assert!(reason.contains("n.txt changed"), "{reason}");
    assert_eq!(log.take(), ["sum n.txt", "double n.txt"]);
}

#[test]
fn early_cutoff_holds_in_a_new_engine_with_the_dependency_registered() {
    let p = Project::new();
    p.write("n.txt", "4 5");
    let log = Log::new();
    let (a, b) = sum_and_double(&log);
    p.engine().get(&a, &arg("n.txt")).unwrap();
    assert_eq!(log.take().len(), 2);

    p.write("n.txt", "4\n5\n");
    let e = p.engine();
    e.register(b.clone());
    let s = e.get_explained(&a, &arg("n.txt")).unwrap();
    assert_eq!(s.reason, Reason::HitDisk);
    assert_eq!(*s.value, 18);
    assert_eq!(log.take(), ["sum n.txt"]);

    p.write("n.txt", "4 6");
    let e = p.engine();
    e.register(b);
    let s = e.get_explained(&a, &arg("n.txt")).unwrap();
    assert_eq!(*s.value, 20);
    assert_eq!(log.take(), ["sum n.txt", "double n.txt"]);
}

// ---------------------------------------------------------------- versions

#[derive(Clone)]
struct CodeV1(Log);
#[derive(Clone)]
struct CodeV2(Log);

impl Recipe for CodeV1 {
    const NAME: &'static str = "code";
    const VERSION: u32 = 1;
    type Args = ();
    type Output = u32;
    fn build(&self, _cx: &mut Cx, _args: &()) -> Result<u32, BuildError> {
        self.0.push("code v1".into());
        Ok(1)
    }
}

impl Recipe for CodeV2 {
    const NAME: &'static str = "code";
    const VERSION: u32 = 2;
    type Args = ();
    type Output = u32;
    fn build(&self, _cx: &mut Cx, _args: &()) -> Result<u32, BuildError> {
        self.0.push("code v2".into());
        Ok(2)
    }
}

#[test]
fn a_new_recipe_version_rebuilds_and_says_so() {
    let p = Project::new();
    let log = Log::new();
    p.engine().get(&CodeV1(log.clone()), &()).unwrap();
    let e = p.engine();
    let s = e.get_explained(&CodeV2(log.clone()), &()).unwrap();
    assert_eq!(*s.value, 2);
    assert_eq!(s.reason.to_string(), "built: recipe version 1 -> 2");
    assert_eq!(
        e.get_explained(&CodeV2(log.clone()), &()).unwrap().reason,
        Reason::HitMemory
    );
    assert_eq!(log.take(), ["code v1", "code v2"]);
}

#[test]
fn an_overridden_version_is_validated_too() {
    let p = Project::new();
    p.write("a.txt", "x");
    let log = Log::new();
    let mut r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("a.txt")).unwrap();
    r.version = 7;
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(s.reason.to_string(), "built: recipe version 1 -> 7");
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn bumping_a_global_counter_rebuilds_with_the_counter_named() {
    let p = Project::new();
    p.write("a.txt", "x");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.set_counter("alice", 1);
    e.get(&r, &arg("a.txt")).unwrap();
    e.set_counter("alice", 1);
    assert_eq!(
        e.get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitMemory
    );
    e.set_counter("alice", 2);
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(s.reason.to_string(), "built: counter alice 1 -> 2");
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn a_recipe_counter_rebuilds_only_that_recipes_objects() {
    let p = Project::new();
    p.write("a.txt", "x");
    let log = Log::new();
    let one = text("one", &log);
    let two = text("two", &log);
    let e = p.engine();
    e.get(&one, &arg("a.txt")).unwrap();
    e.get(&two, &arg("a.txt")).unwrap();
    log.take();
    e.set_recipe_counter("one", "bob", 5);
    let s = e.get_explained(&one, &arg("a.txt")).unwrap();
    assert_eq!(s.reason.to_string(), "built: counter one/bob (none) -> 5");
    assert_eq!(
        e.get_explained(&two, &arg("a.txt")).unwrap().reason,
        Reason::HitMemory
    );
    assert_eq!(log.take(), ["one a.txt"]);
}

#[test]
fn counters_from_the_configuration_file_and_its_local_overlay_invalidate() {
    let p = Project::new();
    p.write("a.txt", "x");
    let config = p.write(
        "trove.ron",
        r#"(versions: { "alice": 1 }, recipes: { "text": (versions: { "team": 1 }) })"#,
    );
    let log = Log::new();
    let r = text("text", &log);
    let other = text("other", &log);
    {
        let e = Engine::open(Config::load(&config).unwrap()).unwrap();
        e.get(&r, &arg("a.txt")).unwrap();
        e.get(&other, &arg("a.txt")).unwrap();
    }
    log.take();

    // Same configuration: served from disk.
    let e = Engine::open(Config::load(&config).unwrap()).unwrap();
    assert_eq!(
        e.get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
    drop(e);

    // A recipe counter in the local overlay covers that recipe only.
    p.write(
        "trove.local.ron",
        r#"(recipes: { "text": (versions: { "team": 2 }) })"#,
    );
    let e = Engine::open(Config::load(&config).unwrap()).unwrap();
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(s.reason.to_string(), "built: counter text/team 1 -> 2");
    assert_eq!(
        e.get_explained(&other, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
    drop(e);

    // A global counter in the overlay covers everything.
    p.write(
        "trove.local.ron",
        r#"(versions: { "alice": 3 }, recipes: { "text": (versions: { "team": 2 }) })"#,
    );
    let e = Engine::open(Config::load(&config).unwrap()).unwrap();
    let s = e.get_explained(&other, &arg("a.txt")).unwrap();
    assert_eq!(s.reason.to_string(), "built: counter alice 1 -> 3");
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(s.reason.to_string(), "built: counter alice 1 -> 3");
    assert_eq!(log.take(), ["text a.txt", "other a.txt", "text a.txt"]);
}

// ---------------------------------------------------------------- expiry

fn wait_for_reason<R: Recipe>(e: &Engine, r: &R, args: &R::Args, want: &str) {
    let seen = wait_until(Duration::from_secs(20), || {
        e.explain(r, args).unwrap().to_string().contains(want)
    });
    assert!(seen, "explain never said `{want}`");
}

#[test]
fn an_object_older_than_the_recipes_max_age_is_rebuilt_as_expired() {
    let p = Project::new();
    let log = Log::new();
    let r = Probe::new("clock", &log, |_, _| Ok(1u8)).with_max_age(Duration::from_millis(300));
    let e = p.engine();
    e.get(&r, &arg("")).unwrap();
    wait_for_reason(&e, &r, &arg(""), "expired");
    let s = e.get_explained(&r, &arg("")).unwrap();
    assert_eq!(
        s.reason,
        Reason::Built(Why::Expired {
            max_age: Duration::from_millis(300)
        })
    );
    assert!(s.reason.to_string().starts_with("built: expired (max_age"));
    assert_eq!(log.all(), ["clock ", "clock "]);
}

#[test]
fn the_configurations_max_age_for_a_recipe_expires_its_objects() {
    let p = Project::new();
    let config = p.write("trove.ron", r#"(recipes: { "clock": (max_age: "1s") })"#);
    let log = Log::new();
    let r = Probe::new("clock", &log, |_, _| Ok(1u8));
    let e = Engine::open(Config::load(&config).unwrap()).unwrap();
    e.get(&r, &arg("")).unwrap();
    wait_for_reason(&e, &r, &arg(""), "expired");
    let s = e.get_explained(&r, &arg("")).unwrap();
    assert_eq!(s.reason.to_string(), "built: expired (max_age 1s)");
    assert_eq!(log.all(), ["clock ", "clock "]);
}

#[test]
fn a_volatile_input_expires_after_its_time_to_live() {
    let p = Project::new();
    let log = Log::new();
    let r = Probe::new("quote", &log, |cx, _| {
        cx.volatile("clock", Duration::from_millis(300));
        Ok(1u8)
    });
    let e = p.engine();
    e.get(&r, &arg("")).unwrap();
    wait_for_reason(&e, &r, &arg(""), "volatile clock expired");
    let s = e.get_explained(&r, &arg("")).unwrap();
    assert!(built(&s.reason).starts_with("built: volatile clock expired (ttl"));
    assert_eq!(log.all(), ["quote ", "quote "]);
}

// ---------------------------------------------------------------- invariants, variants

#[test]
fn a_stored_object_failing_its_check_is_quarantined_and_rebuilt() {
    let p = Project::new();
    let log = Log::new();
    let strict = Arc::new(AtomicBool::new(false));
    let flag = strict.clone();
    let r = Probe::new("rows", &log, |_, _| Ok(3u32)).with_check(move |rows| {
        if flag.load(Ordering::SeqCst) {
            Err(format!("rows > 5, got {rows}"))
        } else {
            Ok(())
        }
    });
    p.engine().get(&r, &arg("t")).unwrap();
    strict.store(true, Ordering::SeqCst);
    let e = p.engine();
    let s = e.get_explained(&r, &arg("t")).unwrap();
    assert_eq!(s.reason.to_string(), "built: check failed: rows > 5, got 3");
    assert_eq!(log.all(), ["rows t", "rows t"]);
    let quarantined: Vec<_> = e
        .status()
        .unwrap()
        .into_iter()
        .filter(|st| matches!(st.residency, Residency::Stale(_)))
        .collect();
    assert_eq!(quarantined.len(), 1, "the failing variant is quarantined");
}

#[test]
fn switching_back_to_earlier_content_is_served_from_disk_not_rebuilt() {
    let p = Project::new();
    p.write("branch.txt", "A");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg("branch.txt")).unwrap(), "A");
    p.write("branch.txt", "B");
    assert_eq!(*e.get(&r, &arg("branch.txt")).unwrap(), "B");
    p.write("branch.txt", "A");
    let s = e.get_explained(&r, &arg("branch.txt")).unwrap();
    assert_eq!(*s.value, "A");
    assert_eq!(s.reason, Reason::HitDisk);
    assert_eq!(log.all(), ["text branch.txt", "text branch.txt"]);
}

#[test]
fn store_variants_in_the_configuration_bounds_the_builds_a_key_keeps() {
    let p = Project::new();
    let config = p.write("trove.ron", "(store: (variants: 2))");
    let log = Log::new();
    let r = text("text", &log);
    let e = Engine::open(Config::load(&config).unwrap()).unwrap();
    for content in ["A", "B", "C"] {
        p.write("branch.txt", content);
        e.get(&r, &arg("branch.txt")).unwrap();
    }
    assert_eq!(
        e.status().unwrap().len(),
        2,
        "two variants, not the default 4"
    );
    // The oldest, "A", was dropped: switching back to it builds again.
    p.write("branch.txt", "A");
    let s = e.get_explained(&r, &arg("branch.txt")).unwrap();
    assert!(built(&s.reason).starts_with("built: branch.txt changed"));
    assert_eq!(
        log.all(),
        [
            "text branch.txt",
            "text branch.txt",
            "text branch.txt",
            "text branch.txt"
        ]
    );
    drop(e);

    // Options that say how many override the configuration.
    let options = trove::Options {
        max_variants: Some(1),
        ..trove::Options::default()
    };
    let e = Engine::open_with(Config::load(&config).unwrap(), options).unwrap();
    p.write("branch.txt", "D");
    e.get(&r, &arg("branch.txt")).unwrap();
    assert_eq!(e.status().unwrap().len(), 1);
}

#[test]
fn an_input_changed_during_the_build_is_returned_but_not_stored() {
    let p = Project::new();
    p.write("moving.txt", "before");
    let log = Log::new();
    let r = Probe::new("mover", &log, |cx, path| {
        let text = cx.read_to_string(path)?;
        std::fs::write(cx.resolve(path), "after!").unwrap();
        Ok(text)
    });
    let e = p.engine();
    let s = e.get_explained(&r, &arg("moving.txt")).unwrap();
    assert_eq!(*s.value, "before");
    assert_eq!(
        e.residency(&r, &arg("moving.txt")).unwrap(),
        Residency::Absent
    );
    drop(e);
    let s = p.engine().get_explained(&r, &arg("moving.txt")).unwrap();
    assert_eq!(s.reason, Reason::Built(Why::NoEntry));
    assert_eq!(log.all(), ["mover moving.txt", "mover moving.txt"]);
}

#[test]
fn residency_moves_from_absent_to_memory_to_disk_to_stale() {
    let p = Project::new();
    p.write("a.txt", "1");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    assert_eq!(e.residency(&r, &arg("a.txt")).unwrap(), Residency::Absent);
    let held = e.get(&r, &arg("a.txt")).unwrap();
    assert_eq!(e.residency(&r, &arg("a.txt")).unwrap(), Residency::InMemory);
    drop(held);
    drop(e);
    let e = p.engine();
    assert_eq!(e.residency(&r, &arg("a.txt")).unwrap(), Residency::OnDisk);
    assert_eq!(
        e.explain(&r, &arg("a.txt")).unwrap(),
        trove::Prediction::HitDisk
    );
    p.write("a.txt", "22");
    match e.residency(&r, &arg("a.txt")).unwrap() {
        Residency::Stale(Why::Changed { what, .. }) => assert_eq!(what, "a.txt"),
        other => panic!("expected stale, got {other}"),
    }
    // Nothing was built by asking.
    assert_eq!(log.all(), ["text a.txt"]);
}

// ---------------------------------------------------------------- gc

/// The variants gc removed (or would), as `(what, reason)`.
fn removed_variants(report: &trove::GcReport) -> Vec<(String, String)> {
    report
        .removals
        .iter()
        .filter(|r| r.what.starts_with("variant "))
        .map(|r| (r.what.clone(), r.reason.clone()))
        .collect()
}

#[test]
fn gc_keeps_a_variant_whose_file_changed_so_switching_back_serves_it() {
    let p = Project::new();
    p.write("branch.txt", "main's content");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("branch.txt")).unwrap();
    p.write("branch.txt", "feature's content");
    e.get(&r, &arg("branch.txt")).unwrap();

    let report = e.gc(GcOptions::default()).unwrap();
    assert_eq!(removed_variants(&report), []);
    assert!(report.removals.is_empty(), "{:?}", report.removals);
    assert_eq!(report.kept, 2);
    assert_eq!(p.blobs().len(), 2);
    drop(e);

    // `git checkout main`: the object built on main is served, not rebuilt.
    p.write("branch.txt", "main's content");
    let s = p.engine().get_explained(&r, &arg("branch.txt")).unwrap();
    assert_eq!(
        (s.value.as_str(), &s.reason),
        ("main's content", &Reason::HitDisk)
    );
    assert_eq!(log.all(), ["text branch.txt", "text branch.txt"]);
}

#[test]
fn gc_stale_removes_the_variants_whose_inputs_differ_now_saying_which_input() {
    let p = Project::new();
    p.write("a.txt", "old content");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    e.get(&r, &arg("a.txt")).unwrap();
    p.write("a.txt", "new content");
    e.get(&r, &arg("a.txt")).unwrap();

    let stale = GcOptions {
        stale: true,
        ..GcOptions::default()
    };
    let dry = e
        .gc(GcOptions {
            dry_run: true,
            ..stale.clone()
        })
        .unwrap();
    assert!(dry.dry_run);
    let variants = removed_variants(&dry);
    assert_eq!(variants.len(), 1, "{variants:?}");
    assert_eq!(variants[0].0, "variant text \"a.txt\"");
    assert!(
        variants[0].1.starts_with("stale: a.txt changed (blake3 "),
        "{}",
        variants[0].1
    );
    let blob = dry
        .removals
        .iter()
        .find(|r| r.what.starts_with("blob "))
        .expect("the blob only the stale variant used is listed");
    assert_eq!(blob.reason, "only removed variants used it");
    assert_eq!(dry.removals.len(), 2, "{:?}", dry.removals);
    assert_eq!(
        (p.blobs().len(), e.status().unwrap().len()),
        (2, 2),
        "a dry run removes nothing"
    );

    let report = e.gc(stale).unwrap();
    assert_eq!(removed_variants(&report), variants);
    assert_eq!((report.removals.len(), report.kept), (2, 1));
    assert_eq!(p.blobs().len(), 1);
    assert_eq!(e.status().unwrap().len(), 1);
    drop(e);
    assert_eq!(
        p.engine().get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn gc_removes_the_variants_of_another_recipe_version_as_dead() {
    let p = Project::new();
    let log = Log::new();
    p.engine().get(&CodeV1(log.clone()), &()).unwrap();
    p.engine().get(&CodeV2(log.clone()), &()).unwrap();

    // An engine that does not know the recipe cannot tell which version is current.
    let report = p.engine().gc(GcOptions::default()).unwrap();
    assert_eq!((removed_variants(&report), report.kept), (vec![], 2));

    let e = p.engine();
    e.register(CodeV2(log.clone()));
    let report = e.gc(GcOptions::default()).unwrap();
    assert_eq!(
        removed_variants(&report),
        [(
            "variant code".to_owned(),
            "dead: recipe version 1 -> 2".to_owned()
        )]
    );
    assert_eq!(report.kept, 1);
    assert_eq!(
        e.get_explained(&CodeV2(log.clone()), &()).unwrap().reason,
        Reason::HitDisk
    );
    assert_eq!(log.take(), ["code v1", "code v2"]);
}

#[test]
fn gc_removes_variants_under_an_older_counter_and_keeps_those_under_a_newer_one() {
    let p = Project::new();
    p.write("a.txt", "x");
    let log = Log::new();
    let r = text("text", &log);
    let with_alice = |n: u64| {
        let config = p.write("trove.ron", format!("(versions: {{ \"alice\": {n} }})"));
        Engine::open(Config::load(&config).unwrap()).unwrap()
    };
    for n in [1, 3, 2] {
        with_alice(n).get(&r, &arg("a.txt")).unwrap();
    }
    assert_eq!(log.all(), ["text a.txt", "text a.txt", "text a.txt"]);

    // Today alice is 2: the object built under 1 can never match again; the one built
    // under 3 comes back if alice goes back to 3 (a bump in trove.local.ron, say).
    let e = with_alice(2);
    let report = e.gc(GcOptions::default()).unwrap();
    assert_eq!(
        removed_variants(&report),
        [(
            "variant text \"a.txt\"".to_owned(),
            "dead: counter alice 1 -> 2".to_owned()
        )]
    );
    assert_eq!(report.kept, 2);
    drop(e);
    let s = with_alice(3).get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(s.reason, Reason::HitDisk);

    // Today alice is 3 and a counter bob was added: every variant is older than that.
    let config = p.write("trove.ron", r#"(versions: { "alice": 3, "bob": 1 })"#);
    let e = Engine::open(Config::load(&config).unwrap()).unwrap();
    let mut dead: Vec<String> = removed_variants(&e.gc(GcOptions::default()).unwrap())
        .into_iter()
        .map(|(_, why)| why)
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        [
            "dead: counter alice 2 -> 3",
            "dead: counter bob (none) -> 1"
        ]
    );
    assert_eq!(log.all(), ["text a.txt", "text a.txt", "text a.txt"]);
}

#[test]
fn gc_removes_an_expired_variant_as_dead() {
    let p = Project::new();
    let log = Log::new();
    let r = Probe::new("clock", &log, |_, _| Ok(1u8)).with_max_age(Duration::from_secs(2));
    let e = p.engine();
    let started = std::time::Instant::now();
    e.get(&r, &arg("")).unwrap();
    let early = e.gc(GcOptions::default()).unwrap();
    // Younger than its max_age, the variant is kept. Checked only when this gc ran within
    // the max_age: on a loaded machine it may not have, and then the variant is expired.
    if started.elapsed() < Duration::from_secs(2) {
        assert_eq!(removed_variants(&early), []);
    }
    wait_for_reason(&e, &r, &arg(""), "expired");
    let report = e.gc(GcOptions::default()).unwrap();
    assert_eq!(
        removed_variants(&report),
        [(
            "variant clock \"\"".to_owned(),
            "dead: expired (max_age 2s)".to_owned()
        )]
    );
    assert_eq!(report.kept, 0);
}

#[test]
fn gc_with_a_size_limit_removes_the_least_recently_used_first() {
    let p = Project::new();
    let log = Log::new();
    let r = Probe::new("big", &log, |_, name| Ok(name.repeat(1000).into_bytes()));
    let e = p.engine();
    for k in ["a", "b", "c"] {
        e.get(&r, &arg(k)).unwrap();
    }
    drop(e);
    // Let the millisecond clock move on, then use "a" again.
    let t0 = SystemTime::now();
    assert!(wait_until(Duration::from_secs(5), || {
        SystemTime::now() > t0 + Duration::from_millis(5)
    }));
    let e = p.engine();
    assert_eq!(
        e.get_explained(&r, &arg("a")).unwrap().reason,
        Reason::HitDisk
    );
    let report = e
        .gc(GcOptions {
            max_size: Some(2000),
            ..GcOptions::default()
        })
        .unwrap();
    let trimmed: Vec<_> = report
        .removals
        .iter()
        .filter(|r| r.reason.contains("size limit"))
        .map(|r| r.what.clone())
        .collect();
    assert_eq!(trimmed, ["variant big \"b\""]);
    drop(e);
    let e = p.engine();
    assert_eq!(
        e.get_explained(&r, &arg("a")).unwrap().reason,
        Reason::HitDisk
    );
    assert_eq!(
        e.get_explained(&r, &arg("c")).unwrap().reason,
        Reason::HitDisk
    );
    assert_eq!(
        e.get_explained(&r, &arg("b")).unwrap().reason,
        Reason::Built(Why::NoEntry)
    );
}

// ---------------------------------------------------------------- encodings, async

#[test]
fn a_raw_bytes_object_round_trips_through_the_disk_tier() {
    let p = Project::new();
    let log = Log::new();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let expected = bytes.clone();
    let r = Probe::new("raw", &log, move |_, _| Ok(bytes.clone()));
    p.engine().get(&r, &arg("")).unwrap();
    let s = p.engine().get_explained(&r, &arg("")).unwrap();
    assert_eq!(s.reason, Reason::HitDisk);
    assert_eq!(*s.value, expected);
    // Stored raw: the blob is the bytes themselves.
    let blobs = p.blobs();
    assert_eq!(blobs.len(), 1);
    assert_eq!(std::fs::read(&blobs[0]).unwrap(), expected);
    assert_eq!(log.all(), ["raw "]);
}

#[test]
fn get_async_in_a_tokio_runtime_serves_the_same_object_as_get() {
    let p = Project::new();
    p.write("a.txt", "async");
    let log = Log::new();
    let r = text("text", &log);
    let e = p.engine();
    let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let from_async = rt.block_on(e.get_async(&r, arg("a.txt"))).unwrap();
    let from_sync = e.get(&r, &arg("a.txt")).unwrap();
    assert!(Arc::ptr_eq(&from_async, &from_sync));
    assert_eq!(*from_async, "async");
    assert_eq!(log.all(), ["text a.txt"]);
}

// ---------------------------------------------------------------- concurrency

#[test]
fn thirty_two_threads_asking_for_one_key_at_once_build_it_once() {
    let p = Project::new();
    let log = Log::new();
    let e = p.engine();
    // The build waits until the 31 other threads wait for it (with a deadline against a
    // hang), so every one of them goes through the single flight.
    let waiting = e.clone();
    let r = Probe::new("slow", &log, move |_, _| {
        wait_until(Duration::from_secs(30), || waiting.stats().waits == 31);
        Ok(vec![7u64; 100])
    });
    let barrier = Arc::new(Barrier::new(32));
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let (e, r, barrier) = (e.clone(), r.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                e.get(&r, &arg("k")).unwrap()
            })
        })
        .collect();
    let values: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(log.take(), ["slow k"]);
    assert_eq!(e.stats().waits, 31, "the others waited for the one build");
    assert!(values.iter().all(|v| Arc::ptr_eq(v, &values[0])));
}

#[test]
fn a_panicking_build_wakes_its_waiters_with_an_error_and_a_later_get_builds() {
    let p = Project::new();
    let log = Log::new();
    let e = p.engine();
    let fail = Arc::new(AtomicBool::new(true));
    let started = Arc::new(Barrier::new(2));
    let (f, s, waiting) = (fail.clone(), started.clone(), e.clone());
    let r = Probe::new("panicky", &log, move |_, _| {
        if f.load(Ordering::SeqCst) {
            s.wait();
            // Panics once the other caller waits for this build (a deadline against a
            // hang, not a timing assumption).
            wait_until(Duration::from_secs(30), || waiting.stats().waits == 1);
            panic!("the build blew up");
        }
        Ok(1u8)
    });
    let leader = {
        let (e, r) = (e.clone(), r.clone());
        std::thread::spawn(move || e.get(&r, &arg("k")))
    };
    started.wait();
    // The leader is inside its build: this caller waits for it, then gets its error.
    let waited = e.get(&r, &arg("k"));
    assert!(leader.join().is_err(), "the leader's thread panicked");
    let err = waited.expect_err("the waiter gets an error, not a hang");
    assert!(err.to_string().contains("panicked"), "{err}");
    fail.store(false, Ordering::SeqCst);
    let s = e.get_explained(&r, &arg("k")).unwrap();
    assert_eq!(*s.value, 1);
    assert_eq!(s.reason, Reason::Built(Why::NoEntry));
    assert_eq!(e.stats().waits, 1);
    assert_eq!(log.take(), ["panicky k", "panicky k"]);
}

#[test]
fn a_failing_build_is_not_cached() {
    let p = Project::new();
    let log = Log::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let r = Probe::new("flaky", &log, move |_, _| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(BuildError::msg("not today"))
        } else {
            Ok(5u8)
        }
    });
    let e = p.engine();
    let err = e.get(&r, &arg("k")).unwrap_err();
    assert!(err.to_string().contains("not today"), "{err}");
    assert_eq!(e.residency(&r, &arg("k")).unwrap(), Residency::Absent);
    let s = e.get_explained(&r, &arg("k")).unwrap();
    assert_eq!(*s.value, 5);
    assert_eq!(s.reason, Reason::Built(Why::NoEntry));
    assert_eq!(log.all(), ["flaky k", "flaky k"]);
}

#[test]
fn a_recipe_asking_for_its_own_object_is_a_cycle_error_not_a_deadlock() {
    #[derive(Clone)]
    struct SelfRef;
    impl Recipe for SelfRef {
        const NAME: &'static str = "self-ref";
        const VERSION: u32 = 1;
        type Args = u8;
        type Output = u8;
        fn build(&self, cx: &mut Cx, n: &u8) -> Result<u8, BuildError> {
            Ok(*cx.get(&SelfRef, n)?)
        }
    }
    let p = Project::new();
    let err = p.engine().get(&SelfRef, &1).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
}

// ---------------------------------------------------------------- corruption

/// Content larger than the store keeps in its index (4 KiB): its blob is read from its
/// file, which these tests damage. (A small blob's copy in the index is verified the same
/// way: `crates/trove-store/tests/inline.rs`.)
fn precious() -> String {
    "precious data ".repeat(400)
}

fn stored_text(p: &Project, content: &str) -> (Log, Probe<String>) {
    p.write("a.txt", content);
    let log = Log::new();
    let r = text("text", &log);
    p.engine().get(&r, &arg("a.txt")).unwrap();
    (log, r)
}

#[test]
fn a_blob_with_a_flipped_bit_is_rebuilt_as_corrupt_never_served() {
    let p = Project::new();
    let precious = precious();
    let (log, r) = stored_text(&p, &precious);
    let blob = &p.blobs()[0];
    let mut bytes = std::fs::read(blob).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(blob, &bytes).unwrap();
    let s = p.engine().get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, precious);
    assert!(
        s.reason.to_string().starts_with("built: blob corrupt"),
        "{}",
        s.reason
    );
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
    // The rebuilt object is stored again and served.
    assert_eq!(
        p.engine().get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
}

#[test]
fn a_small_object_is_served_from_its_verified_copy_in_the_index_and_rebuilt_when_both_are_damaged()
{
    let p = Project::new();
    let (log, r) = stored_text(&p, "precious data");
    let blob = &p.blobs()[0];
    let mut bytes = std::fs::read(blob).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(blob, &bytes).unwrap();
    // The file is damaged; the index's copy still hashes to the blob's name.
    let s = p.engine().get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(
        (&*s.value, &s.reason),
        (&"precious data".to_owned(), &Reason::HitDisk)
    );
    // Damage the copy the same way: neither is served.
    let conn = rusqlite::Connection::open(p.path(".trove/v1/index.sqlite")).unwrap();
    conn.execute("UPDATE blob_inline SET bytes = ?1", [&bytes[..]])
        .unwrap();
    let s = p.engine().get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, "precious data");
    assert!(
        s.reason.to_string().starts_with("built: blob corrupt"),
        "{}",
        s.reason
    );
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn a_truncated_blob_is_rebuilt_as_corrupt() {
    let p = Project::new();
    let precious = precious();
    let (log, r) = stored_text(&p, &precious);
    let blob = &p.blobs()[0];
    std::fs::File::options()
        .write(true)
        .open(blob)
        .unwrap()
        .set_len(4)
        .unwrap();
    let s = p.engine().get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, precious);
    assert!(
        s.reason.to_string().contains("blob corrupt"),
        "{}",
        s.reason
    );
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
}

#[test]
fn a_corrupt_trace_in_the_index_is_rebuilt_without_a_panic() {
    let p = Project::new();
    let (log, r) = stored_text(&p, "precious data");
    let conn = rusqlite::Connection::open(p.path(".trove/v1/index.sqlite")).unwrap();
    let n = conn
        .execute("UPDATE variants SET trace = X'01FFFFFFFF'", [])
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let s = p.engine().get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, "precious data");
    assert!(matches!(s.reason, Reason::Built(_)), "{}", s.reason);
    assert_eq!(log.all(), ["text a.txt", "text a.txt"]);
    assert_eq!(
        p.engine().get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
}

/// Stores a copy of the key's variant whose object is in a codec this trove does not
/// know (as a newer trove would write it), one millisecond newer so it is tried first.
fn store_unknown_codec_variant(p: &Project) -> trove_store::Store {
    let store = trove_store::Store::open(&p.path(".trove")).unwrap();
    let rec = store.records().unwrap().remove(0);
    store
        .insert(&trove_store::NewRecord {
            key: rec.key,
            recipe: rec.recipe,
            args: rec.args,
            recipe_version: rec.recipe_version,
            created_ms: rec.created_ms + 1,
            blob: rec.blob,
            codec: 99,
            trace: rec.trace,
            reason: rec.reason,
        })
        .unwrap();
    store
}

#[test]
fn a_variant_in_an_unknown_codec_is_a_miss_left_in_the_store_never_quarantined() {
    let p = Project::new();
    let (log, r) = stored_text(&p, "precious data");
    let store = store_unknown_codec_variant(&p);
    assert_eq!(log.take(), ["text a.txt"]);

    // The known variant beside it is served; the unknown one is skipped, not judged.
    let e = p.engine();
    assert_eq!(
        e.get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
    let live = |store: &trove_store::Store| -> Vec<u8> {
        let mut codecs: Vec<u8> = store
            .records()
            .unwrap()
            .iter()
            .filter(|rec| rec.quarantined.is_none())
            .map(|rec| rec.codec)
            .collect();
        codecs.sort();
        codecs
    };
    assert_eq!(live(&store), [1, 99], "both variants are live");

    // Alone, it is a miss that says why: the object is built, and the variant stays.
    let known = store
        .records()
        .unwrap()
        .into_iter()
        .find(|rec| rec.codec != 99)
        .unwrap();
    store.remove(known.id).unwrap();
    let e = p.engine();
    assert_eq!(
        e.explain(&r, &arg("a.txt")).unwrap().to_string(),
        "would build: cannot verify the stored object: its object is in an unknown format (codec 99)"
    );
    let s = e.get_explained(&r, &arg("a.txt")).unwrap();
    assert_eq!(*s.value, "precious data");
    assert_eq!(
        built(&s.reason),
        "built: cannot verify the stored object: its object is in an unknown format (codec 99)"
    );
    assert_eq!(log.take(), ["text a.txt"]);
    assert_eq!(
        live(&store),
        [1, 99],
        "the unknown variant was not quarantined"
    );
}

#[test]
fn an_object_reading_hundreds_of_files_rebuilds_when_any_one_changes() {
    // Past a few hundred inputs the files are checked on several threads; the answer
    // must be the one the in-order check gives.
    let p = Project::new();
    for i in 0..400 {
        p.write(&format!("many/{i:03}.txt"), format!("{i}"));
    }
    let log = Log::new();
    let r = Probe::new("sum", &log, |cx, _| {
        let mut total = 0u64;
        for i in 0..400 {
            total += cx
                .read_to_string(format!("many/{i:03}.txt"))?
                .parse::<u64>()
                .unwrap();
        }
        Ok(total)
    });
    let e = p.engine();
    assert_eq!(*e.get(&r, &arg("")).unwrap(), (0..400).sum::<u64>());
    assert_eq!(
        e.get_explained(&r, &arg("")).unwrap().reason,
        Reason::HitMemory
    );
    p.write("many/321.txt", "1321");
    let s = e.get_explained(&r, &arg("")).unwrap();
    assert_eq!(*s.value, (0..400).sum::<u64>() + 1000);
    assert!(
        built(&s.reason).starts_with("built: many/321.txt changed"),
        "{}",
        s.reason
    );
    assert_eq!(log.all(), ["sum ", "sum "]);
}

/// An engine on a configuration that watches `data/`.
fn watched_engine(p: &Project) -> Engine {
    p.write("trove.ron", "(watch: (roots: [\"data\"]))");
    Engine::open(Config::load(&p.path("trove.ron")).unwrap()).unwrap()
}

#[test]
fn with_a_watcher_an_unchanged_object_is_served_without_checking_its_files() {
    let p = Project::new();
    p.write("data/a.txt", "one");
    let e = watched_engine(&p);
    let _watch = e.watch().unwrap();
    let log = Log::new();
    let r = text("text", &log);
    e.get(&r, &arg("data/a.txt")).unwrap();
    // The first memory hit verifies with stat and claims freshness; the rest trust the
    // watcher.
    e.get(&r, &arg("data/a.txt")).unwrap();
    let before = e.stats();
    for _ in 0..100 {
        assert_eq!(
            e.get_explained(&r, &arg("data/a.txt")).unwrap().reason,
            Reason::HitMemory
        );
    }
    let after = e.stats();
    assert_eq!(after.watched_hits - before.watched_hits, 100);
    assert_eq!(
        after.files_checked, before.files_checked,
        "no file was checked"
    );
    assert_eq!(log.all(), ["text data/a.txt"]);
}

#[test]
fn with_a_watcher_an_edit_is_seen_once_its_event_arrives() {
    let p = Project::new();
    p.write("data/a.txt", "one");
    let e = watched_engine(&p);
    let _watch = e.watch().unwrap();
    let log = Log::new();
    let r = text("text", &log);
    e.get(&r, &arg("data/a.txt")).unwrap();
    e.get(&r, &arg("data/a.txt")).unwrap();
    p.write("data/a.txt", "two");
    let seen = wait_until(Duration::from_secs(10), || {
        *e.get(&r, &arg("data/a.txt")).unwrap() == "two"
    });
    assert!(seen, "the edit was never seen");
    assert_eq!(log.all(), ["text data/a.txt", "text data/a.txt"]);
}

#[test]
fn a_watcher_rescan_falls_back_to_checking_files() {
    let p = Project::new();
    p.write("data/a.txt", "one");
    let e = watched_engine(&p);
    let _watch = e.watch().unwrap();
    let log = Log::new();
    let r = text("text", &log);
    e.get(&r, &arg("data/a.txt")).unwrap();
    e.get(&r, &arg("data/a.txt")).unwrap();
    let before = e.stats().files_checked;
    // A changed .gitignore may hide changes the watcher used to see: it asks for a
    // rescan, after which every object is verified with stat again.
    p.write("data/.gitignore", "*.tmp\n");
    let rechecked = wait_until(Duration::from_secs(10), || {
        e.get(&r, &arg("data/a.txt")).unwrap();
        e.stats().files_checked > before
    });
    assert!(rechecked);
    assert_eq!(
        log.all(),
        ["text data/a.txt"],
        "nothing changed, so nothing rebuilt"
    );
}

#[test]
fn an_object_outside_the_watched_roots_is_always_checked_with_stat() {
    let p = Project::new();
    p.write("data/a.txt", "one");
    p.write("other/b.txt", "one");
    let e = watched_engine(&p);
    let _watch = e.watch().unwrap();
    let log = Log::new();
    let r = text("text", &log);
    e.get(&r, &arg("other/b.txt")).unwrap();
    e.get(&r, &arg("other/b.txt")).unwrap();
    let before = e.stats();
    e.get(&r, &arg("other/b.txt")).unwrap();
    assert_eq!(e.stats().watched_hits, before.watched_hits);
    assert_eq!(e.stats().files_checked, before.files_checked + 1);
    // And an edit there is seen at once, no event needed.
    p.write("other/b.txt", "two");
    assert_eq!(*e.get(&r, &arg("other/b.txt")).unwrap(), "two");
}

/// A recipe whose code lives in `sources`.
#[derive(Clone)]
struct Coded {
    sources: trove::Sources,
    log: Log,
}

impl Recipe for Coded {
    const NAME: &'static str = "coded";
    const VERSION: u32 = 1;
    type Args = ();
    type Output = u32;
    fn build(&self, _: &mut Cx, _: &()) -> Result<u32, BuildError> {
        self.log.push("coded".into());
        Ok(7)
    }
    fn sources(&self) -> trove::Sources {
        self.sources
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn editing_a_recipes_source_file_rebuilds_its_objects() {
    let p = Project::new();
    p.write("src/table/mod.rs", "fn a() {}");
    p.write("src/other.rs", "fn b() {}");
    let log = Log::new();
    let root = leak(p.root().display().to_string());
    let r = Coded {
        sources: trove::Sources::new(root, &["src/table/**/*.rs"], None),
        log: log.clone(),
    };
    let e = p.engine();
    e.get(&r, &()).unwrap();
    p.write("src/other.rs", "fn b() { 1; }");
    assert_eq!(e.get_explained(&r, &()).unwrap().reason, Reason::HitMemory);
    p.write("src/table/mod.rs", "fn a() { 2; }");
    let s = e.get_explained(&r, &()).unwrap();
    assert!(
        built(&s.reason).starts_with("built: src/table/mod.rs changed"),
        "{}",
        s.reason
    );
    p.write("src/table/new.rs", "");
    let s = e.get_explained(&r, &()).unwrap();
    assert!(
        built(&s.reason).contains("glob src/table/**/*.rs"),
        "{}",
        s.reason
    );
    assert_eq!(log.all(), ["coded", "coded", "coded"]);
}

#[test]
fn without_its_sources_on_disk_a_recipe_is_checked_by_its_embedded_digest() {
    let p = Project::new();
    p.write("src/lib.rs", "fn a() {}");
    // What the build script (`trove_fingerprint::emit_source_digest`) would embed.
    let digest = trove_fingerprint::source_digest(p.root(), &["src/**/*.rs"])
        .unwrap()
        .hex();
    let log = Log::new();
    let missing = leak(p.path("not-shipped").display().to_string());
    let shipped = |embedded: &'static str| Coded {
        sources: trove::Sources::new(missing, &["src/**/*.rs"], Some(embedded)),
        log: log.clone(),
    };
    let r = shipped(leak(digest.clone()));
    p.engine().get(&r, &()).unwrap();
    assert_eq!(
        p.engine().get_explained(&r, &()).unwrap().reason,
        Reason::HitDisk
    );
    // A binary built from other sources embeds another digest.
    let other = shipped(leak("ab".repeat(32)));
    let s = p.engine().get_explained(&other, &()).unwrap();
    assert!(
        built(&s.reason).contains("sources of recipe coded changed"),
        "{}",
        s.reason
    );
    assert_eq!(log.all(), ["coded", "coded"]);
}

#[test]
fn an_object_in_memory_before_the_watcher_started_is_still_invalidated_by_its_events() {
    let p = Project::new();
    p.write("data/a.txt", "one");
    let e = watched_engine(&p);
    let log = Log::new();
    let r = text("text", &log);
    e.get(&r, &arg("data/a.txt")).unwrap();
    let _watch = e.watch().unwrap();
    e.get(&r, &arg("data/a.txt")).unwrap();
    let before = e.stats().watched_hits;
    e.get(&r, &arg("data/a.txt")).unwrap();
    assert_eq!(e.stats().watched_hits, before + 1, "trusted the watcher");
    p.write("data/a.txt", "two");
    let seen = wait_until(Duration::from_secs(10), || {
        *e.get(&r, &arg("data/a.txt")).unwrap() == "two"
    });
    assert!(seen, "the edit was never seen");
    assert_eq!(log.all(), ["text data/a.txt", "text data/a.txt"]);
}

#[test]
fn a_dependent_object_is_invalidated_through_its_dependency_under_a_watcher() {
    let p = Project::new();
    p.write("data/n.txt", "1");
    let log = Log::new();
    let inner = text("inner", &log);
    let inner_for_outer = inner.clone();
    let outer = Probe::new("outer", &log, move |cx, path| {
        Ok(format!("[{}]", cx.get(&inner_for_outer, path)?))
    });
    let e = watched_engine(&p);
    let _watch = e.watch().unwrap();
    assert_eq!(*e.get(&outer, &arg("data/n.txt")).unwrap(), "[1]");
    e.get(&outer, &arg("data/n.txt")).unwrap();
    e.get(&outer, &arg("data/n.txt")).unwrap();
    p.write("data/n.txt", "2");
    let seen = wait_until(Duration::from_secs(10), || {
        *e.get(&outer, &arg("data/n.txt")).unwrap() == "[2]"
    });
    assert!(seen, "the dependent was served stale");
}

#[test]
fn disk_hits_are_counted_in_status_once_the_engine_writes_them() {
    let p = Project::new();
    p.write("a.txt", "one");
    let log = Log::new();
    let r = text("text", &log);
    p.engine().get(&r, &arg("a.txt")).unwrap();
    // Each new engine is a new process as far as the tiers go: a disk hit each.
    for _ in 0..3 {
        let e = p.engine();
        assert_eq!(
            e.get_explained(&r, &arg("a.txt")).unwrap().reason,
            Reason::HitDisk
        );
    }
    let e = p.engine();
    assert_eq!(
        e.get_explained(&r, &arg("a.txt")).unwrap().reason,
        Reason::HitDisk
    );
    // Counted in memory, written before status reads them.
    let status = e.status().unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].hits, 4);
    assert_eq!(log.all(), ["text a.txt"]);
}

#[test]
fn under_a_watcher_an_object_whose_dependency_now_fails_is_never_served_on_the_watchers_word() {
    let p = Project::new();
    p.write("data/n.txt", "1");
    let log = Log::new();
    let inner = Probe::new("inner", &log, |cx, path| {
        let text = cx.read_to_string(path)?;
        if text == "bad" {
            return Err(BuildError::msg("bad input"));
        }
        Ok(text)
    });
    let inner_for_outer = inner.clone();
    let outer = Probe::new("outer", &log, move |cx, path| {
        Ok(format!("[{}]", cx.get(&inner_for_outer, path)?))
    });
    let e = watched_engine(&p);
    let _watch = e.watch().unwrap();
    for _ in 0..3 {
        assert_eq!(*e.get(&outer, &arg("data/n.txt")).unwrap(), "[1]");
    }
    p.write("data/n.txt", "bad");
    // Once the event is in, the dependency's rebuild fails and so does the request...
    let failed = wait_until(Duration::from_secs(10), || {
        e.get(&outer, &arg("data/n.txt")).is_err()
    });
    assert!(failed, "the edit was never seen");
    // ...and keeps failing: a check that errored must not leave the object trusted.
    for _ in 0..3 {
        assert!(e.get(&outer, &arg("data/n.txt")).is_err());
    }
}

#[test]
fn chmod_on_a_globbed_or_listed_file_and_a_new_empty_directory_under_a_glob_rebuild() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: std::path::PathBuf, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let p = Project::new();
    p.write("tools/run", "#!/bin/sh\n");
    chmod(p.path("tools/run"), 0o644);
    let log = Log::new();
    let globbed = glob_recipe(&log);
    let listed = Probe::new("ls", &log, |cx, dir| cx.read_dir(dir));
    let e = p.engine();
    e.get(&globbed, &arg("tools/**")).unwrap();
    e.get(&listed, &arg("tools")).unwrap();

    chmod(p.path("tools/run"), 0o755);
    let s = p
        .engine()
        .get_explained(&globbed, &arg("tools/**"))
        .unwrap();
    assert!(
        built(&s.reason).contains("glob tools/** changed"),
        "{}",
        s.reason
    );
    let s = p.engine().get_explained(&listed, &arg("tools")).unwrap();
    assert!(
        built(&s.reason).contains("tools/ listing changed"),
        "{}",
        s.reason
    );

    std::fs::create_dir(p.path("tools/empty")).unwrap();
    let s = p
        .engine()
        .get_explained(&globbed, &arg("tools/**"))
        .unwrap();
    assert!(
        built(&s.reason).contains("glob tools/** changed"),
        "{}",
        s.reason
    );
    assert_eq!(*s.value, ["tools/run"], "a directory is not a file");
    assert_eq!(
        p.engine()
            .get_explained(&globbed, &arg("tools/**"))
            .unwrap()
            .reason,
        Reason::HitDisk
    );
    assert_eq!(
        log.all(),
        [
            "glob tools/**",
            "ls tools",
            "glob tools/**",
            "ls tools",
            "glob tools/**"
        ]
    );
}

// ---------------------------------------------------------------- the public surface

#[test]
fn a_configuration_error_converts_into_trove_error_and_keeps_its_place() {
    fn open(path: &std::path::Path) -> Result<Engine, trove::Error> {
        Engine::open(Config::load(path)?)
    }
    let p = Project::new();
    let config = p.write("trove.ron", "(\n    store: (variants: 0),\n)");
    match open(&config) {
        Err(trove::Error::ConfigFile(e)) => {
            assert_eq!(
                (e.file.as_path(), e.line, e.column),
                (config.as_path(), 2, 23)
            );
            assert!(e.message.contains("`variants` must be at least 1"), "{e}");
        }
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("a bad configuration was accepted"),
    }
}
