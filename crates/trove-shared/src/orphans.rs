//! Orphan blobs: content in the store that no record names. A publish writes its blob
//! before its record, so a publisher cut off between the two (killed, its network gone)
//! leaves one, as does a record removed by hand.
//!
//! An unnamed blob is not yet an orphan: its record may be on its way. So `gc --shared`
//! removes a blob only when it has found it unnamed twice, at least a grace period apart
//! ([`ORPHAN_GRACE`] by default): each collection writes the blobs it found unnamed, with
//! when they were first seen so, to [`orphan_marks_path`], and removes those that an
//! earlier collection marked long enough ago and that are still unnamed. A publisher
//! would have to stall between its blob and its record for the whole grace period to lose
//! its blob, and even then nothing wrong is served: its record names a missing blob, a
//! reader misses and builds, and the next publish of the variant uploads the blob again
//! (a publish always puts its blob, if absent, before its record).
//!
//! The marks are not signed: someone who can write them can delete blobs anyway, and a
//! mark only lets gc remove a blob that is unnamed at the time of that collection too.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::lookup::parse_key;
use crate::record::{LAYOUT_DIR, hex};
use crate::{BlobRef, SharedError, SharedTier};

/// How long a blob must have been seen unnamed before `gc --shared` removes it.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10 * 60);

/// Where gc keeps the blobs it found unnamed: one `<64 hex> <ms since the epoch>` line
/// per blob, after a `trove-orphans 1` header.
pub fn orphan_marks_path() -> String {
    format!("{LAYOUT_DIR}/gc/orphans")
}

const HEADER: &str = "trove-orphans 1";

/// A blob in the store, as its listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its blake3 (its name).
    pub hash: [u8; 32],
    /// Its length, when the listing tells it.
    pub len: Option<u64>,
}

impl StoredBlob {
    /// Its path in the store.
    pub fn path(&self) -> String {
        BlobRef {
            hash: self.hash,
            len: 0,
        }
        .path()
    }
}

impl SharedTier {
    /// Every blob in the store (names that are not a blake3 in hex are left out: they
    /// are not trove's).
    pub fn all_blobs(&self) -> Result<Vec<StoredBlob>, SharedError> {
        let root = format!("{LAYOUT_DIR}/blobs/");
        let mut found = Vec::new();
        for shard in self.call("list", &root, |s| s.list(&root))? {
            if !shard.is_dir() {
                continue;
            }
            for entry in self.call("list", &shard.path, |s| s.list(&shard.path))? {
                if entry.is_dir() {
                    continue;
                }
                if let Some(hash) = parse_key(entry.name()) {
                    found.push(StoredBlob {
                        hash,
                        len: entry.len,
                    });
                }
            }
        }
        Ok(found)
    }

    /// The blobs an earlier collection found unnamed, with when that was first seen
    /// (milliseconds since the epoch). Missing marks are none; lines that do not parse
    /// are skipped.
    pub fn orphan_marks(&self) -> Result<BTreeMap<[u8; 32], i64>, SharedError> {
        let path = orphan_marks_path();
        let Some(bytes) = self.call("get", &path, |s| s.get(&path))? else {
            return Ok(BTreeMap::new());
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Ok(BTreeMap::new());
        }
        Ok(lines
            .filter_map(|line| {
                let (name, ms) = line.split_once(' ')?;
                Some((parse_key(name)?, ms.parse().ok()?))
            })
            .collect())
    }

    /// Replaces the marks with `marks` (deletes them when there are none).
    pub fn set_orphan_marks(&self, marks: &BTreeMap<[u8; 32], i64>) -> Result<(), SharedError> {
        let path = orphan_marks_path();
        if marks.is_empty() {
            return self.call("delete", &path, |s| s.delete(&path));
        }
        let mut text = format!("{HEADER}\n");
        for (hash, ms) in marks {
            text.push_str(&format!("{} {ms}\n", hex(hash)));
        }
        self.call("put", &path, |s| s.put(&path, text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_hex_names_of_32_bytes_are_blobs() {
        let hash = *blake3::hash(b"x").as_bytes();
        assert_eq!(parse_key(&hex(&hash)), Some(hash));
        assert_eq!(parse_key(&hex(&hash).to_uppercase()), None);
        assert_eq!(parse_key(&hex(&hash)[..62]), None);
        assert_eq!(parse_key("zz"), None);
    }
}
