//! `DynRecipe<Bytes>` with a private head: a large stored object is served as a verified
//! read-only map of its blob file whose head is a private copy (what the Python package
//! serves large numpy results from).

mod support;

use std::os::unix::fs::{FileExt, PermissionsExt};

use support::{Log, Project};
use trove::{Bytes, DynRecipe, Reason, Why};

const TAIL: usize = 2 << 20;

/// The test's framing: the first 8 bytes are the head's length (little endian).
fn head(first: &[u8]) -> Option<usize> {
    let len = u64::from_le_bytes(first.get(..8)?.try_into().ok()?);
    usize::try_from(len).ok()
}

/// An object of a `head_len`-byte head (its length, then 0xAA) and `tail` bytes.
fn object(head_len: usize, tail: usize) -> Vec<u8> {
    let mut v = (head_len as u64).to_le_bytes().to_vec();
    v.resize(head_len, 0xAA);
    v.extend((0..tail).map(|i| (i % 251) as u8));
    v
}

fn recipe(log: &Log, mapped: bool) -> DynRecipe<Bytes> {
    let log = log.clone();
    let r = DynRecipe::new_bytes("mapped.big", 1, move |_cx, args: &String| {
        log.push(format!("build {args}"));
        let (head_len, tail) = args.split_once(' ').unwrap();
        Ok(Bytes::from(object(
            head_len.parse().unwrap(),
            tail.parse().unwrap(),
        )))
    });
    if mapped { r.with_private_head(head) } else { r }
}

fn args(head_len: usize, tail: usize) -> String {
    format!("{head_len} {tail}")
}

#[test]
fn a_large_object_is_served_as_a_verified_map_with_a_private_head() {
    let p = Project::new();
    let log = Log::new();
    let a = args(10_000, TAIL);
    let built = p.engine().get_explained(&recipe(&log, true), &a).unwrap();
    assert!(!built.value.is_mapped());
    let blobs = p.blobs();
    assert_eq!(blobs.len(), 1);
    assert_eq!(
        std::fs::metadata(&blobs[0]).unwrap().permissions().mode() & 0o777,
        0o444
    );

    let served = p.engine().get_explained(&recipe(&log, true), &a).unwrap();
    assert_eq!(served.reason, Reason::HitDisk);
    assert!(served.value.is_mapped());
    assert!(served.value.private_len() >= 10_000 && served.value.private_len() < 10_000 + 4096 * 4);
    assert_eq!(*served.value, object(10_000, TAIL));
    assert_eq!(log.take(), vec![format!("build {a}")]);

    // The head is this process's copy: a write into the file afterwards (root, or the
    // owner after a chmod: the residual risk) does not reach it. The mapped rest is the
    // file's pages and shows it, which is why blobs are read-only.
    let file = std::fs::OpenOptions::new().write(true).open(&blobs[0]);
    if let Ok(file) = file {
        file.write_at(&[0x55], 100).unwrap();
        file.write_at(&[0x55], (10_000 + TAIL - 1) as u64).unwrap();
        assert_eq!(served.value[100], 0xAA);
        assert_eq!(served.value[10_000 + TAIL - 1], 0x55);
    }
}

#[test]
fn a_flipped_byte_in_the_head_or_the_rest_is_refused_and_rebuilt() {
    for at in [50usize, 10_000 + TAIL / 2] {
        let p = Project::new();
        let log = Log::new();
        let a = args(10_000, TAIL);
        p.engine().get(&recipe(&log, true), &a).unwrap();
        let blob = p.blobs().remove(0);
        std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut data = std::fs::read(&blob).unwrap();
        data[at] ^= 0xFF;
        std::fs::write(&blob, &data).unwrap();

        let served = p.engine().get_explained(&recipe(&log, true), &a).unwrap();
        assert!(
            matches!(&served.reason, Reason::Built(Why::BlobCorrupt(m)) if m.contains("blake3")),
            "{:?}",
            served.reason
        );
        assert_eq!(*served.value, object(10_000, TAIL));
        // The damaged file was quarantined; the rebuild stored a good one.
        let again = p.engine().get_explained(&recipe(&log, true), &a).unwrap();
        assert_eq!(again.reason, Reason::HitDisk);
        assert!(again.value.is_mapped());
        assert_eq!(*again.value, object(10_000, TAIL));
        assert_eq!(log.take().len(), 2);
    }
}

#[test]
fn a_truncated_blob_is_refused_and_rebuilt() {
    let p = Project::new();
    let log = Log::new();
    let a = args(100, TAIL);
    p.engine().get(&recipe(&log, true), &a).unwrap();
    let blob = p.blobs().remove(0);
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
    file.set_len((100 + TAIL / 2) as u64).unwrap();
    drop(file);
    let served = p.engine().get_explained(&recipe(&log, true), &a).unwrap();
    assert!(
        matches!(served.reason, Reason::Built(Why::BlobCorrupt(_))),
        "{:?}",
        served.reason
    );
    assert_eq!(*served.value, object(100, TAIL));
}

#[test]
fn small_objects_no_head_and_recipes_without_one_are_read_into_memory() {
    let p = Project::new();
    let log = Log::new();
    // Too little after the head, a head as long as the object, no private head declared.
    for (a, mapped) in [
        (args(100, 1000), true),
        (args(10_000, 512 << 10), true),
        (args(3 << 20, 100), true),
        (args(100, TAIL), false),
    ] {
        let r = recipe(&log, mapped);
        let built = p.engine().get(&r, &a).unwrap();
        let served = p.engine().get_explained(&r, &a).unwrap();
        assert_eq!(served.reason, Reason::HitDisk);
        assert!(!served.value.is_mapped(), "{a}");
        assert_eq!(*served.value, *built);
    }
    // A plain `DynRecipe` (bytes as a `Vec<u8>`) reads the same store.
    let plain = DynRecipe::new("mapped.big", 1, |_cx, _args: &String| Ok(Vec::new()));
    let served = p.engine().get_explained(&plain, &args(100, TAIL)).unwrap();
    assert_eq!(served.reason, Reason::HitDisk);
    assert_eq!(*served.value, object(100, TAIL));
}
