//! Reading a stopped tracee: its memory (path strings, `open_how`, socket addresses) and
//! what `/proc` says about it (working directory, descriptors, executable, mappings).

use std::ffi::OsStr;
use std::fs;
use std::io::IoSliceMut;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;

/// The longest name read from a tracee (the kernel's `PATH_MAX`).
const PATH_MAX: usize = 4096;
/// Reads never cross a 4 KiB boundary in one request, so a string ending just before an
/// unmapped page is still read (every page size in use is a multiple of 4 KiB).
const CHUNK: u64 = 4096;
/// How much of a name one `process_vm_readv` reads (never past the page's end).
const FIRST_READ: usize = 256;

/// Fills `buf` from the tracee's memory at `addr`; returns how many bytes were read.
/// Uses `process_vm_readv`, and `/proc/PID/mem` where that system call is refused.
pub(crate) fn read_memory(tid: i32, addr: u64, buf: &mut [u8]) -> usize {
    let pid = Pid::from_raw(tid);
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: buf.len(),
    }];
    match process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &remote) {
        Ok(n) => n,
        Err(Errno::ENOSYS | Errno::EPERM) => fs::File::open(format!("/proc/{tid}/mem"))
            .and_then(|mem| mem.read_at(buf, addr))
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// The NUL-terminated string at `addr`, or `None` when it cannot be read or is longer
/// than `PATH_MAX` (the system call then fails with `EFAULT` or `ENAMETOOLONG` anyway).
pub(crate) fn read_string(tid: i32, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = addr;
    // Most names are far shorter than a page: reading a page each time copied (and
    // zeroed) 4 KiB per stop for a name of 50 bytes.
    let mut chunk = [0u8; FIRST_READ];
    while out.len() < PATH_MAX {
        let len = ((CHUNK - at % CHUNK) as usize).min(FIRST_READ);
        let n = read_memory(tid, at, &mut chunk[..len]);
        if n == 0 {
            return None;
        }
        if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..nul]);
            return Some(out);
        }
        out.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    None
}

/// A `/proc` magic link of the tracee (`cwd`, `exe`, `fd/N`) when it names an absolute
/// path (a pipe or socket descriptor names none).
pub(crate) fn proc_link(tid: i32, what: &str) -> Option<PathBuf> {
    let target = fs::read_link(format!("/proc/{tid}/{what}")).ok()?;
    target.is_absolute().then_some(target)
}

/// The directory a name passed with `dirfd` is relative to.
pub(crate) fn base_dir(tid: i32, dirfd: libc::c_int) -> Option<PathBuf> {
    if dirfd == libc::AT_FDCWD {
        proc_link(tid, "cwd")
    } else {
        proc_link(tid, &format!("fd/{dirfd}"))
    }
}

/// The absolute, not yet resolved name a tracee passed: `name` joined to the directory
/// it is relative to. `None` for an empty or unreadable name.
pub(crate) fn absolute_name(tid: i32, dirfd: libc::c_int, addr: u64) -> Option<PathBuf> {
    let bytes = read_string(tid, addr)?;
    let name = Path::new(OsStr::from_bytes(&bytes));
    if bytes.is_empty() {
        None
    } else if name.is_absolute() {
        Some(name.to_path_buf())
    } else {
        Some(base_dir(tid, dirfd)?.join(name))
    }
}

/// The files mapped into the tracee (right after an exec: the program and the dynamic
/// loader the kernel loaded without any `open` the filter could see).
pub(crate) fn mapped_files(tid: i32) -> Vec<PathBuf> {
    let Ok(maps) = fs::read(format!("/proc/{tid}/maps")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // address perms offset dev inode pathname; the path starts at the first '/'.
        let Some(slash) = line.iter().position(|&b| b == b'/') else {
            continue;
        };
        let path = &line[slash..];
        if path.ends_with(b" (deleted)") {
            continue;
        }
        let path = PathBuf::from(OsStr::from_bytes(path));
        if !files.contains(&path) {
            files.push(path);
        }
    }
    files
}

/// Renders the `sockaddr` a tracee passed to `connect`.
pub(crate) enum Peer {
    /// `AF_INET` or `AF_INET6`, as `ip:port` or `[ip6]:port`.
    Net(String),
    /// `AF_UNIX`: a path (relative names resolved) or `@name` for an abstract socket.
    Unix(String),
}

/// Reads and renders the socket address at `addr`; `None` for other families
/// (netlink, `AF_UNSPEC` disconnects) and unreadable ones.
pub(crate) fn read_peer(tid: i32, addr: u64, len: u32) -> Option<Peer> {
    let mut buf = [0u8; 128];
    let len = (len as usize).min(buf.len());
    if len < 2 {
        return None;
    }
    let n = read_memory(tid, addr, &mut buf[..len]);
    let buf = &buf[..n];
    let family = i32::from(u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]));
    match family {
        libc::AF_INET if n >= 8 => {
            let port = u16::from_be_bytes([buf[2], buf[3]]);
            let ip = std::net::Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            Some(Peer::Net(std::net::SocketAddrV4::new(ip, port).to_string()))
        }
        libc::AF_INET6 if n >= 24 => {
            let port = u16::from_be_bytes([buf[2], buf[3]]);
            let octets: [u8; 16] = buf[8..24].try_into().ok()?;
            let ip = std::net::Ipv6Addr::from(octets);
            Some(Peer::Net(
                std::net::SocketAddrV6::new(ip, port, 0, 0).to_string(),
            ))
        }
        libc::AF_UNIX if n > 2 => {
            let path = &buf[2..];
            if path[0] == 0 {
                let name = &path[1..];
                Some(Peer::Unix(format!("@{}", String::from_utf8_lossy(name))))
            } else {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                let name = Path::new(OsStr::from_bytes(&path[..end]));
                let name = if name.is_absolute() {
                    name.to_path_buf()
                } else {
                    base_dir(tid, libc::AT_FDCWD)?.join(name)
                };
                Some(Peer::Unix(name.to_string_lossy().into_owned()))
            }
        }
        _ => None,
    }
}
