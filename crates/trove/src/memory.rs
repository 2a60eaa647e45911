//! The memory tier: one `Arc` per object per process, bounded by bytes.
//!
//! An evicted object leaves a `Weak` behind, so as long as any caller still holds the
//! object, a later request gets that same allocation back instead of a second copy.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use trove_fingerprint::Digest;

use crate::trace::Trace;

pub(crate) type Object = Arc<dyn Any + Send + Sync>;

/// What the memory tier knows about an object besides the object itself.
pub(crate) struct Meta {
    pub(crate) recipe: String,
    pub(crate) args: String,
    pub(crate) recipe_version: u32,
    pub(crate) created_ms: i64,
    /// blake3 of the encoded object (the blob's name): early cutoff compares this.
    pub(crate) digest: Digest,
    /// The stored variant's row id once the object is stored (0 until then: a build
    /// hands its object to waiters before it publishes it).
    pub(crate) variant: AtomicI64,
    pub(crate) size: u64,
    pub(crate) trace: RwLock<Arc<Trace>>,
    /// Indices of the trace's inputs a watcher cannot vouch for (a refresh only changes
    /// file states, so these stay right for the object's life).
    pub(crate) cheap: Vec<u32>,
    /// Set while a watcher covers every path of the trace and no event touched them since
    /// the object was last verified: the object is then served with no system call.
    pub(crate) fresh: AtomicBool,
    pub(crate) watchable: AtomicBool,
    /// Indices of the file, listing and glob inputs the watcher does not see (outside
    /// its roots: a compiler a traced command ran, libc; a literal glob or a tree): a
    /// watched hit still checks these with `stat`, and only these.
    pub(crate) unwatched: RwLock<Arc<Vec<u32>>>,
}

impl Meta {
    /// The stored variant holding this object, if it was stored.
    pub(crate) fn variant(&self) -> Option<i64> {
        Some(self.variant.load(Ordering::Acquire)).filter(|&id| id > 0)
    }

    pub(crate) fn trace(&self) -> Arc<Trace> {
        self.trace.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Slot {
    weak: Weak<dyn Any + Send + Sync>,
    strong: Option<Object>,
    meta: Arc<Meta>,
    last_use: u64,
}

/// Keys are blake3 digests already: their first eight bytes are as good a hash as any,
/// and cheaper than SipHash over all 32.
#[derive(Clone, Copy, Default)]
pub(crate) struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(first) => self.0 ^= u64::from_le_bytes(*first),
            None => {
                for b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(*b);
                }
            }
        }
    }
}

type DigestMap<V> = HashMap<Digest, V, std::hash::BuildHasherDefault<DigestHasher>>;

struct Inner {
    slots: DigestMap<Slot>,
    resident_bytes: u64,
    tick: u64,
}

pub(crate) struct Memory {
    inner: Mutex<Inner>,
    limit: u64,
    /// Moves after anything that can change which object a key's memory hit serves or
    /// whether a watcher vouches for it: a slot replaced, removed or evicted, an object
    /// marked unfresh. Always moved *after* the change, so a reader that reads the epoch
    /// before it looks at an object's freshness cannot miss one (`Engine::vouched`).
    epoch: AtomicU64,
}

impl Memory {
    pub(crate) fn new(limit: u64) -> Self {
        Memory {
            inner: Mutex::new(Inner {
                slots: DigestMap::default(),
                resident_bytes: 0,
                tick: 0,
            }),
            limit,
            epoch: AtomicU64::new(0),
        }
    }

    /// See [`Memory::epoch`]'s field.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn moved(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn lookup(&self, key: &Digest) -> Option<(Object, Arc<Meta>)> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.slots.get_mut(key)?;
        let object = match &slot.strong {
            Some(o) => o.clone(),
            None => slot.weak.upgrade()?,
        };
        slot.last_use = tick;
        Some((object, slot.meta.clone()))
    }

    /// Whether the key has a slot whose object is still alive (resident or held by a caller).
    pub(crate) fn meta(&self, key: &Digest) -> Option<Arc<Meta>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let slot = inner.slots.get(key)?;
        (slot.strong.is_some() || slot.weak.strong_count() > 0).then(|| slot.meta.clone())
    }

    pub(crate) fn insert(&self, key: Digest, object: Object, meta: Arc<Meta>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let size = meta.size;
        let slot = Slot {
            weak: Arc::downgrade(&object),
            strong: Some(object),
            meta,
            last_use: inner.tick,
        };
        let replaced = inner.slots.insert(key, slot);
        if let Some(old) = &replaced
            && old.strong.is_some()
        {
            inner.resident_bytes -= old.meta.size;
        }
        inner.resident_bytes += size;
        let evicted = inner.resident_bytes > self.limit;
        if evicted {
            Self::evict(&mut inner, self.limit, &key);
        }
        drop(inner);
        // A new key changes no other key's hit; a replaced or evicted one does.
        if replaced.is_some() || evicted {
            self.moved();
        }
    }

    /// Drops the slot of a key whose object was found stale.
    pub(crate) fn remove(&self, key: &Digest) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = inner.slots.remove(key)
            && old.strong.is_some()
        {
            inner.resident_bytes -= old.meta.size;
        }
        drop(inner);
        self.moved();
    }

    /// Least recently used first, never the object just inserted.
    fn evict(inner: &mut Inner, limit: u64, keep: &Digest) {
        inner
            .slots
            .retain(|_, s| s.strong.is_some() || s.weak.strong_count() > 0);
        let mut order: Vec<(u64, Digest)> = inner
            .slots
            .iter()
            .filter(|(k, s)| s.strong.is_some() && *k != keep)
            .map(|(k, s)| (s.last_use, *k))
            .collect();
        order.sort_unstable();
        for (_, key) in order {
            if inner.resident_bytes <= limit {
                break;
            }
            if let Some(slot) = inner.slots.get_mut(&key) {
                slot.strong = None;
                inner.resident_bytes -= slot.meta.size;
            }
        }
    }

    /// Calls `f` on every slot's metadata (for the watcher and for status).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Digest, &Meta, bool)) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (k, s) in &inner.slots {
            f(k, &s.meta, s.strong.is_some() || s.weak.strong_count() > 0);
        }
    }

    /// A snapshot of every slot's key and metadata, to work on without the lock.
    pub(crate) fn metas(&self) -> Vec<(Digest, Arc<Meta>)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .slots
            .iter()
            .map(|(k, s)| (*k, s.meta.clone()))
            .collect()
    }

    pub(crate) fn mark_all_unfresh(&self) {
        self.for_each(|_, m, _| m.fresh.store(false, Ordering::Release));
        self.moved();
    }

    pub(crate) fn mark_unfresh(&self, keys: &[[u8; 32]]) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some(s) = inner.slots.get(&Digest(*k)) {
                s.meta.fresh.store(false, Ordering::Release);
            }
        }
        drop(inner);
        self.moved();
    }
}
