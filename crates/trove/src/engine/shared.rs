//! The shared tier on the request path (PRODUCT.md, "How a request is answered", step 3):
//! a key missing from the disk tier is looked up in the team's store; a record that
//! verifies (signed with the team's secret) and whose trace validates here exactly like a
//! local variant's has its blob downloaded and verified into the disk tier, then is
//! served from there (`hit shared`). After a build is stored locally it is uploaded on a
//! thread of its own, never delaying the caller. The lease (the third lock, after the
//! in-process flight and the key's `flock`) makes machines build a key once.
//!
//! A shared tier that is slow, down or refusing costs a request at most `timeout`: the
//! request builds locally, the first failure is logged (once until the tier answers
//! again), every one is counted, and trove-shared's backoff skips the tier for a while.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use trove_config::{Config, SharedSettings};
use trove_fingerprint::Digest;
use trove_shared::{
    BlobRef, Lease, LeaseConfig, SharedConfig, SharedError, SharedRecord, SharedTier, Wake,
};
use trove_store::{NewRecord, Store};

use crate::engine::{Engine, FlightValue, bump};
use crate::local_storage::LocalStorage;
use crate::reason::Why;
use crate::trace::Trace;
use crate::{Error, Recipe};

mod lookup;

/// The shared tier attached to an engine.
pub(crate) struct SharedState {
    /// What the tier is opened with (checked when the engine opens).
    config: SharedConfig,
    /// The tier, opened on first use: its runtime, clients and connections cost a process
    /// whose requests the local tiers answer nothing (`trove run` of a hit).
    opened: OnceLock<Result<Arc<SharedTier>, OpenFailure>>,
    pub(crate) settings: SharedSettings,
    /// Whether the current outage was already reported (cleared when the tier answers);
    /// shared with the uploads, so one outage is said once, not once per direction.
    warned: Arc<AtomicBool>,
    counters: Arc<UploadCounters>,
    uploads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct UploadCounters {
    uploads: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Why the tier could not be opened: a configuration problem (at its place in the file)
/// or anything else (said like an outage).
#[derive(Clone)]
pub(crate) enum OpenFailure {
    Config(trove_config::ConfigError),
    Other(String),
}

impl From<&OpenFailure> for Error {
    fn from(failure: &OpenFailure) -> Error {
        match failure {
            OpenFailure::Config(e) => Error::ConfigFile(e.clone()),
            OpenFailure::Other(e) => Error::SharedTier(e.clone()),
        }
    }
}

/// A lease held on a key while it is built here; released once its object is uploaded
/// (or dropped with it when nothing is stored, which wakes the waiters to take over).
pub(crate) struct Claim(Lease);

impl SharedState {
    /// The tier `config.shared` describes, or `None` when there is none. The secret is
    /// read from the variable `secret_env` names; a missing one, and anything the tier
    /// refuses, is a configuration error at its place in the file.
    pub(crate) fn open(
        config: &Config,
        secret: Option<crate::engine::Secret>,
    ) -> Result<Option<SharedState>, Error> {
        let Some(settings) = config.shared.clone() else {
            return Ok(None);
        };
        let from_env = || std::env::var_os(&settings.secret_env).filter(|s| !s.is_empty());
        let secret = match secret
            .map(|s| s.0)
            .or_else(|| from_env().map(|s| s.into_encoded_bytes()))
        {
            Some(secret) => secret,
            None => {
                return Err(Error::ConfigFile(config.error_at(
                    settings.secret_env_at,
                    format!(
                        "the shared tier's secret is missing: the environment variable `{}` is not set",
                        settings.secret_env
                    ),
                    Some(format!(
                        "set `{}` to the team's secret (at least {} bytes) before running trove; \
                         it signs and verifies every shared record and never goes in trove.ron",
                        settings.secret_env,
                        trove_shared::MIN_SECRET_LEN
                    )),
                )));
            }
        };
        let refused = |place, e: &dyn std::fmt::Display| {
            Error::ConfigFile(config.error_at(place, e.to_string(), None))
        };
        let mut shared = SharedConfig::new(&settings.url, secret)
            .map_err(|e| match e {
                trove_shared::ConfigError::WeakSecret { .. } => refused(
                    settings.secret_env_at,
                    &format!("`{}`: {e}", settings.secret_env),
                ),
                e => refused(settings.url_at, &e),
            })?
            .read_only(settings.read_only)
            .timeout(settings.timeout);
        if let Some(lease) = &settings.lease {
            shared = shared.lease(
                LeaseConfig::new(&lease.url, lease.ttl).map_err(|e| refused(lease.url_at, &e))?,
            );
        }
        Ok(Some(SharedState {
            config: shared,
            opened: OnceLock::new(),
            settings,
            warned: Arc::default(),
            counters: Arc::default(),
            uploads: Mutex::new(Vec::new()),
        }))
    }

    /// The tier, opened on its first use. `config` is the engine's, for the place of a
    /// problem the opening finds in the file.
    pub(crate) fn tier(&self, config: &Config) -> Result<&Arc<SharedTier>, &OpenFailure> {
        self.opened
            .get_or_init(|| {
                SharedTier::open(self.config.clone())
                    .map(Arc::new)
                    .map_err(|e| match e {
                        SharedError::Config(e) => OpenFailure::Config(config.error_at(
                            self.settings.url_at,
                            e.to_string(),
                            None,
                        )),
                        e => OpenFailure::Other(e.to_string()),
                    })
            })
            .as_ref()
    }

    /// The tier if it was opened already.
    fn opened(&self) -> Option<&Arc<SharedTier>> {
        self.opened.get()?.as_ref().ok()
    }

    /// The tier could not answer: said once per outage, counted every time.
    fn unavailable(&self, engine: &Engine, e: &dyn std::fmt::Display) -> Why {
        bump(&engine.inner.stats.shared_unavailable, 1);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("shared tier unavailable, building locally: {e}");
        }
        Why::SharedUnavailable(e.to_string())
    }

    fn answered(&self) {
        self.warned.store(false, Ordering::Relaxed);
    }

    pub(crate) fn uploads(&self) -> (u64, u64) {
        let c = &self.counters;
        (
            c.uploads.load(Ordering::Relaxed),
            c.failures.load(Ordering::Relaxed),
        )
    }

    /// The last upload's failure, if an upload failed.
    pub(crate) fn last_upload_error(&self) -> Option<String> {
        self.counters
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the uploads started so far, at most `max` in all. Each of their remote
    /// calls is bounded by the tier's `timeout`, so a dead remote ends them sooner.
    pub(crate) fn finish_uploads(&self, max: Duration) {
        let deadline = Instant::now() + max;
        let handles = std::mem::take(&mut *self.uploads.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                tracing::warn!(
                    "an upload to the shared tier did not finish within {max:?}; it is abandoned"
                );
            }
        }
    }

    /// How long a process waits for its uploads before it exits.
    pub(crate) fn upload_grace(&self) -> Duration {
        self.settings.timeout * 10
    }
}

impl Engine {
    fn shared(&self) -> Option<(&SharedState, &Store)> {
        Some((self.inner.shared.as_ref()?, self.inner.store.as_ref()?))
    }

    /// The tier, opened on first use; `Ok(Err(why))` when it cannot be opened (said and
    /// counted like an outage). A problem in the configuration is an error.
    fn open_tier<'a>(
        &self,
        shared: &'a SharedState,
    ) -> Result<Result<&'a Arc<SharedTier>, Why>, Error> {
        match shared.tier(&self.inner.config) {
            Ok(tier) => Ok(Ok(tier)),
            Err(OpenFailure::Config(e)) => Err(Error::ConfigFile(e.clone())),
            Err(OpenFailure::Other(e)) => Ok(Err(shared.unavailable(self, e))),
        }
    }

    /// Under the key's `flock`, before building: the key's lease, when leases are
    /// configured. `Ok(hit)` when another machine published the object meanwhile;
    /// `Err(claim)` to build, holding the lease if one was taken.
    pub(crate) fn claim_shared<R: Recipe>(
        &self,
        recipe: &R,
        key: Digest,
        args_display: &str,
    ) -> Result<Result<FlightValue, Option<Claim>>, Error> {
        let Some((shared, _)) = self.shared() else {
            return Ok(Err(None));
        };
        let tier = match self.open_tier(shared)? {
            Ok(tier) => tier,
            Err(_) => return Ok(Err(None)),
        };
        let Some(leases) = tier.leases() else {
            return Ok(Err(None));
        };
        let ttl = leases.ttl();
        loop {
            // A read-only machine never publishes, so it never holds a lease: it waits for
            // a holder's object, and builds alone when nobody holds one.
            let acquired = if tier.is_read_only() {
                match leases.holder_ttl(&key.hex()) {
                    Ok(Some(_)) => None,
                    Ok(None) => return Ok(Err(None)),
                    Err(e) => {
                        shared.unavailable(self, &e);
                        return Ok(Err(None));
                    }
                }
            } else {
                match tier.lease(&key.0) {
                    Ok(lease) => lease,
                    Err(e) => {
                        shared.unavailable(self, &e);
                        return Ok(Err(None));
                    }
                }
            };
            if let Some(lease) = acquired {
                // Someone may have published between our look and the lease.
                return Ok(match self.lookup_shared(recipe, key, args_display)? {
                    Ok(hit) => {
                        let _ = lease.release();
                        Ok(hit)
                    }
                    Err(_) => Err(Some(Claim(lease))),
                });
            }
            match tier.wait_for(&key.0, ttl) {
                Ok(Wake::Published) => {
                    if let Ok(hit) = self.lookup_shared(recipe, key, args_display)? {
                        return Ok(Ok(hit));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    shared.unavailable(self, &e);
                    return Ok(Err(None));
                }
            }
        }
    }

    /// After a variant is stored locally: uploads it on a thread of its own (blob, then
    /// signed record, first writer wins), then releases the key's lease, which wakes the
    /// machines waiting for it. A read-only tier uploads nothing.
    pub(crate) fn upload(&self, record: &NewRecord, claim: Option<Claim>) {
        let Some((shared, store)) = self.shared() else {
            return;
        };
        if shared.settings.read_only {
            return;
        }
        let tier = match shared.tier(&self.inner.config) {
            Ok(tier) => Arc::clone(tier),
            Err(e) => {
                tracing::warn!("not uploaded to the shared tier: {}", Error::from(e));
                return;
            }
        };
        let Some(trace) = Trace::decode(&record.trace) else {
            return;
        };
        let remote = SharedRecord {
            key: record.key,
            recipe: record.recipe.clone(),
            args: record.args.clone(),
            recipe_version: record.recipe_version,
            created_ms: record.created_ms,
            blob: BlobRef {
                hash: record.blob.hash,
                len: record.blob.len,
            },
            codec: record.codec,
            trace: trace.portable(&self.inner.root).encode(),
            reason: record.reason.clone(),
        };
        // Opened now, before the answer returns (gc removing the blob meanwhile cannot
        // take it from the upload), through the local tier's Storage adapter, by the path
        // it will have in the shared tier; `publish` hashes it before sending a byte.
        let path = remote.blob.path();
        let opened = match LocalStorage::new(store).open(&path) {
            Ok(Some(file)) => Ok(file),
            Ok(None) => Err(SharedError::Local {
                what: format!("opening the local blob {path} to upload it"),
                source: std::io::ErrorKind::NotFound.into(),
            }),
            Err(e) => Err(SharedError::Local {
                what: format!("opening the local blob {path} to upload it"),
                source: std::io::Error::other(e),
            }),
        };
        let counters = Arc::clone(&shared.counters);
        let warned = Arc::clone(&shared.warned);
        let spawned = std::thread::Builder::new()
            .name("trove-upload".to_owned())
            .spawn(move || {
                let published = opened.and_then(|mut file| tier.publish(&remote, &mut file));
                match published {
                    Ok(_) => {
                        bump(&counters.uploads, 1);
                        warned.store(false, Ordering::Relaxed);
                    }
                    // An outage is said once, whichever direction meets it first.
                    Err(e) if e.is_unavailable() => {
                        bump(&counters.failures, 1);
                        *counters
                            .last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                        if !warned.swap(true, Ordering::Relaxed) {
                            tracing::warn!("shared tier unavailable, not uploaded: {e}");
                        }
                    }
                    Err(e) => {
                        bump(&counters.failures, 1);
                        tracing::warn!("not uploaded to the shared tier: {e}");
                        *counters
                            .last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    }
                }
                if let Some(Claim(lease)) = claim {
                    let _ = lease.release();
                }
            });
        match spawned {
            Ok(handle) => shared
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle),
            Err(e) => tracing::warn!("not uploaded to the shared tier: {e}"),
        }
    }
}
