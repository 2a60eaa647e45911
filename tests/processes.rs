//! Several processes sharing one store: single flight across processes, builders killed
//! mid-build, and publishing interrupted by SIGKILL at random moments (20 kills, or 200
//! with `TROVE_LONG=1`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use trove::{Engine, Reason};

use crate::recipes::{Large, large_of};
use crate::util::{PROBE, log_lines, poll, temp_files, wait_for};

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

/// A small deterministic generator (xorshift64*), seeded from the clock unless
/// `TROVE_SEED` replays a run; the seed is printed with the figures.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("TROVE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Rng(seed | 1), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The keys of the live records of the store under `dir`, opening it as a new process
/// would (which removes the temp files of dead writers).
fn live_keys(dir: &Path) -> BTreeSet<String> {
    let store = trove_store::Store::open(&dir.join(".trove")).unwrap();
    store
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| r.quarantined.is_none())
        .map(|r| serde_json::from_str(&r.args).unwrap())
        .collect()
}

/// 20 SIGKILLs at random moments of a process that builds and publishes 4 MiB objects in
/// a loop (`TROVE_LONG=1`: 200), 5 to 400 ms after it starts or, every other round, after
/// its first object is served; before each round a few stored objects are deleted on
/// purpose so that each child publishes. After each kill the store is opened as a new process
/// would: the dead writer's temp files are gone, every entry the child had served before
/// the kill is still there (lost = 0), and the entries it served are served again with
/// their exact bytes (corrupt = 0).
#[test]
fn processes_killed_while_publishing_never_leave_a_corrupt_or_wrong_object() {
    let long = std::env::var("TROVE_LONG").is_ok_and(|v| v == "1");
    let rounds = if long { 200 } else { 20 };
    let (mut rng, seed) = Rng::seeded();
    let dir = tempfile::tempdir().unwrap();
    let mut confirmed: BTreeSet<String> = BTreeSet::new();
    // The blake3 of each key's expected bytes, computed once (a debug build makes 4 MiB
    // slowly).
    let mut expected: std::collections::HashMap<String, blake3::Hash> = Default::default();
    let (mut kills, mut lost, mut corrupt, mut temps_left, mut checked) = (0, 0, 0, 0, 0);
    for round in 0..rounds {
        // Forget up to 4 stored keys (records, then their blobs through gc), so that
        // every child has objects to build and publish, not only stored ones to serve.
        {
            let store = trove_store::Store::open(&dir.path().join(".trove")).unwrap();
            let records = store.records().unwrap();
            for _ in 0..4.min(records.len()) {
                let r = &records[rng.below(records.len() as u64) as usize];
                store.remove(r.id).unwrap();
                confirmed.remove(&serde_json::from_str::<String>(&r.args).unwrap());
            }
            store.gc_apply(&store.gc_plan().unwrap()).unwrap();
        }
        let mut child = Command::new(PROBE)
            .arg("publish-loop")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, served) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        // The moment of the kill: anywhere from 5 to 400 ms into the run (start-up, the
        // index open, builds, blob writes, fsyncs, renames and commits all fall in it) in
        // even rounds; in odd rounds as long after the child's first published object, so
        // that some objects are published whatever the machine's speed (a loaded machine
        // may not get one published in 400 ms), with a deadline against a hang.
        let mut served_before_kill = Vec::new();
        if round % 2 == 1 {
            let first = served
                .recv_timeout(Duration::from_secs(120))
                .expect("the child published an object");
            served_before_kill.push(first);
        }
        std::thread::sleep(Duration::from_millis(5 + rng.below(396)));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        reader.join().unwrap();
        served_before_kill.extend(served.try_iter());
        temps_left += temp_files(dir.path());

        let live = live_keys(dir.path());
        assert_eq!(
            temp_files(dir.path()),
            0,
            "opening the store removed the temp files"
        );
        lost += confirmed.difference(&live).count();
        // The keys this child served (so stored) before it died, and one older one.
        let mut to_check: BTreeSet<String> = served_before_kill.into_iter().collect();
        if !confirmed.is_empty() {
            let nth = rng.below(confirmed.len() as u64) as usize;
            to_check.insert(confirmed.iter().nth(nth).unwrap().clone());
        }
        confirmed.extend(to_check.iter().cloned());
        let engine = Engine::open_in(dir.path()).unwrap();
        for key in &to_check {
            let served = engine.get_explained(&Large, key).unwrap();
            checked += 1;
            let want = expected
                .entry(key.clone())
                .or_insert_with(|| blake3::hash(&large_of(key)));
            if blake3::hash(&served.value) != *want {
                corrupt += 1;
            }
        }
    }
    eprintln!(
        "figure: kill loop kills={kills} corrupt_serves={corrupt} lost_entries={lost} entries={} served_checks={checked} temp_files_left_by_kills={temps_left} temp_files_after_open=0 seed={seed}",
        confirmed.len()
    );
    assert_eq!(corrupt, 0, "corrupt serves (seed {seed})");
    assert_eq!(lost, 0, "entries lost (seed {seed})");

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
