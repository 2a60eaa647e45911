//! Behaviour of the local store, on real files in temporary directories.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tempfile::TempDir;
use trove_fingerprint::hex;
use trove_store::{BlobId, GcItem, Key, NewRecord, Record, Store, StoreError, StoreOptions};

// ------------------------------------------------------------------ helpers

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".trove")).unwrap();
    (dir, store)
}

fn key(n: u8) -> Key {
    let mut k = [0u8; 32];
    k[0] = n;
    k[31] = 0xee;
    k
}

fn new_record(key: Key, blob: BlobId, created_ms: i64) -> NewRecord {
    NewRecord {
        key,
        recipe: "table".to_owned(),
        args: format!("year={created_ms}"),
        recipe_version: 3,
        created_ms,
        blob,
        codec: 1,
        trace: format!("trace of {created_ms}").into_bytes(),
        reason: "built: no entry".to_owned(),
    }
}

/// Publishes `content` and inserts a record for it.
fn insert(store: &Store, key: Key, content: &[u8], created_ms: i64) -> i64 {
    let blob = store.put_blob(content).unwrap();
    store.insert(&new_record(key, blob, created_ms)).unwrap()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn quarantined_files(store: &Store) -> Vec<PathBuf> {
    files_in(store.quarantine_dir())
}

/// A second, independent connection to the index, as another process would have.
fn raw_index(store: &Store) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(store.index_path()).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    conn
}

fn ids(records: &[Record]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

fn quarantine_reason(store: &Store, id: i64) -> Option<String> {
    store
        .records()
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .and_then(|r| r.quarantined)
}

// ------------------------------------------------------------------ blobs

#[test]
fn a_blob_put_under_a_wrong_hash_is_caught_on_read_never_served() {
    let (_dir, store) = open();
    let right = store.put_blob_hashed(b"content", *blake3::hash(b"content").as_bytes());
    assert_eq!(store.read_blob(&right.unwrap()).unwrap(), b"content");
    let wrong = store
        .put_blob_hashed(
            b"other content",
            *blake3::hash(b"something else").as_bytes(),
        )
        .unwrap();
    assert!(matches!(
        store.read_blob(&wrong),
        Err(StoreError::CorruptBlob { .. })
    ));
}

#[test]
fn a_blob_put_is_read_back_byte_for_byte() {
    let (_dir, store) = open();
    let id = store.put_blob(b"hello object").unwrap();
    assert_eq!(id.len, 12);
    assert_eq!(id.hash, *blake3::hash(b"hello object").as_bytes());
    assert!(store.has_blob(&id));
    assert_eq!(store.read_blob(&id).unwrap(), b"hello object");
}

#[test]
fn a_large_blob_hashed_in_parallel_round_trips() {
    let (_dir, store) = open();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let id = store.put_blob(&content).unwrap();
    assert_eq!(id.hash, *blake3::hash(&content).as_bytes());
    assert_eq!(store.read_blob(&id).unwrap(), content);
}

#[test]
fn the_empty_blob_round_trips() {
    let (_dir, store) = open();
    let id = store.put_blob(b"").unwrap();
    assert_eq!(id.len, 0);
    assert_eq!(store.read_blob(&id).unwrap(), b"");
}

#[test]
fn identical_content_is_stored_once() {
    let (_dir, store) = open();
    let a = store.put_blob(b"same bytes").unwrap();
    let b = store.put_blob(b"same bytes").unwrap();
    assert_eq!(a, b);
    let shard = store.blob_path(&a.hash).parent().unwrap().to_owned();
    assert_eq!(
        files_in(&shard),
        vec![store.blob_path(&a.hash)],
        "one file, no temp files left"
    );
    assert_eq!(store.total_blob_bytes().unwrap(), 10);
}

#[test]
fn blob_files_land_under_a_two_hex_digit_shard_of_the_versioned_directory() {
    let (dir, store) = open();
    let id = store.put_blob(b"sharded").unwrap();
    let h = hex(&id.hash);
    let expected = dir.path().join(".trove/v1/blobs").join(&h[..2]).join(&h);
    assert_eq!(store.blob_path(&id.hash), expected);
    assert_eq!(
        fs::read(&expected).unwrap(),
        b"sharded",
        "content only, no header"
    );
    let tag = fs::read_to_string(dir.path().join(".trove/CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
}

/// `git status --porcelain --untracked-files=all` in `dir`, with the real git.
fn git_status(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .expect("git is needed for this test");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q"]);
    git(&["status", "--porcelain", "--untracked-files=all"])
}

#[test]
fn a_store_inside_a_git_repository_does_not_show_in_git_status() {
    let (dir, store) = open();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let blob = store.put_blob(b"an object").unwrap();
    store.insert(&new_record(key(1), blob, 1)).unwrap();
    let _lock = store.lock_key(&key(1)).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join(".trove/.gitignore")).unwrap(),
        "# Created by trove automatically: the store is a cache, not source.\n*\n"
    );
    assert_eq!(
        git_status(dir.path()),
        "?? notes.txt\n",
        "nothing of .trove"
    );
}

#[test]
fn a_missing_gitignore_is_written_again_and_an_edited_one_is_kept() {
    let (dir, store) = open();
    drop(store);
    let ignore = dir.path().join(".trove/.gitignore");
    fs::remove_file(&ignore).unwrap();
    Store::open(&dir.path().join(".trove")).unwrap();
    assert!(fs::read_to_string(&ignore).unwrap().ends_with("\n*\n"));

    // Someone who wants the store in git empties the file; trove leaves it so.
    fs::write(&ignore, "").unwrap();
    Store::open(&dir.path().join(".trove")).unwrap();
    assert_eq!(fs::read_to_string(&ignore).unwrap(), "");
}

/// Damages a published blob with `damage`, then checks the read is refused and the file
/// moved to quarantine.
fn assert_damage_is_caught(damage: impl FnOnce(&Path)) {
    let (_dir, store) = open();
    let id = store
        .put_blob(b"precious content that must not rot")
        .unwrap();
    let path = store.blob_path(&id.hash);
    damage(&path);
    match store.read_blob(&id) {
        Err(StoreError::CorruptBlob { hash_hex, .. }) => assert_eq!(hash_hex, hex(&id.hash)),
        other => panic!("expected CorruptBlob, got {other:?}"),
    }
    assert!(!path.exists(), "the corrupt file left the blob directory");
    let q = quarantined_files(&store);
    assert_eq!(q.len(), 1);
    let name = q[0].file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(&format!("{}.", hex(&id.hash))), "{name}");
    assert!(matches!(
        store.read_blob(&id),
        Err(StoreError::MissingBlob { .. })
    ));
    assert!(!store.has_blob(&id));
}

#[test]
fn a_flipped_bit_in_a_blob_is_reported_corrupt_and_quarantined() {
    assert_damage_is_caught(|path| {
        let mut bytes = fs::read(path).unwrap();
        bytes[7] ^= 0x10;
        fs::write(path, bytes).unwrap();
    });
}

#[test]
fn a_truncated_blob_is_reported_corrupt_and_quarantined() {
    assert_damage_is_caught(|path| {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(5).unwrap();
    });
}

#[test]
fn an_extended_blob_is_reported_corrupt_and_quarantined() {
    assert_damage_is_caught(|path| {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(b"trailing garbage").unwrap();
    });
}

#[test]
fn a_missing_blob_is_reported_missing() {
    let (_dir, store) = open();
    let id = BlobId {
        hash: [9; 32],
        len: 3,
    };
    match store.read_blob(&id) {
        Err(StoreError::MissingBlob { hash_hex }) => assert_eq!(hash_hex, hex(&[9; 32])),
        other => panic!("expected MissingBlob, got {other:?}"),
    }
}

// ------------------------------------------------------------------ records

#[test]
fn a_record_reads_back_with_every_field() {
    let (_dir, store) = open();
    let blob = store.put_blob(b"obj").unwrap();
    let rec = new_record(key(1), blob, 1_000);
    let id = store.insert(&rec).unwrap();
    let got = store.variants(&key(1)).unwrap();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.id, id);
    assert_eq!(r.key, rec.key);
    assert_eq!(r.recipe, rec.recipe);
    assert_eq!(r.args, rec.args);
    assert_eq!(r.recipe_version, 3);
    assert_eq!(r.created_ms, 1_000);
    assert_eq!(r.last_used_ms, 1_000);
    assert_eq!(r.hits, 0);
    assert_eq!(r.blob, blob);
    assert_eq!(r.codec, 1);
    assert_eq!(r.trace, rec.trace);
    assert_eq!(r.reason, rec.reason);
    assert_eq!(r.quarantined, None);
}

#[test]
fn inserting_a_record_whose_blob_was_never_published_fails() {
    let (_dir, store) = open();
    let blob = BlobId {
        hash: [3; 32],
        len: 10,
    };
    assert!(matches!(
        store.insert(&new_record(key(1), blob, 1)),
        Err(StoreError::MissingBlob { .. })
    ));
    let real = store.put_blob(b"twelve bytes").unwrap();
    let wrong_len = BlobId { len: 99, ..real };
    assert!(matches!(
        store.insert(&new_record(key(1), wrong_len, 1)),
        Err(StoreError::CorruptBlob { .. })
    ));
    assert!(store.records().unwrap().is_empty());
}

#[test]
fn variants_come_newest_first() {
    let (_dir, store) = open();
    let a = insert(&store, key(1), b"a", 100);
    let c = insert(&store, key(1), b"c", 300);
    let b = insert(&store, key(1), b"b", 200);
    let other = insert(&store, key(2), b"x", 999);
    assert_eq!(ids(&store.variants(&key(1)).unwrap()), vec![c, b, a]);
    assert_eq!(ids(&store.variants(&key(2)).unwrap()), vec![other]);
    assert!(store.variants(&key(3)).unwrap().is_empty());
}

#[test]
fn the_newest_variants_are_read_up_to_a_limit_and_a_corrupt_newest_is_quarantined() {
    let (_dir, store) = open();
    let a = insert(&store, key(1), b"a", 100);
    let c = insert(&store, key(1), b"c", 300);
    let b = insert(&store, key(1), b"b", 200);
    assert_eq!(
        ids(&store.newest_variants(&key(1), Some(1)).unwrap()),
        vec![c]
    );
    assert_eq!(
        ids(&store.newest_variants(&key(1), Some(2)).unwrap()),
        vec![c, b]
    );
    assert_eq!(
        ids(&store.newest_variants(&key(1), None).unwrap()),
        vec![c, b, a]
    );
    // The newest row damaged: the one-row read quarantines it and returns nothing; the
    // full read then has the others.
    raw_index(&store)
        .execute("UPDATE variants SET trace = x'deadbeef' WHERE id = ?1", [c])
        .unwrap();
    assert!(store.newest_variants(&key(1), Some(1)).unwrap().is_empty());
    assert!(quarantine_reason(&store, c).is_some());
    assert_eq!(
        ids(&store.newest_variants(&key(1), Some(1)).unwrap()),
        vec![b]
    );
    assert_eq!(
        ids(&store.newest_variants(&key(1), None).unwrap()),
        vec![b, a]
    );
}

#[test]
fn the_variant_limit_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), StoreOptions { max_variants: 3 }).unwrap();
    let a = insert(&store, key(1), b"a", 100);
    let b = insert(&store, key(1), b"b", 200);
    let c = insert(&store, key(1), b"c", 300);
    // `a` is the oldest build but the most recently served.
    store.touch(a, 1_000).unwrap();
    let d = insert(&store, key(1), b"d", 400);
    assert_eq!(
        ids(&store.variants(&key(1)).unwrap()),
        vec![d, c, a],
        "b was evicted"
    );
    let e = insert(&store, key(1), b"e", 500);
    assert_eq!(
        ids(&store.variants(&key(1)).unwrap()),
        vec![e, d, a],
        "then c"
    );
    // Eviction deletes rows, never blobs: another row may share them.
    assert!(store.has_blob(&store.put_blob(b"b").unwrap()));
    let _ = b;
}

#[test]
fn the_variant_just_inserted_is_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), StoreOptions { max_variants: 1 }).unwrap();
    let a = insert(&store, key(1), b"a", 100);
    store.touch(a, 9_999_999).unwrap();
    let b = insert(&store, key(1), b"b", 200);
    assert_eq!(ids(&store.variants(&key(1)).unwrap()), vec![b]);
}

#[test]
fn touch_counts_hits_and_records_the_last_use() {
    let (_dir, store) = open();
    let id = insert(&store, key(1), b"a", 100);
    store.touch(id, 5_000).unwrap();
    store.touch(id, 6_000).unwrap();
    let r = &store.variants(&key(1)).unwrap()[0];
    assert_eq!((r.hits, r.last_used_ms), (2, 6_000));
    // Touching a row that another process already removed is harmless.
    store.remove(id).unwrap();
    store.touch(id, 7_000).unwrap();
}

#[test]
fn an_updated_trace_is_stored_and_still_passes_its_checksum() {
    let (_dir, store) = open();
    let id = insert(&store, key(1), b"a", 100);
    store.update_trace(id, b"refreshed metadata").unwrap();
    let r = &store.variants(&key(1)).unwrap()[0];
    assert_eq!(r.trace, b"refreshed metadata");
    assert_eq!(r.quarantined, None);
}

#[test]
fn a_quarantined_record_is_no_longer_live_but_is_listed_with_its_reason() {
    let (_dir, store) = open();
    let id = insert(&store, key(1), b"a", 100);
    store.quarantine(id, "invariant failed: rows > 0").unwrap();
    assert!(store.variants(&key(1)).unwrap().is_empty());
    assert_eq!(
        quarantine_reason(&store, id).as_deref(),
        Some("invariant failed: rows > 0")
    );
}

#[test]
fn removing_a_record_keeps_its_blob_for_gc() {
    let (_dir, store) = open();
    let id = insert(&store, key(1), b"shared", 100);
    let blob = store.put_blob(b"shared").unwrap();
    store.remove(id).unwrap();
    assert!(store.records().unwrap().is_empty());
    assert!(store.has_blob(&blob));
}

/// Changes one column of a row through a second connection, then checks the row is
/// never served and shows up quarantined.
fn assert_tampered_row_is_quarantined(sql: &str, expected_reason: &str) {
    let (_dir, store) = open();
    let good = insert(&store, key(1), b"good", 100);
    let bad = insert(&store, key(1), b"bad", 200);
    raw_index(&store).execute(sql, [bad]).unwrap();
    assert_eq!(ids(&store.variants(&key(1)).unwrap()), vec![good]);
    let reason = quarantine_reason(&store, bad).expect("the tampered row is quarantined");
    assert!(reason.contains(expected_reason), "{reason}");
    assert_eq!(quarantine_reason(&store, good), None);
}

#[test]
fn a_record_with_altered_trace_bytes_is_quarantined() {
    assert_tampered_row_is_quarantined(
        "UPDATE variants SET trace = x'deadbeef' WHERE id = ?1",
        "record checksum mismatch",
    );
}

#[test]
fn a_record_pointing_at_another_blob_is_quarantined() {
    assert_tampered_row_is_quarantined(
        "UPDATE variants SET blob_hash = zeroblob(32) WHERE id = ?1",
        "record checksum mismatch",
    );
}

#[test]
fn a_record_moved_to_another_key_is_quarantined() {
    let (_dir, store) = open();
    let id = insert(&store, key(1), b"a", 100);
    let mut conn = raw_index(&store);
    conn.execute(
        "UPDATE variants SET key = ?2 WHERE id = ?1",
        rusqlite::params![id, &key(2)[..]],
    )
    .unwrap();
    assert!(store.variants(&key(1)).unwrap().is_empty());
    assert!(store.variants(&key(2)).unwrap().is_empty());
    assert_eq!(
        quarantine_reason(&store, id).as_deref(),
        Some("record checksum mismatch")
    );
    let _ = &mut conn;
}

#[test]
fn a_record_with_out_of_range_values_is_quarantined_without_panicking() {
    for sql in [
        "UPDATE variants SET blob_len = -5 WHERE id = ?1",
        "UPDATE variants SET key = x'0102' WHERE id = ?1",
        "UPDATE variants SET blob_hash = 'not a blob' WHERE id = ?1",
        "UPDATE variants SET recipe_version = 99999999999 WHERE id = ?1",
        "UPDATE variants SET codec = 300 WHERE id = ?1",
        "UPDATE variants SET trace = 12345 WHERE id = ?1",
        "UPDATE variants SET status = 7 WHERE id = ?1",
        "UPDATE variants SET recipe = x'ff00' WHERE id = ?1",
        "UPDATE variants SET hits = -1 WHERE id = ?1",
        "UPDATE variants SET checksum = x'00' WHERE id = ?1",
    ] {
        assert_tampered_row_is_quarantined(sql, "record");
    }
}

#[test]
fn garbage_over_the_index_is_quarantined_and_a_fresh_index_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".trove");
    let blob;
    {
        let store = Store::open(&root).unwrap();
        blob = store.put_blob(b"survives as an orphan").unwrap();
        store.insert(&new_record(key(1), blob, 100)).unwrap();
        // The WAL outlives the connection; fold it into the file so the garbage below
        // hits the only copy of the index (pages still in the WAL would shadow it).
        raw_index(&store)
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let index = root.join("v1/index.sqlite");
    let mut f = OpenOptions::new().write(true).open(&index).unwrap();
    f.write_all(&[0xA5; 4096]).unwrap();
    drop(f);

    let store = Store::open(&root).unwrap();
    assert!(store.records().unwrap().is_empty());
    assert!(
        quarantined_files(&store).iter().any(|p| p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("index.sqlite.")),
        "{:?}",
        quarantined_files(&store)
    );
    // The fresh index works, and the old blob is garbage for gc.
    let id = store.insert(&new_record(key(1), blob, 200)).unwrap();
    assert_eq!(ids(&store.variants(&key(1)).unwrap()), vec![id]);
}

#[test]
fn an_index_from_a_newer_trove_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let index = dir.path().join("v1/index.sqlite");
    rusqlite::Connection::open(&index)
        .unwrap()
        .execute_batch("PRAGMA user_version = 3")
        .unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::NewerFormat { found, supported }) => assert_eq!((found, supported), (3, 2)),
        other => panic!("expected NewerFormat, got {other:?}"),
    }
    let version: i64 = rusqlite::Connection::open(&index)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
}

// ------------------------------------------------------------------ temp files

#[test]
fn a_temp_file_left_by_a_killed_writer_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.put_blob(b"content").unwrap();
    let shard = store.blob_path(&id.hash).parent().unwrap().to_owned();
    drop(store);
    let dead = shard.join(format!(".tmp-{}-4242-0", hex(&id.hash)));
    fs::write(&dead, b"half writ").unwrap();

    let live = shard.join(format!(".tmp-{}-4243-0", hex(&id.hash)));
    let held = fs::File::create(&live).unwrap();
    held.lock().unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert!(
        !dead.exists(),
        "an unlocked temp file belongs to a dead writer"
    );
    assert!(live.exists(), "a locked temp file belongs to a live writer");
    assert_eq!(store.read_blob(&id).unwrap(), b"content");
    drop(held);
}

// ------------------------------------------------------------------ locks

#[test]
fn a_key_lock_excludes_other_lockers_until_dropped() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let held = store.lock_key(&key(1)).unwrap();
    let s = Arc::clone(&store);
    let other_thread = std::thread::spawn(move || s.try_lock_key(&key(1)).unwrap().is_some());
    assert!(
        !other_thread.join().unwrap(),
        "another thread cannot take it"
    );
    assert!(
        store.try_lock_key(&key(1)).unwrap().is_none(),
        "nor can the same thread"
    );
    assert!(
        store.try_lock_key(&key(2)).unwrap().is_some(),
        "other keys are independent"
    );
    drop(held);
    assert!(store.try_lock_key(&key(1)).unwrap().is_some());
}

#[test]
fn a_blocked_locker_proceeds_once_the_holder_releases() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let held = store.lock_key(&key(1)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s = Arc::clone(&store);
    let waiter = std::thread::spawn(move || {
        let lock = s.lock_key(&key(1)).unwrap();
        tx.send(()).unwrap();
        drop(lock);
    });
    drop(held);
    rx.recv().unwrap();
    waiter.join().unwrap();
}

#[test]
fn a_key_lock_held_by_a_killed_process_is_released() {
    let (_dir, store) = open();
    let path = store.lock_key(&key(1)).unwrap().path().to_owned();
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_EX); \
             print('locked', flush=True); time.sleep(60)",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed to hold a lock from another process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    assert!(
        store.try_lock_key(&key(1)).unwrap().is_none(),
        "the other process holds it"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        store.try_lock_key(&key(1)).unwrap().is_some(),
        "the kernel released it"
    );
    drop(store.lock_key(&key(1)).unwrap());
}

// ------------------------------------------------------------------ verify and gc

#[test]
fn verify_quarantines_a_corrupt_blob_and_a_corrupt_record() {
    let (_dir, store) = open();
    let good = insert(&store, key(1), b"good", 100);
    let rotten_blob = insert(&store, key(2), b"will rot", 100);
    let tampered = insert(&store, key(3), b"tampered", 100);
    let rot = store.blob_path(blake3::hash(b"will rot").as_bytes());
    fs::write(&rot, b"will rut").unwrap();
    raw_index(&store)
        .execute(
            "UPDATE variants SET reason = 'forged' WHERE id = ?1",
            [tampered],
        )
        .unwrap();

    let report = store.verify().unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.blobs, 3);
    assert_eq!(report.quarantined_blobs, 1);
    assert_eq!(report.quarantined_records, 2);
    assert_eq!(report.corrupt.len(), 3, "{:#?}", report.corrupt);
    assert!(!rot.exists());
    assert_eq!(quarantined_files(&store).len(), 1);
    assert_eq!(
        quarantine_reason(&store, tampered).as_deref(),
        Some("record checksum mismatch")
    );
    assert_eq!(
        quarantine_reason(&store, rotten_blob).as_deref(),
        Some("blob corrupt")
    );
    assert_eq!(quarantine_reason(&store, good), None);

    let again = store.verify().unwrap();
    assert!(again.is_clean(), "{:#?}", again.corrupt);
    assert_eq!(again.records, 1);
}

#[test]
fn gc_plan_lists_store_garbage_with_reasons_and_gc_apply_removes_it() {
    let (_dir, store) = open();
    let kept = insert(&store, key(1), b"kept", 100);
    let orphan = store.put_blob(b"orphan").unwrap();
    let bad = insert(&store, key(2), b"quarantined", 100);
    store.quarantine(bad, "invariant failed").unwrap();
    let shard = store.blob_path(&orphan.hash).parent().unwrap().to_owned();
    let temp = shard.join(".tmp-abc-1-1");
    fs::write(&temp, b"partial").unwrap();
    let q = store.quarantine_dir().join("deadbeef.123");
    fs::write(&q, b"rotten").unwrap();

    let plan = store.gc_plan().unwrap();
    let find = |pred: &dyn Fn(&GcItem) -> bool| plan.iter().find(|i| pred(i)).cloned();
    let rec = find(&|i| matches!(i, GcItem::Record { id, .. } if *id == bad)).unwrap();
    assert!(
        rec.reason().contains("invariant failed"),
        "{}",
        rec.reason()
    );
    let ob = find(&|i| i.path() == Some(store.blob_path(&orphan.hash).as_path())).unwrap();
    assert_eq!(ob.bytes(), 6);
    assert!(
        ob.reason().contains("no record references it"),
        "{}",
        ob.reason()
    );
    let qb = find(&|i| {
        i.path()
            == Some(
                store
                    .blob_path(blake3::hash(b"quarantined").as_bytes())
                    .as_path(),
            )
    })
    .unwrap();
    assert!(
        qb.reason().contains("only quarantined records"),
        "{}",
        qb.reason()
    );
    let t = find(&|i| matches!(i, GcItem::TempFile { .. })).unwrap();
    assert_eq!((t.path(), t.bytes()), (Some(temp.as_path()), 7));
    assert!(find(&|i| matches!(i, GcItem::Quarantined { path, .. } if *path == q)).is_some());
    assert_eq!(plan.len(), 5, "{plan:#?}");

    let stats = store.gc_apply(&plan).unwrap();
    assert_eq!(stats.removed, 5);
    assert_eq!(stats.bytes, plan.iter().map(GcItem::bytes).sum::<u64>());
    assert!(!temp.exists() && !q.exists() && !store.has_blob(&orphan));
    assert_eq!(ids(&store.records().unwrap()), vec![kept]);
    assert_eq!(
        store
            .read_blob(&store.variants(&key(1)).unwrap()[0].blob)
            .unwrap(),
        b"kept"
    );
    assert!(store.gc_plan().unwrap().is_empty());
}

#[test]
fn gc_apply_keeps_a_blob_that_became_referenced_after_the_plan() {
    let (_dir, store) = open();
    let blob = store.put_blob(b"soon used").unwrap();
    let plan = store.gc_plan().unwrap();
    assert_eq!(plan.len(), 1);
    store.insert(&new_record(key(1), blob, 1)).unwrap();
    assert_eq!(store.gc_apply(&plan).unwrap().removed, 0);
    assert!(store.has_blob(&blob));
}

#[test]
fn gc_plan_with_a_grace_period_spares_fresh_orphans() {
    let (_dir, store) = open();
    store.put_blob(b"just published").unwrap();
    let plan = store
        .gc_plan_older_than(std::time::Duration::from_secs(3600))
        .unwrap();
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn gc_apply_refuses_paths_outside_the_store() {
    let (dir, store) = open();
    let outside = dir.path().join("precious.txt");
    fs::write(&outside, b"keep me").unwrap();
    let sneaky = store.quarantine_dir().join("../../../precious.txt");
    for item in [
        GcItem::Quarantined {
            path: outside.clone(),
            bytes: 7,
        },
        GcItem::Blob {
            path: sneaky,
            bytes: 7,
            reason: String::new(),
        },
    ] {
        assert!(matches!(
            store.gc_apply(&[item]),
            Err(StoreError::OutsideStore { .. })
        ));
    }
    assert!(outside.exists());
}

// ------------------------------------------------------------------ concurrency

#[test]
fn threads_and_a_second_store_on_the_same_directory_never_see_busy_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let second = Store::open(dir.path()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let store = &store;
            s.spawn(move || {
                for i in 0..25u8 {
                    let k = {
                        let mut k = key(t);
                        k[1] = i;
                        k
                    };
                    let content = format!("thread {t} item {i}");
                    let id = insert(store, k, content.as_bytes(), i64::from(i));
                    let got = store.variants(&k).unwrap();
                    assert_eq!(ids(&got), vec![id]);
                    assert_eq!(store.read_blob(&got[0].blob).unwrap(), content.as_bytes());
                    store.touch(id, 1_000).unwrap();
                }
            });
        }
        for (n, st) in [(100u8, &store), (101u8, &second)] {
            s.spawn(move || {
                for i in 0..40i64 {
                    insert(st, key(200), format!("{n}/{i}").as_bytes(), i);
                    let live = st.variants(&key(200)).unwrap();
                    assert!(!live.is_empty() && live.len() <= 4);
                    let _ = st.records().unwrap();
                }
            });
        }
    });
    let all = second.records().unwrap();
    assert_eq!(all.len(), 8 * 25 + 4);
    assert!(all.iter().all(|r| r.quarantined.is_none()));
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn a_store_follows_an_index_that_another_process_replaced_after_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    insert(&first, key(1), b"before", 100);
    raw_index(&first)
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .open(first.index_path())
        .unwrap();
    f.write_all(&[0x5A; 4096]).unwrap();
    drop(f);

    let second = Store::open(dir.path()).unwrap();
    assert!(second.records().unwrap().is_empty());
    assert!(
        first.variants(&key(1)).unwrap().is_empty(),
        "the first store reopened the fresh index"
    );
    let id = insert(&first, key(2), b"after", 200);
    assert_eq!(ids(&second.variants(&key(2)).unwrap()), vec![id]);
}

#[test]
fn corruption_found_by_a_query_mid_session_switches_to_a_fresh_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    insert(&store, key(1), b"before", 100);
    raw_index(&store)
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .open(store.index_path())
        .unwrap();
    f.write_all(&[0x5A; 8192]).unwrap();
    drop(f);

    assert!(store.variants(&key(1)).unwrap().is_empty());
    // The index goes to quarantine, with its WAL and shared-memory files when they exist.
    let quarantined = quarantined_files(&store);
    assert!(
        quarantined.iter().any(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("index.sqlite.")),
        "{quarantined:?}"
    );
    let id = insert(&store, key(2), b"after", 200);
    assert_eq!(ids(&store.variants(&key(2)).unwrap()), vec![id]);
}
