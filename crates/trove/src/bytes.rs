//! [`Bytes`]: an object's bytes as the engine serves them, either in memory or, for a large
//! stored object of a recipe that asks for it, a verified read-only memory map of its blob
//! file whose head is a private copy.
//!
//! A mapped load (`load_mapped`), in order: the blob is opened and its length checked
//! against the record; the head the recipe declares (`PrivateHead`, read from the first
//! page) decides whether mapping is worth it; the file is mapped `MAP_PRIVATE`, read-only;
//! the head's pages are written once (made private copies: later writes to the file no
//! longer show in them); blake3 of the whole mapping (private head, then the mapped rest)
//! must be the blob's name, or the blob is quarantined and the load fails (the engine
//! rebuilds); last, the head the *private* bytes declare must lie inside the private
//! pages, or the object is read whole instead. So the part a consumer interprets (a
//! header, a pickle) is exactly what was hashed and is never read from the file again;
//! only the rest (raw data, an array's values) stays the file's pages. ARCHITECTURE.md,
//! "The Python package", has the soundness argument and its residual risk.

use std::any::Any;
use std::ops::Deref;

use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use trove_store::{Record, Store};

use crate::DynRecipe;

/// Objects whose raw part (after the head) is at least this large are mapped; smaller ones
/// are read whole. Below it, the mapping's system calls and page faults cost about what
/// the read does (BENCHMARKS.md, "Python").
pub const MAP_MIN: u64 = 1 << 20;

/// How many leading bytes of a stored object must be private (the part its consumer
/// interprets), from its first bytes (at least the first 4 KiB, or the whole object if
/// shorter); `None` when the object is not to be mapped. It must read only bytes before
/// the length it returns, and return a length for any bytes (a malformed head is caught
/// when the object is interpreted, after verification).
pub type PrivateHead = fn(&[u8]) -> Option<usize>;

/// An immutable object's bytes: in memory, or a verified read-only map of the stored blob
/// (see the module documentation). Dereferences to `[u8]`; serialized as bytes.
pub struct Bytes {
    repr: Repr,
}

enum Repr {
    Owned(Vec<u8>),
    #[cfg(unix)]
    Mapped(map::Map),
}

impl Bytes {
    /// Whether the bytes are a map of the stored blob file.
    pub fn is_mapped(&self) -> bool {
        !matches!(self.repr, Repr::Owned(_))
    }

    /// How many leading bytes are private memory of this process (every byte, for bytes
    /// in memory; the head the recipe declared, rounded up to whole pages, for a map).
    pub fn private_len(&self) -> usize {
        match &self.repr {
            Repr::Owned(v) => v.len(),
            #[cfg(unix)]
            Repr::Mapped(m) => m.private_len(),
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes {
            repr: Repr::Owned(v),
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.repr {
            Repr::Owned(v) => v,
            #[cfg(unix)]
            Repr::Mapped(m) => m.as_slice(),
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl PartialEq<Vec<u8>> for Bytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bytes")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes::from(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes::from(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Bytes, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Bytes::from(v))
            }
        }
        deserializer.deserialize_byte_buf(Visit)
    }
}

/// The private head of a recipe whose objects are [`Bytes`] and may be mapped: set by
/// [`DynRecipe::with_private_head`]; `None` for every other recipe.
pub(crate) fn private_head<R: 'static>(recipe: &R) -> Option<PrivateHead> {
    (recipe as &dyn Any)
        .downcast_ref::<DynRecipe<Bytes>>()
        .and_then(DynRecipe::private_head)
}

/// Loads a stored object as a verified map (module documentation); `Ok(None)` when it is
/// not worth mapping (small, no declared head, too little after it), and the caller reads
/// it whole. An error means the blob cannot be served (a corrupt one is quarantined).
#[cfg(unix)]
pub(crate) fn load_mapped(
    store: &Store,
    rec: &Record,
    head: PrivateHead,
) -> Result<Option<Bytes>, String> {
    let id = &rec.blob;
    let Ok(len) = usize::try_from(id.len) else {
        return Ok(None);
    };
    // (An object this large never has a copy in the index: those are of up to 4 KiB.)
    if id.len < MAP_MIN {
        return Ok(None);
    }
    let file = store.open_blob_unhashed(id).map_err(|e| e.to_string())?;
    let mut first = vec![0u8; len.min(4096)];
    let n = trove_store::read_full_at(&file, &mut first, 0).map_err(|e| e.to_string())?;
    let Some(need) = head(&first[..n]) else {
        return Ok(None);
    };
    if need > len || ((len - need) as u64) < MAP_MIN {
        return Ok(None);
    }
    // A file system that cannot map, or no address space: read the blob whole instead (a
    // rebuild would be needless).
    let mut map = match map::Map::new(&file, len) {
        Ok(map) => map,
        Err(e) => {
            tracing::debug!("cannot map a blob, reading it instead: {e}");
            return Ok(None);
        }
    };
    if let Err(e) = map.privatize(need) {
        tracing::debug!("cannot copy a mapped blob's head, reading it instead: {e}");
        return Ok(None);
    }
    if trove_fingerprint::Digest::of_bytes(map.as_slice()).0 != id.hash {
        let e = store.corrupt_blob(id, &file, "blake3 of the content does not match");
        return Err(e.to_string());
    }
    // Verified: the private head is the stored head. Its own declaration must lie inside
    // it (it differs from the first read only if the file was written in between).
    match head(&map.as_slice()[..map.private_len()]) {
        Some(n) if n <= map.private_len() => Ok(Some(Bytes {
            repr: Repr::Mapped(map),
        })),
        _ => Ok(None),
    }
}

#[cfg(not(unix))]
pub(crate) fn load_mapped(
    _store: &Store,
    _rec: &Record,
    _head: PrivateHead,
) -> Result<Option<Bytes>, String> {
    Ok(None)
}

#[cfg(unix)]
mod map {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::ptr::NonNull;

    /// A read-only `MAP_PRIVATE` map of a whole file, whose first `private` bytes are
    /// private copies (written once). Unmapped when dropped; holds no descriptor (the
    /// mapping keeps the inode alive: gc's unlink does not disturb it).
    pub(super) struct Map {
        ptr: NonNull<u8>,
        len: usize,
        private: usize,
    }

    // SAFETY: after `privatize` the mapping is read-only (PROT_READ) and never changed by
    // this process; reading it from any thread is sound.
    unsafe impl Send for Map {}
    unsafe impl Sync for Map {}

    impl Map {
        pub(super) fn new(file: &File, len: usize) -> io::Result<Map> {
            if len == 0 {
                return Err(io::Error::other("an empty file is not mapped"));
            }
            // The page tables are filled in one call (the pages are in the page cache
            // after the object was written or read once): the hash then takes no faults.
            #[cfg(target_os = "linux")]
            let flags = libc::MAP_PRIVATE | libc::MAP_POPULATE;
            #[cfg(not(target_os = "linux"))]
            let flags = libc::MAP_PRIVATE;
            // SAFETY: a fresh mapping chosen by the kernel; the descriptor is open.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    flags,
                    file.as_raw_fd(),
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("null map"))?;
            Ok(Map {
                ptr,
                len,
                private: 0,
            })
        }

        pub(super) fn as_slice(&self) -> &[u8] {
            // SAFETY: `len` bytes mapped readable at `ptr` until drop.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }

        pub(super) fn private_len(&self) -> usize {
            self.private
        }

        /// Makes the pages holding the first `need` bytes private copies: each is written
        /// once (its own byte written back), which copies it out of the page cache
        /// (copy-on-write); from then on a write to the file no longer shows in it.
        pub(super) fn privatize(&mut self, need: usize) -> io::Result<()> {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .unwrap_or(4096)
                .max(1);
            let end = need.div_ceil(page).saturating_mul(page).min(self.len);
            if end == 0 {
                return Ok(());
            }
            self.protect(end, libc::PROT_READ | libc::PROT_WRITE)?;
            let base = self.ptr.as_ptr();
            for offset in (0..end).step_by(page) {
                // SAFETY: `offset < end <= len`, inside the mapping, now writable; the
                // volatile pair is not elided, so the page is written (and copied).
                unsafe {
                    let p = base.add(offset);
                    std::ptr::write_volatile(p, std::ptr::read_volatile(p));
                }
            }
            self.protect(end, libc::PROT_READ)?;
            self.private = end;
            Ok(())
        }

        fn protect(&self, len: usize, prot: libc::c_int) -> io::Result<()> {
            // SAFETY: the range lies inside this mapping, starting at its (page-aligned)
            // start.
            if unsafe { libc::mprotect(self.ptr.as_ptr().cast(), len, prot) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: the mapping was made by `new` with this length and is unmapped once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}
