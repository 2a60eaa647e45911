//! The examples, run: the watcher loop rebuilds when its input changes, and README.md
//! holds `embed.rs` verbatim.

use std::sync::mpsc;
use std::time::Duration;

#[allow(dead_code)] // its `main` is for `cargo run --example watcher`
#[path = "watcher.rs"]
mod watcher;

/// How long an update may take to arrive: a bound against a hang, not a timing claim.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn the_watcher_example_rebuilds_when_its_input_changes_and_not_when_it_is_saved_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "one two three\n").unwrap();
    let (tx, rx) = mpsc::channel();
    let root = dir.path().to_owned();
    let runner = std::thread::spawn(move || {
        watcher::run(&root, Some(1), &mut |line| {
            let _ = tx.send(line);
        })
    });
    let next = || {
        rx.recv_timeout(DEADLINE)
            .expect("the watcher printed a line")
    };
    assert_eq!(next(), "notes.txt: 3 words, 1 lines (built: no entry)");
    // The object has been read, and the watch was registered before that read: both
    // saves below are seen. The first writes the same bytes (not a change); the second
    // is an edit, and the next lines are its report and rebuild.
    std::fs::write(&notes, "one two three\n").unwrap();
    std::fs::write(&notes, "one two three four\nfive\n").unwrap();
    let stale = next();
    assert!(
        stale.starts_with("stale: count \"notes.txt\": notes.txt changed (blake3 "),
        "{stale}"
    );
    let rebuilt = next();
    assert!(
        rebuilt.starts_with("notes.txt: 5 words, 2 lines (built: notes.txt changed (blake3 "),
        "{rebuilt}"
    );
    runner
        .join()
        .expect("the watcher did not panic")
        .expect("the watcher ran without an error");
}

#[test]
fn the_readme_shows_the_embed_example_verbatim() {
    let readme = include_str!("../README.md");
    let example = include_str!("embed.rs");
    assert!(
        readme.contains(example),
        "README.md's \"Embedding the engine\" must hold examples/embed.rs verbatim"
    );
}
