//! File-backed objects (`Blob`): written into the store's directory, stored by a rename,
//! verified by streaming before they are served, and readable while gc removes them.

mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use support::{Log, Probe, Project};
use trove::{Blob, BuildError, Config, Digest, Engine, GcOptions, Reason};

/// Deterministic content of `len` bytes whose every chunk differs (3 MiB spans several of
/// the store's 1 MiB hash chunks and the 64 KiB copy chunks).
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + u64::from(seed) + (i as u64 >> 16)) as u8)
        .collect()
}

const LEN: usize = 3 * 1024 * 1024 + 17;

/// A recipe that writes the content named by `seed.txt` (its first byte) into a blob, a
/// chunk at a time, as a large producer would.
fn writer(log: &Log) -> Probe<Blob> {
    Probe::new("blob", log, |cx, _args| {
        let seed = cx.read("seed.txt")?[0];
        let mut out = cx.blob_writer()?;
        for chunk in content(LEN, seed).chunks(100_000) {
            out.write_all(chunk).map_err(BuildError::msg)?;
        }
        out.finish()
    })
}

fn arg() -> String {
    "x".to_owned()
}

fn temp_files(p: &Project) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(p.path(".trove/v1/blobs/tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_blob_is_stored_by_a_rename_and_served_from_disk_after_a_streaming_verify() {
    let p = Project::new();
    p.write("seed.txt", [7u8]);
    let log = Log::new();
    let r = writer(&log);
    let expected = content(LEN, 7);

    let e = p.engine();
    let built = e.get_explained(&r, &arg()).unwrap();
    assert_eq!(built.reason, Reason::Built(trove::Why::NoEntry));
    assert_eq!(built.value.len(), LEN as u64);
    assert_eq!(built.value.digest(), Digest::of_bytes(&expected));
    assert_eq!(built.digest, Digest::of_bytes(&expected));
    assert_eq!(built.value.to_vec().unwrap(), expected);
    // The temp file became the blob: one blob holding the bytes, no temp file left.
    let blobs = p.blobs();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert_eq!(std::fs::read(&blobs[0]).unwrap(), expected);
    assert!(temp_files(&p).is_empty(), "{:?}", temp_files(&p));
    let again = e.get_explained(&r, &arg()).unwrap();
    assert_eq!(again.reason, Reason::HitMemory);
    assert!(Arc::ptr_eq(&built.value, &again.value));
    drop(e);

    let e = p.engine();
    let hit = e.get_explained(&r, &arg()).unwrap();
    assert_eq!(hit.reason, Reason::HitDisk);
    assert_eq!(*hit.value, *built.value);
    let mut streamed = Vec::new();
    hit.value.reader().read_to_end(&mut streamed).unwrap();
    assert_eq!(streamed, expected);
    assert_eq!(log.all(), ["blob x"]);
}

#[test]
fn readers_are_independent_of_each_other() {
    let blob = Blob::from_bytes(b"0123456789").unwrap();
    let mut a = blob.reader();
    let mut b = blob.reader();
    let mut two = [0u8; 2];
    a.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"01");
    b.seek(SeekFrom::End(-3)).unwrap();
    let mut rest = String::new();
    b.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "789");
    a.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"23", "a's position is its own");
    assert_eq!(blob.to_vec().unwrap(), b"0123456789");
}

#[test]
fn a_reader_keeps_reading_correct_bytes_after_gc_removes_the_blob() {
    let p = Project::new();
    p.write("seed.txt", [1u8]);
    let log = Log::new();
    let r = writer(&log);
    p.engine().get(&r, &arg()).unwrap();

    let e = p.engine();
    let old = e.get_explained(&r, &arg()).unwrap();
    assert_eq!(old.reason, Reason::HitDisk);
    let old_blob_file = p.blobs();
    let mut reader = old.value.reader();
    let mut first = vec![0u8; 1000];
    reader.read_exact(&mut first).unwrap();

    // The object goes stale, is rebuilt, and gc --stale removes the old variant and its
    // blob (plain gc keeps a variant whose input may come back).
    p.write("seed.txt", [2u8]);
    e.get(&r, &arg()).unwrap();
    let report = e
        .gc(GcOptions {
            stale: true,
            ..GcOptions::default()
        })
        .unwrap();
    assert!(
        report.removals.iter().any(|r| r.what.starts_with("blob ")),
        "{:?}",
        report.removals
    );
    assert!(!old_blob_file[0].exists(), "gc removed the old blob file");

    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    assert_eq!(first, content(LEN, 1));
    assert_eq!(old.value.to_vec().unwrap(), content(LEN, 1));
}

#[test]
fn a_blob_unlinked_while_it_is_served_is_served_whole_or_rebuilt() {
    // The race between a reader opening a blob and gc unlinking it, run for real: every
    // answer is the right bytes, from disk (opened first) or rebuilt (a clean miss).
    let p = Project::new();
    p.write("seed.txt", [3u8]);
    let log = Log::new();
    let r = writer(&log);
    let expected = content(LEN, 3);
    let (mut hits, mut rebuilt) = (0, 0);
    for _ in 0..12 {
        p.engine().get(&r, &arg()).unwrap();
        let blob = p.blobs().pop().unwrap();
        let e = p.engine();
        let unlink = std::thread::spawn(move || {
            let _ = std::fs::remove_file(blob);
        });
        let served = e.get_explained(&r, &arg()).unwrap();
        unlink.join().unwrap();
        assert_eq!(served.value.to_vec().unwrap(), expected);
        match served.reason.to_string() {
            s if s == "hit disk" => hits += 1,
            s if s.starts_with("built: blob corrupt") => rebuilt += 1,
            s => panic!("unexpected answer: {s}"),
        }
    }
    assert_eq!(hits + rebuilt, 12);
}

#[test]
fn a_flipped_byte_in_a_file_blob_is_quarantined_and_rebuilt_never_served() {
    let p = Project::new();
    p.write("seed.txt", [4u8]);
    let log = Log::new();
    let r = writer(&log);
    p.engine().get(&r, &arg()).unwrap();
    let flip = |p: &Project| {
        let blob = &p.blobs()[0];
        let f = std::fs::File::options().write(true).open(blob).unwrap();
        // A byte in the third 1 MiB hash chunk.
        std::os::unix::fs::FileExt::write_at(&f, &[!content(LEN, 4)[2_500_000]], 2_500_000)
            .unwrap();
    };

    // Served: detected before a byte is handed out, quarantined, rebuilt.
    flip(&p);
    let s = p.engine().get_explained(&r, &arg()).unwrap();
    assert!(
        s.reason.to_string().starts_with("built: blob corrupt"),
        "{}",
        s.reason
    );
    assert_eq!(s.value.to_vec().unwrap(), content(LEN, 4));
    assert_eq!(log.all(), ["blob x", "blob x"]);
    let quarantined = std::fs::read_dir(p.path(".trove/v1/quarantine")).unwrap();
    assert_eq!(quarantined.count(), 1);
    assert_eq!(
        p.engine().get_explained(&r, &arg()).unwrap().reason,
        Reason::HitDisk
    );

    // Verified: `verify` finds it and quarantines it; the next request rebuilds.
    flip(&p);
    let report = p.engine().verify().unwrap();
    assert_eq!(report.quarantined_blobs, 1, "{report:?}");
    assert!(!report.is_clean());
    let s = p.engine().get_explained(&r, &arg()).unwrap();
    assert!(s.reason.to_string().starts_with("built: "), "{}", s.reason);
    assert_eq!(s.value.to_vec().unwrap(), content(LEN, 4));
    assert_eq!(log.all(), ["blob x", "blob x", "blob x"]);
}

#[test]
fn without_a_store_a_blob_works_and_leaves_no_file_behind() {
    let p = Project::new();
    p.write("seed.txt", [5u8]);
    // A file where the store's directory should be: the engine runs storeless.
    p.write("not-a-dir", "x");
    let mut config = Config::default_in(p.root());
    config.store.path = p.path("not-a-dir");
    let e = Engine::open(config).unwrap();
    let log = Log::new();
    let blob = e.get(&writer(&log), &arg()).unwrap();
    assert_eq!(blob.to_vec().unwrap(), content(LEN, 5));
    // The file is unnamed: held open, never to be found on disk.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(blob.file().metadata().unwrap().nlink(), 0);
    assert!(e.verify().is_err(), "there is no store to verify");
}

#[test]
fn a_blob_embedded_in_another_object_round_trips_through_the_store() {
    let p = Project::new();
    let log = Log::new();
    let r: Probe<(String, Blob)> = Probe::new("pair", &log, |_cx, args| {
        Ok((args.clone(), Blob::from_bytes(&content(5000, 9)).unwrap()))
    });
    let built = p.engine().get(&r, &arg()).unwrap();
    let hit = p.engine().get_explained(&r, &arg()).unwrap();
    assert_eq!(hit.reason, Reason::HitDisk);
    assert_eq!(*hit.value, *built);
    assert_eq!(hit.value.1.to_vec().unwrap(), content(5000, 9));
}

#[test]
fn a_recipe_returning_another_objects_blob_stores_it_without_a_copy() {
    let p = Project::new();
    p.write("seed.txt", [6u8]);
    let log = Log::new();
    let inner = writer(&log);
    let dependency = inner.clone();
    let outer: Probe<Blob> = Probe::new("alias", &log, move |cx, args| {
        Ok((*cx.get(&dependency, args)?).clone())
    });
    let built = p.engine().get(&outer, &arg()).unwrap();
    assert_eq!(built.to_vec().unwrap(), content(LEN, 6));
    // One content, one blob file, shared by both records.
    assert_eq!(p.blobs().len(), 1);
    let e = p.engine();
    e.register(inner);
    let hit = e.get_explained(&outer, &arg()).unwrap();
    assert_eq!(hit.reason, Reason::HitDisk);
    assert_eq!(*hit.value, *built);
    assert_eq!(log.all(), ["alias x", "blob x"], "one build of each recipe");
}
