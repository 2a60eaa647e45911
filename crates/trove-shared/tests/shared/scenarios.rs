//! Scenarios every store must pass, run on each service by the suites: memory and a
//! directory here, S3, Redis and WebDAV against real servers.

use std::sync::{Arc, Barrier};

use trove_shared::{
    BlobProblem, BlobRef, CreateIfAbsent, Put, RecordError, SharedError, SharedTier,
};

use crate::support::{OTHER_SECRET, SECRET, blob_of, key, noise_file, record, unique};

/// Makes tiers on one namespace of one store, signing with the given secret.
pub(crate) trait Place: Sync {
    fn tier(&self, secret: &[u8]) -> SharedTier;
}

impl<F: Fn(&[u8]) -> SharedTier + Sync> Place for F {
    fn tier(&self, secret: &[u8]) -> SharedTier {
        self(secret)
    }
}

/// Publishes a `len`-byte object and reads it back on a second tier (another machine):
/// one verified record, a blob that hashes to its name; publishing again keeps the first.
pub(crate) fn round_trip(place: &dyn Place, len: u64) {
    let ci = place.tier(SECRET);
    let dev = place.tier(SECRET);
    let k = key(&unique("round-trip"));
    let (mut file, blob) = noise_file(len, len + 1);
    let rec = record(k, blob, 1_000);
    assert_eq!(
        ci.publish(&rec, &mut file).unwrap(),
        trove_shared::Published::Created
    );

    let found = dev.lookup(&k).unwrap();
    assert!(found.refused.is_empty(), "{:?}", found.refused);
    assert_eq!(found.records.len(), 1);
    assert_eq!(found.records[0].record(), &rec);
    let mut local = tempfile::tempfile().unwrap();
    dev.fetch_blob(&found.records[0].blob, &mut local).unwrap();
    assert_eq!(blob_of(&mut local), blob);
    assert_eq!(dev.stats().bytes_downloaded, len);

    let again = ci.publish(&rec, &mut file).unwrap();
    assert_eq!(again, trove_shared::Published::AlreadyPresent);

    let unknown = dev.lookup(&key(&unique("never published"))).unwrap();
    assert!(unknown.records.is_empty() && unknown.refused.is_empty());
    let missing = BlobRef::of(b"never uploaded");
    assert!(matches!(
        dev.fetch_blob_bytes(&missing),
        Err(SharedError::BlobMissing { .. })
    ));
}

/// A blob with one byte flipped in the store is refused on download, removed, and a new
/// publish restores it.
pub(crate) fn flipped_byte_is_refused(place: &dyn Place) {
    let tier = place.tier(SECRET);
    let k = key(&unique("flip"));
    let bytes = b"an object worth caching".repeat(100);
    let blob = BlobRef::of(&bytes);
    let rec = record(k, blob, 1);
    tier.publish_bytes(&rec, &bytes).unwrap();

    let path = blob.path();
    let mut stored = tier
        .storage()
        .get(&path)
        .unwrap()
        .expect("the blob is stored");
    stored[1234] ^= 0x20;
    tier.storage().delete(&path).unwrap();
    assert_eq!(
        tier.storage().put_if_absent(&path, &stored).unwrap(),
        Put::Created
    );

    let mut out = Vec::new();
    match tier.fetch_blob(&blob, &mut out) {
        Err(SharedError::BlobCorrupt {
            problem: BlobProblem::Hash { .. },
            ..
        }) => {}
        other => panic!("a flipped byte was not refused: {other:?}"),
    }
    assert_eq!(tier.stats().blobs_corrupt, 1);
    // The corrupt blob was removed, so the next publish replaces it.
    assert!(matches!(
        tier.fetch_blob_bytes(&blob),
        Err(SharedError::BlobMissing { .. })
    ));
    tier.publish_bytes(&rec, &bytes).unwrap();
    assert_eq!(tier.fetch_blob_bytes(&blob).unwrap(), bytes);
}

/// A blob longer or shorter than its record says is refused too.
pub(crate) fn wrong_length_is_refused(place: &dyn Place) {
    let tier = place.tier(SECRET);
    let bytes = unique("length").into_bytes();
    let blob = BlobRef::of(&bytes);
    let mut longer = bytes.clone();
    longer.extend_from_slice(b" and more");
    tier.storage().put_if_absent(&blob.path(), &longer).unwrap();
    match tier.fetch_blob_bytes(&blob) {
        Err(SharedError::BlobCorrupt {
            problem: BlobProblem::Length { expected, .. },
            ..
        }) => assert_eq!(expected, blob.len),
        other => panic!("a longer blob was not refused: {other:?}"),
    }
    tier.storage()
        .put_if_absent(&blob.path(), &bytes[..3])
        .unwrap();
    match tier.fetch_blob_bytes(&blob) {
        Err(SharedError::BlobCorrupt {
            problem: BlobProblem::Length { found: 3, .. },
            ..
        }) => {}
        other => panic!("a shorter blob was not refused: {other:?}"),
    }
}

/// Replaces the record at `path` with `bytes`.
fn overwrite(tier: &SharedTier, path: &str, bytes: &[u8]) {
    tier.storage().delete(path).unwrap();
    assert_eq!(
        tier.storage().put_if_absent(path, bytes).unwrap(),
        Put::Created
    );
}

/// Forged, truncated, unsigned and foreign records are refused, each with its reason.
pub(crate) fn bad_records_are_refused(place: &dyn Place) {
    let tier = place.tier(SECRET);
    let k = key(&unique("records"));
    let bytes = b"object".to_vec();
    let rec = record(k, BlobRef::of(&bytes), 7);
    tier.publish_bytes(&rec, &bytes).unwrap();
    let path = rec.path();
    let good = tier.storage().get(&path).unwrap().unwrap();
    let refused = |what: &str| {
        let found = tier.lookup(&k).unwrap();
        assert!(found.records.is_empty(), "{what} was served");
        assert_eq!(found.refused.len(), 1, "{what}");
        assert_eq!(found.refused[0].path, path);
        found.refused[0].error.clone()
    };

    // Forged: the blob digest pointed elsewhere, the signature kept. The digest starts 62
    // bytes into the body (key 32, recipe 4+5, args 4+5, version 4, created 8), after the
    // 13-byte header.
    let mut forged = good.clone();
    forged[13 + 62] ^= 0xff;
    overwrite(&tier, &path, &forged);
    assert_eq!(refused("a forged record"), RecordError::Forged);

    overwrite(&tier, &path, &good[..good.len() - 10]);
    assert!(matches!(
        refused("a truncated record"),
        RecordError::Truncated { .. }
    ));

    overwrite(&tier, &path, &good[..good.len() - 40]);
    assert_eq!(refused("an unsigned record"), RecordError::Unsigned);

    let foreign_tier = place.tier(OTHER_SECRET);
    tier.storage().delete(&path).unwrap();
    foreign_tier.publish_bytes(&rec, &bytes).unwrap();
    assert!(matches!(
        refused("a record signed with another key"),
        RecordError::Foreign { .. }
    ));

    overwrite(&tier, &path, &good);
    let found = tier.lookup(&k).unwrap();
    assert_eq!(found.records.len(), 1);
    assert_eq!(tier.stats().records_refused, 4);
}

/// Two machines publish one variant at the same moment, each with its own build (other
/// bytes, another time): one complete record stays, naming a blob that verifies. Where the
/// store decides atomically, exactly one publisher is told it won.
pub(crate) fn racing_publishes_leave_one_complete_record(place: &dyn Place) {
    for round in 0..4 {
        let k = key(&unique("race"));
        let a = place.tier(SECRET);
        let b = place.tier(SECRET);
        let barrier = Arc::new(Barrier::new(2));
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = [(&a, 1u8), (&b, 2u8)]
                .into_iter()
                .map(|(tier, who)| {
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        let bytes = vec![who; 100_000 + usize::from(who)];
                        let rec = record(k, BlobRef::of(&bytes), i64::from(who));
                        barrier.wait();
                        (tier.publish_bytes(&rec, &bytes).unwrap(), rec)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let found = a.lookup(&k).unwrap();
        assert!(
            found.refused.is_empty(),
            "round {round}: {:?}",
            found.refused
        );
        assert_eq!(found.records.len(), 1, "round {round}");
        let kept = found.records[0].record();
        assert!(
            outcomes.iter().any(|(_, rec)| rec == kept),
            "round {round}: the record is neither publisher's"
        );
        let bytes = b.fetch_blob_bytes(&kept.blob).unwrap();
        assert_eq!(BlobRef::of(&bytes), kept.blob);
        let won = outcomes
            .iter()
            .filter(|(p, _)| *p == trove_shared::Published::Created)
            .count();
        assert!(won >= 1, "round {round}: nobody won");
        if a.storage().create_if_absent() == CreateIfAbsent::Atomic {
            assert_eq!(
                won,
                1,
                "round {round} on {}: {outcomes:?}",
                a.storage().describe()
            );
            let winner = outcomes
                .iter()
                .find(|(p, _)| *p == trove_shared::Published::Created)
                .unwrap();
            assert_eq!(&winner.1, kept, "round {round}");
        }
    }
}

/// A read-only tier reads but never writes; a file that is not the record's blob is
/// never published.
pub(crate) fn read_only_and_mismatched_publishes_are_refused(
    place: &dyn Place,
    read_only: SharedTier,
) {
    let tier = place.tier(SECRET);
    let bytes = b"bytes".to_vec();
    let k = key(&unique("ro"));
    let rec = record(k, BlobRef::of(&bytes), 1);
    assert!(matches!(
        read_only.publish_bytes(&rec, &bytes),
        Err(SharedError::ReadOnly)
    ));
    let (mut other, _) = noise_file(10, 3);
    assert!(matches!(
        tier.publish(&rec, &mut other),
        Err(SharedError::BlobMismatch { .. })
    ));
    assert!(tier.lookup(&k).unwrap().records.is_empty());
    tier.publish_bytes(&rec, &bytes).unwrap();
    assert_eq!(read_only.lookup(&k).unwrap().records.len(), 1);
    assert_eq!(read_only.fetch_blob_bytes(&rec.blob).unwrap(), bytes);
}

/// Variants of one key are listed newest first.
pub(crate) fn variants_come_newest_first(place: &dyn Place) {
    let tier = place.tier(SECRET);
    let k = key(&unique("variants"));
    for (created, trace) in [(5, "a"), (9, "b"), (1, "c")] {
        let bytes = trace.as_bytes().to_vec();
        let mut rec = record(k, BlobRef::of(&bytes), created);
        rec.trace = trace.as_bytes().to_vec();
        tier.publish_bytes(&rec, &bytes).unwrap();
    }
    let found = tier.lookup(&k).unwrap();
    let created: Vec<i64> = found.records.iter().map(|r| r.created_ms).collect();
    assert_eq!(created, [9, 5, 1]);
    let all = tier.all_records().unwrap();
    assert!(all.records.iter().filter(|r| r.key == k).count() == 3);
}
