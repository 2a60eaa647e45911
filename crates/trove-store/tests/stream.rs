//! Streamed blobs: a temp file written in place, published by a rename, opened and
//! verified by streaming.

use std::fs;
use std::io::{Read, Write};

use trove_store::{GcItem, Store, StoreError};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".trove")).unwrap();
    (dir, store)
}

/// 2.5 MiB: three of the store's 1 MiB hash chunks, the last one partial.
fn content() -> Vec<u8> {
    (0..(5u32 << 19)).map(|i| (i % 253) as u8).collect()
}

fn same_inode(a: &fs::File, b: &fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (a.metadata().unwrap(), b.metadata().unwrap());
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[test]
fn a_temp_blob_is_published_by_a_rename_and_opened_verified() {
    let (_dir, store) = open();
    let mut temp = store.temp_blob().unwrap();
    let temp_path = temp.path().unwrap().to_owned();
    assert!(temp_path.starts_with(store.format_dir().join("blobs/tmp")));
    temp.file().write_all(&content()).unwrap();
    let written = temp.reader().try_clone().unwrap();
    let id = temp.seal().unwrap();
    assert_eq!(id.hash, *blake3::hash(&content()).as_bytes());
    assert_eq!(id.len, content().len() as u64);

    assert_eq!(store.put_blob_file(temp).unwrap(), id);
    assert!(!temp_path.exists(), "the temp file was renamed, not copied");
    let opened = store.open_blob(&id).unwrap();
    assert!(
        same_inode(&opened, &written),
        "the published blob is the file that was written"
    );
    let mut read = Vec::new();
    (&opened).read_to_end(&mut read).unwrap();
    assert_eq!(read, content());
    assert_eq!(store.read_blob(&id).unwrap(), content());
}

#[test]
fn publishing_content_the_store_has_already_removes_the_temp_file() {
    let (_dir, store) = open();
    let first = store.put_blob(&content()).unwrap();
    let temp = store.temp_blob().unwrap();
    let temp_path = temp.path().unwrap().to_owned();
    temp.file().write_all(&content()).unwrap();
    assert_eq!(store.put_blob_file(temp).unwrap(), first);
    assert!(!temp_path.exists());
    assert_eq!(store.read_blob(&first).unwrap(), content());
}

#[test]
fn a_dropped_temp_blob_leaves_nothing_and_a_live_one_is_not_garbage() {
    let (_dir, store) = open();
    let temp = store.temp_blob().unwrap();
    let path = temp.path().unwrap().to_owned();
    temp.file().write_all(b"in flight").unwrap();
    let plan = store.gc_plan().unwrap();
    assert!(
        !plan.iter().any(|i| i.path() == Some(path.as_path())),
        "a live writer's temp file is not garbage: {plan:?}"
    );
    drop(temp);
    assert!(!path.exists());
}

#[test]
fn a_dead_writers_streamed_temp_file_is_garbage() {
    let (dir, store) = open();
    // A temp file nobody holds a lock on: its writer died.
    let tmp = store.format_dir().join("blobs/tmp");
    fs::create_dir_all(&tmp).unwrap();
    let dead = tmp.join(".tmp-stream-1-1");
    fs::write(&dead, b"half an object").unwrap();
    let plan = store.gc_plan().unwrap();
    assert!(
        plan.iter()
            .any(|i| matches!(i, GcItem::TempFile { path, .. } if *path == dead)),
        "{plan:?}"
    );
    drop(store);
    // Opening the store cleans it up too.
    let _store = Store::open(&dir.path().join(".trove")).unwrap();
    assert!(!dead.exists());
}

#[test]
fn opening_a_corrupt_blob_quarantines_it() {
    let (_dir, store) = open();
    let id = store.put_blob(&content()).unwrap();
    let path = store.blob_path(&id.hash);
    let f = fs::File::options().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, &[0xff ^ content()[2_200_000]], 2_200_000).unwrap();
    match store.open_blob(&id) {
        Err(StoreError::CorruptBlob { reason, .. }) => {
            assert!(reason.contains("blake3"), "{reason}")
        }
        other => panic!("expected a corrupt blob, got {other:?}"),
    }
    assert!(!path.exists(), "moved to quarantine");
    assert_eq!(fs::read_dir(store.quarantine_dir()).unwrap().count(), 1);
    assert!(matches!(
        store.open_blob(&id),
        Err(StoreError::MissingBlob { .. })
    ));
}

#[test]
fn an_unlinked_temp_blob_stays_readable_and_cannot_be_published() {
    let (_dir, store) = open();
    let mut temp = store.temp_blob().unwrap();
    let path = temp.path().unwrap().to_owned();
    temp.unlink().unwrap();
    assert!(!path.exists());
    assert!(temp.path().is_none());
    temp.file().write_all(b"unnamed").unwrap();
    let id = temp.seal().unwrap();
    assert_eq!(id.len, 7);
    let mut read = String::new();
    temp.reader().read_to_string(&mut read).unwrap();
    assert_eq!(read, "unnamed");
    assert!(store.put_blob_file(temp).is_err());
    assert!(!store.has_blob(&id));
}
