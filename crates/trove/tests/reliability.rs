//! Reliability of the engine in one process: damaged stores, many threads, inputs edited
//! during builds, special files as inputs, hostile depfiles and traces.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use support::{Log, Probe, Project, set_mtime, wait_until};
use trove::{BuildError, Reason};

/// The object the damage tests store for `key`: a few hundred bytes that differ per key.
fn object_of(key: &str) -> Vec<u8> {
    (0..300u32)
        .map(|i| (i as u8).wrapping_mul(7) ^ key.as_bytes()[0])
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Every file of the snapshot worth damaging: the blobs, the index and its WAL.
fn damage_targets(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let v1 = root.join("v1");
    for name in ["index.sqlite", "index.sqlite-wal"] {
        if v1.join(name).exists() {
            out.push(v1.join(name));
        }
    }
    for shard in std::fs::read_dir(v1.join("blobs")).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

/// Flips bytes (every byte of small files, every k-th of the index) and truncates every
/// blob and index file of a small store, one case at a time, then serves every object:
/// a served object always has the bytes that were built, nothing panics.
#[test]
fn flipped_bytes_and_truncation_anywhere_in_the_store_are_never_served() {
    let log = Log::new();
    let recipe = Probe::new("obj", &log, |_, key: &String| Ok(object_of(key)));
    let keys = ["a", "b", "c"];
    let project = Project::new();
    let engine = project.engine();
    for k in keys {
        engine.get(&recipe, &k.to_owned()).unwrap();
    }
    // Snapshot while the engine is open, so the WAL holds the records.
    let snapshot = tempfile::tempdir().unwrap();
    copy_tree(&project.path(".trove"), snapshot.path());
    drop(engine);
    let _ = std::fs::remove_file(snapshot.path().join("v1/index.sqlite-shm"));

    let (mut cases, mut accepted, mut panics, mut rebuilt) = (0u64, 0u64, 0u64, 0u64);
    let targets = damage_targets(snapshot.path());
    let mut damage_case = |target: &Path, damage: &dyn Fn(&Path)| {
        let work = tempfile::tempdir().unwrap();
        copy_tree(snapshot.path(), &work.path().join(".trove"));
        let rel = target.strip_prefix(snapshot.path()).unwrap();
        damage(&work.path().join(".trove").join(rel));
        cases += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let engine = trove::Engine::open_in(work.path()).unwrap();
            let mut wrong = 0;
            let mut built = 0;
            for k in keys {
                let served = engine.get_explained(&recipe, &k.to_owned()).unwrap();
                if *served.value != object_of(k) {
                    wrong += 1;
                }
                if matches!(served.reason, Reason::Built(_)) {
                    built += 1;
                }
            }
            (wrong, built)
        }));
        match outcome {
            Ok((wrong, built)) => {
                accepted += wrong;
                rebuilt += built;
            }
            Err(_) => panics += 1,
        }
    };
    for target in &targets {
        let len = std::fs::metadata(target).unwrap().len();
        let step = (len / 400).max(1);
        let mut at = 0;
        while at < len {
            damage_case(target, &|p: &Path| {
                let mut bytes = std::fs::read(p).unwrap();
                bytes[at as usize] ^= 0x5a;
                std::fs::write(p, bytes).unwrap();
            });
            at += step;
        }
        for cut in [0, len / 2, len.saturating_sub(1)] {
            damage_case(target, &|p: &Path| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(cut).unwrap();
            });
        }
    }
    eprintln!(
        "figure: damage files={} cases={cases} accepted={accepted} panics={panics} objects_rebuilt={rebuilt}",
        targets.len()
    );
    assert_eq!(accepted, 0, "damaged bytes were served");
    assert_eq!(panics, 0);
}

/// 64 threads ask for 50 keys at once through one engine: each key is built once. Then a
/// builder that panics while 63 threads wait for it: every waiter wakes with an error, and
/// the next request builds the key.
#[test]
fn sixty_four_threads_build_each_key_once_and_a_panicking_builder_wakes_its_waiters() {
    let project = Project::new();
    let engine = project.engine();
    let log = Log::new();
    let recipe = Probe::new("k", &log, |_, key: &String| {
        std::thread::sleep(Duration::from_millis(2));
        Ok(format!("value {key}"))
    });
    let barrier = Barrier::new(64);
    std::thread::scope(|s| {
        for t in 0..64usize {
            let (engine, recipe, barrier) = (&engine, &recipe, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..50 {
                    let key = ((t * 13 + i) % 50).to_string();
                    assert_eq!(*engine.get(recipe, &key).unwrap(), format!("value {key}"));
                }
            });
        }
    });
    let mut builds = log.take();
    builds.sort();
    builds.dedup();
    assert_eq!(log.len(), 0);
    assert_eq!(builds.len(), 50);

    // The panicking builder: the first build waits until 63 other threads wait for it
    // (the engine counts waiters as they join the flight) and then panics; builds after
    // it succeed.
    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let first = Arc::new(AtomicBool::new(true));
    let (s2, r2, f2) = (started.clone(), release.clone(), first.clone());
    let plog = Log::new();
    let panicky = Probe::new(
        "p",
        &plog,
        move |_, _key: &String| -> Result<String, BuildError> {
            if f2.swap(false, Ordering::SeqCst) {
                s2.store(true, Ordering::SeqCst);
                while !r2.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                panic!("the builder panicked");
            }
            Ok("built again".to_owned())
        },
    );
    let (errors, later) = (AtomicU64::new(0), AtomicU64::new(0));
    let waits_before = engine.stats().waits;
    std::thread::scope(|s| {
        let leader =
            s.spawn(|| catch_unwind(AssertUnwindSafe(|| engine.get(&panicky, &"x".to_owned()))));
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let waiters: Vec<_> = (0..63)
            .map(|_| {
                s.spawn(|| {
                    match engine.get(&panicky, &"x".to_owned()) {
                        Err(_) => errors.fetch_add(1, Ordering::SeqCst),
                        Ok(_) => later.fetch_add(1, Ordering::SeqCst),
                    };
                })
            })
            .collect();
        // A deadline against a hang; the count, not the time, decides.
        let all_waiting = wait_until(Duration::from_secs(60), || {
            engine.stats().waits - waits_before == 63
        });
        release.store(true, Ordering::SeqCst);
        assert!(all_waiting, "63 threads joined the flight");
        assert!(
            leader.join().unwrap().is_err(),
            "the leader's panic reached its caller"
        );
        for w in waiters {
            w.join().expect("no waiter hangs or panics");
        }
    });
    // Every waiter joined the panicking flight before it ended, so each wakes with its
    // error; none reaches `get` after the flight ended.
    let (woken, later) = (errors.load(Ordering::SeqCst), later.load(Ordering::SeqCst));
    eprintln!(
        "figure: threads=64 keys=50 requests=3200 builds=50; panicking builder waiters=63 woken_with_error={woken} served_by_a_later_build={later} hung=0"
    );
    assert_eq!(woken + later, 63, "every waiter returned");
    assert!(woken > 0, "some waiters joined the panicking flight");
    assert_eq!(woken, 63, "every waiter got the panicking flight's error");
}

/// A writer edits a tracked file in every way that can fool metadata (same-size writes
/// in one clock tick, `touch -d` back to the old mtime, `cp -p` over it) while readers
/// keep asking for the object built from it. A request that starts after an edit
/// finished never gets an older content; after the writer stops, every engine serves the
/// final content.
#[test]
fn inputs_edited_during_builds_are_never_served_stale() {
    let long = std::env::var("TROVE_LONG").is_ok_and(|v| v == "1");
    let edits: u64 = if long { 5000 } else { 400 };
    let project = Project::new();
    let path = project.write("data.txt", "v00000000\n");
    let log = Log::new();
    let recipe = Probe::new("text", &log, |cx, p: &String| cx.read_to_string(p));
    let engine = project.engine();
    let committed = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let (stale, unparsed, requests, stale_waited) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let version_of = |s: &str| -> Option<u64> { s.strip_prefix('v')?.trim_end().parse().ok() };
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    let floor = committed.load(Ordering::SeqCst);
                    let served = engine
                        .get_explained(&recipe, &"data.txt".to_owned())
                        .unwrap();
                    requests.fetch_add(1, Ordering::SeqCst);
                    match version_of(&served.value) {
                        // Older than what was committed before the request began: stale,
                        // whatever the reason (a hit, or the answer of a flight this
                        // request waited on, which must have checked its inputs after
                        // the request arrived).
                        Some(v) if v < floor => {
                            if matches!(served.reason, Reason::Waited(_)) {
                                stale_waited.fetch_add(1, Ordering::SeqCst);
                            } else {
                                stale.fetch_add(1, Ordering::SeqCst);
                            }
                            eprintln!("stale: served v{v} after v{floor} ({})", served.reason);
                        }
                        Some(_) => {}
                        None => {
                            unparsed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
        s.spawn(|| {
            let tmp = project.path("data.tmp");
            for n in 1..=edits {
                let content = format!("v{n:08}\n");
                let before = support::mtime(&path);
                match n % 4 {
                    // Same size, in place, no truncation: often in the same clock tick.
                    0 => {
                        use std::os::unix::fs::FileExt;
                        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                        f.write_all_at(content.as_bytes(), 0).unwrap();
                    }
                    // In place, then the old mtime put back (`touch -d`).
                    1 => {
                        std::fs::write(&path, &content).unwrap();
                        set_mtime(&path, before);
                    }
                    // A new file with the old mtime renamed over it (`cp -p`).
                    2 => {
                        std::fs::write(&tmp, &content).unwrap();
                        set_mtime(&tmp, before);
                        std::fs::rename(&tmp, &path).unwrap();
                    }
                    // The real `cp -p` every so often, else a plain rewrite.
                    _ => {
                        if n % 40 == 3 {
                            std::fs::write(&tmp, &content).unwrap();
                            set_mtime(
                                &tmp,
                                SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
                            );
                            let ok = std::process::Command::new("cp")
                                .arg("-p")
                                .arg(&tmp)
                                .arg(&path)
                                .status()
                                .unwrap()
                                .success();
                            assert!(ok);
                        } else {
                            std::fs::write(&path, &content).unwrap();
                        }
                    }
                }
                committed.store(n, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        });
    });
    let last = format!("v{edits:08}\n");
    assert_eq!(*engine.get(&recipe, &"data.txt".to_owned()).unwrap(), last);
    assert_eq!(
        *project
            .engine()
            .get(&recipe, &"data.txt".to_owned())
            .unwrap(),
        last
    );
    let (stale, waited) = (
        stale.load(Ordering::SeqCst),
        stale_waited.load(Ordering::SeqCst),
    );
    eprintln!(
        "figure: edits={edits} requests={} builds={} stale_serves={stale} older_to_late_waiters={waited} torn_reads={}",
        requests.load(Ordering::SeqCst),
        log.len(),
        unparsed.load(Ordering::SeqCst)
    );
    assert_eq!(stale, 0, "stale serves");
    assert_eq!(waited, 0, "stale answers to waiters");
}

/// A request that joins a flight after the leader checked the inputs does not take the
/// leader's answer: the leader validated a stored variant (its file first, then a
/// dependency whose rebuild this test holds), the file changed, and then a second request
/// joined the flight. Before the fix it got the leader's `hit disk` of the old content.
#[test]
fn a_request_joining_a_flight_after_its_check_is_not_served_what_the_check_saw() {
    let project = Project::new();
    project.write("f.txt", "one");
    project.write("g.txt", "1");
    let log = Log::new();
    let hold = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (entered_tx, release_rx) = (
        Arc::new(std::sync::Mutex::new(entered_tx)),
        Arc::new(std::sync::Mutex::new(release_rx)),
    );
    // `dep` reads g.txt but its output does not depend on it (early cutoff keeps the
    // dependent's variant valid once it rebuilt); while `hold` is set its build waits.
    let dep = {
        let hold = hold.clone();
        Probe::new("dep", &log, move |cx, p: &String| {
            cx.read(p)?;
            if hold.load(Ordering::SeqCst) {
                entered_tx.lock().unwrap().send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
            }
            Ok("constant".to_owned())
        })
    };
    let top = {
        let dep = dep.clone();
        Probe::new("top", &log, move |cx, p: &String| {
            let text = cx.read_to_string(p)?;
            cx.get(&dep, &"g.txt".to_owned())?;
            Ok(text)
        })
    };
    let f = "f.txt".to_owned();
    assert_eq!(*project.engine().get(&top, &f).unwrap(), "one");
    log.take();

    // A new engine (nothing in memory): its first request leads a flight that validates
    // the stored variant of `top`: f.txt first, then `dep`, which must rebuild (g.txt
    // changed) and is held there.
    project.write("g.txt", "2");
    hold.store(true, Ordering::SeqCst);
    let engine = Arc::new(project.engine());
    engine.register(dep.clone());
    let leader = {
        let (engine, top, f) = (engine.clone(), top.clone(), f.clone());
        std::thread::spawn(move || engine.get_explained(&top, &f).unwrap())
    };
    entered_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the dependency's build started");
    // The leader has checked f.txt. It changes, and then another request asks.
    project.write("f.txt", "two");
    let follower = {
        let (engine, top, f) = (engine.clone(), top.clone(), f.clone());
        std::thread::spawn(move || engine.get_explained(&top, &f).unwrap())
    };
    // Let the follower join the leader's flight before the leader finishes.
    std::thread::sleep(Duration::from_millis(300));
    hold.store(false, Ordering::SeqCst);
    release_tx.send(()).unwrap();
    let led = leader.join().unwrap();
    let followed = follower.join().unwrap();
    // The leader checked f.txt before it changed: its answer is the stored object.
    assert_eq!(*led.value, "one", "{}", led.reason);
    assert_eq!(
        *followed.value, "two",
        "a request made after f.txt changed was served {:?} ({})",
        followed.value, followed.reason
    );
    assert!(
        matches!(followed.reason, Reason::Built(_)),
        "{}",
        followed.reason
    );
}

/// Runs `f` on another thread and waits for it at most 20 s: `None` means it hung.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20)).ok()
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
}

/// Symlink loops, FIFOs, unreadable files and directories, read, opened, tracked, listed
/// and globbed: each ends with a clear error naming the path or a recorded state, never a
/// hang.
#[test]
fn special_files_as_inputs_give_a_clear_error_or_a_recorded_state_never_a_hang() {
    let project = Project::new();
    let root = project.root().to_path_buf();
    std::os::unix::fs::symlink(root.join("loop-b"), root.join("loop-a")).unwrap();
    std::os::unix::fs::symlink(root.join("loop-a"), root.join("loop-b")).unwrap();
    mkfifo(&root.join("fifo"));
    project.write("secret.txt", "secret");
    std::fs::set_permissions(
        root.join("secret.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    std::fs::create_dir(root.join("adir")).unwrap();
    project.write("adir/inner.txt", "x");
    mkfifo(&root.join("adir/fifo"));

    let ops: [(&'static str, Op); 5] = [
        ("read", |cx, p| {
            cx.read(p).map(|b| format!("{} bytes", b.len()))
        }),
        ("open", |cx, p| cx.open(p).map(|_| "opened".to_owned())),
        ("track_file", |cx, p| {
            cx.track_file(p).map(|_| "tracked".to_owned())
        }),
        ("read_dir", |cx, p| {
            cx.read_dir(p).map(|n| format!("{} names", n.len()))
        }),
        ("glob", |cx, p| {
            cx.glob(&format!("{p}/**"))
                .map(|n| format!("{} matches", n.len()))
        }),
    ];
    let inputs = ["loop-a", "fifo", "secret.txt", "adir", "adir/fifo"];
    let engine = Arc::new(project.engine());
    let (mut cases, mut hangs) = (0, 0);
    for input in inputs {
        for (name, op) in ops {
            cases += 1;
            let engine = engine.clone();
            let recipe = Probe::new(name, &Log::new(), move |cx, p: &String| op(cx, p));
            let arg = input.to_owned();
            let answer = bounded(move || {
                engine
                    .get_explained(&recipe, &arg)
                    .map(|s| s.value.to_string())
            });
            match answer {
                None => {
                    hangs += 1;
                    eprintln!("HANG: {name} {input}");
                }
                Some(Ok(v)) => eprintln!("figure: special {name}({input}) -> recorded: {v}"),
                Some(Err(e)) => {
                    let msg = e.to_string();
                    let stem = input.rsplit('/').next().unwrap();
                    assert!(
                        msg.contains(stem),
                        "{name}({input}): the error names the path: {msg}"
                    );
                    eprintln!("figure: special {name}({input}) -> error: {msg}");
                }
            }
        }
    }
    eprintln!(
        "figure: special inputs cases={cases} hangs={hangs} (tests run as root: chmod 000 does not deny reads)"
    );
    assert_eq!(hangs, 0);
}

type Op = fn(&mut trove::Cx, &str) -> Result<String, BuildError>;

/// `Cx::open` on a FIFO: it once fingerprinted the FIFO without blocking but then opened
/// it with a blocking `File::open`, waiting for a writer forever (found by the test above;
/// the engine now refuses a file that is not a regular file, as `Cx::read` does).
#[test]
fn opening_a_fifo_input_with_cx_open_gives_an_error_instead_of_hanging() {
    let project = Project::new();
    mkfifo(&project.path("fifo"));
    let engine = project.engine();
    let recipe = Probe::new("open", &Log::new(), |cx, p: &String| {
        cx.open(p).map(|_| "opened".to_owned())
    });
    let answer = bounded(move || {
        engine
            .get(&recipe, &"fifo".to_owned())
            .map(|v| v.to_string())
    });
    eprintln!("figure: cx.open(fifo) -> {answer:?} (None = hung for 20 s)");
    assert!(answer.is_some(), "Cx::open on a FIFO hangs");
}

#[test]
fn hostile_depfiles_are_refused_with_a_position_or_tracked_never_crash() {
    let huge = vec![b'a'; (64 << 20) + 1];
    let deep = "../".repeat(100_000) + "etc/passwd";
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "invalid UTF-8",
            b"ok.txt\n\xff\xfe.txt\n".to_vec(),
            Some("byte 7"),
        ),
        ("a NUL byte", b"a.txt\nb\0.txt\n".to_vec(), Some("line 2")),
        ("over 64 MiB", huge, Some("limit")),
        ("`..` paths", b"../../../../etc/hostname\n".to_vec(), None),
        ("100000 `../`", deep.into_bytes(), None),
        (
            "CRLF and blank lines",
            b"a.txt\r\n\r\n\n b c.txt\n".to_vec(),
            None,
        ),
        ("empty", Vec::new(), None),
        (
            "a million lines",
            "x\n".repeat(1_000_000).into_bytes(),
            None,
        ),
    ];
    let mut crashes = 0;
    for (name, bytes, error) in &cases {
        let outcome = catch_unwind(|| trove::fuzzing::parse_depfile(bytes));
        match (outcome, error) {
            (Err(_), _) => crashes += 1,
            (Ok(Err(msg)), Some(want)) => assert!(msg.contains(want), "{name}: {msg}"),
            (Ok(Ok(paths)), None) => {
                eprintln!("figure: depfile {name} -> {} paths tracked", paths.len())
            }
            (Ok(other), _) => panic!("{name}: unexpected {other:?}"),
        }
    }
    eprintln!(
        "figure: hostile depfiles cases={} crashes={crashes}",
        cases.len()
    );
    assert_eq!(crashes, 0);
}

#[test]
fn traces_with_giant_length_prefixes_decode_to_a_miss_without_allocating() {
    let mut cases = Vec::new();
    // Format byte 1, then postcard: a Vec length of 2^63 as a varint, then nothing.
    let giant = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    // The trace format this build writes; another one is a miss.
    const FORMAT: u8 = 2;
    let mut c = vec![FORMAT];
    c.extend(giant);
    cases.push(c.clone());
    // The same prefix on a string inside the first input.
    let mut c = vec![FORMAT, 1, 0, 0];
    c.extend(giant);
    cases.push(c);
    // Counter map length 2^63 after an empty input list.
    let mut c = vec![FORMAT, 0];
    c.extend(giant);
    cases.push(c);
    // Definition map length 2^63 after empty inputs and counters.
    let mut c = vec![FORMAT, 0, 0];
    c.extend(giant);
    cases.push(c);
    // Trailing bytes after a valid trace, another format byte, nothing, a cut varint.
    cases.push(vec![FORMAT, 0, 0, 0, 0xaa]);
    cases.push(vec![1u8, 0, 0]);
    cases.push(vec![]);
    cases.push(vec![FORMAT, 0xff]);
    let mut accepted = 0;
    for bytes in &cases {
        let started = std::time::Instant::now();
        if trove::fuzzing::decode_trace(bytes).is_some() {
            accepted += 1;
        }
        eprintln!(
            "figure: hostile trace {:?}.. decoded in {:?}",
            &bytes[..bytes.len().min(12)],
            started.elapsed()
        );
    }
    assert!(
        trove::fuzzing::decode_trace(&[FORMAT, 0, 0, 0]).is_some(),
        "an empty trace decodes"
    );
    eprintln!(
        "figure: hostile traces cases={} accepted={accepted}",
        cases.len()
    );
    assert_eq!(accepted, 0);
}
