//! Directory listings and directory trees, and the state they record.
//!
//! A listing, a glob or a tree is an input of its own. Its state is blake3 over every entry
//! it produced — the entry's name, its kind and its permission bits — so an entry that
//! appears or disappears, changes kind (a file replaced by a directory, a symlink pointed
//! from a file to a directory) or changes mode (`chmod +x`) changes the state. Contents are
//! not part of it: the files a glob or a tree returns are fingerprinted by the caller, each
//! as a file input.

use std::fs::Metadata;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// The purpose string of a listing's hash. Version 1 hashed the names alone; version 2
/// adds each entry's kind and permission bits, so a state stored by version 1 simply
/// differs (a miss), never matches by accident.
const LISTING_CONTEXT: &str = "trove listing v2";

/// The state of a directory listing, a glob or a tree, as recorded in a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListingState {
    /// The directory (or a glob's base directory) did not exist.
    Absent,
    /// blake3 of the entries, and how many there were.
    Names {
        /// blake3 (purpose `"trove listing v2"`) over the entries sorted by name, each as
        /// its length-prefixed name, its kind and its permission bits.
        hash: Digest,
        /// Number of entries.
        count: u64,
    },
}

impl ListingState {
    /// The state of `entries`, which it sorts by name.
    pub(crate) fn of_entries(entries: &mut [Entry]) -> ListingState {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut h = blake3::Hasher::new_derive_key(LISTING_CONTEXT);
        for e in entries.iter() {
            h.update(&(e.name.len() as u64).to_le_bytes());
            h.update(e.name.as_bytes());
            h.update(&e.kind.code());
            h.update(&e.mode.to_le_bytes());
        }
        ListingState::Names {
            hash: Digest(*h.finalize().as_bytes()),
            count: entries.len() as u64,
        }
    }

    /// A short description for explanations.
    pub fn describe(&self) -> String {
        match self {
            ListingState::Absent => "absent".into(),
            ListingState::Names { hash, count } => {
                format!("{count} entries, blake3 {}..", hash.short())
            }
        }
    }
}

/// What a glob or a tree found: the files to fingerprint, and the state of the whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Regular files and symlinks to regular files, relative to the root the walk was
    /// given, `/`-separated, sorted. Directories, symlinks to anything else and special
    /// files are in [`state`](Listing::state) only.
    pub files: Vec<String>,
    /// Every entry found (directories and special files included): names, kinds and
    /// permission bits.
    pub state: ListingState,
}

impl Listing {
    /// Nothing there: no files, state [`ListingState::Absent`].
    pub(crate) fn absent() -> Listing {
        Listing {
            files: Vec::new(),
            state: ListingState::Absent,
        }
    }

    /// The listing of `entries`: its state, and the entries that are files.
    pub(crate) fn of_entries(mut entries: Vec<Entry>) -> Listing {
        let state = ListingState::of_entries(&mut entries);
        let files = entries
            .into_iter()
            .filter(|e| e.kind.is_file())
            .map(|e| e.name)
            .collect();
        Listing { files, state }
    }
}

/// One entry of a listing, as its state records it.
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) mode: u32,
    /// The latest change the entry's inode had (and a symlink's target's): its mode or
    /// kind may have changed then.
    pub(crate) changed: Change,
}

impl Entry {
    /// The entry `name` for the file at `path`, from its `lstat` metadata. A symlink is
    /// followed once more, so that what it points at is part of the entry.
    pub(crate) fn new(name: String, path: &Path, lstat: &Metadata) -> Entry {
        let mut changed = Change::of_entry(lstat);
        let (kind, mode) = if lstat.file_type().is_symlink() {
            match std::fs::metadata(path) {
                Ok(target) => {
                    changed = changed.and(Change::of_entry(&target));
                    (Kind::Symlink(Target::of(&target)), permissions(&target))
                }
                Err(_) => (Kind::Symlink(Target::Missing), 0),
            }
        } else {
            let kind = match Target::of(lstat) {
                Target::File => Kind::File,
                Target::Dir => Kind::Dir,
                Target::Other | Target::Missing => Kind::Other,
            };
            (kind, permissions(lstat))
        };
        Entry {
            name,
            kind,
            mode,
            changed,
        }
    }
}

/// The latest change a listing could have seen when it was taken: for telling whether a
/// directory listed after a command ran may have changed while the command ran (its
/// listing would then not be the one the command saw).
///
/// The directory's mtime moves when an entry is created, removed or renamed (a kind
/// changes only with a new entry); an entry's ctime alone when its mode changes (a
/// symlink's target's too). A write of an entry's content moves its mtime and ctime
/// together and changes nothing a listing records: not counted, so a log another process
/// appends to in a listed directory does not keep the object from being stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The device all those times were stamped on, `None` when they span several (a
    /// mount point, a symlink to another file system).
    pub dev: Option<u64>,
    /// The latest of those times, in nanoseconds since the Unix epoch.
    pub newest_ns: i64,
}

impl Change {
    /// When the listed directory `m` last gained, lost or renamed an entry: its mtime.
    /// (Its ctime also moves when its own mode changes, which is not in its listing.)
    fn of_dir(m: &Metadata) -> Change {
        let stat = crate::Stat::from_metadata(m);
        Change {
            dev: Some(stat.dev),
            newest_ns: stat.mtime_ns,
        }
    }

    /// When entry `m` may last have changed what a listing records of it (its mode): its
    /// ctime when that is later than its mtime, a change of metadata alone. A write of
    /// its content moves both to the same time: not a change of the listing, so not one
    /// here (a chmod and then a write in one build is the case this cannot tell from a
    /// write alone).
    fn of_entry(m: &Metadata) -> Change {
        let stat = crate::Stat::from_metadata(m);
        Change {
            dev: Some(stat.dev),
            newest_ns: if stat.ctime_ns > stat.mtime_ns {
                stat.ctime_ns
            } else {
                i64::MIN
            },
        }
    }

    /// The later of two changes, on one device or not.
    fn and(self, other: Change) -> Change {
        Change {
            dev: if self.dev == other.dev {
                self.dev
            } else {
                None
            },
            newest_ns: self.newest_ns.max(other.newest_ns),
        }
    }
}

/// An entry's kind. A symlink's kind includes what it points at: a symlink whose target
/// turns from a file into a directory is a different entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(Target),
    /// A FIFO, a socket, a device.
    Other,
}

/// What a symlink points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    File,
    Dir,
    Other,
    /// Nothing, or nothing that can be stat'ed (a loop, no permission).
    Missing,
}

impl Target {
    fn of(m: &Metadata) -> Target {
        let ft = m.file_type();
        if ft.is_file() {
            Target::File
        } else if ft.is_dir() {
            Target::Dir
        } else {
            Target::Other
        }
    }

    fn code(self) -> u8 {
        match self {
            Target::File => b'f',
            Target::Dir => b'd',
            Target::Other => b'o',
            Target::Missing => b'-',
        }
    }
}

impl Kind {
    /// Two bytes in the hash: the kind, then a symlink's target (0 otherwise).
    fn code(self) -> [u8; 2] {
        match self {
            Kind::File => [b'f', 0],
            Kind::Dir => [b'd', 0],
            Kind::Symlink(target) => [b'l', target.code()],
            Kind::Other => [b'o', 0],
        }
    }

    /// Whether the caller fingerprints this entry as a file: a regular file, or a symlink
    /// to one. (Reading a FIFO could block forever; a directory has no content.)
    pub(crate) fn is_file(self) -> bool {
        matches!(self, Kind::File | Kind::Symlink(Target::File))
    }
}

/// The permission bits (`0o7777`) of `m`; off Unix, read-only or not.
fn permissions(m: &Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        if m.permissions().readonly() {
            0o444
        } else {
            0o644
        }
    }
}

/// Lists a directory: sorted entry names, a directory's name followed by `/`.
///
/// Returns the names and the listing's state, which covers each entry's name, kind and
/// permission bits; `Absent` (and no names) when `path` is not a directory.
pub fn list_dir(path: &Path) -> io::Result<(Vec<String>, ListingState)> {
    let (names, state, _) = list_dir_changed(path, &|_| false, false)?;
    Ok((names, state))
}

/// [`list_dir`], and the latest change the listing could have seen ([`Change`]; `None`
/// when `path` is not a directory), for a directory listed after a command ran. The
/// changes the command made itself are left out: those of an entry for which `own` is
/// true, and the directory's own times when `own_dir` (the command created, removed or
/// renamed an entry in it).
pub fn list_dir_changed(
    path: &Path,
    own: &dyn Fn(&Path) -> bool,
    own_dir: bool,
) -> io::Result<(Vec<String>, ListingState, Option<Change>)> {
    let rd = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok((Vec::new(), ListingState::Absent, None));
        }
        Err(e) => return Err(e),
    };
    let mut entries: Vec<Entry> = Vec::new();
    for entry in rd {
        let entry = entry?;
        // `DirEntry::metadata` does not follow symlinks. An entry removed since the
        // directory was read is simply not listed: that is the directory's state now.
        let lstat = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if lstat.is_dir() {
            name.push('/');
        }
        let entry_path = entry.path();
        let mut e = Entry::new(name, &entry_path, &lstat);
        if own(&entry_path) {
            e.changed.newest_ns = i64::MIN;
        }
        entries.push(e);
    }
    // The directory's own times after its entries were read: a change made while they
    // were read shows here.
    let changed = match std::fs::metadata(path) {
        Ok(dir) => {
            let mut changed = Change::of_dir(&dir);
            if own_dir {
                changed.newest_ns = i64::MIN;
            }
            Some(entries.iter().fold(changed, |all, e| all.and(e.changed)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let state = ListingState::of_entries(&mut entries);
    Ok((
        entries.into_iter().map(|e| e.name).collect(),
        state,
        changed,
    ))
}
