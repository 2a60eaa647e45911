//! The index's write-ahead log stays short when the store is used by many short-lived
//! processes, each writing once (a `trove run` hit records its use), and emptying it
//! never makes a write wait for another connection.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trove_store::{Key, NewRecord, Store, WAL_EMPTY_AT};

fn key() -> Key {
    [7; 32]
}

/// A store under a new directory holding one record; returns the directory, the store's
/// root and the record's id.
fn store_with_a_record() -> (tempfile::TempDir, PathBuf, i64) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".trove");
    let store = Store::open(&root).unwrap();
    let blob = store.put_blob(b"an object").unwrap();
    let id = store
        .insert(&NewRecord {
            key: key(),
            recipe: "table".to_owned(),
            args: String::new(),
            recipe_version: 1,
            created_ms: 1,
            blob,
            codec: 1,
            trace: b"a trace".to_vec(),
            reason: "built: no entry".to_owned(),
        })
        .unwrap();
    (dir, root, id)
}

fn wal_len(store: &Store) -> u64 {
    let mut wal = store.index_path().as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).map_or(0, |m| m.len())
}

fn hits(store: &Store) -> u64 {
    store.variants(&key()).unwrap()[0].hits
}

#[test]
fn one_write_per_opening_of_the_store_does_not_grow_the_write_ahead_log_for_good() {
    let (_dir, root, id) = store_with_a_record();
    // Each opening is the only connection, as a `trove run` process is: it rebuilds the
    // log's index from the file and writes one frame. 600 frames are 2.4 MiB of log.
    let mut longest = 0;
    for n in 1..=600 {
        let store = Store::open(&root).unwrap();
        store.touch(id, n).unwrap();
        longest = longest.max(wal_len(&store));
    }
    // A transaction's frames may land past the mark before the log is emptied.
    assert!(
        longest < WAL_EMPTY_AT + 64 * 1024,
        "the log reached {longest} bytes"
    );
    let store = Store::open(&root).unwrap();
    assert_eq!(hits(&store), 600, "every use was recorded");
}

#[test]
fn a_reader_holding_the_log_delays_its_emptying_without_making_writes_wait() {
    let (_dir, root, id) = store_with_a_record();
    let store = Store::open(&root).unwrap();
    // Another process's reader in the middle of a read transaction: the log cannot be
    // emptied under it.
    let reader = rusqlite::Connection::open(store.index_path()).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let rows: i64 = reader
        .query_row("SELECT count(*) FROM variants", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    let start = Instant::now();
    for n in 1..=400 {
        store.touch(id, n).unwrap();
    }
    // Waiting for the reader would take the index's busy timeout (30 s) at each try.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the writes waited for the reader: {:?}",
        start.elapsed()
    );
    assert!(
        wal_len(&store) >= WAL_EMPTY_AT,
        "the log was emptied under a reader"
    );
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    store.touch(id, 401).unwrap();
    assert_eq!(
        wal_len(&store),
        0,
        "the next write after the reader emptied the log"
    );
    assert_eq!(hits(&store), 401);
}
