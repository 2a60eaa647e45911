//! Several processes sharing one store: single flight across processes, builders killed
//! mid-build, and publishing interrupted by SIGKILL.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trove::{BuildError, Cx, Engine, Reason, Recipe};

const PROBE: &str = env!("CARGO_BIN_EXE_trove-probe");

fn spawn_get(dir: &Path, key: &str, sleep_ms: u64) -> Child {
    Command::new(PROBE)
        .arg("get")
        .arg(dir)
        .arg(key)
        .arg(sleep_ms.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("trove-probe starts")
}

fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("builds.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits for the child to exit, for at most `limit`; `None` if it did not.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn poll(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

#[test]
fn eight_processes_asking_for_one_key_at_once_build_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<Child> = (0..8).map(|_| spawn_get(dir.path(), "k", 500)).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "value of k");
    }
    assert_eq!(log_lines(dir.path()), ["building k", "built k"]);
}

#[test]
fn a_builder_killed_mid_build_leaves_the_next_caller_unblocked() {
    let dir = tempfile::tempdir().unwrap();
    let mut doomed = spawn_get(dir.path(), "k", 600_000);
    assert!(
        poll(Duration::from_secs(30), || log_lines(dir.path())
            == ["building k"]),
        "the first builder started building"
    );
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();

    let mut next = spawn_get(dir.path(), "k", 0);
    let status = wait_for(&mut next, Duration::from_secs(30));
    if status.is_none() {
        let _ = next.kill();
    }
    assert!(status.expect("the next caller is not blocked").success());
    assert_eq!(
        log_lines(dir.path()),
        ["building k", "building k", "built k"]
    );
}

/// The same recipe as trove-probe's `large`, so this process can check what it stored.
#[derive(Clone)]
struct Large;

fn large_of(key: &str) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..4 << 20)
        .map(|i: u32| seed.wrapping_add((i % 251) as u8))
        .collect()
}

impl Recipe for Large {
    const NAME: &'static str = "large";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = Vec<u8>;
    fn build(&self, _cx: &mut Cx, key: &String) -> Result<Vec<u8>, BuildError> {
        Ok(large_of(key))
    }
}

#[test]
fn processes_killed_while_publishing_never_leave_a_corrupt_or_wrong_object() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20u64 {
        let mut child = Command::new(PROBE)
            .arg("publish-loop")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // The moment of the kill varies from 5 to 200 ms into the run.
        std::thread::sleep(Duration::from_millis(5 + (i * 97) % 196));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let engine = Engine::open_in(dir.path()).unwrap();
    let report = engine.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.corrupt);
    let stored = engine.status().unwrap();
    assert!(
        !stored.is_empty(),
        "some objects were published between the kills"
    );
    let mut served_from_disk = 0;
    for entry in &stored {
        let key: String = serde_json::from_str(&entry.args).unwrap();
        let served = engine.get_explained(&Large, &key).unwrap();
        assert_eq!(*served.value, large_of(&key), "key {key}");
        if served.reason == Reason::HitDisk {
            served_from_disk += 1;
        }
    }
    assert_eq!(
        served_from_disk,
        stored.len(),
        "every stored object is served as stored"
    );
}
