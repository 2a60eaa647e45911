//! Small blobs copied into the index (schema version 2): a record and its small blob are
//! read in one query, the copy is verified like a file, and gc, verify and the file-level
//! functions keep working on the files.

use std::fs;

use tempfile::TempDir;
use trove_store::{BlobId, Key, NewRecord, SCHEMA_VERSION, Store};

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".trove")).unwrap();
    (dir, store)
}

fn record(key: Key, blob: BlobId) -> NewRecord {
    NewRecord {
        key,
        recipe: "small".to_owned(),
        args: "1".to_owned(),
        recipe_version: 1,
        created_ms: 1_700_000_000_000,
        blob,
        codec: 2,
        trace: b"trace".to_vec(),
        reason: "built: no entry".to_owned(),
    }
}

fn inline_rows(store: &Store) -> i64 {
    rusqlite::Connection::open(store.index_path())
        .unwrap()
        .query_row("SELECT count(*) FROM blob_inline", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_small_blob_is_served_from_the_index_even_when_its_file_is_gone() {
    let (_dir, store) = open();
    let blob = store.put_blob(b"a small object").unwrap();
    store.insert(&record([1; 32], blob)).unwrap();
    // An older variant of the same key, which the limited read below must not return.
    let mut older = record([1; 32], blob);
    older.created_ms -= 1;
    store.insert(&older).unwrap();
    assert_eq!(inline_rows(&store), 1);
    // Without the file, the copy read with the record is what serves it (verified).
    fs::remove_file(store.blob_path(&blob.hash)).unwrap();
    let rec = &store.variants(&[1; 32]).unwrap()[0];
    assert_eq!(store.read_blob_of(rec).unwrap(), b"a small object");
    // The same through the limited read a hit makes (the newest row chosen first).
    let newest = store.newest_variants(&[1; 32], Some(1)).unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].id, rec.id);
    assert_eq!(store.read_blob_of(&newest[0]).unwrap(), b"a small object");
    // The file-level functions still speak of files only.
    assert!(!store.has_blob(&blob));
    assert!(store.read_blob(&blob).is_err());
}

#[test]
fn a_copy_that_does_not_match_its_blob_is_never_served_and_is_removed() {
    let (_dir, store) = open();
    let blob = store.put_blob(b"the true content").unwrap();
    store.insert(&record([2; 32], blob)).unwrap();
    rusqlite::Connection::open(store.index_path())
        .unwrap()
        .execute(
            "UPDATE blob_inline SET bytes = x'6c696573206c696573206c696573'",
            [],
        )
        .unwrap();
    let rec = &store.variants(&[2; 32]).unwrap()[0];
    assert_eq!(store.read_blob_of(rec).unwrap(), b"the true content");
    assert_eq!(inline_rows(&store), 0, "the bad copy was removed");
}

#[test]
fn a_large_blob_gets_no_copy_and_is_read_from_its_file() {
    let (_dir, store) = open();
    let big = vec![7u8; 64 * 1024];
    let blob = store.put_blob(&big).unwrap();
    store.insert(&record([3; 32], blob)).unwrap();
    assert_eq!(inline_rows(&store), 0);
    let rec = &store.variants(&[3; 32]).unwrap()[0];
    assert_eq!(store.read_blob_of(rec).unwrap(), big);
}

#[test]
fn gc_removes_a_copy_with_its_blob_file() {
    let (_dir, store) = open();
    let blob = store.put_blob(b"soon garbage").unwrap();
    let id = store.insert(&record([4; 32], blob)).unwrap();
    store.remove(id).unwrap();
    assert_eq!(
        inline_rows(&store),
        1,
        "a removed record leaves its blob to gc"
    );
    let plan = store.gc_plan().unwrap();
    store.gc_apply(&plan).unwrap();
    assert!(!store.blob_path(&blob.hash).exists());
    assert_eq!(inline_rows(&store), 0);
}

#[test]
fn a_version_1_index_is_migrated_and_its_records_read_from_their_files() {
    let (dir, store) = open();
    let blob = store.put_blob(b"written by an older trove").unwrap();
    store.insert(&record([5; 32], blob)).unwrap();
    drop(store);
    // What a version-1 trove left: no copies table.
    let index = dir.path().join(".trove/v1/index.sqlite");
    rusqlite::Connection::open(&index)
        .unwrap()
        .execute_batch("DROP TABLE blob_inline; PRAGMA user_version = 1;")
        .unwrap();
    let store = Store::open(&dir.path().join(".trove")).unwrap();
    let version: i64 = rusqlite::Connection::open(&index)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(inline_rows(&store), 0);
    let rec = &store.variants(&[5; 32]).unwrap()[0];
    assert_eq!(
        store.read_blob_of(rec).unwrap(),
        b"written by an older trove"
    );
    assert!(store.verify().unwrap().corrupt.is_empty());
}

#[test]
fn gc_removes_a_copy_whose_file_and_rows_an_older_gc_removed() {
    let (_dir, store) = open();
    let blob = store.put_blob(b"removed by a version-1 gc").unwrap();
    let id = store.insert(&record([6; 32], blob)).unwrap();
    // What a trove of version 1 does: its gc deletes the row and then the file only.
    store.remove(id).unwrap();
    fs::remove_file(store.blob_path(&blob.hash)).unwrap();
    assert_eq!(inline_rows(&store), 1);
    store.gc_apply(&store.gc_plan().unwrap()).unwrap();
    assert_eq!(inline_rows(&store), 0);
}
