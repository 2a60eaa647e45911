//! Storing a built object: blob first, then the record that points at it, then the key's
//! lock is released.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use trove_fingerprint::Digest;
use trove_store::{KeyLock, NewRecord};

use crate::Recipe;
use crate::codec::{self, Encoded};
use crate::engine::Engine;
use crate::memory::Meta;

/// A built object not stored yet, with the key's lock, held until it is.
pub(crate) struct Pending<T> {
    pub(crate) value: Arc<T>,
    /// The postcard encoding; `None` for a `Vec<u8>` or `Blob` object (its own bytes).
    pub(crate) encoded: Option<Vec<u8>>,
    pub(crate) codec: u8,
    pub(crate) digest: Digest,
    pub(crate) trace: Vec<u8>,
    pub(crate) created_ms: i64,
    pub(crate) args: String,
    pub(crate) reason: String,
    pub(crate) meta: Arc<Meta>,
    pub(crate) lock: Option<KeyLock>,
    /// The key's lease in the shared tier, released after the upload.
    pub(crate) claim: Option<super::shared::Claim>,
    /// When the build's inputs were checked unchanged after it ran (see
    /// `Engine::changed_during_build`): the object vouches for them as of then.
    pub(crate) checked: std::time::Instant,
}

impl Engine {
    /// Stores a built object: blob first, then the record that points at it, then the
    /// key's lock is released. A failure is logged, not returned: the caller still gets
    /// its object.
    pub(crate) fn publish<R: Recipe>(&self, recipe: &R, key: Digest, pending: Pending<R::Output>) {
        let Some(store) = self.inner.store.as_ref() else {
            return;
        };
        let stored = match &pending.encoded {
            Some(bytes) => store.put_blob_hashed(bytes, pending.digest.0),
            None => match codec::encode(&*pending.value) {
                Ok(Encoded::Bytes(bytes, _)) => store.put_blob_hashed(&bytes, pending.digest.0),
                // A file-backed object: its temp file is renamed into place, not copied.
                Ok(Encoded::File(blob)) => blob.publish(store),
                Err(_) => return,
            },
        };
        let blob = match stored {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(recipe = recipe.name(), "object not stored: {e}");
                return;
            }
        };
        let record = NewRecord {
            key: key.0,
            recipe: recipe.name().to_owned(),
            args: pending.args,
            recipe_version: recipe.version(),
            created_ms: pending.created_ms,
            blob,
            codec: pending.codec,
            trace: pending.trace,
            reason: pending.reason,
        };
        match store.insert(&record) {
            Ok(id) => {
                pending.meta.variant.store(id, Ordering::Release);
                // Started before the lock is released and the answer returned; it runs on
                // a thread of its own and never delays either.
                self.upload(&record, pending.claim);
            }
            Err(e) => tracing::warn!(recipe = recipe.name(), "object not recorded: {e}"),
        }
        drop(pending.lock);
    }
}
