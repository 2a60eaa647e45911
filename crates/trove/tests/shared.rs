//! The shared tier on the request path, with a directory as the team's store (OpenDAL's
//! `fs` service, what a mounted shared file system is) and two projects with stores of
//! their own at different absolute paths as two machines. Servers (S3, Redis, WebDAV)
//! and network namespaces are the multi-host suites' business.

#![cfg(feature = "shared")]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{Log, Project, text};
use trove::{Config, Engine, Error, Options, Reason, Residency, Secret, SharedGcOptions, Why};

const SECRET: &[u8] = b"the team's secret, thirty-two b.";

/// Settings of a machine that reads only, so the store keeps what the test put there.
const READS: &str = ", read_only: true";

/// The team's store: a directory every "machine" reaches by a file:// URL.
struct Team {
    dir: tempfile::TempDir,
}

impl Team {
    fn new() -> Team {
        Team {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// Every file under `v1/<what>/`.
    fn files(&self, what: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("v1").join(what), &mut out);
        out.sort();
        out
    }
}

/// A machine: a project of its own whose `trove.ron` names the team's store. The timeout
/// is generous (a loaded machine must not fail a call to a directory) unless `settings`
/// sets one.
fn machine(url: &str, settings: &str) -> Project {
    let settings = if settings.contains("timeout") {
        settings.to_owned()
    } else {
        format!("{settings}, timeout: \"10s\"")
    };
    let p = Project::new();
    p.write("trove.ron", format!("(shared: (url: {url:?}{settings}))"));
    p.write("data/x.txt", "the same input on every machine");
    p
}

fn open(p: &Project, secret: &[u8]) -> Engine {
    let config = Config::load(&p.path("trove.ron")).unwrap();
    let options = Options {
        shared_secret: Some(Secret(secret.to_vec())),
        ..Options::default()
    };
    Engine::open_with(config, options).unwrap()
}

fn x() -> String {
    "data/x.txt".to_owned()
}

/// What `data/x.txt` holds on every machine unless a test says otherwise.
const SAME: &str = "the same input on every machine";

/// Machine A builds `data/x.txt` and uploads it; returns once the upload is done.
fn a_builds(team: &Team) -> Project {
    a_builds_with(team, SAME)
}

/// [`a_builds`] with `data/x.txt` holding `content` (over 64 KiB: an object that its
/// record and hint do not carry, so a hit downloads its blob).
fn a_builds_with(team: &Team, content: &str) -> Project {
    let a = machine(&team.url(), "");
    a.write("data/x.txt", content);
    let log = Log::new();
    let e = open(&a, SECRET);
    let served = e.get_explained(&text("text", &log), &x()).unwrap();
    assert_eq!(served.reason, Reason::Built(Why::NoEntry));
    e.finish_uploads();
    assert_eq!(e.stats().shared_uploads, 1);
    assert_eq!(team.files("records").len(), 1);
    assert_eq!(team.files("blobs").len(), 1);
    assert_eq!(team.files("newest").len(), 1, "the key's hint");
    a
}

#[test]
fn machine_b_is_served_what_machine_a_built_then_from_its_own_disk() {
    let team = Team::new();
    let a = a_builds(&team);
    let b = machine(&team.url(), "");
    assert_ne!(a.root(), b.root(), "two checkouts at different paths");
    let log = Log::new();
    let r = text("text", &log);

    let e = open(&b, SECRET);
    assert_eq!(e.residency(&r, &x()).unwrap(), Residency::Shared);
    assert_eq!(e.explain(&r, &x()).unwrap().to_string(), "would hit shared");
    let served = e.get_explained(&r, &x()).unwrap();
    assert_eq!(served.reason, Reason::HitShared);
    assert_eq!(served.reason.to_string(), "hit shared");
    assert_eq!(*served.value, "the same input on every machine");
    assert!(log.take().is_empty(), "machine B built nothing");
    assert_eq!(e.stats().shared_hits, 1);
    drop(e);

    let e = open(&b, SECRET);
    assert_eq!(e.get_explained(&r, &x()).unwrap().reason, Reason::HitDisk);
    assert!(log.take().is_empty());
}

#[test]
fn a_shared_object_whose_inputs_differ_here_is_not_served() {
    let team = Team::new();
    a_builds(&team);
    let b = machine(&team.url(), "");
    b.write("data/x.txt", "machine B's own edit");
    let log = Log::new();
    let served = open(&b, SECRET)
        .get_explained(&text("text", &log), &x())
        .unwrap();
    assert_eq!(*served.value, "machine B's own edit");
    let reason = served.reason.to_string();
    assert!(reason.starts_with("built: data/x.txt changed"), "{reason}");
    assert_eq!(log.take(), ["text data/x.txt"]);
}

#[test]
fn a_read_only_machine_never_uploads() {
    let team = Team::new();
    let dev = machine(&team.url(), ", read_only: true");
    let log = Log::new();
    let e = open(&dev, SECRET);
    e.get(&text("text", &log), &x()).unwrap();
    e.finish_uploads();
    assert_eq!(e.stats().shared_uploads, 0);
    assert!(team.files("records").is_empty() && team.files("blobs").is_empty());
    assert!(matches!(
        e.shared_gc(&SharedGcOptions::default()),
        Err(Error::SharedTier(m)) if m.contains("read-only")
    ));
}

/// Machine B, after A built: built again (never served what was refused), with a reason
/// containing `expected`. B's project is returned with its engine: its upload reads
/// B's store.
fn b_refuses(team: &Team, settings: &str, secret: &[u8], expected: &str) -> (Engine, Project) {
    b_refuses_with(team, settings, secret, expected, SAME)
}

fn b_refuses_with(
    team: &Team,
    settings: &str,
    secret: &[u8],
    expected: &str,
    content: &str,
) -> (Engine, Project) {
    let b = machine(&team.url(), settings);
    b.write("data/x.txt", content);
    let log = Log::new();
    let e = open(&b, secret);
    let served = e.get_explained(&text("text", &log), &x()).unwrap();
    let reason = served.reason.to_string();
    assert!(reason.contains(expected), "{reason}");
    assert_eq!(log.take(), ["text data/x.txt"], "rebuilt");
    assert_eq!(*served.value, content);
    assert!(e.stats().shared_refused >= 1);
    assert_eq!(e.stats().shared_hits, 0);
    (e, b)
}

#[test]
fn a_record_signed_with_another_key_is_refused_and_rebuilt() {
    let team = Team::new();
    a_builds(&team);
    b_refuses(
        &team,
        READS,
        b"another team's secret, 32 bytes.",
        "built: shared record refused (record signed with another key",
    );
}

/// The key's record and its hint (a signed copy of it), each changed by `damage`.
fn damage_record_and_hint(team: &Team, damage: impl Fn(&mut Vec<u8>)) {
    let files = [team.files("records"), team.files("newest")].concat();
    assert_eq!(files.len(), 2);
    for file in files {
        let mut bytes = std::fs::read(&file).unwrap();
        damage(&mut bytes);
        std::fs::write(&file, bytes).unwrap();
    }
}

#[test]
fn a_forged_record_is_refused_and_rebuilt() {
    let team = Team::new();
    a_builds(&team);
    // Inside the body (the arguments): the content no longer matches the signature.
    damage_record_and_hint(&team, |bytes| {
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
    });
    b_refuses(&team, READS, SECRET, "forged record");
}

#[test]
fn a_truncated_or_unsigned_record_is_refused_and_rebuilt() {
    let team = Team::new();
    a_builds(&team);
    damage_record_and_hint(&team, |bytes| bytes.truncate(bytes.len() - 10));
    b_refuses(&team, READS, SECRET, "truncated record");
    damage_record_and_hint(&team, |bytes| bytes.truncate(bytes.len() - 30));
    b_refuses(&team, READS, SECRET, "unsigned record");
}

#[test]
fn a_forged_hint_falls_back_to_the_keys_records() {
    let team = Team::new();
    a_builds(&team);
    let hint = &team.files("newest")[0];
    let mut bytes = std::fs::read(hint).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(hint, bytes).unwrap();
    let b = machine(&team.url(), READS);
    let log = Log::new();
    let e = open(&b, SECRET);
    let served = e.get_explained(&text("text", &log), &x()).unwrap();
    assert_eq!(served.reason, Reason::HitShared, "served from the record");
    assert_eq!(*served.value, SAME);
    assert!(log.take().is_empty());
    assert_eq!(e.stats().shared_refused, 1, "the forged hint");
}

#[test]
fn a_hint_whose_blob_gc_removed_is_a_miss_never_an_error() {
    let team = Team::new();
    let big = "h".repeat(100 << 10);
    a_builds_with(&team, &big);
    // The blob gone (gc) while the record and its hint stay: a reader sees a miss.
    std::fs::remove_file(&team.files("blobs")[0]).unwrap();
    let b = machine(&team.url(), READS);
    b.write("data/x.txt", &big);
    let log = Log::new();
    let served = open(&b, SECRET)
        .get_explained(&text("text", &log), &x())
        .unwrap();
    let reason = served.reason.to_string();
    assert!(reason.contains("is missing"), "{reason}");
    assert_eq!(*served.value, big);
    assert_eq!(log.take(), ["text data/x.txt"], "rebuilt");
}

#[test]
fn a_flipped_byte_in_a_shared_blob_is_refused_and_rebuilt() {
    let team = Team::new();
    // Over 64 KiB: not carried in its record, so the blob is downloaded.
    let big = "f".repeat(100 << 10);
    a_builds_with(&team, &big);
    let blob = &team.files("blobs")[0];
    let mut bytes = std::fs::read(blob).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(blob, bytes).unwrap();
    let (e, _b) = b_refuses_with(&team, "", SECRET, "built: blob corrupt (shared blob ", &big);
    // The corrupt blob was removed, and B's upload put a good one in its place.
    e.finish_uploads();
    assert_eq!(e.stats().shared_uploads, 1, "{:?}", e.shared_health());
    assert_eq!(team.files("blobs").len(), 1);
    let c = machine(&team.url(), "");
    c.write("data/x.txt", &big);
    let log = Log::new();
    let served = open(&c, SECRET)
        .get_explained(&text("text", &log), &x())
        .unwrap();
    assert_eq!(served.reason, Reason::HitShared);
}

#[test]
fn a_shared_tier_that_is_down_costs_at_most_its_timeout_then_is_skipped() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = machine(
        &format!("webdav://127.0.0.1:{port}/trove"),
        ", timeout: \"500ms\"",
    );
    let log = Log::new();
    let r = text("text", &log);
    let e = open(&p, SECRET);
    let start = Instant::now();
    let served = e.get_explained(&r, &x()).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let reason = served.reason.to_string();
    assert!(
        reason.starts_with("built: no entry (shared tier unavailable: "),
        "{reason}"
    );
    assert_eq!(log.take(), ["text data/x.txt"]);
    // The next request does not wait again: the tier is skipped while it backs off.
    p.write("data/y.txt", "y");
    let start = Instant::now();
    let served = e.get_explained(&r, &"data/y.txt".to_owned()).unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert!(served.reason.to_string().contains("skipped for another"));
    e.finish_uploads();
    let stats = e.stats();
    assert!(stats.shared_unavailable >= 2, "{stats:?}");
    let health = e.shared_health().unwrap();
    assert!(health.failures >= 1 && health.skipped >= 1, "{health:?}");
    // The local tier answers as before.
    assert_eq!(e.get_explained(&r, &x()).unwrap().reason, Reason::HitMemory);
}

#[test]
fn a_missing_secret_is_a_configuration_error_naming_the_variable() {
    let team = Team::new();
    let p = machine(
        &team.url(),
        ", secret_env: \"TROVE_TEST_SECRET_THAT_IS_NEVER_SET\"",
    );
    let config = Config::load(&p.path("trove.ron")).unwrap();
    match Engine::open(config) {
        Err(Error::ConfigFile(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("TROVE_TEST_SECRET_THAT_IS_NEVER_SET"),
                "{text}"
            );
            assert!(text.contains("trove.ron:1:"), "{text}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened without a secret"),
    }
}

#[test]
fn status_lists_the_shared_entries_and_gc_trims_them_by_size_then_age() {
    let team = Team::new();
    let a = machine(&team.url(), "");
    a.write("data/big.txt", "b".repeat(10_000));
    let log = Log::new();
    let r = text("text", &log);
    let e = open(&a, SECRET);
    e.get(&r, &"data/big.txt".to_owned()).unwrap();
    e.finish_uploads();
    std::thread::sleep(Duration::from_millis(5));
    e.get(&r, &x()).unwrap();
    e.finish_uploads();

    let status = e.shared_status().unwrap();
    assert_eq!(status.entries.len(), 2, "{status:?}");
    let big = status
        .entries
        .iter()
        .find(|s| s.args.contains("big"))
        .unwrap();
    assert_eq!((big.recipe.as_str(), big.variants), ("text", 1));
    assert!(big.size > 10_000);
    assert!(status.refused.is_empty());
    assert!(status.health.url.starts_with("file://"));
    assert!(status.health.published >= 2);

    // Over 1 KiB: the oldest (the big one) goes; a dry run only says so.
    let options = SharedGcOptions {
        dry_run: true,
        max_size: Some(1024),
        ..SharedGcOptions::default()
    };
    let report = e.shared_gc(&options).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(report.removed[0].args.contains("big"));
    assert!(report.removed[0].reason.starts_with("over the size limit"));
    assert_eq!(team.files("records").len(), 2, "a dry run removes nothing");
    let report = e
        .shared_gc(&SharedGcOptions {
            dry_run: false,
            ..options
        })
        .unwrap();
    assert_eq!((report.removed.len(), report.kept), (1, 1));
    assert!(report.freed > 10_000);
    assert_eq!(team.files("records").len(), 1);
    assert_eq!(team.files("blobs").len(), 1);
    assert_eq!(
        team.files("newest").len(),
        1,
        "the removed key's hint went with it"
    );

    // A reader that finds nothing there builds (a miss, never a torn object).
    std::thread::sleep(Duration::from_millis(5));
    let report = e
        .shared_gc(&SharedGcOptions {
            max_age: Some(Duration::from_millis(1)),
            ..SharedGcOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(report.removed[0].reason.starts_with("older than"));
    assert!(team.files("records").is_empty() && team.files("blobs").is_empty());
    assert!(
        team.files("newest").is_empty(),
        "gc removes the hints of what it removes"
    );
    let b = machine(&team.url(), "");
    let served = open(&b, SECRET).get_explained(&r, &x()).unwrap();
    assert_eq!(served.reason, Reason::Built(Why::NoEntry));
}

/// A Redis server of the test's own on a free port, stopped when dropped. `redis-server`
/// is a prerequisite of the test suite (README; `.ci/test` installs it): its absence fails
/// the test rather than skipping it.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (`bash .ci/test` installs it: apt-get install redis-server)");
        let up = support::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "redis-server did not start");
        Redis {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_machines_asking_at_once_build_once_under_the_lease() {
    let redis = Redis::start();
    let team = Team::new();
    let lease = format!(
        ", lease: (url: \"redis://127.0.0.1:{}\", ttl: \"2s\")",
        redis.port
    );
    let machines = [machine(&team.url(), &lease), machine(&team.url(), &lease)];
    let log = Log::new();
    let slow = support::Probe::new("slow", &log, |cx, path| {
        std::thread::sleep(Duration::from_millis(300));
        cx.read_to_string(path)
    });
    let engines: Vec<Engine> = machines.iter().map(|m| open(m, SECRET)).collect();
    let barrier = std::sync::Barrier::new(2);
    let reasons: Vec<Reason> = std::thread::scope(|s| {
        let handles: Vec<_> = engines
            .iter()
            .map(|e| {
                let (slow, barrier) = (&slow, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let served = e.get_explained(slow, &x()).unwrap();
                    assert_eq!(*served.value, "the same input on every machine");
                    served.reason
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(log.take(), ["slow data/x.txt"], "built once: {reasons:?}");
    assert!(
        reasons.contains(&Reason::Built(Why::NoEntry)),
        "{reasons:?}"
    );
    assert!(reasons.contains(&Reason::HitShared), "{reasons:?}");
}

#[test]
fn readers_racing_gc_of_the_shared_tier_see_the_object_or_a_miss_never_an_error() {
    // 1 MiB: the hint names a blob gc may remove; 4 KiB: the hint carries the object.
    readers_racing_gc(&"r".repeat(1 << 20));
    readers_racing_gc(&"s".repeat(4 << 10));
}

fn readers_racing_gc(content: &str) {
    let team = Team::new();
    let content = content.to_owned();
    let machines_with = |n: usize| -> Vec<Project> {
        (0..n)
            .map(|_| {
                let p = machine(&team.url(), "");
                p.write("data/x.txt", &content);
                p
            })
            .collect()
    };
    // Published once before the race starts.
    let first = machines_with(1).pop().unwrap();
    let e = open(&first, SECRET);
    let log = Log::new();
    e.get(&text("text", &log), &x()).unwrap();
    e.finish_uploads();
    assert_eq!(team.files("records").len(), 1);

    let readers = machines_with(24);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (removed, answers) = std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let mut removed = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let report = e
                    .shared_gc(&SharedGcOptions {
                        max_age: Some(Duration::ZERO),
                        ..SharedGcOptions::default()
                    })
                    .unwrap();
                removed += report.removed.len();
                std::thread::sleep(Duration::from_millis(25));
            }
            removed
        });
        // Each reader is a machine of its own (nothing local): every request asks the
        // shared tier, and a reader that builds publishes again, so gc keeps finding
        // something to remove while other readers download it. Four at a time.
        let answers: Vec<_> = std::thread::scope(|r| {
            let lanes: Vec<_> = readers
                .chunks(readers.len() / 4)
                .map(|lane| {
                    r.spawn(move || {
                        lane.iter()
                            .map(|p| {
                                let engine = open(p, SECRET);
                                let log = Log::new();
                                let served = engine.get_explained(&text("text", &log), &x());
                                engine.finish_uploads();
                                served.map(|s| ((*s.value).clone(), s.reason))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            lanes.into_iter().flat_map(|l| l.join().unwrap()).collect()
        });
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (gc.join().unwrap(), answers)
    });
    assert!(removed >= 1, "gc never removed anything while readers read");
    for answer in answers {
        let (value, reason) = answer.expect("a reader racing gc got an error");
        assert!(
            value == content,
            "a reader racing gc was served other bytes ({reason})"
        );
        assert!(
            matches!(reason, Reason::HitShared | Reason::Built(_)),
            "{reason}"
        );
    }
}

#[test]
fn a_blob_no_record_names_goes_once_collections_a_grace_apart_found_it_unnamed() {
    let team = Team::new();
    let a = a_builds(&team);
    let variants_blob = team.files("blobs");
    let e = open(&a, SECRET);
    // A publish cut off between its blob and its record leaves the blob alone.
    let stray = b"an object whose record was never written".as_slice();
    let hash = blake3::hash(stray).to_hex().to_string();
    let dir = team.dir.path().join("v1/blobs").join(&hash[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&hash);
    std::fs::write(&path, stray).unwrap();

    // Trims no variant; only the orphan is in question.
    let hour = SharedGcOptions {
        max_age: Some(Duration::from_secs(3600)),
        ..SharedGcOptions::default()
    };
    // Its record may be on its way: the first collection only marks it, and so does a
    // second one within the grace period (ten minutes by default).
    for _ in 0..2 {
        let report = e.shared_gc(&hour).unwrap();
        assert!(report.removed.is_empty() && report.orphans.is_empty());
        assert_eq!((report.orphans_waiting, report.kept), (1, 1));
        assert_eq!(report.orphans_skipped, None);
        assert!(path.exists());
    }
    assert_eq!(team.files("gc").len(), 1, "the marks");

    // Past the grace period (zero here) a dry run names it and keeps it...
    let past = SharedGcOptions {
        orphan_grace: Some(Duration::ZERO),
        ..hour.clone()
    };
    let dry = e
        .shared_gc(&SharedGcOptions {
            dry_run: true,
            ..past.clone()
        })
        .unwrap();
    assert_eq!(dry.orphans.len(), 1);
    assert_eq!(dry.orphans[0].blob.hex(), hash);
    assert_eq!(dry.orphans[0].size, Some(stray.len() as u64));
    assert_eq!(dry.freed, stray.len() as u64);
    assert!(path.exists());
    // ...and a collection removes it, and only it.
    let report = e.shared_gc(&past).unwrap();
    assert_eq!(report.orphans.len(), 1);
    assert_eq!((report.orphans_waiting, report.kept), (0, 1));
    assert!(!path.exists());
    assert_eq!(
        team.files("blobs"),
        variants_blob,
        "the variant's blob stays"
    );
    assert!(team.files("gc").is_empty(), "no marks are left");
    drop(e);
    let b = machine(&team.url(), "");
    let served = open(&b, SECRET)
        .get_explained(&text("text", &Log::new()), &x())
        .unwrap();
    assert_eq!(served.reason, Reason::HitShared);
}

#[test]
fn a_marked_blob_whose_record_arrives_is_kept_and_unmarked() {
    let team = Team::new();
    // Machine A's blob is there and its record is not (yet): take the record away.
    let a = a_builds_with(&team, &"large ".repeat(20_000));
    let records = team.files("records");
    let record = std::fs::read(&records[0]).unwrap();
    std::fs::remove_file(&records[0]).unwrap();
    for hint in team.files("newest") {
        std::fs::remove_file(hint).unwrap();
    }
    let e = open(&a, SECRET);
    let past = SharedGcOptions {
        max_age: Some(Duration::from_secs(3600)),
        orphan_grace: Some(Duration::ZERO),
        ..SharedGcOptions::default()
    };
    assert_eq!(e.shared_gc(&past).unwrap().orphans_waiting, 1);
    // The record arrives: the blob is named again, so it stays and its mark goes.
    std::fs::write(&records[0], record).unwrap();
    let report = e.shared_gc(&past).unwrap();
    assert!(report.orphans.is_empty(), "{report:?}");
    assert_eq!((report.orphans_waiting, report.kept), (0, 1));
    assert_eq!(team.files("blobs").len(), 1);
    assert!(team.files("gc").is_empty());
}

#[test]
fn no_blob_is_taken_for_an_orphan_while_a_record_cannot_be_verified() {
    let team = Team::new();
    a_builds(&team);
    // Another team (another secret) publishes into the same store.
    let other = machine(&team.url(), "");
    other.write("data/x.txt", "the other team's input");
    let theirs = open(&other, b"another team's secret, 32 bytes!");
    theirs.get(&text("text", &Log::new()), &x()).unwrap();
    theirs.finish_uploads();
    assert_eq!(team.files("blobs").len(), 2);

    let ours = machine(&team.url(), "");
    let report = open(&ours, SECRET)
        .shared_gc(&SharedGcOptions {
            max_age: Some(Duration::from_secs(3600)),
            orphan_grace: Some(Duration::ZERO),
            ..SharedGcOptions::default()
        })
        .unwrap();
    let why = report.orphans_skipped.expect("orphans are not looked for");
    assert!(why.contains("1 record could not be verified"), "{why}");
    assert_eq!(report.orphans_waiting, 0);
    assert_eq!(team.files("blobs").len(), 2, "the other team's blob stays");
}
