//! The per-key "newest" hints and objects inline in their records: a small hit is one
//! request, a large one two; a hint that does not verify is refused, never served; tiers
//! written before hints and inline objects (version-1 records) are still read. Run on
//! each service by the suites.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use trove_shared::{
    CreateIfAbsent, Entry, INLINE_MAX, Put, RecordError, SharedConfig, SharedError, SharedTier,
    Signer, Storage, StorageError, newest_path,
};

use crate::scenarios::Place;
use crate::support::{OTHER_SECRET, SECRET, blob_of, key, noise_file, record, unique};

/// A storage that counts the calls made to another (each is one request to the services
/// here for the objects these tests read: one `GET`, one `GETRANGE`, one `LIST`...).
struct Counting {
    tier: SharedTier,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counting {
    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }

    fn take(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Storage for Counting {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.count("get");
        self.tier.storage().get(path)
    }
    fn get_into(
        &self,
        path: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<u64>, StorageError> {
        self.count("get");
        self.tier.storage().get_into(path, out)
    }
    fn put_if_absent(&self, path: &str, bytes: &[u8]) -> Result<Put, StorageError> {
        self.count("put");
        self.tier.storage().put_if_absent(path, bytes)
    }
    fn put_stream_if_absent(
        &self,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, StorageError> {
        self.count("put");
        self.tier.storage().put_stream_if_absent(path, from, len)
    }
    fn put(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.count("put");
        self.tier.storage().put(path, bytes)
    }
    fn list(&self, dir: &str) -> Result<Vec<Entry>, StorageError> {
        self.count("list");
        self.tier.storage().list(dir)
    }
    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.count("delete");
        self.tier.storage().delete(path)
    }
    fn create_if_absent(&self) -> CreateIfAbsent {
        self.tier.storage().create_if_absent()
    }
    fn describe(&self) -> String {
        self.tier.storage().describe()
    }
}

/// A reader whose every request is counted.
fn counted(place: &dyn Place) -> (Arc<Counting>, SharedTier) {
    let counting = Arc::new(Counting {
        tier: place.tier(SECRET),
        calls: Mutex::default(),
    });
    let config = SharedConfig::new("memory://", SECRET).unwrap();
    let tier = SharedTier::with_storage(counting.clone(), &config).unwrap();
    (counting, tier)
}

fn calls(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

/// A 4 KiB (and a 64 KiB) hit is one GET, the hint carrying the object; a hit over
/// `INLINE_MAX` is two, the hint and the blob. The bytes are the published ones.
pub(crate) fn a_small_hit_is_one_request_a_large_one_two(place: &dyn Place) {
    let ci = place.tier(SECRET);
    let (counting, dev) = counted(place);
    for (len, inline, requests) in [
        (4096, true, 1),
        (INLINE_MAX, true, 1),
        (INLINE_MAX + 1, false, 2),
        (300 << 10, false, 2),
    ] {
        let k = key(&unique("hint"));
        let (mut file, blob) = noise_file(len, len);
        let rec = record(k, blob, 1_000);
        ci.publish(&rec, &mut file).unwrap();

        counting.take();
        let found = dev.lookup_newest(&k).unwrap();
        assert!(found.refused.is_empty(), "{:?}", found.refused);
        let [hint] = &found.records[..] else {
            panic!("{len} bytes: {} hints", found.records.len())
        };
        assert_eq!(hint.record(), &rec);
        assert_eq!(hint.path(), rec.path());
        assert_eq!(hint.inline().is_some(), inline, "{len} bytes");
        let mut local = tempfile::tempfile().unwrap();
        dev.fetch(hint, &mut local).unwrap();
        assert_eq!(blob_of(&mut local), blob, "{len} bytes");
        assert_eq!(counting.take(), calls(&[("get", requests)]), "{len} bytes");

        // The per-variant record carries the object too: the fallback skips the blob.
        let listed = dev.lookup(&k).unwrap();
        assert_eq!(listed.records.len(), 1);
        assert_eq!(listed.records[0].inline().is_some(), inline);
    }
    // No hint: one GET that finds nothing.
    counting.take();
    let none = dev.lookup_newest(&key(&unique("never"))).unwrap();
    assert!(none.records.is_empty() && none.refused.is_empty());
    assert_eq!(counting.take(), calls(&[("get", 1)]));
}

/// What a refused hint's error must be.
type Expected = fn(&RecordError) -> bool;

/// A hint replaced by a foreign, forged, truncated, unsigned or misplaced one (a valid
/// record of another key) is refused with its reason and never returned; the key's record
/// is still found by listing. A later publish of another variant replaces the hint; a
/// publish that loses to an existing record does not.
pub(crate) fn a_bad_hint_is_refused_never_served(place: &dyn Place) {
    let tier = place.tier(SECRET);
    let k = key(&unique("bad-hint"));
    let object = b"the object, 30 bytes of it ...";
    let rec = record(k, trove_shared::BlobRef::of(object), 1_000);
    tier.publish_bytes(&rec, object).unwrap();
    let hint = newest_path(&k);
    let good = tier
        .storage()
        .get(&hint)
        .unwrap()
        .expect("a hint was written");

    let ours = Signer::new(&trove_shared::Secret::new(SECRET.to_vec()).unwrap());
    let theirs = Signer::new(&trove_shared::Secret::new(OTHER_SECRET.to_vec()).unwrap());
    let mut forged = good.clone();
    forged[40] ^= 1;
    let other = record(key(&unique("another key")), rec.blob, 1_000);
    let cases: [(&str, Vec<u8>, Expected); 5] = [
        ("foreign", theirs.encode_inline(&rec, object), |e| {
            matches!(e, RecordError::Foreign { .. })
        }),
        ("forged", forged, |e| *e == RecordError::Forged),
        ("truncated", good[..good.len() - 7].to_vec(), |e| {
            matches!(e, RecordError::Truncated { .. })
        }),
        ("unsigned", good[..good.len() - 40].to_vec(), |e| {
            *e == RecordError::Unsigned
        }),
        ("misplaced", ours.encode_inline(&other, object), |e| {
            matches!(e, RecordError::Misplaced { .. })
        }),
    ];
    for (what, bytes, expected) in cases {
        tier.storage().put(&hint, &bytes).unwrap();
        let found = tier.lookup_newest(&k).unwrap();
        assert!(found.records.is_empty(), "a {what} hint was returned");
        assert_eq!(found.refused.len(), 1, "{what}");
        assert!(
            expected(&found.refused[0].error),
            "{what}: {:?}",
            found.refused
        );
        assert_eq!(found.refused[0].path, hint);
        let listed = tier.lookup(&k).unwrap();
        assert_eq!(listed.records.len(), 1, "{what}");
        assert_eq!(listed.records[0].inline(), Some(&object[..]));
    }

    // A publish that finds the variant taken leaves the hint alone (first writer wins
    // there; the hint copies a record that stands).
    tier.storage().put(&hint, &good).unwrap();
    let mut late = rec.clone();
    late.created_ms = 2_000;
    let later_bytes = b"another build's bytes, same inputs";
    late.blob = trove_shared::BlobRef::of(later_bytes);
    tier.publish_bytes(&late, later_bytes).unwrap();
    let found = tier.lookup_newest(&k).unwrap();
    assert_eq!(found.records[0].record(), &rec);
    // Another variant replaces it.
    let mut next = rec.clone();
    next.trace = b"trace: data/prices.csv blake3 2b4c".to_vec();
    next.created_ms = 3_000;
    tier.publish_bytes(&next, object).unwrap();
    let found = tier.lookup_newest(&k).unwrap();
    assert_eq!(found.records[0].record(), &next);
    assert_eq!(tier.lookup(&k).unwrap().records.len(), 2);
}

/// A tier written before hints and inline objects: version-1 records, no hint. The
/// lookup lists and reads them (without inline bytes) and the blob is fetched as before;
/// a version-1 record copied as a hint is read as one.
pub(crate) fn version_1_records_are_still_read(place: &dyn Place) {
    let tier = place.tier(SECRET);
    let signer = tier.signer().clone();
    let k = key(&unique("v1"));
    let object = vec![9u8; 4096];
    let rec = record(k, trove_shared::BlobRef::of(&object), 1_000);
    let storage = tier.storage();
    storage.put_if_absent(&rec.blob.path(), &object).unwrap();
    storage
        .put_if_absent(&rec.path(), &signer.encode_v1(&rec))
        .unwrap();

    assert!(tier.lookup_newest(&k).unwrap().records.is_empty());
    let found = tier.lookup(&k).unwrap();
    assert!(found.refused.is_empty(), "{:?}", found.refused);
    assert_eq!(found.records.len(), 1);
    assert_eq!(found.records[0].record(), &rec);
    assert_eq!(found.records[0].inline(), None);
    let mut out = Vec::new();
    tier.fetch(&found.records[0], &mut out).unwrap();
    assert_eq!(out, object);

    storage
        .put(&newest_path(&k), &signer.encode_v1(&rec))
        .unwrap();
    let hint = tier.lookup_newest(&k).unwrap();
    assert_eq!(hint.records.len(), 1);
    assert_eq!(hint.records[0].inline(), None);
    // Its blob removed (gc): fetching is `BlobMissing`, which readers take as a miss.
    storage.delete(&rec.blob.path()).unwrap();
    assert!(matches!(
        tier.fetch(&hint.records[0], &mut Vec::new()),
        Err(SharedError::BlobMissing { .. })
    ));
}

/// `all_newest` finds every hint, for gc.
pub(crate) fn every_hint_is_listed(place: &dyn Place) {
    let tier = place.tier(SECRET);
    let keys: Vec<_> = (0..3).map(|_| key(&unique("all-hints"))).collect();
    for (i, k) in keys.iter().enumerate() {
        let object = format!("object {i}");
        let rec = record(*k, trove_shared::BlobRef::of(object.as_bytes()), 1_000);
        tier.publish_bytes(&rec, object.as_bytes()).unwrap();
    }
    let all = tier.all_newest().unwrap();
    assert!(all.refused.is_empty(), "{:?}", all.refused);
    for k in &keys {
        assert!(all.records.iter().any(|r| r.key == *k), "a hint is missing");
    }
    tier.storage().delete(&newest_path(&keys[0])).unwrap();
    let all = tier.all_newest().unwrap();
    assert!(!all.records.iter().any(|r| r.key == keys[0]));
}
