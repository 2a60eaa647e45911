//! `Engine::watch_stale`: which stored objects the stream reports when inputs change, and
//! why. Nothing sleeps and hopes: each test waits for the update it expects, with a
//! deadline, and an edit to a sentinel file shows that earlier events were handled.

use std::time::{Duration, SystemTime};

use trove::{Config, Engine, StaleEvent, StaleStream, WatchUpdate, Why};

use crate::support::{Log, Probe, Project, text};

/// How long a test waits for an update it expects; a passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

fn engine(p: &Project, config: &str) -> Engine {
    p.write("trove.ron", config);
    Engine::open(Config::load(&p.path("trove.ron")).unwrap()).unwrap()
}

fn next(stream: &mut StaleStream) -> WatchUpdate {
    match stream.recv_timeout(PATIENCE).unwrap() {
        Some(update) => update,
        None => panic!("no update within {PATIENCE:?}"),
    }
}

fn next_stale(stream: &mut StaleStream) -> StaleEvent {
    match next(stream) {
        WatchUpdate::Stale(event) => event,
        other => panic!("expected a stale object, got {other:?}"),
    }
}

/// Saves a file as editors do: a temporary file beside it renamed over it (a new inode).
fn save(p: &Project, rel: &str, content: &str) {
    let temp = p.path(&format!("{rel}.swp"));
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, p.path(rel)).unwrap();
}

/// `touch`: the modification time moves to now, the content stays.
fn touch(p: &Project, rel: &str) {
    let file = std::fs::File::options()
        .write(true)
        .open(p.path(rel))
        .unwrap();
    file.set_modified(SystemTime::now()).unwrap();
}

/// `data/n.txt changed (blake3 1f3a5c2d.. -> 9c2e0b4a..)`.
fn changed(path: &str, old: &str, new: &str) -> String {
    let short = |text: &str| blake3::hash(text.as_bytes()).to_hex()[..8].to_owned();
    format!(
        "{path} changed (blake3 {}.. -> {}..)",
        short(old),
        short(new)
    )
}

const WATCHED: &str = r#"(watch: (roots: ["data"], debounce_ms: 20))"#;

#[test]
fn watch_stale_reports_an_edit_and_its_dependents_but_not_a_touch_or_a_same_bytes_save() {
    let p = Project::new();
    p.write("data/n.txt", "1");
    p.write("data/s.txt", "s1");
    let e = engine(&p, WATCHED);
    let log = Log::new();
    let inner = text("inner", &log);
    let inner_for_outer = inner.clone();
    let outer = Probe::new("outer", &log, move |cx, path| {
        Ok(format!("[{}]", cx.get(&inner_for_outer, path)?))
    });
    let sentinel = text("sentinel", &log);
    e.get(&outer, &"data/n.txt".to_owned()).unwrap();
    e.get(&sentinel, &"data/s.txt".to_owned()).unwrap();
    assert_eq!(log.take().len(), 3);
    let mut stream = e.watch_stale().unwrap();

    touch(&p, "data/n.txt");
    save(&p, "data/n.txt", "1");
    save(&p, "data/s.txt", "s2");
    let event = next_stale(&mut stream);
    assert_eq!(
        (event.label(), event.why.to_string()),
        (
            r#"sentinel "data/s.txt""#.to_owned(),
            changed("data/s.txt", "s1", "s2")
        ),
        "the touch and the same-bytes save reported nothing"
    );

    save(&p, "data/n.txt", "2");
    let n_changed = changed("data/n.txt", "1", "2");
    let event = next_stale(&mut stream);
    assert_eq!(
        (event.recipe.as_str(), event.why.to_string()),
        ("inner", n_changed.clone())
    );
    assert!(matches!(&event.why, Why::Changed { what, .. } if what == "data/n.txt"));
    // The typed arguments to ask for it again, checked against its key.
    assert_eq!(event.args_for(&inner).unwrap(), "data/n.txt");
    assert_eq!(event.key, e.key(&inner, &"data/n.txt".to_owned()).unwrap());
    assert!(event.args_for(&sentinel).is_err(), "another recipe's key");
    let event = next_stale(&mut stream);
    assert_eq!(
        (event.recipe.as_str(), event.why.to_string()),
        (
            "outer",
            format!(r#"dependency inner "data/n.txt" changed: {n_changed}"#)
        )
    );

    // Already reported for this reason: a touch adds nothing.
    touch(&p, "data/n.txt");
    save(&p, "data/s.txt", "s3");
    assert_eq!(next_stale(&mut stream).recipe, "sentinel");
    assert!(log.take().is_empty(), "watching builds nothing");
}

#[test]
fn watch_stale_picks_up_a_changed_configuration_and_keeps_the_last_good_one() {
    let p = Project::new();
    p.write("data/a.txt", "one");
    let config = |alice: u32| {
        format!(r#"(versions: {{ "alice": {alice} }}, watch: (roots: ["data"], debounce_ms: 20))"#)
    };
    let e = engine(&p, &config(1));
    let log = Log::new();
    let r = text("text", &log);
    e.get(&r, &"data/a.txt".to_owned()).unwrap();
    let mut stream = e.watch_stale().unwrap();

    save(&p, "trove.ron", "(versions: { \"alice\": 2 ]\n");
    match next(&mut stream) {
        WatchUpdate::ConfigRejected { error } => {
            assert_eq!(error.file, p.path("trove.ron"));
            assert_eq!(error.line, 1, "{error}");
        }
        other => panic!("expected the configuration to be rejected, got {other:?}"),
    }
    // The previous configuration still runs.
    save(&p, "data/a.txt", "two");
    let event = next_stale(&mut stream);
    assert_eq!(event.why.to_string(), changed("data/a.txt", "one", "two"));

    save(&p, "trove.ron", &config(2));
    match next(&mut stream) {
        WatchUpdate::ConfigReloaded { path } => assert_eq!(path, p.path("trove.ron")),
        other => panic!("expected a reload, got {other:?}"),
    }
    assert_eq!(stream.engine().config().versions["alice"], 2);
    let event = next_stale(&mut stream);
    assert_eq!(
        (event.recipe.as_str(), &event.why),
        (
            "text",
            &Why::Counter {
                name: "alice".into(),
                from: Some(1),
                to: Some(2)
            }
        )
    );
    assert_eq!(log.all(), ["text data/a.txt"], "watching builds nothing");
}

#[test]
fn watch_stale_names_the_inputs_outside_the_watched_roots() {
    let p = Project::new();
    p.write("data/a.txt", "a");
    p.write("other/b.txt", "b");
    let e = engine(&p, WATCHED);
    let log = Log::new();
    let both = Probe::new("both", &log, |cx, _: &String| {
        Ok(cx.read_to_string("data/a.txt")? + &cx.read_to_string("other/b.txt")?)
    });
    e.get(&both, &String::new()).unwrap();
    let stream = e.watch_stale().unwrap();
    assert_eq!(stream.unwatched(), [p.path("other/b.txt")]);
}

#[test]
fn watch_stale_after_a_rescan_reports_only_what_is_newly_stale() {
    let p = Project::new();
    p.write("data/a.txt", "a");
    p.write("data/s.txt", "s1");
    let e = engine(&p, WATCHED);
    let log = Log::new();
    let r = text("text", &log);
    e.get(&r, &"data/a.txt".to_owned()).unwrap();
    e.get(&r, &"data/s.txt".to_owned()).unwrap();
    let mut stream = e.watch_stale().unwrap();

    // A new .gitignore may hide changes the watcher used to see: every object is
    // validated again, and nothing changed, so nothing is stale...
    p.write("data/.gitignore", "*.tmp\n");
    save(&p, "data/s.txt", "s2");
    let mut rescans = 0;
    let event = loop {
        match next(&mut stream) {
            WatchUpdate::Rescan { reason } => {
                assert!(reason.contains(".gitignore"), "{reason}");
                rescans += 1;
            }
            WatchUpdate::Stale(event) => break event,
            other => panic!("expected a rescan or a stale object, got {other:?}"),
        }
    };
    // ...and the first object reported is the sentinel edited after it.
    assert!(rescans >= 1, "no rescan");
    assert_eq!(event.args.decode::<String>().unwrap(), "data/s.txt");
    assert_eq!(event.why.to_string(), changed("data/s.txt", "s1", "s2"));
}
