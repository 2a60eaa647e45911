//! The canonical encoding, glob bases and the file rules, checked directly.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, FileTimes};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use trove_fingerprint::{
    FileCheck, FileState, check_file, encode, fingerprint_file, glob_base, key_of, read_file,
};

// ---------------------------------------------------------------- canonical encoding

#[test]
fn a_hash_map_encodes_like_a_btree_map_whatever_its_insertion_order() {
    let mut forward = HashMap::new();
    let mut backward = HashMap::new();
    for i in 0..100u32 {
        forward.insert(format!("k{i}"), i);
        backward.insert(format!("k{}", 99 - i), 99 - i);
    }
    let tree: BTreeMap<String, u32> = forward.clone().into_iter().collect();
    assert_eq!(encode(&forward).unwrap(), encode(&backward).unwrap());
    assert_eq!(encode(&forward).unwrap(), encode(&tree).unwrap());
}

#[test]
fn values_of_distinct_types_get_distinct_keys() {
    let keys = [
        key_of("r", &1u8).unwrap(),
        key_of("r", &1u16).unwrap(),
        key_of("r", &1i32).unwrap(),
        key_of("r", &1u64).unwrap(),
        key_of("r", &1.0f64).unwrap(),
        key_of("r", &()).unwrap(),
        key_of("r", &None::<u8>).unwrap(),
        key_of("r", &Some(())).unwrap(),
        key_of("r", &"a").unwrap(),
        key_of("r", &'a').unwrap(),
        key_of("r", &RawBytes(b"a")).unwrap(),
        key_of("r", &vec![1u8]).unwrap(),
        key_of("r", &(1u8,)).unwrap(),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // The recipe name is part of the key.
    assert_ne!(key_of("r", &1u8).unwrap(), key_of("s", &1u8).unwrap());
}

/// Bytes serialized as bytes (not as a sequence of u8).
struct RawBytes<'a>(&'a [u8]);
impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[test]
fn every_nan_encodes_the_same_but_signed_zeros_differ() {
    let quiet = f64::NAN;
    let other = f64::from_bits(0x7ff8_0000_0000_0001);
    let negative = -f64::NAN;
    assert!(other.is_nan() && negative.is_nan());
    assert_eq!(encode(&quiet).unwrap(), encode(&other).unwrap());
    assert_eq!(encode(&quiet).unwrap(), encode(&negative).unwrap());
    assert_eq!(
        encode(&f32::NAN).unwrap(),
        encode(&f32::from_bits(0x7fc0_0001)).unwrap()
    );
    assert_ne!(encode(&0.0f64).unwrap(), encode(&-0.0f64).unwrap());
}

#[test]
fn renaming_a_field_changes_the_key() {
    #[derive(Serialize)]
    struct Before {
        region: String,
    }
    #[derive(Serialize)]
    #[serde(rename = "Before")]
    struct After {
        area: String,
    }
    let a = key_of(
        "r",
        &Before {
            region: "eu".into(),
        },
    )
    .unwrap();
    let b = key_of("r", &After { area: "eu".into() }).unwrap();
    assert_ne!(a, b);
}

#[test]
fn a_sequence_boundary_shift_changes_the_encoding() {
    let a = (vec!["ab".to_owned()], vec!["c".to_owned()]);
    let b = (vec!["a".to_owned()], vec!["bc".to_owned()]);
    assert_ne!(encode(&a).unwrap(), encode(&b).unwrap());
    let c: (Vec<u8>, Vec<u8>) = (vec![1, 2], vec![]);
    let d: (Vec<u8>, Vec<u8>) = (vec![1], vec![2]);
    assert_ne!(encode(&c).unwrap(), encode(&d).unwrap());
}

#[test]
fn the_encoding_is_stable_across_releases() {
    // Pinned bytes: changing them changes every key in every store.
    assert_eq!(encode(&7u16).unwrap(), [1, 8, 7, 0]);
    assert_eq!(
        encode(&"hi").unwrap(),
        [1, 15, 2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']
    );
}

// ---------------------------------------------------------------- glob bases

#[test]
fn a_globs_base_is_its_leading_literal_directories() {
    let cases = [
        ("data/raw/**/*.csv", "data/raw"),
        ("data/*.csv", "data"),
        ("*.csv", ""),
        ("**/*.rs", ""),
        ("src/{a,b}/x.rs", "src"),
        ("src/a?/x.rs", "src"),
        ("src/[ab]/x.rs", "src"),
        ("data/prices.csv", "data"),
        ("prices.csv", ""),
        ("a/b/c/*", "a/b/c"),
    ];
    for (pattern, base) in cases {
        assert_eq!(glob_base(pattern), base, "{pattern}");
    }
}

// ---------------------------------------------------------------- file rules

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
}

/// A fingerprint taken "long ago", so the racy rule does not apply.
fn old_fingerprint(path: &Path) -> FileState {
    let (state, stable) = fingerprint_file(path).unwrap();
    assert!(stable);
    match state {
        FileState::Present { stat, hash, .. } => FileState::Present {
            stat,
            hash,
            taken_ns: stat.mtime_ns.max(stat.ctime_ns) + 10 * trove_fingerprint::RACY_WINDOW_NS,
        },
        other => other,
    }
}

#[test]
fn an_untouched_file_is_unchanged_without_rehashing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "abc").unwrap();
    let state = old_fingerprint(&path);
    assert_eq!(check_file(&state, &path).unwrap(), FileCheck::Unchanged);
}

#[test]
fn new_metadata_over_the_same_content_is_refreshed_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "abc").unwrap();
    let state = old_fingerprint(&path);
    set_mtime(&path, SystemTime::now() + Duration::from_secs(100));
    match check_file(&state, &path).unwrap() {
        FileCheck::Refreshed(new) => {
            assert_eq!(new.hash(), state.hash());
            assert_ne!(new, state);
        }
        other => panic!("expected refreshed, got {other:?}"),
    }
}

#[test]
fn new_content_is_changed_even_with_the_old_mtime_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "abc").unwrap();
    let old = SystemTime::now() - Duration::from_secs(1000);
    set_mtime(&path, old);
    let state = old_fingerprint(&path);
    std::fs::write(&path, "xyz").unwrap();
    set_mtime(&path, old);
    match check_file(&state, &path).unwrap() {
        FileCheck::Changed(new) => assert_ne!(new.hash(), state.hash()),
        other => panic!("expected changed, got {other:?}"),
    }
}

#[test]
fn a_file_created_where_none_was_is_changed_and_a_removed_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let (_, absent, _) = read_file(&path).unwrap();
    assert_eq!(absent, FileState::Absent);
    assert_eq!(check_file(&absent, &path).unwrap(), FileCheck::Unchanged);
    std::fs::write(&path, "now").unwrap();
    assert!(matches!(
        check_file(&absent, &path).unwrap(),
        FileCheck::Changed(FileState::Present { .. })
    ));
    let present = old_fingerprint(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        check_file(&present, &path).unwrap(),
        FileCheck::Changed(FileState::Absent)
    );
}

#[test]
fn a_racy_fingerprint_is_rehashed_even_when_every_stat_field_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "1111").unwrap();
    let (_, state, stable) = read_file(&path).unwrap();
    assert!(stable);
    let FileState::Present { stat, taken_ns, .. } = &state else {
        panic!()
    };
    assert!(stat.is_racy(*taken_ns), "a file written just now is racy");
    // Pretend a same-size write landed in the same tick: same stat, other content. The
    // recorded state claims a hash the content no longer has.
    let lying = FileState::Present {
        stat: *stat,
        hash: trove_fingerprint::Digest::of_bytes(b"2222"),
        taken_ns: *taken_ns,
    };
    assert!(matches!(
        check_file(&lying, &path).unwrap(),
        FileCheck::Changed(_)
    ));
    // The same recorded stat, outside the racy window, would be trusted as is.
    let trusted = FileState::Present {
        stat: *stat,
        hash: trove_fingerprint::Digest::of_bytes(b"2222"),
        taken_ns: stat.mtime_ns.max(stat.ctime_ns) + 10 * trove_fingerprint::RACY_WINDOW_NS,
    };
    assert_eq!(check_file(&trusted, &path).unwrap(), FileCheck::Unchanged);
    // And the honest racy state is refreshed (re-hashed, same content).
    assert!(matches!(
        check_file(&state, &path).unwrap(),
        FileCheck::Refreshed(_)
    ));
}

#[test]
fn read_file_fingerprints_exactly_the_bytes_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "content").unwrap();
    let (bytes, state, stable) = read_file(&path).unwrap();
    assert!(stable);
    assert_eq!(bytes, b"content");
    assert_eq!(
        state.hash(),
        Some(&trove_fingerprint::Digest::of_bytes(b"content"))
    );
}

#[test]
fn a_fifo_is_recorded_as_a_special_file_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a FIFO for reading blocks until a writer comes; neither call may.
    let (bytes, state, _) = trove_fingerprint::read_file(&fifo).unwrap();
    assert!(bytes.is_empty());
    assert_eq!(state.describe(), "a special file");
    let (state, _) = trove_fingerprint::fingerprint_file(&fifo).unwrap();
    assert_eq!(state.describe(), "a special file");
}
