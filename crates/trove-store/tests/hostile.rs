//! Hostile store entries: forged and damaged records, giant lengths, planted symlinks and
//! paths outside the store. Each is rejected before its blob is used, and nothing outside
//! the store is written.

use std::fs;
use std::path::{Component, Path};
use std::time::SystemTime;

use rusqlite::params;
use trove_store::{BlobId, Key, NewRecord, Store, StoreError};

const KEY: Key = [0x42; 32];

fn record(blob: BlobId) -> NewRecord {
    NewRecord {
        key: KEY,
        recipe: "table".to_owned(),
        args: "\"2024\"".to_owned(),
        recipe_version: 1,
        created_ms: 1_700_000_000_000,
        blob,
        codec: 0,
        trace: vec![1, 0, 0],
        reason: "built: no entry".to_owned(),
    }
}

/// The record checksum as the store computes it (a forger knows the scheme: it is an
/// integrity check, not a signature).
fn checksum(r: &NewRecord) -> [u8; 32] {
    fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let mut h = blake3::Hasher::new_derive_key("trove-store v1 record");
    field(&mut h, &r.key);
    field(&mut h, r.recipe.as_bytes());
    field(&mut h, r.args.as_bytes());
    field(&mut h, &r.recipe_version.to_le_bytes());
    field(&mut h, &r.created_ms.to_le_bytes());
    field(&mut h, &r.blob.hash);
    field(&mut h, &r.blob.len.to_le_bytes());
    field(&mut h, &[r.codec]);
    field(&mut h, &r.trace);
    field(&mut h, r.reason.as_bytes());
    *h.finalize().as_bytes()
}

/// Writes a row straight into the index, as a forger (or a damaged disk) would.
fn forge(store: &Store, set: &str, value: rusqlite::types::Value) {
    let conn = rusqlite::Connection::open(store.index_path()).unwrap();
    conn.execute(&format!("UPDATE variants SET {set} = ?1"), params![value])
        .unwrap();
}

/// A fresh store holding one record for `KEY` and a second, unrelated blob.
fn store_with_record() -> (tempfile::TempDir, Store, BlobId, BlobId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mine = store.put_blob(b"the object of KEY").unwrap();
    let other = store.put_blob(b"another object!!!").unwrap();
    store.insert(&record(mine)).unwrap();
    (dir, store, mine, other)
}

/// What the store hands out for `KEY`: `Ok(bytes)` when a live variant's blob was read,
/// `Err(why)` when the record or its blob was rejected.
fn serve(store: &Store) -> Result<Vec<u8>, String> {
    let variants = store.variants(&KEY).map_err(|e| e.to_string())?;
    let Some(v) = variants.first() else {
        return Err("record rejected".to_owned());
    };
    store.read_blob(&v.blob).map_err(|e| e.to_string())
}

#[test]
fn forged_and_damaged_records_are_rejected_before_their_blob_is_used() {
    use rusqlite::types::Value;
    let mut cases = 0;
    let mut accepted = 0;
    let mut check = |name: &str, damage: &dyn Fn(&Store, BlobId, BlobId)| {
        let (_dir, store, mine, other) = store_with_record();
        damage(&store, mine, other);
        cases += 1;
        match serve(&store) {
            Ok(bytes) => {
                accepted += 1;
                eprintln!("ACCEPTED {name}: {:?}", String::from_utf8_lossy(&bytes));
            }
            Err(why) => eprintln!("figure: forged record {name} -> {why}"),
        }
    };
    check("blob_hash of another blob, old checksum", &|s, _, other| {
        forge(s, "blob_hash", Value::Blob(other.hash.to_vec()))
    });
    check("blob_len changed, valid checksum", &|s, mine, _| {
        let mut r = record(mine);
        r.blob.len += 1;
        forge(s, "blob_len", Value::Integer(r.blob.len as i64));
        forge(s, "checksum", Value::Blob(checksum(&r).to_vec()));
    });
    check("giant blob_len, valid checksum", &|s, mine, _| {
        let mut r = record(mine);
        r.blob.len = i64::MAX as u64;
        forge(s, "blob_len", Value::Integer(i64::MAX));
        forge(s, "checksum", Value::Blob(checksum(&r).to_vec()));
    });
    check("negative blob_len", &|s, _, _| {
        forge(s, "blob_len", Value::Integer(-5))
    });
    check(
        "blob_hash of a blob that does not exist, valid checksum",
        &|s, mine, _| {
            let mut r = record(mine);
            r.blob.hash = [9; 32];
            forge(s, "blob_hash", Value::Blob(r.blob.hash.to_vec()));
            forge(s, "checksum", Value::Blob(checksum(&r).to_vec()));
        },
    );
    check("blob_hash is a path", &|s, _, _| {
        forge(
            s,
            "blob_hash",
            Value::Text("../../../../etc/passwd".to_owned()),
        )
    });
    check("blob_hash of 33 bytes", &|s, _, _| {
        forge(s, "blob_hash", Value::Blob(vec![0xab; 33]))
    });
    check("key of 31 bytes", &|s, _, _| {
        forge(s, "key", Value::Blob(vec![0x42; 31]))
    });
    check("trace is text", &|s, _, _| {
        forge(s, "trace", Value::Text("x".to_owned()))
    });
    check("recipe_version out of range", &|s, _, _| {
        forge(s, "recipe_version", Value::Integer(1 << 40))
    });
    check("checksum empty", &|s, _, _| {
        forge(s, "checksum", Value::Blob(Vec::new()))
    });
    check("blob content replaced on disk", &|s, mine, _| {
        fs::write(s.blob_path(&mine.hash), b"the object of KEZ").unwrap();
    });
    eprintln!("figure: forged records cases={cases} accepted={accepted}");
    // A record lying about its blob's length does not get the intact blob quarantined.
    let (_dir, store, mine, _) = store_with_record();
    let mut r = record(mine);
    r.blob.len += 1;
    forge(&store, "blob_len", Value::Integer(r.blob.len as i64));
    forge(&store, "checksum", Value::Blob(checksum(&r).to_vec()));
    assert!(serve(&store).is_err());
    assert_eq!(store.read_blob(&mine).unwrap(), b"the object of KEY");
    assert_eq!(accepted, 0);
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let m = fs::symlink_metadata(e.path()).unwrap();
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            fs::read(e.path()).unwrap_or_default(),
            m.modified().unwrap(),
        ));
    }
    out.sort();
    out
}

#[test]
fn symlinks_planted_in_the_store_are_never_followed_for_writing() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    let content = b"the object of KEY";
    // Same length as the blob, different bytes: a length check alone would take it.
    fs::write(&victim, b"precious data!!!!").unwrap();
    let before = snapshot(outside.path());

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let hash = *blake3::hash(content).as_bytes();
    let path = store.blob_path(&hash);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();

    // Publishing replaces the link with the real blob instead of trusting or touching it.
    let id = store.put_blob(content).unwrap();
    assert!(
        !fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(store.read_blob(&id).unwrap(), content);

    // A link planted over a published blob: read, verified, quarantined (the link moves,
    // the file it points at stays), then gc and verify.
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    store.insert(&record(id)).unwrap();
    assert!(matches!(
        store.read_blob(&id),
        Err(StoreError::CorruptBlob { .. })
    ));
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    store.verify().unwrap();
    let plan = store.gc_plan().unwrap();
    store.gc_apply(&plan).unwrap();

    assert_eq!(
        snapshot(outside.path()),
        before,
        "nothing outside the store changed"
    );
    eprintln!("figure: planted symlinks cases=3 written_through=0");
}

#[test]
fn paths_the_store_computes_from_hashes_never_leave_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let blobs = store.format_dir().join("blobs");
    let mut hash = [0u8; 32];
    let mut cases = 0;
    for i in 0..4096u32 {
        // Every first byte, and hashes made of the bytes of `.`, `/` and NUL.
        hash[0] = i as u8;
        hash[1..].fill([b'.', b'/', 0, 0xff][(i / 256 % 4) as usize]);
        hash[5] = (i >> 4) as u8;
        let p = store.blob_path(&hash);
        assert!(p.starts_with(&blobs));
        assert!(!p.components().any(|c| matches!(c, Component::ParentDir)));
        assert_eq!(p.components().count(), blobs.components().count() + 2);
        cases += 1;
    }
    // gc refuses a forged item pointing outside.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, "keep me").unwrap();
    for path in [
        victim.clone(),
        blobs.join("../../../victim"),
        blobs.join("ab/../../../x"),
    ] {
        let item = trove_store::GcItem::Blob {
            path,
            bytes: 1,
            reason: "forged".to_owned(),
        };
        assert!(matches!(
            store.gc_apply(&[item]),
            Err(StoreError::OutsideStore { .. })
        ));
        cases += 1;
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    eprintln!("figure: computed paths cases={cases} outside=0");
}

#[test]
fn a_record_decoder_fed_arbitrary_columns_never_panics() {
    // The fuzz target's entry point, on a few hand-made inputs (the fuzzer does the rest).
    let inputs: [&[u8]; 5] = [
        b"",
        &[4, 32, 1, 2, 3],
        &[
            3, 4, 0xff, 0xfe, 0xfd, 0xfc, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ],
        &[2; 200],
        &[1; 300],
    ];
    for input in inputs {
        if let Some((record, corrupt)) = trove_store::fuzzing::decode_record(input) {
            assert!(
                corrupt.is_some() || record.quarantined.is_some(),
                "random columns are never a live record"
            );
        }
    }
    // The input the fuzzer found first: a row whose status says quarantined.
    let found = [
        0x28, 0x0f, 0, 0x28, 0, 0, 0, 0, 0, 0, 0x28, 0x23, 0x41, 0x60, 0x01,
    ];
    if let Some((record, corrupt)) = trove_store::fuzzing::decode_record(&found) {
        assert!(corrupt.is_some() || record.quarantined.is_some());
    }
}
