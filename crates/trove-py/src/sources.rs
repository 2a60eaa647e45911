//! The source-file watch: while an engine of this process watches (`engine.watch()`),
//! the directories of the source files behind `py-ast` inputs are watched too (inotify),
//! so that a `py-ast` input none of whose files changed since its digest was taken is
//! answered without a system call — the engine's watcher does that for files, but
//! cannot for external inputs, and the `stat` was half of a watched memory hit.
//!
//! Soundness: a directory is watched before the file in it is `stat`ed, so any change
//! after the stat produces an event; every event bumps [`generation`] before it marks
//! entries changed (`trove::code` marks an entry clean only when no event arrived
//! while it was being checked) and again after (`crate::fast` reads the generation
//! before it reads an entry's flag). An overflowed queue marks every entry changed. As with
//! the engine's watcher, a change is seen once its event is read (microseconds), and
//! without a watcher every request checks with `stat`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Engines of this process that watch.
static WATCHERS: AtomicUsize = AtomicUsize::new(0);
/// Events read so far (any directory).
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// Whether entries may be answered from their clean flag.
pub(crate) fn watching() -> bool {
    WATCHERS.load(Ordering::Acquire) > 0
}

/// The number of events read so far: an entry checked while it did not move is clean.
pub(crate) fn generation() -> u64 {
    EVENTS.load(Ordering::SeqCst)
}

/// A forked child has no reader thread: it does not watch (its engines reopen).
extern "C" fn forked_child() {
    WATCHERS.store(0, Ordering::Release);
}

/// An engine starts watching.
pub(crate) fn start() {
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a handler that only stores to an atomic.
    AT_FORK.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(forked_child));
    });
    if WATCHERS.fetch_add(1, Ordering::AcqRel) == 0 {
        // Entries marked while nobody watched may name directories no longer watched.
        crate::code::all_changed();
    }
}

/// An engine stops watching.
pub(crate) fn stop() {
    let _ = WATCHERS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use crate::tracking::lock;
    use std::collections::HashMap;
    use std::ffi::{CString, OsStr};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;
    use std::sync::Mutex;

    struct Inotify {
        fd: i32,
        pid: u32,
        /// Watched directories and their watch descriptors, both ways.
        dirs: HashMap<PathBuf, i32>,
        wds: HashMap<i32, PathBuf>,
    }

    static INOTIFY: Mutex<Option<Inotify>> = Mutex::new(None);

    const MASK: u32 = libc::IN_MODIFY
        | libc::IN_ATTRIB
        | libc::IN_CLOSE_WRITE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF;

    /// Watches `dir` (once); false when it cannot be (inotify unavailable, its limit).
    pub(crate) fn watch_dir(dir: &Path) -> bool {
        let mut guard = lock(&INOTIFY);
        let pid = std::process::id();
        if guard.as_ref().is_some_and(|i| i.pid != pid) {
            // A forked child: the instance and its reader belong to the parent.
            *guard = None;
        }
        if guard.is_none() {
            // SAFETY: a plain system call.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            if fd < 0 {
                return false;
            }
            let spawned = std::thread::Builder::new()
                .name("trove-sources".into())
                .spawn(move || read_events(fd));
            if spawned.is_err() {
                // SAFETY: our descriptor, never shared.
                unsafe { libc::close(fd) };
                return false;
            }
            *guard = Some(Inotify {
                fd,
                pid,
                dirs: HashMap::new(),
                wds: HashMap::new(),
            });
        }
        let inotify = guard.as_mut().expect("set above");
        if inotify.dirs.contains_key(dir) {
            return true;
        }
        let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a NUL-terminated path and our descriptor.
        let wd = unsafe { libc::inotify_add_watch(inotify.fd, path.as_ptr(), MASK) };
        if wd < 0 {
            return false;
        }
        inotify.dirs.insert(dir.to_owned(), wd);
        inotify.wds.insert(wd, dir.to_owned());
        true
    }

    /// The reader: every event bumps the generation, then marks what it touched.
    fn read_events(fd: i32) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reading into our buffer from our descriptor.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The descriptor is gone: nothing more can be vouched for.
                EVENTS.fetch_add(1, Ordering::SeqCst);
                crate::code::all_changed();
                EVENTS.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let mut at = 0usize;
            let header = std::mem::size_of::<libc::inotify_event>();
            while at + header <= n as usize {
                // SAFETY: the kernel wrote a whole event here (an unaligned read).
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                let name_bytes = &buf[at + header..at + header + event.len as usize];
                let name_len = name_bytes
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(name_bytes.len());
                let name = OsStr::from_bytes(&name_bytes[..name_len]).to_owned();
                at += header + event.len as usize;
                EVENTS.fetch_add(1, Ordering::SeqCst);
                if event.mask & libc::IN_Q_OVERFLOW != 0 {
                    crate::code::all_changed();
                    EVENTS.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let dir = {
                    let mut guard = lock(&INOTIFY);
                    let Some(inotify) = guard.as_mut().filter(|i| i.fd == fd) else {
                        crate::code::all_changed();
                        EVENTS.fetch_add(1, Ordering::SeqCst);
                        continue;
                    };
                    let dir = inotify.wds.get(&event.wd).cloned();
                    if event.mask & libc::IN_IGNORED != 0
                        && let Some(dir) = &dir
                    {
                        inotify.wds.remove(&event.wd);
                        inotify.dirs.remove(dir);
                    }
                    dir
                };
                match dir {
                    None => crate::code::all_changed(),
                    Some(dir) if name.is_empty() => crate::code::dir_changed(&dir),
                    Some(dir) => crate::code::file_changed(
                        &dir.join(PathBuf::from(std::ffi::OsString::from_vec(name.into_vec()))),
                    ),
                }
                // And after: a reader that reads the generation before it looks at an
                // entry's flag (`crate::fast`) cannot miss this change either.
                EVENTS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    /// No source watch here: every request checks with `stat`.
    pub(crate) fn watch_dir(_dir: &Path) -> bool {
        false
    }
}

pub(crate) use imp::watch_dir;
