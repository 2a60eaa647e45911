//! Records: what a variant was built from and which blob it produced, signed with a
//! blake3 keyed hash, and the paths of records and blobs in the store.
//!
//! # Wire format (version 2; version 1 is still read)
//!
//! ```text
//! magic   "TRVS"                      4 bytes
//! version 2 (or 1)                    1 byte
//! length  of the body, u64 LE         8 bytes
//! body    the fields below            `length` bytes
//! key id  of the signing key          8 bytes   blake3::derive_key("trove shared key id v1", secret)[..8]
//! mac     blake3 keyed hash           32 bytes  of everything before it, keyed by
//!                                               blake3::derive_key("trove shared record v1", secret)
//! ```
//!
//! Body fields, in order: key (32 bytes), recipe (u32 LE length + UTF-8), args (u32 + UTF-8),
//! recipe version (u32), created (i64 ms since the epoch), blob blake3 (32 bytes), blob
//! length (u64), codec (u8), trace (u64 length + bytes), reason (u32 + UTF-8); version 2
//! adds the object inline: a tag (u8: 0 none, 1 present) and, when present, the object's
//! bytes (u64 length + bytes), at most [`INLINE_MAX`] of them, which must hash to the blob
//! field (a record whose inline bytes are not its blob is refused as malformed). Integers
//! are little-endian and fixed width: the encoding is the same on every platform. The
//! version byte is under the MAC, so a record cannot be passed off as another version.
//!
//! A version-1 record (written by trove before records carried objects inline) is read as
//! one without inline bytes. A trove that knows only version 1 refuses a version-2 record
//! as `UnknownVersion`: a miss there, never an error.
//!
//! The header's length tells a truncated record (shorter than announced) from an unsigned
//! one (exactly the body, no trailer); the key id tells a foreign record (another secret)
//! from a forged one (our key id, a signature that does not match).

use std::fmt;

use crate::config::Secret;
use crate::error::RecordError;

/// A cache key: blake3 of (recipe name, canonical arguments), computed by the engine.
pub type Key = [u8; 32];

const MAGIC: &[u8; 4] = b"TRVS";
/// The record format this crate writes (it reads this one and version 1).
pub const RECORD_VERSION: u8 = 2;
/// The oldest record format this crate reads.
const OLDEST_VERSION: u8 = 1;
/// Objects up to this length travel inside their record (one GET serves a hit).
pub const INLINE_MAX: u64 = 64 << 10;
const HEADER: usize = 4 + 1 + 8;
const TRAILER: usize = 8 + 32;
/// Every path starts with the layout's version; another version is never read.
pub const LAYOUT_DIR: &str = "v1";

/// A content-addressed blob: its blake3 and its length.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobRef {
    /// blake3 of the content.
    pub hash: [u8; 32],
    /// Length in bytes.
    pub len: u64,
}

impl BlobRef {
    /// The blob's path in the store: `v1/blobs/ab/<64 hex>`.
    pub fn path(&self) -> String {
        let hex = hex(&self.hash);
        format!("{LAYOUT_DIR}/blobs/{}/{hex}", &hex[..2])
    }

    /// The blake3 in hex.
    pub fn hex(&self) -> String {
        hex(&self.hash)
    }

    /// The reference of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobRef {
        BlobRef {
            hash: *blake3::hash(bytes).as_bytes(),
            len: bytes.len() as u64,
        }
    }
}

impl fmt::Debug for BlobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobRef({}.., {} bytes)", &self.hex()[..12], self.len)
    }
}

/// One variant of a key as the shared tier stores it: the fields of the local tier's
/// record that travel between machines. The engine fills it from its own record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRecord {
    /// The key.
    pub key: Key,
    /// The recipe's name.
    pub recipe: String,
    /// Human-readable arguments, for `status`.
    pub args: String,
    /// The recipe's version.
    pub recipe_version: u32,
    /// Build time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The object's blob.
    pub blob: BlobRef,
    /// The engine's codec tag.
    pub codec: u8,
    /// The engine's encoded trace (which carries the recipe's definition); opaque here.
    pub trace: Vec<u8>,
    /// Why the variant was built.
    pub reason: String,
}

impl SharedRecord {
    /// The variant's identity: what it was built from (key, recipe, version, codec and
    /// trace), not what it produced. Two machines that build one key from the same inputs
    /// publish to the same name, and the first writer wins.
    pub fn variant(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("trove shared variant v1");
        field(&mut h, &self.key);
        field(&mut h, self.recipe.as_bytes());
        field(&mut h, &self.recipe_version.to_le_bytes());
        field(&mut h, &[self.codec]);
        field(&mut h, &self.trace);
        *h.finalize().as_bytes()
    }

    /// The record's path: `v1/records/ab/<key hex>/<variant hex>`, the variant cut to
    /// 128 bits. The whole path stays under 112 bytes: some S3 servers (s3s-fs) keep an
    /// object's key in one file name, where 255 bytes must hold it base64-encoded.
    pub fn path(&self) -> String {
        format!("{}{}", records_dir(&self.key), &hex(&self.variant())[..32])
    }

    fn encode_body(&self, version: u8, inline: Option<&[u8]>) -> Vec<u8> {
        let extra = inline.map_or(0, <[u8]>::len);
        let mut out = Vec::with_capacity(128 + self.trace.len() + extra);
        out.extend_from_slice(&self.key);
        put_str(&mut out, &self.recipe);
        put_str(&mut out, &self.args);
        out.extend_from_slice(&self.recipe_version.to_le_bytes());
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&self.blob.hash);
        out.extend_from_slice(&self.blob.len.to_le_bytes());
        out.push(self.codec);
        out.extend_from_slice(&(self.trace.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.trace);
        put_str(&mut out, &self.reason);
        if version >= 2 {
            match inline {
                None => out.push(0),
                Some(bytes) => {
                    out.push(1);
                    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    fn decode_body(
        version: u8,
        body: &[u8],
    ) -> Result<(SharedRecord, Option<Vec<u8>>), RecordError> {
        let mut r = Cursor { rest: body };
        let record = SharedRecord {
            key: r.array()?,
            recipe: r.string()?,
            args: r.string()?,
            recipe_version: u32::from_le_bytes(r.array()?),
            created_ms: i64::from_le_bytes(r.array()?),
            blob: BlobRef {
                hash: r.array()?,
                len: u64::from_le_bytes(r.array()?),
            },
            codec: r.array::<1>()?[0],
            trace: {
                let len = u64::from_le_bytes(r.array()?);
                let len = usize::try_from(len).map_err(|_| malformed("trace length"))?;
                r.take(len)?.to_vec()
            },
            reason: r.string()?,
        };
        let inline = if version >= 2 {
            match r.array::<1>()?[0] {
                0 => None,
                1 => {
                    let len = u64::from_le_bytes(r.array()?);
                    if len > INLINE_MAX || len != record.blob.len {
                        return Err(malformed("inline object of the wrong length"));
                    }
                    let bytes = r.take(usize::try_from(len).expect("under INLINE_MAX"))?;
                    if BlobRef::of(bytes) != record.blob {
                        return Err(malformed("inline object that is not the record's blob"));
                    }
                    Some(bytes.to_vec())
                }
                _ => return Err(malformed("inline tag")),
            }
        } else {
            None
        };
        if !r.rest.is_empty() {
            return Err(malformed("bytes after the last field"));
        }
        Ok((record, inline))
    }
}

/// The directory holding a key's records: `v1/records/ab/<key hex>/`.
pub fn records_dir(key: &Key) -> String {
    let hex = hex(key);
    format!("{LAYOUT_DIR}/records/{}/{hex}/", &hex[..2])
}

/// The directory of the per-key "newest" hints: `v1/newest/`.
pub fn newest_root() -> String {
    format!("{LAYOUT_DIR}/newest/")
}

/// Where the key's "newest" hint lives: `v1/newest/ab/<key hex>`, a signed copy of the
/// record most recently published under the key, overwritten by each publish (see
/// `SharedTier::lookup_newest`). Outside `v1/records/`, so listings of records never
/// see it.
pub fn newest_path(key: &Key) -> String {
    let hex = hex(key);
    format!("{LAYOUT_DIR}/newest/{}/{hex}", &hex[..2])
}

/// A record whose signature, key and name were checked. Only [`Signer::verify`] makes
/// one, so holding one means it may be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRecord {
    record: SharedRecord,
    path: String,
    inline: Option<Vec<u8>>,
}

impl VerifiedRecord {
    /// The record.
    pub fn record(&self) -> &SharedRecord {
        &self.record
    }

    /// Where it was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The object's bytes when the record carries them (version 2, objects up to
    /// [`INLINE_MAX`]): covered by the MAC and checked to hash to the record's blob.
    pub fn inline(&self) -> Option<&[u8]> {
        self.inline.as_deref()
    }

    /// The record, owned.
    pub fn into_record(self) -> SharedRecord {
        self.record
    }
}

impl std::ops::Deref for VerifiedRecord {
    type Target = SharedRecord;
    fn deref(&self) -> &SharedRecord {
        &self.record
    }
}

/// Signs and verifies records with keys derived from the shared secret.
#[derive(Clone)]
pub struct Signer {
    mac_key: [u8; 32],
    key_id: [u8; 8],
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer(key id {})", hex(&self.key_id))
    }
}

impl Signer {
    /// The signer for `secret`.
    pub fn new(secret: &Secret) -> Signer {
        let id = blake3::derive_key("trove shared key id v1", secret.bytes());
        Signer {
            mac_key: blake3::derive_key("trove shared record v1", secret.bytes()),
            key_id: id[..8].try_into().expect("8 of 32 bytes"),
        }
    }

    /// The key id written into every record, hex: it names the secret without revealing it.
    pub fn key_id(&self) -> String {
        hex(&self.key_id)
    }

    /// The signed encoding of `record`, without the object.
    pub fn encode(&self, record: &SharedRecord) -> Vec<u8> {
        self.encode_version(RECORD_VERSION, record, None)
    }

    /// The signed encoding of `record` carrying `object`, which must be its blob's bytes
    /// and at most [`INLINE_MAX`] long (else the object is left out).
    pub fn encode_inline(&self, record: &SharedRecord, object: &[u8]) -> Vec<u8> {
        let fits = object.len() as u64 <= INLINE_MAX && BlobRef::of(object) == record.blob;
        self.encode_version(RECORD_VERSION, record, fits.then_some(object))
    }

    /// The version-1 encoding trove wrote before records carried objects, for tests of
    /// the compatibility with tiers written then.
    #[doc(hidden)]
    pub fn encode_v1(&self, record: &SharedRecord) -> Vec<u8> {
        self.encode_version(1, record, None)
    }

    fn encode_version(&self, version: u8, record: &SharedRecord, inline: Option<&[u8]>) -> Vec<u8> {
        let body = record.encode_body(version, inline);
        let mut out = Vec::with_capacity(HEADER + body.len() + TRAILER);
        out.extend_from_slice(MAGIC);
        out.push(version);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&self.key_id);
        let mac = blake3::keyed_hash(&self.mac_key, &out);
        out.extend_from_slice(mac.as_bytes());
        out
    }

    /// Checks `bytes` read from `path` and returns the record, or says why it is refused:
    /// not a record, an unknown version, truncated, unsigned, foreign, forged, misplaced
    /// (its key or variant is not the one its path names) or malformed.
    pub fn verify(&self, path: &str, bytes: &[u8]) -> Result<VerifiedRecord, RecordError> {
        let body = self.check_signature(bytes)?;
        let (record, inline) = SharedRecord::decode_body(bytes[4], body)?;
        if record.path() != path {
            return Err(RecordError::Misplaced {
                found: hex(&record.key),
                path: path.to_owned(),
            });
        }
        Ok(VerifiedRecord {
            record,
            path: path.to_owned(),
            inline,
        })
    }

    /// Checks a "newest" hint read for `key` as [`verify`](Signer::verify) checks a
    /// record, the key it names included (a hint copied under another key is
    /// misplaced); the record's path is its variant's, where the original lives.
    pub fn verify_newest(&self, key: &Key, bytes: &[u8]) -> Result<VerifiedRecord, RecordError> {
        let body = self.check_signature(bytes)?;
        let (record, inline) = SharedRecord::decode_body(bytes[4], body)?;
        if record.key != *key {
            return Err(RecordError::Misplaced {
                found: hex(&record.key),
                path: newest_path(key),
            });
        }
        Ok(VerifiedRecord {
            path: record.path(),
            record,
            inline,
        })
    }

    fn check_signature<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], RecordError> {
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes[..magic_len] != MAGIC[..magic_len] {
            return Err(RecordError::NotARecord);
        }
        if bytes.len() < HEADER {
            return Err(RecordError::Truncated {
                len: bytes.len(),
                expected: HEADER,
            });
        }
        if !(OLDEST_VERSION..=RECORD_VERSION).contains(&bytes[4]) {
            return Err(RecordError::UnknownVersion {
                found: bytes[4],
                known: RECORD_VERSION,
            });
        }
        let body_len = u64::from_le_bytes(bytes[5..HEADER].try_into().expect("8 bytes"));
        let expected = usize::try_from(body_len)
            .ok()
            .and_then(|n| n.checked_add(HEADER + TRAILER))
            .unwrap_or(usize::MAX);
        let body_end = expected.saturating_sub(TRAILER);
        match bytes.len() {
            n if n == body_end => return Err(RecordError::Unsigned),
            n if n < expected => {
                return Err(RecordError::Truncated { len: n, expected });
            }
            n if n > expected => return Err(malformed("bytes after the signature")),
            _ => {}
        }
        let key_id = &bytes[body_end..body_end + 8];
        if key_id != self.key_id {
            return Err(RecordError::Foreign {
                found: hex(key_id),
                ours: self.key_id(),
            });
        }
        let mac: [u8; 32] = bytes[body_end + 8..].try_into().expect("32 bytes");
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(&self.mac_key, &bytes[..body_end + 8]) != blake3::Hash::from(mac) {
            return Err(RecordError::Forged);
        }
        Ok(&bytes[HEADER..body_end])
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("a record's text fields are under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn malformed(what: &str) -> RecordError {
    RecordError::Malformed {
        what: what.to_owned(),
    }
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < n {
            return Err(malformed("a field runs past the end of the body"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("text that is not UTF-8"))
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
