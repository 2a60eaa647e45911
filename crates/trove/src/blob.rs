//! File-backed objects: a [`Blob`] is an immutable, verified object that lives in a file
//! and is read on demand, so an object of any size is built, stored and served without
//! ever being held whole in memory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use trove_fingerprint::Digest;
use trove_store::{BlobId, Store, StoreError, TempBlob};

use crate::{BuildError, Cx};

/// How much is copied at a time when the kernel cannot copy for us.
pub(crate) const COPY_CHUNK: usize = 64 * 1024;

/// An immutable object stored in a file: the output of a command recipe (its stdout), or
/// of any recipe that writes its object through [`Cx::blob_writer`].
///
/// A `Blob` holds the file open (read-only), with its length and blake3 digest, checked
/// before the blob was handed out. Reading never loads it whole: [`Blob::reader`] gives
/// an independent reader, [`Blob::copy_to`] streams it through a 64 KiB buffer, and (on
/// Unix) [`Blob::copy_to_fd`] lets the kernel copy it. Because the file is held open, a gc
/// that removes the stored blob afterwards does not disturb a reader: the bytes stay
/// readable until the last clone of the `Blob` is dropped.
///
/// Cloning is cheap (the open file is shared). Stored by the engine as the blob's own
/// bytes, exactly like a `Vec<u8>` object; `Serialize`/`Deserialize` (as bytes, read
/// whole) exist only for a `Blob` embedded in another object.
///
/// ```
/// let blob = trove::Blob::from_bytes(b"a large object").unwrap();
/// assert_eq!(blob.len(), 14);
/// let mut out = Vec::new();
/// blob.copy_to(&mut out).unwrap();
/// assert_eq!(out, b"a large object");
/// assert_eq!(blob.digest(), trove::Digest::of_bytes(b"a large object"));
/// ```
#[derive(Clone)]
pub struct Blob {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read-only, and read only with positional reads: readers never share an offset.
    file: File,
    len: u64,
    digest: Digest,
    /// The store temp file the blob was written to, until the engine publishes it by a
    /// rename (`None` for a blob loaded from the store, or made without one).
    temp: Mutex<Option<TempBlob>>,
}

impl Blob {
    /// A blob over a file the store verified against `id`.
    pub(crate) fn verified(file: File, id: BlobId) -> Blob {
        Blob::new(file, id, None)
    }

    fn new(file: File, id: BlobId, temp: Option<TempBlob>) -> Blob {
        Blob {
            inner: Arc::new(Inner {
                file,
                len: id.len,
                digest: Digest(id.hash),
                temp: Mutex::new(temp),
            }),
        }
    }

    /// A blob holding a copy of `bytes`, in an unnamed temp file (nothing is left on disk
    /// when the last clone is dropped or the process dies).
    pub fn from_bytes(bytes: &[u8]) -> io::Result<Blob> {
        let mut temp = TempBlob::create_in(&std::env::temp_dir()).map_err(io::Error::other)?;
        temp.unlink().map_err(io::Error::other)?;
        temp.file().write_all(bytes)?;
        let id = temp.seal().map_err(io::Error::other)?;
        Ok(Blob::new(temp.reader().try_clone()?, id, None))
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.inner.len
    }

    /// Whether the blob has no bytes.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// blake3 of the content: the stored blob's name, and what early cutoff compares.
    pub fn digest(&self) -> Digest {
        self.inner.digest
    }

    /// The open, read-only file (for example to map it). Read it with positional reads
    /// (`read_at`): its offset is shared by every clone of the blob.
    pub fn file(&self) -> &File {
        &self.inner.file
    }

    /// A reader from offset 0, independent of every other reader (it reads with
    /// positional reads and keeps its own position). Implements `Read` and `Seek`.
    pub fn reader(&self) -> BlobReader {
        BlobReader {
            blob: self.clone(),
            pos: 0,
        }
    }

    /// Writes the whole content to `out` through one 64 KiB buffer; returns the length.
    pub fn copy_to(&self, out: &mut impl Write) -> io::Result<u64> {
        self.copy_from(0, out)?;
        Ok(self.len())
    }

    /// Writes the content from `start` to the end to `out`, 64 KiB at a time.
    fn copy_from(&self, start: u64, out: &mut impl Write) -> io::Result<()> {
        let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(self.len()).unwrap_or(COPY_CHUNK))];
        let mut offset = start;
        while offset < self.len() {
            let want = usize::try_from(self.len() - offset)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = trove_store::read_full_at(&self.inner.file, &mut buf[..want], offset)?;
            if n < want {
                return Err(ended_early());
            }
            out.write_all(&buf[..n])?;
            offset += n as u64;
        }
        Ok(())
    }

    /// Writes the whole content to the file descriptor `out` (stdout, a pipe, a file,
    /// a socket) at its current position; returns the length. On Linux the kernel copies
    /// it (`sendfile`), with no buffer in this process; where that is refused (an
    /// `O_APPEND` file on older kernels, other systems) it falls back to [`Blob::copy_to`].
    #[cfg(unix)]
    pub fn copy_to_fd(&self, out: impl std::os::fd::AsFd) -> io::Result<u64> {
        let out = out.as_fd();
        #[cfg(target_os = "linux")]
        let sent = self.sendfile(out)?;
        #[cfg(not(target_os = "linux"))]
        let sent = 0;
        if sent < self.len() {
            // A duplicate shares the descriptor's position, so the bytes follow on.
            let mut file = File::from(out.try_clone_to_owned()?);
            self.copy_from(sent, &mut file)?;
            file.flush()?;
        }
        Ok(self.len())
    }

    /// Copies with `sendfile` from this blob's own offset counter (the file's offset is
    /// not used); returns how far it got before the kernel refused, if it did.
    #[cfg(target_os = "linux")]
    fn sendfile(&self, out: std::os::fd::BorrowedFd<'_>) -> io::Result<u64> {
        use std::os::fd::AsRawFd;
        let mut offset: libc::off_t = 0;
        let len = libc::off_t::try_from(self.len()).unwrap_or(libc::off_t::MAX);
        while offset < len {
            let count = usize::try_from(len - offset)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            // SAFETY: both descriptors are open for the duration of the call (one is
            // borrowed, the other owned by `self`), and `offset` is a valid `off_t`.
            let n = unsafe {
                libc::sendfile(
                    out.as_raw_fd(),
                    self.inner.file.as_raw_fd(),
                    &mut offset,
                    count,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => break,
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(ended_early());
            }
        }
        Ok(u64::try_from(offset).unwrap_or(0))
    }

    /// The whole content in memory (for small blobs, and for serializing one).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len())
            .map_err(|_| io::Error::other("the blob does not fit in memory"))?;
        let mut out = Vec::with_capacity(len);
        self.copy_to(&mut out)?;
        Ok(out)
    }

    /// Stores the blob: a blob written to the store's temp file is renamed into place; one
    /// made elsewhere is copied in, unless the store has its content already.
    pub(crate) fn publish(&self, store: &Store) -> Result<BlobId, StoreError> {
        let id = BlobId {
            hash: self.inner.digest.0,
            len: self.inner.len,
        };
        let temp = self
            .inner
            .temp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(temp) = temp {
            return store.put_blob_file(temp);
        }
        if store.has_blob(&id) {
            return Ok(id);
        }
        let temp = store.temp_blob()?;
        let path = temp.path().map(ToOwned::to_owned).unwrap_or_default();
        #[cfg(unix)]
        let copied = self.copy_to_fd(temp.file());
        #[cfg(not(unix))]
        let copied = self.copy_to(&mut temp.file());
        copied.map_err(|e| StoreError::Io { path, source: e })?;
        store.put_blob_file(temp)
    }
}

fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the blob's file is shorter than when it was verified (it was changed in place)",
    )
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("len", &self.inner.len)
            .field("digest", &self.inner.digest)
            .finish()
    }
}

/// Two blobs are equal when their content is: same length and blake3.
impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        self.inner.len == other.inner.len && self.inner.digest == other.inner.digest
    }
}

impl Eq for Blob {}

/// A reader over a [`Blob`] with its own position; see [`Blob::reader`].
#[derive(Debug)]
pub struct BlobReader {
    blob: Blob,
    pos: u64,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.blob.len().saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = trove_store::read_at(&self.blob.inner.file, &mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(ended_early());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.blob.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the blob",
            )),
        }
    }
}

/// Writes an object into a file that becomes a [`Blob`]: in the store's directory, so
/// that storing it is a rename, not a copy. Get one from [`Cx::blob_writer`].
///
/// Write through it (`Write`; wrap it in a `BufWriter` for small writes) or hand
/// [`BlobWriter::file`] to a child process as its stdout, then call
/// [`BlobWriter::finish`]. Dropping it unfinished removes the file.
#[derive(Debug)]
pub struct BlobWriter {
    temp: TempBlob,
    /// Whether the temp file is the store's, to be published by a rename.
    in_store: bool,
}

impl BlobWriter {
    /// The file being written, open for writing: `file().try_clone()` gives a handle for
    /// a child process's stdout.
    pub fn file(&self) -> &File {
        self.temp.file()
    }

    /// Hashes what was written (streaming it through one 1 MiB buffer) and returns the
    /// blob. Nothing may write to the file afterwards.
    pub fn finish(mut self) -> Result<Blob, BuildError> {
        let id = self.temp.seal().map_err(temp_error)?;
        let file = self.temp.reader().try_clone().map_err(|e| {
            temp_error(StoreError::Io {
                path: self.temp.path().map(ToOwned::to_owned).unwrap_or_default(),
                source: e,
            })
        })?;
        let temp = self.in_store.then_some(self.temp);
        Ok(Blob::new(file, id, temp))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn temp_error(e: StoreError) -> BuildError {
    BuildError::Failed(format!("cannot write the object to its temp file: {e}"))
}

impl Cx {
    /// A file to write this build's object into, to return it as a [`Blob`]: in the
    /// store's `blobs/tmp/`, so storing the object is a rename (no copy, no buffer). When
    /// the engine has no store, an unnamed file in the system's temp directory.
    ///
    /// ```no_run
    /// # use trove::{Blob, BuildError, Cx, Recipe};
    /// # #[derive(Clone)] struct Big;
    /// # impl Recipe for Big { const NAME: &'static str = "big"; const VERSION: u32 = 1;
    /// #   type Args = u64; type Output = Blob;
    /// fn build(&self, cx: &mut Cx, n: &u64) -> Result<Blob, BuildError> {
    ///     use std::io::Write;
    ///     let mut out = std::io::BufWriter::new(cx.blob_writer()?);
    ///     for i in 0..*n {
    ///         writeln!(out, "{i}").map_err(BuildError::msg)?;
    ///     }
    ///     out.into_inner().map_err(BuildError::msg)?.finish()
    /// }
    /// # }
    /// ```
    pub fn blob_writer(&self) -> Result<BlobWriter, BuildError> {
        if let Ok(store) = self.engine.store() {
            match store.temp_blob() {
                Ok(temp) => {
                    return Ok(BlobWriter {
                        temp,
                        in_store: true,
                    });
                }
                Err(e) => tracing::warn!("writing the object outside the store: {e}"),
            }
        }
        let mut temp = TempBlob::create_in(&std::env::temp_dir()).map_err(temp_error)?;
        temp.unlink().map_err(temp_error)?;
        Ok(BlobWriter {
            temp,
            in_store: false,
        })
    }
}

/// As bytes, read whole: for a `Blob` embedded in another object only (a `Blob` output is
/// stored as its own file, never through serde).
impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_vec().map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Blob, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the bytes of a blob")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Blob::from_bytes(v).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Blob::from_bytes(&bytes).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}
