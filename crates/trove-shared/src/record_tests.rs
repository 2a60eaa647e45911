//! Tests of the record format.
use super::*;

fn signer(secret: &[u8]) -> Signer {
    Signer::new(&Secret::new(secret.to_vec()).unwrap())
}

fn record() -> SharedRecord {
    SharedRecord {
        key: [7; 32],
        recipe: "table".into(),
        args: "\"EUR\"".into(),
        recipe_version: 3,
        created_ms: 1_700_000_000_000,
        blob: BlobRef::of(b"object bytes"),
        codec: 1,
        trace: vec![2, 0, 1, 2, 3],
        reason: "built: no entry".into(),
    }
}

fn verify(s: &Signer, bytes: &[u8]) -> Result<VerifiedRecord, RecordError> {
    s.verify(&record().path(), bytes)
}

#[test]
fn a_signed_record_round_trips() {
    let s = signer(b"team secret, sixteen+ bytes");
    let bytes = s.encode(&record());
    let verified = verify(&s, &bytes).unwrap();
    assert_eq!(verified.record(), &record());
    assert!(verified.path().starts_with("v1/records/07/0707"));
}

#[test]
fn every_bad_record_is_refused_with_its_own_reason() {
    let s = signer(b"team secret, sixteen+ bytes");
    let good = s.encode(&record());
    let body_end = good.len() - TRAILER;

    assert_eq!(verify(&s, &good[..body_end]), Err(RecordError::Unsigned));
    assert!(matches!(
        verify(&s, &good[..body_end - 3]),
        Err(RecordError::Truncated { .. })
    ));
    assert!(matches!(
        verify(&s, &good[..good.len() - 1]),
        Err(RecordError::Truncated { .. })
    ));
    assert!(matches!(
        verify(&s, &good[..7]),
        Err(RecordError::Truncated { .. })
    ));
    let mut forged = good.clone();
    forged[HEADER + 40] ^= 1; // inside the recipe name
    assert_eq!(verify(&s, &forged), Err(RecordError::Forged));
    let foreign = signer(b"another team's secret").encode(&record());
    assert!(matches!(
        verify(&s, &foreign),
        Err(RecordError::Foreign { .. })
    ));
    let mut newer = good.clone();
    newer[4] = 3;
    assert_eq!(
        verify(&s, &newer),
        Err(RecordError::UnknownVersion { found: 3, known: 2 })
    );
    assert_eq!(verify(&s, b"{\"json\": 1}"), Err(RecordError::NotARecord));
    assert_eq!(
        verify(&s, b""),
        Err(RecordError::Truncated {
            len: 0,
            expected: 13
        })
    );
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        verify(&s, &longer),
        Err(RecordError::Malformed { .. })
    ));
}

#[test]
fn a_record_replayed_under_another_key_is_misplaced() {
    let s = signer(b"team secret, sixteen+ bytes");
    let bytes = s.encode(&record());
    let mut other = record();
    other.key = [8; 32];
    assert!(matches!(
        s.verify(&other.path(), &bytes),
        Err(RecordError::Misplaced { .. })
    ));
}

#[test]
fn the_variant_names_the_inputs_not_the_output() {
    let mut later = record();
    later.created_ms += 5;
    later.blob = BlobRef::of(b"another build's bytes");
    assert_eq!(later.variant(), record().variant());
    later.trace.push(9);
    assert_ne!(later.variant(), record().variant());
}

#[test]
fn a_small_object_travels_inside_its_record() {
    let s = signer(b"team secret, sixteen+ bytes");
    let bytes = s.encode_inline(&record(), b"object bytes");
    let verified = verify(&s, &bytes).unwrap();
    assert_eq!(verified.record(), &record());
    assert_eq!(verified.inline(), Some(&b"object bytes"[..]));
    // Not its blob's bytes, or too long: left out, never signed under the wrong blob.
    assert_eq!(
        verify(&s, &s.encode_inline(&record(), b"other"))
            .unwrap()
            .inline(),
        None
    );
    let big = vec![1u8; INLINE_MAX as usize + 1];
    let mut large = record();
    large.blob = BlobRef::of(&big);
    assert_eq!(
        s.verify(&large.path(), &s.encode_inline(&large, &big))
            .unwrap()
            .inline(),
        None
    );
    // A signed record whose inline bytes are not its blob is refused.
    let lying = s.encode_version(RECORD_VERSION, &record(), Some(b"object byteZ"));
    assert!(matches!(
        verify(&s, &lying),
        Err(RecordError::Malformed { .. })
    ));
    // Cut inside the inline bytes: truncated, as any record.
    assert!(matches!(
        verify(&s, &bytes[..bytes.len() - 45]),
        Err(RecordError::Truncated { .. })
    ));
}

#[test]
fn a_version_1_record_is_still_read_and_its_version_is_signed() {
    let s = signer(b"team secret, sixteen+ bytes");
    let old = s.encode_v1(&record());
    assert_eq!(old[4], 1);
    let verified = verify(&s, &old).unwrap();
    assert_eq!(verified.record(), &record());
    assert_eq!(verified.inline(), None);
    // Relabelled as version 2 (or back): the MAC covers the version byte.
    let mut relabelled = old.clone();
    relabelled[4] = 2;
    assert_eq!(verify(&s, &relabelled), Err(RecordError::Forged));
}

#[test]
fn a_newest_hint_is_checked_against_its_key() {
    let s = signer(b"team secret, sixteen+ bytes");
    let bytes = s.encode_inline(&record(), b"object bytes");
    let hint = s.verify_newest(&[7; 32], &bytes).unwrap();
    assert_eq!(hint.path(), record().path());
    assert_eq!(hint.inline(), Some(&b"object bytes"[..]));
    assert!(matches!(
        s.verify_newest(&[8; 32], &bytes),
        Err(RecordError::Misplaced { .. })
    ));
    let foreign = signer(b"another team's secret").encode(&record());
    assert!(matches!(
        s.verify_newest(&[7; 32], &foreign),
        Err(RecordError::Foreign { .. })
    ));
    assert!(newest_path(&[7; 32]).starts_with("v1/newest/07/0707"));
}

#[test]
fn hex_is_lowercase() {
    assert_eq!(hex(&[0, 0xab, 0x1f]), "00ab1f");
}
