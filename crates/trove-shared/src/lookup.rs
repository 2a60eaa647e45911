//! Lookups: the "newest" hint of a key (one GET), the key's records (LIST, then a GET
//! each), every record (for status and gc), and the object of a record (inline, or its
//! blob streamed and verified).

use std::io::{self, Write};

use crate::error::{RecordError, SharedError};
use crate::record::{Key, LAYOUT_DIR, VerifiedRecord, newest_path, newest_root, records_dir};
use crate::tier::{MAX_RECORD_LEN, SharedTier, bump};

/// What [`SharedTier::lookup`] found under a key.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// The records that verified, newest first.
    pub records: Vec<VerifiedRecord>,
    /// The records that were refused, each with its reason.
    pub refused: Vec<Refused>,
}

/// A record that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Where it was read.
    pub path: String,
    /// Why it was refused.
    pub error: RecordError,
}

impl SharedTier {
    /// The key's "newest" hint: a signed copy of the record last published under the
    /// key, in one GET (which, for an object up to [`INLINE_MAX`](crate::INLINE_MAX),
    /// carries the object too). At most one record, verified like any record (signed with
    /// our secret, unaltered, naming this key) or refused with its reason; none when the
    /// key has no hint. Only a hint: it may name a variant that does not validate here,
    /// or whose blob gc removed. A caller that cannot use it falls back to
    /// [`lookup`](SharedTier::lookup), which lists the per-variant records.
    pub fn lookup_newest(&self, key: &Key) -> Result<Lookup, SharedError> {
        let path = newest_path(key);
        let mut found = Lookup::default();
        self.read_with(&path, &mut found, |tier, bytes| {
            tier.signer.verify_newest(key, bytes)
        })?;
        Ok(found)
    }

    /// Every "newest" hint in the store (for `gc --shared`, which removes the hints
    /// whose record it removes).
    pub fn all_newest(&self) -> Result<Lookup, SharedError> {
        let mut found = Lookup::default();
        let root = newest_root();
        for shard in self.call("list", &root, |s| s.list(&root))? {
            if !shard.is_dir() {
                continue;
            }
            for entry in self.call("list", &shard.path, |s| s.list(&shard.path))? {
                let Some(key) = parse_key(entry.name()) else {
                    continue;
                };
                self.read_with(&entry.path, &mut found, |tier, bytes| {
                    tier.signer.verify_newest(&key, bytes)
                })?;
            }
        }
        Ok(found)
    }

    /// The record's object into `to`: its inline bytes (verified with the record), or
    /// its blob through [`fetch_blob`](SharedTier::fetch_blob).
    pub fn fetch(
        &self,
        record: &VerifiedRecord,
        to: &mut (dyn Write + Send),
    ) -> Result<(), SharedError> {
        let Some(bytes) = record.inline() else {
            return self.fetch_blob(&record.blob, to);
        };
        to.write_all(bytes).map_err(|source| SharedError::Local {
            what: format!("writing the object {}", record.blob.hex()),
            source,
        })?;
        bump(&self.counters.blobs_fetched, 1);
        bump(&self.counters.bytes_downloaded, record.blob.len);
        Ok(())
    }

    /// The verified records of `key`, newest first, and the refused ones with their
    /// reasons. A record is used only if it is signed with our secret, unaltered, stored
    /// under its own key and name, and in a format this trove reads.
    pub fn lookup(&self, key: &Key) -> Result<Lookup, SharedError> {
        let dir = records_dir(key);
        let entries = self.call("list", &dir, |s| s.list(&dir))?;
        let mut found = Lookup::default();
        for entry in entries.iter().filter(|e| !e.is_dir()) {
            self.read_record(&entry.path, &mut found)?;
        }
        found
            .records
            .sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.path().cmp(b.path())));
        Ok(found)
    }

    fn read_record(&self, path: &str, found: &mut Lookup) -> Result<(), SharedError> {
        self.read_with(path, found, |tier, bytes| tier.signer.verify(path, bytes))
    }

    fn read_with(
        &self,
        path: &str,
        found: &mut Lookup,
        verify: impl FnOnce(&SharedTier, &[u8]) -> Result<VerifiedRecord, RecordError>,
    ) -> Result<(), SharedError> {
        let mut bytes = Limited {
            inner: Vec::new(),
            limit: MAX_RECORD_LEN,
            over: false,
        };
        let got = self.call("get", path, |s| s.get_into(path, &mut bytes));
        let verdict = match got {
            Ok(None) => return Ok(()), // deleted since it was listed
            Ok(Some(_)) => verify(self, &bytes.inner),
            Err(SharedError::Local { .. }) if bytes.over => Err(RecordError::Malformed {
                what: format!("longer than {MAX_RECORD_LEN} bytes"),
            }),
            Err(e) => return Err(e),
        };
        match verdict {
            Ok(record) => {
                bump(&self.counters.records_verified, 1);
                found.records.push(record);
            }
            Err(error) => {
                bump(&self.counters.records_refused, 1);
                tracing::warn!("refused shared record {path}: {error}");
                found.refused.push(Refused {
                    path: path.to_owned(),
                    error,
                });
            }
        }
        Ok(())
    }

    /// Every record in the store (for `trove status --shared` and `gc --shared`).
    pub fn all_records(&self) -> Result<Lookup, SharedError> {
        let mut found = Lookup::default();
        let mut dirs = vec![format!("{LAYOUT_DIR}/records/")];
        while let Some(dir) = dirs.pop() {
            for entry in self.call("list", &dir, |s| s.list(&dir))? {
                if entry.is_dir() {
                    dirs.push(entry.path);
                } else {
                    self.read_record(&entry.path, &mut found)?;
                }
            }
        }
        found
            .records
            .sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.path().cmp(b.path())));
        Ok(found)
    }
}

/// The key (or blob) a file name spells (64 lowercase hex digits).
pub(crate) fn parse_key(name: &str) -> Option<Key> {
    if name.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    (crate::record::hex(&key) == name).then_some(key)
}

/// A `Vec` that refuses to grow past `limit`.
struct Limited {
    inner: Vec<u8>,
    limit: u64,
    over: bool,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.inner.len() as u64 + buf.len() as u64 > self.limit {
            self.over = true;
            return Err(io::Error::other("record too long"));
        }
        self.inner.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
