//! What `gc --shared` needs to find orphan blobs on every service: every blob listed with
//! its length, and the marks of blobs found unnamed kept between collections. Run on each
//! service by the suites.

use std::collections::BTreeMap;

use trove_shared::{BlobRef, orphan_marks_path};

use crate::scenarios::Place;
use crate::support::{SECRET, key, record, unique};

pub(crate) fn every_blob_is_listed_and_orphan_marks_are_kept(place: &dyn Place) {
    let tier = place.tier(SECRET);
    // A published variant's blob, and a blob alone (a publish cut before its record).
    let object = unique("a published object");
    let published = BlobRef::of(object.as_bytes());
    let rec = record(key(&unique("orphans")), published, 1_000);
    tier.publish_bytes(&rec, object.as_bytes()).unwrap();
    let stray = unique("a blob whose record was never written");
    let alone = BlobRef::of(stray.as_bytes());
    tier.storage()
        .put_if_absent(&alone.path(), stray.as_bytes())
        .unwrap();

    let blobs = tier.all_blobs().unwrap();
    for blob in [published, alone] {
        let listed = blobs.iter().find(|b| b.hash == blob.hash);
        let listed = listed.unwrap_or_else(|| panic!("{} is not listed", blob.hex()));
        assert_eq!(listed.path(), blob.path());
        assert!(
            listed.len.is_none_or(|len| len == blob.len),
            "{listed:?} against {}",
            blob.len
        );
    }

    // Marks are replaced whole, read back, and gone once there are none.
    let marks = BTreeMap::from([(alone.hash, 1_700_000_000_000_i64), (published.hash, 7)]);
    tier.set_orphan_marks(&marks).unwrap();
    assert_eq!(tier.orphan_marks().unwrap(), marks);
    let fewer = BTreeMap::from([(alone.hash, 42_i64)]);
    tier.set_orphan_marks(&fewer).unwrap();
    assert_eq!(tier.orphan_marks().unwrap(), fewer);
    tier.set_orphan_marks(&BTreeMap::new()).unwrap();
    assert!(tier.orphan_marks().unwrap().is_empty());
    assert_eq!(tier.storage().get(&orphan_marks_path()).unwrap(), None);
    // Clearing marks that are not there is no error.
    tier.set_orphan_marks(&BTreeMap::new()).unwrap();
    // Marks that are not ours (damaged, another format) are none, never an error.
    tier.storage()
        .put(&orphan_marks_path(), b"something else\nzz 12\n")
        .unwrap();
    assert!(tier.orphan_marks().unwrap().is_empty());
    tier.storage().delete(&orphan_marks_path()).unwrap();
}
