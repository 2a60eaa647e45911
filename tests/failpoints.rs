//! The store's fail points (feature `failpoints`): a child process stopped at every write,
//! fsync, rename and commit of a publish, and every one of them failing with ENOSPC or EIO.
//!
//! Run with `cargo test -p trove-tests --features failpoints` (README's test command does).

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::process::{Command, Output};

use trove_store::{Store, StoreError};

use crate::recipes::expand;
use crate::util::{PROBE, temp_files, temp_files_in};

/// Every fail point of the publish and insert paths, in the order a publish meets them.
const POINTS: [&str; 9] = [
    "store::blob-create",
    "store::blob-write",
    "store::blob-write-partial",
    "store::blob-fsync",
    "store::blob-rename",
    "store::blob-dir-fsync",
    "store::record-insert",
    "store::record-commit",
    "store::record-committed",
];

const FIRST: &[u8] = b"the first content\n";
const SECOND: &[u8] = b"the second content, longer\n";

fn probe_file(dir: &Path, failpoints: Option<&str>) -> Output {
    let mut cmd = Command::new(PROBE);
    cmd.arg("file").arg(dir).env_remove("FAILPOINTS");
    if let Some(f) = failpoints {
        cmd.env("FAILPOINTS", f);
    }
    cmd.output().expect("trove-probe runs")
}

/// What the store holds after a fault: the live records' contents, each read back
/// verified. Panics on anything corrupt.
fn stored_contents(dir: &Path) -> (Vec<Vec<u8>>, usize) {
    let store = Store::open(&dir.join(".trove")).expect("the store opens after the fault");
    let temps_after_open = temp_files(dir);
    let report = store.verify().expect("verify runs");
    assert!(
        report.is_clean(),
        "corrupt after a fault: {:?}",
        report.corrupt
    );
    let contents = store
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| r.quarantined.is_none())
        .map(|r| {
            store
                .read_blob(&r.blob)
                .expect("a live record's blob reads back")
        })
        .collect();
    (contents, temps_after_open)
}

/// Stops a child at `point` with `action` while it publishes the second object over a
/// first one, then checks the store. Returns whether the child was stopped there and how
/// many temp files it left.
fn stop_at(point: &str, action: &str) -> (bool, usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.txt"), FIRST).unwrap();
    assert!(probe_file(dir.path(), None).status.success());
    std::fs::write(dir.path().join("input.txt"), SECOND).unwrap();

    let out = probe_file(dir.path(), Some(&format!("{point}={action}")));
    let stopped = !out.status.success();
    let temps_left = temp_files(dir.path());

    let (contents, temps_after_open) = stored_contents(dir.path());
    assert_eq!(
        temps_after_open, 0,
        "{point} {action}: the next open removed temp files"
    );
    for c in &contents {
        assert!(
            *c == expand(FIRST) || *c == expand(SECOND),
            "{point} {action}: a live record holds bytes nobody built"
        );
    }
    assert!(
        contents.contains(&expand(FIRST)),
        "{point} {action}: the entry complete before the fault was lost"
    );
    // The next caller is served the right object, stored or rebuilt.
    let next = probe_file(dir.path(), None);
    assert!(
        next.status.success(),
        "{point} {action}: the next caller got a wrong object: {}",
        String::from_utf8_lossy(&next.stdout)
    );
    (stopped, temps_left)
}

#[test]
fn a_process_stopped_at_any_write_fsync_rename_or_commit_leaves_the_previous_entry_or_the_new_one()
{
    let mut covered = 0;
    let mut temps = 0;
    for point in POINTS {
        for action in ["return(abort)", "panic"] {
            let (stopped, temps_left) = stop_at(point, action);
            assert!(
                stopped,
                "{point} {action}: the child reached the point and stopped"
            );
            covered += 1;
            temps += temps_left;
        }
    }
    eprintln!(
        "figure: failpoints points={} cases={covered} corrupt=0 lost=0 temp_files_left={temps} temp_files_after_open=0",
        POINTS.len()
    );
}

#[test]
fn a_write_error_at_any_point_still_hands_the_caller_its_object_and_logs_a_typed_error() {
    let mut faults = 0;
    for point in POINTS {
        for error in ["enospc", "eio"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("input.txt"), FIRST).unwrap();
            let out = probe_file(dir.path(), Some(&format!("{point}=return({error})")));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{point} {error}: the caller still gets its object; stderr: {stderr}"
            );
            let logged =
                stderr.contains("object not stored") || stderr.contains("object not recorded");
            let committed = point == "store::record-committed";
            assert!(logged, "{point} {error}: the failure is logged: {stderr}");
            if point.ends_with("fsync") {
                assert!(
                    stderr.contains("fsync failed"),
                    "{point} {error}: the log names the fsync failure: {stderr}"
                );
            }
            let (contents, temps) = stored_contents(dir.path());
            assert_eq!(temps, 0);
            // Only a fault after the commit leaves a record; it is then a whole one.
            assert_eq!(contents.len(), usize::from(committed), "{point} {error}");
            assert!(contents.iter().all(|c| *c == expand(FIRST)));
            assert!(probe_file(dir.path(), None).status.success());
            faults += 1;
        }
    }
    eprintln!("figure: injected write errors faults={faults} corrupt=0 caller_served={faults}");
}

#[test]
fn a_failed_fsync_is_never_retried_and_leaves_no_blob_behind() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for point in ["store::blob-fsync", "store::blob-dir-fsync"] {
        fail::cfg(point, "return(eio)").unwrap();
        let before = trove_store::fault_hits(point);
        let content = format!("content for {point}");
        let err = store.put_blob(content.as_bytes()).unwrap_err();
        assert!(matches!(err, StoreError::Sync { .. }), "{point}: {err}");
        assert_eq!(
            trove_store::fault_hits(point) - before,
            1,
            "{point}: the fsync was tried once, never again"
        );
        fail::remove(point);
        assert_eq!(temp_files_in(&dir.path().join("v1/blobs")), 0);
    }
    // The blob whose file fsync failed was never renamed into place.
    let hash = blake3::hash(b"content for store::blob-fsync");
    assert!(!store.blob_path(hash.as_bytes()).exists());
    eprintln!("figure: fsync failures=2 retries=0");
    scenario.teardown();
}
