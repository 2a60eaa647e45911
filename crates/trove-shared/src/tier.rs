//! [`SharedTier`]: verified lookups, verified downloads, first-writer-wins publishing and
//! leases, over any [`Storage`], behind the backoff.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::SharedConfig;
use crate::error::{BlobProblem, Remote, SharedError, StorageError};
use crate::health::{Health, RemoteStats};
use crate::lease::{Lease, Leases, Wake};
use crate::record::{BlobRef, INLINE_MAX, Key, SharedRecord, Signer, hex, newest_path};
use crate::remote::RemoteStore;
use crate::rt::Rt;
use crate::storage::{Put, Storage};

/// A record larger than this is refused unread: records hold traces, not objects.
pub const MAX_RECORD_LEN: u64 = 64 << 20;

pub use crate::lookup::{Lookup, Refused};

/// What [`SharedTier::publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// This machine's record was stored.
    Created,
    /// A record of the same variant was there first; it stays and ours was dropped.
    AlreadyPresent,
}

/// The shared tier's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedStats {
    /// The store's calls, failures, timeouts, skips and backoff.
    pub store: RemoteStats,
    /// The lease server's, when one is configured.
    pub leases: Option<RemoteStats>,
    /// Records that verified.
    pub records_verified: u64,
    /// Records refused (unsigned, forged, truncated, foreign, unknown version...).
    pub records_refused: u64,
    /// Blobs downloaded and verified.
    pub blobs_fetched: u64,
    /// Blobs refused because their length or blake3 was wrong.
    pub blobs_corrupt: u64,
    /// Bytes of verified blobs downloaded.
    pub bytes_downloaded: u64,
    /// Records this machine published first.
    pub published: u64,
    /// Publishes that found the variant already there.
    pub already_present: u64,
    /// Bytes of blobs this machine uploaded.
    pub bytes_uploaded: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) records_verified: AtomicU64,
    pub(crate) records_refused: AtomicU64,
    pub(crate) blobs_fetched: AtomicU64,
    pub(crate) blobs_corrupt: AtomicU64,
    pub(crate) bytes_downloaded: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) already_present: AtomicU64,
    pub(crate) bytes_uploaded: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// The team's shared tier: blobs and signed records in an object store, leases in Redis.
/// Blocking, for the synchronous engine; the network work runs on a small tokio runtime
/// the tier owns. `Send + Sync`: share it in an `Arc`.
///
/// ```no_run
/// use std::time::Duration;
/// use trove_shared::{LeaseConfig, SharedConfig, SharedTier, Wake};
///
/// let config = SharedConfig::new("redis://127.0.0.1:6379", b"sixteen bytes or more".to_vec())?
///     .lease(LeaseConfig::new("redis://127.0.0.1:6379", Duration::from_secs(30))?);
/// let tier = SharedTier::open(config)?;
/// let key = [7u8; 32];
/// let found = tier.lookup(&key)?;
/// if let Some(record) = found.records.first() {
///     let mut local = tempfile::tempfile()?;
///     tier.fetch_blob(&record.blob, &mut local)?; // verified before it returns
/// } else if let Some(lease) = tier.lease(&key)? {
///     // build, store locally, then `tier.publish(&record, &mut file)?`
///     lease.release()?;
/// } else {
///     match tier.wait_for(&key, Duration::from_secs(60))? {
///         Wake::Published => { /* look up again */ }
///         Wake::Released | Wake::Vacant => { /* try to take the lease */ }
///         Wake::TimedOut | _ => { /* build locally */ }
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedTier {
    storage: Arc<dyn Storage>,
    pub(crate) signer: Signer,
    read_only: bool,
    health: Health,
    leases: Option<Leases>,
    lease_ttl: Duration,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier")
            .field("store", &self.storage.describe())
            .field("read_only", &self.read_only)
            .field("leases", &self.leases)
            .finish()
    }
}

impl SharedTier {
    /// Opens the tier `config` describes: its store through OpenDAL and, if configured,
    /// its lease server. Nothing is contacted yet, so a remote that is down makes the
    /// first call fail (quickly), not this one.
    pub fn open(config: SharedConfig) -> Result<SharedTier, SharedError> {
        let rt = Arc::new(Rt::new().map_err(|source| SharedError::Local {
            what: "starting the shared tier's runtime".to_owned(),
            source,
        })?);
        let store = RemoteStore::open_on(rt.clone(), &config)?;
        SharedTier::build(Arc::new(store), &config, Some(rt))
    }

    /// A tier over `storage` (another storage, or a [`RemoteStore`] opened by the
    /// caller) instead of the one `config.store` names; the rest of `config` applies.
    pub fn with_storage(
        storage: Arc<dyn Storage>,
        config: &SharedConfig,
    ) -> Result<SharedTier, SharedError> {
        SharedTier::build(storage, config, None)
    }

    fn build(
        storage: Arc<dyn Storage>,
        config: &SharedConfig,
        rt: Option<Arc<Rt>>,
    ) -> Result<SharedTier, SharedError> {
        let leases = match &config.lease {
            None => None,
            Some(lease) => Some(match rt {
                Some(rt) => Leases::open_on(rt, lease, config.timeout, config.backoff)?,
                None => Leases::connect(lease, config.timeout, config.backoff)?,
            }),
        };
        Ok(SharedTier {
            storage,
            signer: Signer::new(&config.secret),
            read_only: config.read_only,
            health: Health::new(config.backoff),
            leases,
            lease_ttl: config.lease.as_ref().map_or(Duration::ZERO, |l| l.ttl),
            counters: Counters::default(),
        })
    }

    /// One store call under the backoff: skipped while backing off, counted.
    pub(crate) fn call<T>(
        &self,
        op: &'static str,
        path: &str,
        f: impl FnOnce(&dyn Storage) -> Result<T, StorageError>,
    ) -> Result<T, SharedError> {
        self.health
            .admit()
            .map_err(|cause| SharedError::Unavailable {
                remote: Remote::Store,
                op,
                target: path.to_owned(),
                cause,
            })?;
        match f(&*self.storage) {
            Ok(v) => {
                self.health.success();
                Ok(v)
            }
            Err(e) => {
                if let StorageError::Unavailable { cause, .. } = &e {
                    self.health.failure(cause);
                }
                Err(SharedError::from_storage(Remote::Store, e))
            }
        }
    }

    /// Downloads the blob into `to`, streaming, and verifies its length and blake3. Only
    /// an `Ok` makes what was written usable: on an error the caller discards it. A blob
    /// longer than `blob.len` is cut off as soon as it runs over. A corrupt blob is
    /// deleted from a writable store, so the next publish replaces it.
    pub fn fetch_blob(
        &self,
        blob: &BlobRef,
        to: &mut (dyn Write + Send),
    ) -> Result<(), SharedError> {
        let path = blob.path();
        let mut sink = Verifying {
            inner: to,
            hasher: blake3::Hasher::new(),
            written: 0,
            limit: blob.len,
            over: false,
        };
        let got = self.call("get", &path, |s| s.get_into(&path, &mut sink));
        let problem = match got {
            Ok(None) => return Err(SharedError::BlobMissing { blob: blob.hex() }),
            Err(SharedError::Local { .. }) if sink.over => BlobProblem::Length {
                expected: blob.len,
                found: sink.written + 1,
            },
            Err(e) => return Err(e),
            Ok(Some(_)) if sink.written != blob.len => BlobProblem::Length {
                expected: blob.len,
                found: sink.written,
            },
            Ok(Some(_)) => {
                let hash = sink.hasher.finalize();
                if hash == blake3::Hash::from(blob.hash) {
                    bump(&self.counters.blobs_fetched, 1);
                    bump(&self.counters.bytes_downloaded, blob.len);
                    return Ok(());
                }
                BlobProblem::Hash {
                    found: hash.to_hex().to_string(),
                }
            }
        };
        bump(&self.counters.blobs_corrupt, 1);
        tracing::warn!("shared blob {path} is corrupt: {problem}");
        if !self.read_only {
            // Its bytes are useless to everyone; removing it lets a publish replace it.
            if let Err(e) = self.call("delete", &path, |s| s.delete(&path)) {
                tracing::warn!("could not remove corrupt shared blob {path}: {e}");
            }
        }
        Err(SharedError::BlobCorrupt {
            blob: blob.hex(),
            problem,
        })
    }

    /// [`fetch_blob`](SharedTier::fetch_blob) into memory, for small objects.
    pub fn fetch_blob_bytes(&self, blob: &BlobRef) -> Result<Vec<u8>, SharedError> {
        let mut out = Vec::with_capacity(usize::try_from(blob.len.min(1 << 20)).unwrap_or(0));
        self.fetch_blob(blob, &mut out)?;
        Ok(out)
    }

    /// Publishes a variant: its blob (read from `blob`, which must hash to `record.blob`;
    /// it is checked first), then its signed record, each created only if absent, then
    /// tells the key's waiters. Blocking; see
    /// [`publish_in_background`](SharedTier::publish_in_background).
    pub fn publish(
        &self,
        record: &SharedRecord,
        blob: &mut File,
    ) -> Result<Published, SharedError> {
        if self.read_only {
            return Err(SharedError::ReadOnly);
        }
        let local = |source| SharedError::Local {
            what: format!("reading the blob {} to publish", record.blob.hex()),
            source,
        };
        blob.seek(SeekFrom::Start(0)).map_err(local)?;
        if record.blob.len <= INLINE_MAX {
            // Small: read once, published inline in its record too (see `publish_bytes`).
            let mut bytes = Vec::with_capacity(usize::try_from(record.blob.len).unwrap_or(0));
            (&mut *blob)
                .take(INLINE_MAX + 1)
                .read_to_end(&mut bytes)
                .map_err(local)?;
            return self.publish_bytes(record, &bytes);
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(&mut *blob).map_err(local)?;
        let found = BlobRef {
            hash: *hasher.finalize().as_bytes(),
            len: hasher.count(),
        };
        check_blob(record, found)?;
        blob.seek(SeekFrom::Start(0)).map_err(local)?;
        let path = record.blob.path();
        let put = self.call("put", &path, |s| {
            s.put_stream_if_absent(&path, blob, record.blob.len)
        })?;
        if put == Put::Created {
            bump(&self.counters.bytes_uploaded, record.blob.len);
        }
        self.publish_record(record, None)
    }

    /// [`publish`](SharedTier::publish) from memory.
    pub fn publish_bytes(
        &self,
        record: &SharedRecord,
        blob: &[u8],
    ) -> Result<Published, SharedError> {
        if self.read_only {
            return Err(SharedError::ReadOnly);
        }
        check_blob(record, BlobRef::of(blob))?;
        let path = record.blob.path();
        if self.call("put", &path, |s| s.put_if_absent(&path, blob))? == Put::Created {
            bump(&self.counters.bytes_uploaded, record.blob.len);
        }
        let inline = (record.blob.len <= INLINE_MAX).then_some(blob);
        self.publish_record(record, inline)
    }

    /// The signed record (carrying `inline`, the object's bytes, when given) created if
    /// absent; when this writer created it, the key's "newest" hint is replaced by a copy.
    /// The blob was published first, so neither ever names a blob that is not there yet.
    fn publish_record(
        &self,
        record: &SharedRecord,
        inline: Option<&[u8]>,
    ) -> Result<Published, SharedError> {
        let path = record.path();
        let bytes = match inline {
            Some(object) => self.signer.encode_inline(record, object),
            None => self.signer.encode(record),
        };
        let put = self.call("put", &path, |s| s.put_if_absent(&path, &bytes))?;
        let published = match put {
            Put::Created => {
                bump(&self.counters.published, 1);
                // Only the writer that won the variant's record writes the hint, so the
                // hint is a copy of a record that stands (first writer wins there); it is
                // only a hint, so failing to write it costs readers a LIST, nothing else.
                let newest = newest_path(&record.key);
                if let Err(e) = self.call("put", &newest, |s| s.put(&newest, &bytes)) {
                    tracing::warn!("could not update the shared hint {newest}: {e}");
                }
                Published::Created
            }
            Put::AlreadyExists => {
                bump(&self.counters.already_present, 1);
                Published::AlreadyPresent
            }
        };
        if let Some(leases) = &self.leases {
            // Waiters also poll the lease, so a lost notification only delays them.
            if let Err(e) = leases.notify_published(&hex(&record.key)) {
                tracing::debug!("could not notify the waiters of {}: {e}", hex(&record.key));
            }
        }
        Ok(published)
    }

    /// Publishes on a thread of its own, so the caller's answer is never delayed; the
    /// handle tells how it went.
    pub fn publish_in_background(
        self: &Arc<Self>,
        record: SharedRecord,
        blob: PathBuf,
    ) -> PublishHandle {
        let tier = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("trove-upload".to_owned())
            .spawn(move || {
                let mut file = File::open(&blob).map_err(|source| SharedError::Local {
                    what: format!("opening {} to publish", blob.display()),
                    source,
                })?;
                tier.publish(&record, &mut file)
            });
        match spawned {
            Ok(thread) => PublishHandle { state: Ok(thread) },
            Err(source) => PublishHandle {
                state: Err(Some(SharedError::Local {
                    what: "starting an upload thread".to_owned(),
                    source,
                })),
            },
        }
    }

    /// Takes the lease of `key` for the configured ttl, or `None` when another machine
    /// holds it (then [`wait_for`](SharedTier::wait_for) it).
    pub fn lease(&self, key: &Key) -> Result<Option<Lease>, SharedError> {
        let leases = self.leases.as_ref().ok_or(SharedError::NoLeases)?;
        leases.acquire(&hex(key), self.lease_ttl)
    }

    /// Waits at most `max` for the holder of `key`'s lease to publish or give it up.
    pub fn wait_for(&self, key: &Key, max: Duration) -> Result<Wake, SharedError> {
        let leases = self.leases.as_ref().ok_or(SharedError::NoLeases)?;
        leases.wait(&hex(key), max)
    }

    /// The lease server, if configured.
    pub fn leases(&self) -> Option<&Leases> {
        self.leases.as_ref()
    }

    /// The storage underneath (for status, gc and tests).
    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// The signer (its key id names the secret in messages).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The counters.
    pub fn stats(&self) -> SharedStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SharedStats {
            store: self.health.stats(),
            leases: self.leases.as_ref().map(Leases::stats),
            records_verified: load(&c.records_verified),
            records_refused: load(&c.records_refused),
            blobs_fetched: load(&c.blobs_fetched),
            blobs_corrupt: load(&c.blobs_corrupt),
            bytes_downloaded: load(&c.bytes_downloaded),
            published: load(&c.published),
            already_present: load(&c.already_present),
            bytes_uploaded: load(&c.bytes_uploaded),
        }
    }
}

fn check_blob(record: &SharedRecord, found: BlobRef) -> Result<(), SharedError> {
    if found.len != record.blob.len {
        return Err(SharedError::BlobMismatch {
            problem: BlobProblem::Length {
                expected: record.blob.len,
                found: found.len,
            },
        });
    }
    if found.hash != record.blob.hash {
        return Err(SharedError::BlobMismatch {
            problem: BlobProblem::Hash { found: found.hex() },
        });
    }
    Ok(())
}

/// A publish running in the background.
#[derive(Debug)]
pub struct PublishHandle {
    state: Result<JoinHandle<Result<Published, SharedError>>, Option<SharedError>>,
}

impl PublishHandle {
    /// Whether it has finished.
    pub fn is_finished(&self) -> bool {
        self.state.as_ref().map_or(true, JoinHandle::is_finished)
    }

    /// Waits for it and returns how it went.
    pub fn wait(self) -> Result<Published, SharedError> {
        match self.state {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(e.expect("the error is taken once")),
        }
    }
}

/// Hashes what passes through and refuses to pass more than `limit` bytes.
struct Verifying<'a> {
    inner: &'a mut (dyn Write + Send),
    hasher: blake3::Hasher,
    written: u64,
    limit: u64,
    over: bool,
}

impl Write for Verifying<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.over = true;
            return Err(io::Error::other("longer than its record says"));
        }
        self.inner.write_all(buf)?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
