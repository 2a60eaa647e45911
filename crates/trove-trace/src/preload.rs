//! Look-ups without a stop: the library preloaded into dynamically linked commands, and
//! the buffer of what it looked up.
//!
//! `preload/preload.c` (compiled by `build.rs`) maps one page at [`PAGE`], copies a
//! system-call stub into it, and makes the look-ups of its process (read-only opens, the
//! stat family, access, readlink, realpath's walk) from there; the seccomp filter lets
//! calls from that page through without a stop (`seccomp.rs`). Each look-up is appended
//! to the buffer after the page as the use the tracer would have recorded and the
//! absolute name. [`drain`] moves the buffer into the log and empties it; the tracer
//! calls it whenever a thread stops (a filtered call, a fork, the exit), before handling
//! the stop, so each process's uses stay in their order. ARCHITECTURE.md, "Look-ups
//! without a stop", says why this is sound and where it is off.
//!
//! The buffer: a 32-byte header (`magic`, `capacity`, `count`, and a generation only the
//! tracer writes, moved on each time it empties the buffer), then `count`
//! bytes of records, each a little-endian `u32` (use in bits 0-7, follow in bit 8, the
//! name's length in bits 16-31), the name, and padding to 8 bytes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::IoSlice;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::uio::{RemoteIoVec, process_vm_writev};
use nix::unistd::Pid;

use crate::report::{Log, Name, Use};
use crate::tracee::read_memory;

/// Where the library maps its stub page (rr's choice of address: below where the kernel
/// places mappings and the heap of a normal program).
pub(crate) const PAGE: u64 = 0x7000_0000;
/// The stub area's size: 64 KiB, the largest page size in use (aarch64 kernels with
/// 64 KiB pages), so that making the stub executable never touches the buffer.
pub(crate) const PAGE_SIZE: u64 = 0x1_0000;
/// Where the buffer starts.
const BUF: u64 = PAGE + PAGE_SIZE;
/// Its size, header included, as `preload.c` maps it.
const BUF_SIZE: u64 = 256 * 1024;
const HEADER: usize = 32;
const MAGIC: u64 = u64::from_le_bytes(*b"rovebuv1");
/// The longest name the library logs.
const NAME_MAX: usize = 4096;

/// The variable that turns the library off for every command this process traces
/// (`0`, `off`, `false` or `no`): the escape hatch for a program that misbehaves with a
/// preloaded library, and the A/B switch of the benchmarks.
pub(crate) const SWITCH: &str = "TROVE_TRACE_PRELOAD";

/// The compiled library.
static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libtrove-preload.so"));

/// Set by [`crate::preload_lookups`]`(false)`: commands run without the library.
pub(crate) static OFF: AtomicBool = AtomicBool::new(false);

/// The library's file, written once per process into a directory only this user may
/// write; `None` (the command is then traced by stops alone) when it cannot be.
pub(crate) fn library() -> Option<&'static Path> {
    static INSTALLED: OnceLock<Option<PathBuf>> = OnceLock::new();
    if OFF.load(Ordering::Relaxed) || switched_off() {
        return None;
    }
    INSTALLED.get_or_init(install).as_deref()
}

fn switched_off() -> bool {
    std::env::var(SWITCH).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "off" | "false" | "no"
        )
    })
}

/// The directory the library is written to: `$XDG_RUNTIME_DIR/trove`, else
/// `/tmp/trove-UID`. Its files are the tracer's own, never a command's input.
pub(crate) fn directory() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        // Set for a login session; a stale value (no such directory) falls back.
        Some(dir) if Path::new(&dir).is_absolute() && Path::new(&dir).is_dir() => {
            Path::new(&dir).join("trove")
        }
        // SAFETY: geteuid has no preconditions.
        _ => std::env::temp_dir().join(format!("trove-{}", unsafe { libc::geteuid() })),
    }
}

fn install() -> Option<PathBuf> {
    // Another user's directory, or one others may write into, could hold their library.
    let dir = crate::own_directory(&directory())?;
    // Canonical: the report's paths are, and the directory is one of its ignored prefixes.
    let dir = std::fs::canonicalize(&dir).ok()?;
    let file = dir.join(format!("libtrove-preload-{:016x}.so", fnv1a(LIBRARY)));
    if std::fs::read(&file).is_ok_and(|bytes| bytes == LIBRARY) {
        return Some(file);
    }
    // Written whole under a name of its own, then renamed: a command starting meanwhile
    // in another process never loads half a library.
    let partial = dir.join(format!(".partial-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o500)
        .open(&partial)
        .and_then(|mut f| std::io::Write::write_all(&mut f, LIBRARY))
        .and_then(|()| std::fs::rename(&partial, &file));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
        return None;
    }
    Some(file)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How far the tracer has read each process's buffer without emptying it.
#[derive(Default)]
pub(crate) struct Cursors {
    /// Per thread id: the buffer's generation and the bytes of it already logged.
    read: HashMap<i32, (u64, u64)>,
}

impl Cursors {
    /// Moves what thread `tid`'s process looked up since the last drain into `log` and
    /// empties its buffer; the process is stopped, so nothing writes the buffer meanwhile.
    /// A process without the library has nothing at [`BUF`]: nothing happens.
    pub(crate) fn drain(&mut self, tid: i32, log: &mut Log) {
        if let Some(generation) = self.read_new(tid, log) {
            self.read.remove(&tid);
            empty(tid, generation);
        }
    }

    /// Logs what thread `tid`'s process (running, perhaps) has looked up since it was
    /// last read, and leaves its buffer as it is: so that another process's write is
    /// logged after the look-ups made before it (the write-before-read rule).
    pub(crate) fn peek(&mut self, tid: i32, log: &mut Log) {
        let _ = self.read_new(tid, log);
    }

    /// Reads and logs the records of `tid`'s buffer not logged yet; the buffer's
    /// generation, `None` where there is no buffer.
    fn read_new(&mut self, tid: i32, log: &mut Log) -> Option<u64> {
        let mut header = [0u8; HEADER];
        if read_memory(tid, BUF, &mut header) != HEADER {
            return None;
        }
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        let (magic, capacity, count, generation) = (word(0), word(1), word(2), word(3));
        if magic != MAGIC {
            return None;
        }
        if capacity > BUF_SIZE || count > capacity || count % 8 != 0 {
            log.gaps.insert(damaged(tid));
            return None;
        }
        let from = match self.read.get(&tid) {
            Some(&(seen, at)) if seen == generation && at <= count => at,
            _ => 0,
        };
        let mut records = vec![0u8; (count - from) as usize];
        if read_memory(tid, BUF + HEADER as u64 + from, &mut records) != records.len() {
            log.gaps.insert(damaged(tid));
            return None;
        }
        if parse(&records, log).is_none() {
            log.gaps.insert(damaged(tid));
        }
        self.read.insert(tid, (generation, count));
        Some(generation)
    }

    /// Forgets a thread that has ended or whose process has a new program (and a new
    /// buffer, whose generation starts again).
    pub(crate) fn forget(&mut self, tid: i32) {
        self.read.remove(&tid);
    }
}

/// Logs the records; `None` if one is malformed (what came before it is logged).
fn parse(mut records: &[u8], log: &mut Log) -> Option<usize> {
    let mut moved = 0;
    while !records.is_empty() {
        let word = u32::from_le_bytes(records.get(..4)?.try_into().ok()?);
        let len = (word >> 16) as usize;
        let what = match word & 0xff {
            1 => Use::Read,
            2 => Use::Absent,
            3 => Use::Stat,
            4 => Use::Link,
            _ => return None,
        };
        let follow = word & 0x100 != 0;
        let name = records.get(4..4 + len)?;
        if len == 0 || len > NAME_MAX || name[0] != b'/' {
            return None;
        }
        let path = PathBuf::from(OsStr::from_bytes(name));
        log.record(what, Name::Raw { path, follow });
        moved += 1;
        let size = (4 + len + 7) & !7;
        records = records.get(size.min(records.len())..)?;
    }
    log.buffered += moved;
    Some(moved)
}

/// Sets the buffer's count to 0 and moves it to its next generation, so that a cursor
/// another thread kept of it starts again at 0 (the process is stopped: nothing writes
/// the buffer meanwhile).
fn empty(tid: i32, generation: u64) {
    let mut words = [0u8; 16];
    words[8..].copy_from_slice(&generation.wrapping_add(1).to_le_bytes());
    let remote = [RemoteIoVec {
        base: (BUF + 16) as usize,
        len: 16,
    }];
    if process_vm_writev(Pid::from_raw(tid), &[IoSlice::new(&words)], &remote).is_err() {
        use std::os::unix::fs::FileExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{tid}/mem"))
            .and_then(|mem| mem.write_at(&words, BUF + 16));
    }
}

fn damaged(tid: i32) -> String {
    let who = crate::tracee::proc_link(tid, "exe")
        .map_or_else(|| format!("process {tid}"), |exe| exe.display().to_string());
    format!(
        "{who} left a damaged look-up buffer (another thread made without pthread_create?); \
         some of the files it looked up may be missing"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn record(what: u32, follow: bool, name: &[u8]) -> Vec<u8> {
        let word = what | u32::from(follow) << 8 | (name.len() as u32) << 16;
        let mut out = word.to_le_bytes().to_vec();
        out.extend_from_slice(name);
        out.resize((4 + name.len() + 7) & !7, 0);
        out
    }

    #[test]
    fn the_library_is_written_once_into_a_directory_only_this_user_may_write() {
        let file = library().expect("the library can be installed here");
        assert_eq!(std::fs::read(file).unwrap(), LIBRARY);
        let dir = std::fs::metadata(file.parent().unwrap()).unwrap();
        // SAFETY: geteuid has no preconditions.
        assert_eq!(dir.uid(), unsafe { libc::geteuid() });
        assert_eq!(dir.mode() & 0o022, 0, "{:o}", dir.mode());
        assert_eq!(library(), Some(file), "installed once per process");
    }

    #[test]
    fn records_become_uses_in_their_order_and_a_bad_one_stops_the_parse() {
        let mut bytes = record(2, true, b"/usr/local/include/stdio.h");
        bytes.extend(record(4, false, b"/usr/bin/cc"));
        bytes.extend(record(1, true, b"/usr/include/stdio.h"));
        let mut log = Log::default();
        assert_eq!(parse(&bytes, &mut log), Some(3));
        let raw = |p: &str, follow| Name::Raw {
            path: PathBuf::from(p),
            follow,
        };
        assert_eq!(
            log.entries(),
            [
                (Use::Absent, raw("/usr/local/include/stdio.h", true)),
                (Use::Link, raw("/usr/bin/cc", false)),
                (Use::Read, raw("/usr/include/stdio.h", true)),
            ]
        );
        for bad in [
            record(9, true, b"/x"),
            record(1, true, b"relative"),
            record(1, true, b""),
            vec![1, 0, 200, 0, b'/'],
        ] {
            let mut log = Log::default();
            let mut bytes = record(3, true, b"/kept");
            bytes.extend(bad);
            assert_eq!(parse(&bytes, &mut log), None);
            assert_eq!(
                log.entries().len(),
                1,
                "what came before a bad record is kept"
            );
        }
    }
}
