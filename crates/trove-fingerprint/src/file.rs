//! File fingerprints and the rules that decide whether a file is unchanged.
//!
//! The rules follow git's index and cargo's lessons:
//! - the identity of a file's state is `(dev, ino, len, mtime_ns, ctime_ns)`, compared for
//!   *any* difference (never "newer than": `cp -p` and `touch -d` move mtime backwards, and
//!   `ctime` catches them because no user call can set it);
//! - a fingerprint taken within [`RACY_WINDOW_NS`] of the file's last change is *racy*: a
//!   same-size write in the same clock tick would leave every stat field unchanged, so the
//!   content is re-hashed before the file is trusted (git's "racily clean" entries);
//! - when the metadata differs the content decides: same blake3 means unchanged (the new
//!   metadata is adopted), so `touch` or a content-identical rewrite costs one hash, not a
//!   rebuild.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::clock::now_ns;

/// How close (in nanoseconds) a file's mtime or ctime may come to the moment its
/// fingerprint was taken before the fingerprint is treated as racy.
///
/// Linux stamps files from a coarse clock (one scheduler tick, up to 10 ms, behind the
/// precise clock), FAT keeps two-second mtimes, and network file systems stamp with the
/// server's clock. Two seconds covers all of them; the only cost is one extra hash of a
/// file that changed in the two seconds before it was read.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// Files at least this large are hashed with memory mapping and all cores.
const PARALLEL_HASH_MIN: u64 = 1 << 20;

/// The stat fields that identify a file's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Length in bytes.
    pub len: u64,
    /// Last modification, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Last status change, nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// What kind of file this is.
    pub kind: FileKind,
}

/// The kind of a file system entry, as far as fingerprints care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else: FIFO, socket, device. Never read as content.
    Other,
}

impl Stat {
    /// Stats `path`, following symlinks. `Ok(None)` when nothing is there.
    pub fn of(path: &Path) -> io::Result<Option<Stat>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stat::from_metadata(&m))),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stat fields of already fetched metadata.
    pub fn from_metadata(m: &std::fs::Metadata) -> Stat {
        let ft = m.file_type();
        let kind = if ft.is_file() {
            FileKind::File
        } else if ft.is_dir() {
            FileKind::Dir
        } else {
            FileKind::Other
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stat {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
                ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
                kind,
            }
        }
        #[cfg(not(unix))]
        {
            let ns = |t: io::Result<std::time::SystemTime>| {
                t.ok().map(crate::clock::system_time_ns).unwrap_or(0)
            };
            Stat {
                dev: 0,
                ino: 0,
                len: m.len(),
                mtime_ns: ns(m.modified()),
                ctime_ns: ns(m.created()),
                kind,
            }
        }
    }

    /// Whether a fingerprint taken at `taken_ns` cannot vouch for this state by metadata
    /// alone (see [`RACY_WINDOW_NS`]).
    pub fn is_racy(&self, taken_ns: i64) -> bool {
        let limit = taken_ns.saturating_sub(RACY_WINDOW_NS);
        self.mtime_ns >= limit || self.ctime_ns >= limit
    }
}

/// `NotFound`, and `NotADirectory` for a path through a regular file, both mean "absent".
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The state of a file input as recorded in a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    /// Nothing was there. Creating the file changes the state.
    Absent,
    /// A regular file with these stat fields and this content.
    Present {
        /// Stat fields when the content was hashed.
        stat: Stat,
        /// blake3 of the content.
        hash: Digest,
        /// When the fingerprint was taken (ns since the epoch, read before the stat).
        taken_ns: i64,
    },
    /// A directory or special file sat at the path; only its kind is recorded.
    NotAFile {
        /// What was there.
        kind: FileKind,
    },
}

impl FileState {
    /// The content hash, if a regular file was there.
    pub fn hash(&self) -> Option<&Digest> {
        match self {
            FileState::Present { hash, .. } => Some(hash),
            _ => None,
        }
    }

    /// Whether this recorded state vouches, by metadata alone, for the file whose stat is
    /// `now`: a regular file recorded with exactly these stat fields, and not racy against
    /// the moment its fingerprint was taken. The rule [`check_file`] trusts without
    /// hashing, so a build may reuse the recorded hash instead of hashing the file again.
    pub fn vouches_for(&self, now: &Stat) -> bool {
        match self {
            FileState::Present { stat, taken_ns, .. } => stat == now && !now.is_racy(*taken_ns),
            _ => false,
        }
    }

    /// A short human description, for explanations: `blake3 1f3a9c2e..`, `absent`, `a directory`.
    pub fn describe(&self) -> String {
        match self {
            FileState::Absent => "absent".into(),
            FileState::Present { hash, .. } => format!("blake3 {}..", hash.short()),
            FileState::NotAFile {
                kind: FileKind::Dir,
            } => "a directory".into(),
            FileState::NotAFile { .. } => "a special file".into(),
        }
    }
}

/// The outcome of checking a recorded file state against the file system now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileCheck {
    /// Unchanged, and the metadata alone said so (no content was read).
    Unchanged,
    /// Unchanged content under new metadata (or a racy fingerprint that was re-hashed):
    /// the new state should replace the recorded one so the next check is cheap again.
    Refreshed(FileState),
    /// Changed: the state now.
    Changed(FileState),
}

/// Opens an input for reading without ever blocking on it: a FIFO opened for reading
/// would wait for a writer forever, so the open is non-blocking (which changes nothing
/// for regular files) and the caller checks the kind on the open handle.
fn open_input(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Reads a file whole and fingerprints exactly the bytes returned.
///
/// The file is stat'ed before and after reading (through the open handle, so a rename over
/// the path cannot slip in); if the two differ the file changed while it was read and the
/// returned state is marked unstable by the `bool`, and the caller must not store a result
/// built from it.
pub fn read_file(path: &Path) -> io::Result<(Vec<u8>, FileState, bool)> {
    let taken_ns = now_ns();
    let mut file = match open_input(path) {
        Ok(f) => f,
        Err(e) if is_absent(&e) => return Ok((Vec::new(), FileState::Absent, true)),
        Err(e) => return Err(e),
    };
    let before = Stat::from_metadata(&file.metadata()?);
    if before.kind != FileKind::File {
        return Ok((Vec::new(), FileState::NotAFile { kind: before.kind }, true));
    }
    let mut bytes = Vec::with_capacity(before.len as usize);
    file.read_to_end(&mut bytes)?;
    let after = Stat::from_metadata(&file.metadata()?);
    let hash = Digest::of_bytes(&bytes);
    let stable = before == after && after.len == bytes.len() as u64;
    Ok((
        bytes,
        FileState::Present {
            stat: after,
            hash,
            taken_ns,
        },
        stable,
    ))
}

/// Fingerprints the file at `path` without keeping its bytes (large files are memory
/// mapped and hashed on all cores). The `bool` is false when the file changed while it was
/// hashed.
pub fn fingerprint_file(path: &Path) -> io::Result<(FileState, bool)> {
    let taken_ns = now_ns();
    let file = match open_input(path) {
        Ok(f) => f,
        Err(e) if is_absent(&e) => return Ok((FileState::Absent, true)),
        Err(e) => return Err(e),
    };
    let before = Stat::from_metadata(&file.metadata()?);
    if before.kind != FileKind::File {
        return Ok((FileState::NotAFile { kind: before.kind }, true));
    }
    let hash = hash_file(&file, path, before.len)?;
    let after = Stat::of(path)?;
    let stable = after == Some(before);
    Ok((
        FileState::Present {
            stat: before,
            hash,
            taken_ns,
        },
        stable,
    ))
}

fn hash_file(file: &File, path: &Path, len: u64) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    if len >= PARALLEL_HASH_MIN {
        // `update_mmap_rayon` falls back to plain reads when mapping is not possible.
        hasher.update_mmap_rayon(path)?;
    } else {
        hasher.update_reader(file)?;
    }
    Ok(Digest(*hasher.finalize().as_bytes()))
}

/// Checks a recorded state against the file at `path` now, hashing only when the rules
/// above require it.
pub fn check_file(recorded: &FileState, path: &Path) -> io::Result<FileCheck> {
    let now = Stat::of(path)?;
    match (recorded, now) {
        (FileState::Absent, None) => Ok(FileCheck::Unchanged),
        (FileState::Absent, Some(_)) | (FileState::NotAFile { .. }, None) => {
            let (state, _) = fingerprint_file(path)?;
            Ok(FileCheck::Changed(state))
        }
        (FileState::NotAFile { kind }, Some(stat)) => {
            if stat.kind == *kind {
                Ok(FileCheck::Unchanged)
            } else {
                let (state, _) = fingerprint_file(path)?;
                Ok(FileCheck::Changed(state))
            }
        }
        (FileState::Present { .. }, None) => Ok(FileCheck::Changed(FileState::Absent)),
        (FileState::Present { hash, .. }, Some(stat)) => {
            if recorded.vouches_for(&stat) {
                return Ok(FileCheck::Unchanged);
            }
            if stat.kind != FileKind::File {
                return Ok(FileCheck::Changed(FileState::NotAFile { kind: stat.kind }));
            }
            let (state, stable) = fingerprint_file(path)?;
            match state.hash() {
                // A file that is being written right now is not vouched for.
                Some(h) if h == hash && stable => Ok(FileCheck::Refreshed(state)),
                _ => Ok(FileCheck::Changed(state)),
            }
        }
    }
}
