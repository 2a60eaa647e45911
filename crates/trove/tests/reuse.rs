//! A build reuses the fingerprint of a file that provably did not change since one was
//! recorded (same stat fields, not racy), and hashes every other file: counted by
//! `Stats::files_hashed` on real files.

mod support;

use std::time::Duration;

use support::{Log, Probe, Project, mtime, set_mtime};
use trove::{CommandRecipe, Config, Engine, Reason, Stats};

/// Files older than the racy window (two seconds) as far as their mtime and ctime go.
fn age() {
    std::thread::sleep(support::PAST_RACY);
}

/// A recipe that opens the files its argument names (comma-separated): `cx.open`
/// fingerprints each without returning the bytes it hashed, so it may reuse.
fn opener(log: &Log) -> Probe<String> {
    Probe::new("opener", log, |cx, names| {
        let mut out = String::new();
        for name in names.split(',') {
            let mut file = cx.open(name)?;
            std::io::Read::read_to_string(&mut file, &mut out).unwrap();
        }
        Ok(out)
    })
}

fn hashed(engine: &Engine) -> u64 {
    let Stats { files_hashed, .. } = engine.stats();
    files_hashed
}

#[test]
fn an_unchanged_file_keeps_its_fingerprint_in_a_rebuild_a_new_process_and_another_key() {
    let p = Project::new();
    p.write("a.txt", "alpha");
    p.write("b.txt", "beta");
    age();
    let log = Log::new();
    let r = opener(&log);
    let args = "a.txt,b.txt".to_owned();

    let e = p.engine();
    assert_eq!(*e.get(&r, &args).unwrap(), "alphabeta");
    assert_eq!(hashed(&e), 2, "the first build hashes both files");
    drop(e);

    // A forced rebuild of the same key in a new engine: the key's stored trace vouches.
    let e = p.engine();
    let served = e.refresh(&r, &args).unwrap();
    assert_eq!(served.reason.to_string(), "built: forced");
    assert_eq!(*served.value, "alphabeta");
    assert_eq!(hashed(&e), 0, "nothing changed: nothing hashed");

    // Another key in the same engine: the engine's table vouches for b.txt.
    assert_eq!(*e.get(&r, &"b.txt".to_owned()).unwrap(), "beta");
    assert_eq!(hashed(&e), 0);
    // A file no build recorded is hashed.
    p.write("c.txt", "gamma");
    assert_eq!(*e.get(&r, &"b.txt,c.txt".to_owned()).unwrap(), "betagamma");
    assert_eq!(hashed(&e), 1);
    assert_eq!(log.len(), 4);
}

#[test]
fn a_same_size_edit_with_its_mtime_restored_is_hashed_again_and_rebuilds() {
    let p = Project::new();
    let a = p.write("a.txt", "alpha");
    age();
    let log = Log::new();
    let r = opener(&log);
    let args = "a.txt".to_owned();
    let e = p.engine();
    assert_eq!(*e.get(&r, &args).unwrap(), "alpha");
    drop(e);

    // `cp -p` / `touch -d` style: same length, the old mtime put back; only ctime differs.
    let old = mtime(&a);
    p.write("a.txt", "ALPHA");
    set_mtime(&a, old);
    assert_eq!(mtime(&a), old);

    let e = p.engine();
    let served = e.refresh(&r, &args).unwrap();
    assert_eq!(
        *served.value, "ALPHA",
        "the reused fingerprint would say alpha"
    );
    assert_eq!(hashed(&e), 1);
    drop(e);
    // What that build stored is what a later request validates and serves.
    let e = p.engine();
    let served = e.get_explained(&r, &args).unwrap();
    assert_eq!(served.reason, Reason::HitDisk);
    assert_eq!(*served.value, "ALPHA");
}

#[test]
fn a_racy_recorded_fingerprint_is_hashed_again() {
    let p = Project::new();
    let a = p.write("a.txt", "alpha");
    // Stamped in the future (a skewed clock, a network file system): every fingerprint
    // taken before that moment, plus the racy window, is racy, however long the test takes.
    set_mtime(
        &a,
        std::time::SystemTime::now() + Duration::from_secs(3_600),
    );
    let log = Log::new();
    let r = opener(&log);
    let args = "a.txt".to_owned();
    let e = p.engine();
    assert_eq!(*e.get(&r, &args).unwrap(), "alpha");
    assert_eq!(hashed(&e), 1);
    // Unchanged, but the recorded state (in the store and in this engine's table) is racy.
    e.refresh(&r, &args).unwrap();
    assert_eq!(hashed(&e), 2);
    drop(e);
    let e = p.engine();
    e.refresh(&r, &args).unwrap();
    assert_eq!(hashed(&e), 1);
    assert_eq!(log.len(), 3);
}

#[test]
fn an_edit_between_two_builds_is_seen() {
    let p = Project::new();
    p.write("a.txt", "alpha");
    p.write("b.txt", "beta");
    age();
    let log = Log::new();
    let r = opener(&log);
    let args = "a.txt,b.txt".to_owned();
    let e = p.engine();
    assert_eq!(*e.get(&r, &args).unwrap(), "alphabeta");
    assert_eq!(hashed(&e), 2);

    p.write("b.txt", "beta, edited");
    p.settle();
    // In the same engine (its table knows the old state) and in a new one.
    let served = e.get_explained(&r, &args).unwrap();
    assert!(
        matches!(served.reason, Reason::Built(_)),
        "{}",
        served.reason
    );
    assert_eq!(*served.value, "alphabeta, edited");
    assert_eq!(hashed(&e), 3, "a.txt reused, b.txt hashed");
    p.write("b.txt", "beta, again");
    p.settle();
    drop(e);
    let e = p.engine();
    assert_eq!(*e.refresh(&r, &args).unwrap().value, "alphabeta, again");
    assert_eq!(hashed(&e), 1);
}

#[test]
fn cx_read_hashes_the_bytes_it_returns_every_time() {
    let p = Project::new();
    p.write("a.txt", "alpha");
    age();
    let log = Log::new();
    let r = support::text("text", &log);
    let args = "a.txt".to_owned();
    let e = p.engine();
    assert_eq!(*e.get(&r, &args).unwrap(), "alpha");
    e.refresh(&r, &args).unwrap();
    assert_eq!(
        hashed(&e),
        2,
        "a read is never served by a reused fingerprint"
    );
}

/// A traced command (`cat`): the program, its libraries and the files it read are
/// fingerprinted after it exits; a forced rebuild in a new engine hashes none of them
/// while they are unchanged, and an edit is seen.
#[test]
fn a_traced_command_rebuilt_hashes_only_what_changed() {
    let p = Project::new();
    p.write("a.txt", "alpha\n");
    p.write("b.txt", "beta\n");
    let source = r#"(recipes: {
        "cat": (command: ["cat", "a.txt", "b.txt"], trace: true),
    })"#;
    let config = Config::parse(source, &p.path("trove.ron")).unwrap();
    age();
    let run = |force: bool| {
        let engine = Engine::open(config.clone()).unwrap();
        let recipe = CommandRecipe::new("cat", config.recipes["cat"].clone());
        let served = if force {
            engine.refresh(&recipe, &vec![])
        } else {
            engine.get_explained(&recipe, &vec![])
        }
        .unwrap();
        let out = String::from_utf8(served.value.to_vec().unwrap()).unwrap();
        (out, served.reason, hashed(&engine))
    };
    let (out, reason, first) = run(false);
    assert!(matches!(reason, Reason::Built(_)), "{reason}");
    assert_eq!(out, "alpha\nbeta\n");
    // cat itself, its libraries and the two files at least.
    assert!(first >= 4, "hashed {first}");

    let (out, _, again) = run(true);
    assert_eq!(out, "alpha\nbeta\n");
    assert_eq!(
        again, 0,
        "nothing changed, nothing hashed ({first} the first time)"
    );

    p.write("b.txt", "BETA\n");
    p.settle();
    let (out, reason, edited) = run(false);
    assert!(reason.to_string().contains("b.txt changed"), "{reason}");
    assert_eq!(out, "alpha\nBETA\n");
    assert_eq!(edited, 1, "only b.txt");
}
