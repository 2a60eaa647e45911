//! Record types, the record checksum, and the defensive decoding of index rows.

use rusqlite::Row;
use rusqlite::types::ValueRef;

/// A cache key: blake3 of (recipe name, canonical arguments), computed by the engine.
pub type Key = [u8; 32];

/// The identity of a content-addressed blob: its blake3 and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlobId {
    /// blake3 of the blob's content.
    pub hash: [u8; 32],
    /// Length of the content in bytes.
    pub len: u64,
}

/// One stored variant of a key, as read back from the index.
#[derive(Clone, Debug)]
pub struct Record {
    /// Row id in the index; stable for the life of the row.
    pub id: i64,
    /// The key this variant belongs to.
    pub key: Key,
    /// Recipe name.
    pub recipe: String,
    /// Human-readable arguments, for `status`.
    pub args: String,
    /// The recipe's version when the variant was built.
    pub recipe_version: u32,
    /// Build time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Last time the variant was served, milliseconds since the Unix epoch.
    pub last_used_ms: i64,
    /// How many times the variant was served.
    pub hits: u64,
    /// The object's blob.
    pub blob: BlobId,
    /// The engine's codec tag for the blob.
    pub codec: u8,
    /// The engine's dependency trace, opaque to the store.
    pub trace: Vec<u8>,
    /// Why the variant was built.
    pub reason: String,
    /// `Some(reason)` when the record is quarantined, `None` when it is live.
    pub quarantined: Option<String>,
    /// The index's copy of a small blob's content, as read (not yet verified): what
    /// [`Store::read_blob_of`](crate::Store::read_blob_of) verifies and returns instead of
    /// reading the file. Only [`Store::variants`](crate::Store::variants) fills it.
    pub(crate) inline: Option<Vec<u8>>,
}

/// A record to insert; the store fills in the id, usage counters and checksum.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// The key this variant belongs to.
    pub key: Key,
    /// Recipe name.
    pub recipe: String,
    /// Human-readable arguments, for `status`.
    pub args: String,
    /// The recipe's version.
    pub recipe_version: u32,
    /// Build time, milliseconds since the Unix epoch; also the initial `last_used_ms`.
    pub created_ms: i64,
    /// The object's blob, already published with [`Store::put_blob`](crate::Store::put_blob).
    pub blob: BlobId,
    /// The engine's codec tag.
    pub codec: u8,
    /// The engine's dependency trace, opaque to the store.
    pub trace: Vec<u8>,
    /// Why the variant was built.
    pub reason: String,
}

/// The reason written into rows whose checksum does not match.
pub(crate) const CHECKSUM_MISMATCH: &str = "record checksum mismatch";

/// The immutable fields a checksum covers, borrowed.
pub(crate) struct Signed<'a> {
    pub(crate) key: &'a [u8; 32],
    pub(crate) recipe: &'a str,
    pub(crate) args: &'a str,
    pub(crate) recipe_version: u32,
    pub(crate) created_ms: i64,
    pub(crate) blob: BlobId,
    pub(crate) codec: u8,
    pub(crate) trace: &'a [u8],
    pub(crate) reason: &'a str,
}

impl<'a> Signed<'a> {
    pub(crate) fn of_new(rec: &'a NewRecord) -> Self {
        Signed {
            key: &rec.key,
            recipe: &rec.recipe,
            args: &rec.args,
            recipe_version: rec.recipe_version,
            created_ms: rec.created_ms,
            blob: rec.blob,
            codec: rec.codec,
            trace: &rec.trace,
            reason: &rec.reason,
        }
    }

    pub(crate) fn of_record(rec: &'a Record) -> Self {
        Signed {
            key: &rec.key,
            recipe: &rec.recipe,
            args: &rec.args,
            recipe_version: rec.recipe_version,
            created_ms: rec.created_ms,
            blob: rec.blob,
            codec: rec.codec,
            trace: &rec.trace,
            reason: &rec.reason,
        }
    }

    /// blake3 in derive-key mode over a length-prefixed encoding of every field, so that no
    /// two different records share an encoding (moving bytes from `recipe` to `args` changes
    /// the lengths). Integers are little-endian, fixed width.
    pub(crate) fn checksum(&self) -> [u8; 32] {
        fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        let mut h = blake3::Hasher::new_derive_key("trove-store v1 record");
        field(&mut h, self.key);
        field(&mut h, self.recipe.as_bytes());
        field(&mut h, self.args.as_bytes());
        field(&mut h, &self.recipe_version.to_le_bytes());
        field(&mut h, &self.created_ms.to_le_bytes());
        field(&mut h, &self.blob.hash);
        field(&mut h, &self.blob.len.to_le_bytes());
        field(&mut h, &[self.codec]);
        field(&mut h, self.trace);
        field(&mut h, self.reason.as_bytes());
        *h.finalize().as_bytes()
    }
}

/// A row decoded leniently: every field that could be read, plus what was wrong.
pub(crate) struct Decoded {
    pub(crate) record: Record,
    /// `Some(reason)` when the row is corrupt: a field is out of range or the checksum does
    /// not match. Already-quarantined rows are not re-checked.
    pub(crate) corrupt: Option<String>,
}

/// Decodes a row selected with [`COLUMNS`] without ever panicking: a field of the wrong
/// type or out of range becomes a default value and makes the row corrupt.
pub(crate) fn decode_row(row: &Row<'_>) -> rusqlite::Result<Decoded> {
    let mut problems: Vec<String> = Vec::new();
    let id: i64 = row.get(0)?;
    let key = hash32(row.get_ref(1)?, "key", &mut problems);
    let recipe = text(row.get_ref(2)?, "recipe", &mut problems);
    let args = text(row.get_ref(3)?, "args", &mut problems);
    let recipe_version = int_in(
        row.get_ref(4)?,
        "recipe_version",
        0,
        u32::MAX.into(),
        &mut problems,
    ) as u32;
    let created_ms = int_in(
        row.get_ref(5)?,
        "created_ms",
        i64::MIN,
        i64::MAX,
        &mut problems,
    );
    let last_used_ms = int_in(
        row.get_ref(6)?,
        "last_used_ms",
        i64::MIN,
        i64::MAX,
        &mut problems,
    );
    let hits = int_in(row.get_ref(7)?, "hits", 0, i64::MAX, &mut problems) as u64;
    let blob_hash = hash32(row.get_ref(8)?, "blob_hash", &mut problems);
    let blob_len = int_in(row.get_ref(9)?, "blob_len", 0, i64::MAX, &mut problems) as u64;
    let codec = int_in(row.get_ref(10)?, "codec", 0, u8::MAX.into(), &mut problems) as u8;
    let trace = blob(row.get_ref(11)?, "trace", &mut problems);
    let reason = text(row.get_ref(12)?, "reason", &mut problems);
    let status = int_in(row.get_ref(13)?, "status", 0, 1, &mut problems);
    let status_reason = match row.get_ref(14)? {
        ValueRef::Null => None,
        v => Some(text(v, "status_reason", &mut problems)),
    };
    let checksum = hash32(row.get_ref(15)?, "checksum", &mut problems);

    let quarantined = if status == 1 {
        Some(status_reason.unwrap_or_else(|| "quarantined".to_owned()))
    } else {
        None
    };
    let record = Record {
        id,
        key,
        recipe,
        args,
        recipe_version,
        created_ms,
        last_used_ms,
        hits,
        blob: BlobId {
            hash: blob_hash,
            len: blob_len,
        },
        codec,
        trace,
        reason,
        quarantined,
        inline: None,
    };
    let corrupt = if record.quarantined.is_some() {
        // A quarantined row keeps the reason it was quarantined for.
        None
    } else if !problems.is_empty() {
        Some(format!("record corrupt: {}", problems.join(", ")))
    } else if Signed::of_record(&record).checksum() != checksum {
        Some(CHECKSUM_MISMATCH.to_owned())
    } else {
        None
    };
    Ok(Decoded { record, corrupt })
}

fn hash32(v: ValueRef<'_>, name: &str, problems: &mut Vec<String>) -> [u8; 32] {
    match v {
        ValueRef::Blob(b) if b.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(b);
            out
        }
        ValueRef::Blob(b) => {
            problems.push(format!("{name} is {} bytes, not 32", b.len()));
            [0u8; 32]
        }
        _ => {
            problems.push(format!("{name} is not a blob"));
            [0u8; 32]
        }
    }
}

fn text(v: ValueRef<'_>, name: &str, problems: &mut Vec<String>) -> String {
    match v {
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                problems.push(format!("{name} is not UTF-8"));
                String::from_utf8_lossy(t).into_owned()
            }
        },
        _ => {
            problems.push(format!("{name} is not text"));
            String::new()
        }
    }
}

fn blob(v: ValueRef<'_>, name: &str, problems: &mut Vec<String>) -> Vec<u8> {
    match v {
        ValueRef::Blob(b) => b.to_vec(),
        _ => {
            problems.push(format!("{name} is not a blob"));
            Vec::new()
        }
    }
}

fn int_in(v: ValueRef<'_>, name: &str, min: i64, max: i64, problems: &mut Vec<String>) -> i64 {
    match v {
        ValueRef::Integer(i) if (min..=max).contains(&i) => i,
        ValueRef::Integer(i) => {
            problems.push(format!("{name} {i} is out of range"));
            0
        }
        _ => {
            problems.push(format!("{name} is not an integer"));
            0
        }
    }
}
