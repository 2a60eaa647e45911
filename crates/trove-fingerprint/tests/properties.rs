//! Property tests: the key encoding (equal arguments, equal key; different arguments,
//! different key) and the file fingerprint rules (any content change is seen, whatever
//! the metadata says; an unchanged file is never reported changed).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, FileTimes};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde::Serialize;
use trove_fingerprint::{FileCheck, check_file, fingerprint_file, key_of};

#[derive(Serialize, Clone, Debug, PartialEq)]
struct Args {
    name: String,
    year: u32,
    scale: f64,
    tags: Vec<String>,
    extra: Option<i64>,
    weights: BTreeMap<String, u16>,
}

fn args() -> impl Strategy<Value = Args> {
    (
        ".{0,12}",
        any::<u32>(),
        any::<f64>(),
        proptest::collection::vec(".{0,6}", 0..4),
        any::<Option<i64>>(),
        proptest::collection::btree_map(".{0,4}", any::<u16>(), 0..4),
    )
        .prop_map(|(name, year, scale, tags, extra, weights)| Args {
            name,
            year,
            scale,
            tags,
            extra,
            weights,
        })
}

/// Equality as the key promises it: NaN equals NaN (one canonical NaN), -0.0 is not 0.0.
fn same(a: &Args, b: &Args) -> bool {
    let f = |x: f64, y: f64| (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits();
    a.name == b.name
        && a.year == b.year
        && f(a.scale, b.scale)
        && a.tags == b.tags
        && a.extra == b.extra
        && a.weights == b.weights
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn equal_arguments_give_equal_keys(a in args()) {
        let copy = a.clone();
        prop_assert_eq!(key_of("r", &a).unwrap(), key_of("r", &copy).unwrap());
        // A HashMap built in another order encodes like the sorted map.
        let forward: HashMap<String, u16> = a.weights.clone().into_iter().collect();
        let backward: HashMap<String, u16> = a.weights.clone().into_iter().rev().collect();
        prop_assert_eq!(key_of("r", &forward).unwrap(), key_of("r", &backward).unwrap());
        prop_assert_eq!(key_of("r", &forward).unwrap(), key_of("r", &a.weights).unwrap());
    }

    #[test]
    fn different_arguments_give_different_keys(a in args(), b in args()) {
        prop_assume!(!same(&a, &b));
        prop_assert_ne!(key_of("r", &a).unwrap(), key_of("r", &b).unwrap());
    }

    #[test]
    fn the_recipe_name_is_part_of_the_key(a in args(), r1 in "[a-z]{1,8}", r2 in "[a-z]{1,8}") {
        prop_assume!(r1 != r2);
        prop_assert_ne!(key_of(&r1, &a).unwrap(), key_of(&r2, &a).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the new content and whatever mtime is put back (`touch -d`, `cp -p`), a
    /// changed content is reported changed, and an unchanged one never is.
    #[test]
    fn a_content_change_is_always_seen_whatever_the_metadata(
        old in proptest::collection::vec(any::<u8>(), 0..64),
        new in proptest::collection::vec(any::<u8>(), 0..64),
        restore_mtime in any::<bool>(),
        replace_file in any::<bool>(),
        age_s in 0u64..100_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &old).unwrap();
        let past = SystemTime::now() - Duration::from_secs(age_s);
        File::options().write(true).open(&path).unwrap()
            .set_times(FileTimes::new().set_modified(past)).unwrap();
        let (recorded, stable) = fingerprint_file(&path).unwrap();
        prop_assert!(stable);
        if replace_file {
            let tmp = dir.path().join("tmp");
            std::fs::write(&tmp, &new).unwrap();
            if restore_mtime {
                File::options().write(true).open(&tmp).unwrap()
                    .set_times(FileTimes::new().set_modified(past)).unwrap();
            }
            std::fs::rename(&tmp, &path).unwrap();
        } else {
            std::fs::write(&path, &new).unwrap();
            if restore_mtime {
                File::options().write(true).open(&path).unwrap()
                    .set_times(FileTimes::new().set_modified(past)).unwrap();
            }
        }
        let check = check_file(&recorded, &path).unwrap();
        if old == new {
            prop_assert!(!matches!(check, FileCheck::Changed(_)), "{:?}", check);
        } else {
            prop_assert!(matches!(check, FileCheck::Changed(_)), "{:?}", check);
        }
    }
}
