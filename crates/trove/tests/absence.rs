//! Absent paths validated through their directory: a hit stats the directory an absence
//! hangs from once, and trusts it only while its stamp is unchanged and not racy; every
//! way a path can appear under it still rebuilds, with the path in the reason.

mod support;

use support::{Log, PAST_RACY, Probe, Project, include_search};
use trove::{Engine, Reason, Stats};

/// The names the search looks up, each in `inc1/` then `inc2/`, like a compiler's
/// include path: `a.h`, `b.h` and `bits/x.h` are found in `inc2/` only, `f/x.h` and
/// `f/y.h` nowhere (`inc1/f` is a file: ENOTDIR).
const NAMES: &str = "a.h,b.h,bits/x.h,f/x.h,f/y.h";

/// Absent paths the search leaves: five anchored in `inc1/`, two in `inc2/`.
const ABSENT: u64 = 7;

/// Files the search found: what a hit still stats one by one.
const FOUND: u64 = 3;

/// The project: `inc2/` holds the headers, `inc1/` only a file `f`. The store exists
/// before the directories settle. `settled`: waits out the racy window before returning.
fn project(settled: bool) -> Project {
    let p = Project::new();
    p.write("inc2/a.h", "A2");
    p.write("inc2/b.h", "B2");
    p.write("inc2/bits/x.h", "X2");
    p.write("inc1/f", "not a directory");
    drop(p.engine());
    if settled {
        std::thread::sleep(PAST_RACY);
    }
    p
}

/// One get on a new engine (a disk hit or a build) and what it counted.
fn get(p: &Project, r: &Probe<String>) -> (String, Reason, Stats) {
    let e: Engine = p.engine();
    let served = e.get_explained(r, &NAMES.to_owned()).unwrap();
    ((*served.value).clone(), served.reason, e.stats())
}

fn built(reason: &Reason) -> String {
    assert!(
        matches!(reason, Reason::Built(_)),
        "expected a build: {reason}"
    );
    reason.to_string()
}

/// Builds and checks that the next disk hit vouches for every absence with two stats.
fn build_and_hit(p: &Project, r: &Probe<String>, log: &Log) {
    let (value, reason, _) = get(p, r);
    assert_eq!(value, "A2 B2 X2");
    built(&reason);
    let (_, reason, stats) = get(p, r);
    assert_eq!(reason, Reason::HitDisk);
    assert_eq!(stats.absences_vouched, ABSENT);
    assert_eq!(stats.files_checked, FOUND);
    assert_eq!(log.take(), [format!("search {NAMES}")]);
}

#[test]
fn a_file_created_where_an_absence_was_recorded_rebuilds_and_is_named() {
    let p = project(true);
    let log = Log::new();
    let r = include_search(&log);
    build_and_hit(&p, &r, &log);
    p.write("inc1/a.h", "A1");
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A1 B2 X2");
    let why = built(&reason);
    assert!(why.contains("inc1/a.h changed (absent -> blake3 "), "{why}");
    assert_eq!(log.take().len(), 1);
}

#[test]
fn a_file_created_in_a_missing_directory_under_a_grouped_one_rebuilds() {
    let p = project(true);
    let log = Log::new();
    let r = include_search(&log);
    build_and_hit(&p, &r, &log);
    p.write("inc1/bits/x.h", "X1");
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A2 B2 X1");
    let why = built(&reason);
    assert!(
        why.contains("inc1/bits/x.h changed (absent -> blake3 "),
        "{why}"
    );
    assert_eq!(log.take().len(), 1);
}

#[test]
fn a_directory_created_where_a_file_blocked_the_path_rebuilds() {
    let p = project(true);
    let log = Log::new();
    let r = include_search(&log);
    build_and_hit(&p, &r, &log);
    // `inc1/f` was a file, so `inc1/f/x.h` could not exist; now it is a directory.
    p.remove("inc1/f");
    p.write("inc1/f/x.h", "FX");
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A2 B2 X2 FX");
    let why = built(&reason);
    assert!(
        why.contains("inc1/f/x.h changed (absent -> blake3 "),
        "{why}"
    );
}

#[test]
fn an_unrelated_file_costs_a_check_of_each_member_once_and_no_build() {
    let p = project(true);
    let log = Log::new();
    let r = include_search(&log);
    build_and_hit(&p, &r, &log);
    p.write("inc1/notes.txt", "unrelated");
    std::thread::sleep(PAST_RACY);
    // `inc1/`'s stamp changed: its five members are checked one by one, and hold.
    let (_, reason, stats) = get(&p, &r);
    assert_eq!(reason, Reason::HitDisk);
    assert_eq!(stats.absences_vouched, ABSENT - 5);
    assert_eq!(stats.files_checked, FOUND + 5);
    // The hit stored the new stamp: the next hit is cheap again.
    let (_, reason, stats) = get(&p, &r);
    assert_eq!(reason, Reason::HitDisk);
    assert_eq!(stats.absences_vouched, ABSENT);
    assert_eq!(stats.files_checked, FOUND);
    assert!(log.take().is_empty());
}

#[test]
fn a_directory_modified_just_before_its_stamp_was_taken_is_not_trusted() {
    // The directories are written right before the build: their stamps are racy (a
    // file created in the same clock tick would leave them unchanged).
    let p = project(false);
    let log = Log::new();
    let r = include_search(&log);
    let (_, reason, _) = get(&p, &r);
    built(&reason);
    let (_, reason, stats) = get(&p, &r);
    assert_eq!(reason, Reason::HitDisk);
    assert_eq!(stats.absences_vouched, 0);
    assert_eq!(stats.files_checked, FOUND + ABSENT);
    // Past the window, a hit checks the members once more and stores a stamp it trusts.
    std::thread::sleep(PAST_RACY);
    let (_, _, stats) = get(&p, &r);
    assert_eq!(stats.absences_vouched, 0);
    let (_, reason, stats) = get(&p, &r);
    assert_eq!(reason, Reason::HitDisk);
    assert_eq!(stats.absences_vouched, ABSENT);
    p.write("inc1/b.h", "B1");
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A2 B1 X2");
    assert!(built(&reason).contains("inc1/b.h changed (absent -> blake3 "));
    assert_eq!(log.take().len(), 2);
}

#[test]
fn a_symlinked_directory_retargeted_rebuilds() {
    let p = project(false);
    std::fs::remove_file(p.path("inc1/f")).unwrap();
    std::fs::remove_dir(p.path("inc1")).unwrap();
    std::fs::create_dir(p.path("empty")).unwrap();
    p.write("other/a.h", "A-other");
    std::os::unix::fs::symlink("empty", p.path("inc1")).unwrap();
    std::thread::sleep(PAST_RACY);
    let log = Log::new();
    let r = include_search(&log);
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A2 B2 X2");
    built(&reason);
    let (_, reason, stats) = get(&p, &r);
    assert_eq!(reason, Reason::HitDisk);
    assert_eq!(stats.absences_vouched, ABSENT);
    // `inc1` now leads to another directory, which has not changed in a while: the
    // stamp's device and inode differ.
    std::fs::remove_file(p.path("inc1")).unwrap();
    std::os::unix::fs::symlink("other", p.path("inc1")).unwrap();
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A-other B2 X2");
    assert!(built(&reason).contains("inc1/a.h changed (absent -> blake3 "));
}

#[test]
fn a_dangling_symlink_is_not_vouched_for_by_its_directory() {
    let p = project(false);
    // `inc1/a.h` leads nowhere: absent, but its target can appear without `inc1/`
    // changing.
    std::os::unix::fs::symlink("../gone/a.h", p.path("inc1/a.h")).unwrap();
    std::thread::sleep(PAST_RACY);
    let log = Log::new();
    let r = include_search(&log);
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A2 B2 X2");
    built(&reason);
    let (_, reason, stats) = get(&p, &r);
    assert_eq!(reason, Reason::HitDisk);
    assert_eq!(stats.absences_vouched, ABSENT - 1);
    assert_eq!(stats.files_checked, FOUND + 1);
    p.write("gone/a.h", "A-gone");
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A-gone B2 X2");
    assert!(built(&reason).contains("inc1/a.h changed (absent -> blake3 "));
}

/// A recipe that records two directory inputs (`inc2`, with a file read below it, and
/// `inc1`, with none) and reads `inc2/a.h`.
fn dirs(log: &Log) -> Probe<String> {
    Probe::new("dirs", log, |cx, _: &String| {
        cx.track_file("inc2")?;
        cx.track_file("inc1")?;
        let a = cx.try_read("inc2/a.h")?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&a).into_owned())
    })
}

#[test]
fn a_directory_input_above_a_read_file_is_left_out_and_its_replacement_still_rebuilds() {
    let p = project(true);
    let log = Log::new();
    let r = dirs(&log);
    let get = |p: &Project| {
        let e: Engine = p.engine();
        let served = e.get_explained(&r, &String::new()).unwrap();
        ((*served.value).clone(), served.reason, e.stats())
    };
    let (value, reason, _) = get(&p);
    assert_eq!(value, "A2");
    built(&reason);
    let (_, reason, stats) = get(&p);
    assert_eq!(reason, Reason::HitDisk);
    // Two inputs checked: `inc1` and `inc2/a.h`, whose check resolves `inc2` too.
    assert_eq!((stats.files_checked, stats.dirs_answered), (2, 0));
    // `inc2` replaced by a file: the check of `inc2/a.h` fails and names it.
    std::fs::rename(p.path("inc2"), p.path("moved")).unwrap();
    p.write("inc2", "a file now");
    let (_, reason, _) = get(&p);
    let why = built(&reason);
    assert!(why.contains("inc2/a.h changed"), "{why}");
    // `inc1`, with no file read below it, is checked on its own.
    std::fs::remove_file(p.path("inc2")).unwrap();
    std::fs::rename(p.path("moved"), p.path("inc2")).unwrap();
    get(&p);
    std::fs::remove_dir_all(p.path("inc1")).unwrap();
    p.write("inc1", "a file now");
    let (_, reason, _) = get(&p);
    let why = built(&reason);
    assert!(
        why.contains("inc1 changed") && !why.contains("a.h"),
        "{why}"
    );
}
