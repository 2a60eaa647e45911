//! Records: what a variant was built from and which blob it produced, signed with a
//! blake3 keyed hash, and the paths of records and blobs in the store.
//!
//! # Wire format (version 1)
//!
//! ```text
//! magic   "TRVS"                      4 bytes
//! version 1                           1 byte
//! length  of the body, u64 LE         8 bytes
//! body    the fields below            `length` bytes
//! key id  of the signing key          8 bytes   blake3::derive_key("trove shared key id v1", secret)[..8]
//! mac     blake3 keyed hash           32 bytes  of everything before it, keyed by
//!                                               blake3::derive_key("trove shared record v1", secret)
//! ```
//!
//! Body fields, in order: key (32 bytes), recipe (u32 LE length + UTF-8), args (u32 + UTF-8),
//! recipe version (u32), created (i64 ms since the epoch), blob blake3 (32 bytes), blob
//! length (u64), codec (u8), trace (u64 length + bytes), reason (u32 + UTF-8). Integers are
//! little-endian and fixed width: the encoding is the same on every platform.
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
/// The record format this crate writes and reads.
pub const RECORD_VERSION: u8 = 1;
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

    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.trace.len());
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
        out
    }

    fn decode_body(body: &[u8]) -> Result<SharedRecord, RecordError> {
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
        if !r.rest.is_empty() {
            return Err(malformed("bytes after the last field"));
        }
        Ok(record)
    }
}

/// The directory holding a key's records: `v1/records/ab/<key hex>/`.
pub fn records_dir(key: &Key) -> String {
    let hex = hex(key);
    format!("{LAYOUT_DIR}/records/{}/{hex}/", &hex[..2])
}

/// A record whose signature, key and name were checked. Only [`Signer::verify`] makes
/// one, so holding one means it may be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRecord {
    record: SharedRecord,
    path: String,
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

    /// The signed encoding of `record`.
    pub fn encode(&self, record: &SharedRecord) -> Vec<u8> {
        let body = record.encode_body();
        let mut out = Vec::with_capacity(HEADER + body.len() + TRAILER);
        out.extend_from_slice(MAGIC);
        out.push(RECORD_VERSION);
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
        let record = SharedRecord::decode_body(body)?;
        if record.path() != path {
            return Err(RecordError::Misplaced {
                found: hex(&record.key),
                path: path.to_owned(),
            });
        }
        Ok(VerifiedRecord {
            record,
            path: path.to_owned(),
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
        if bytes[4] != RECORD_VERSION {
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
mod tests {
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
        newer[4] = 2;
        assert_eq!(
            verify(&s, &newer),
            Err(RecordError::UnknownVersion { found: 2, known: 1 })
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
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 0xab, 0x1f]), "00ab1f");
    }
}
