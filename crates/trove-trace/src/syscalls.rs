//! The system calls the tracer stops, per architecture, and what their arguments mean.
//!
//! Numbers come from `libc` for the target; the lists differ because aarch64 (like every
//! newer port) has only the `*at` forms: no `open`, `stat`, `access`, `rename`, ...

use libc::c_int;

/// `AUDIT_ARCH_*` of the native system call ABI, as the seccomp filter sees it.
#[cfg(target_arch = "x86_64")]
pub(crate) const NATIVE_ARCH: u32 = 0xc000_003e;
/// `AUDIT_ARCH_*` of the native system call ABI, as the seccomp filter sees it.
#[cfg(target_arch = "aarch64")]
pub(crate) const NATIVE_ARCH: u32 = 0xc000_00b7;

/// Bit set in the number of an x32 system call (x86_64 kernels only).
#[cfg(target_arch = "x86_64")]
pub(crate) const X32_BIT: u32 = 0x4000_0000;

/// `fchmodat2` (Linux 6.6) has the same number everywhere; `libc` lacks it on some targets.
const SYS_FCHMODAT2: i64 = 452;

/// Stat-like calls that a process mostly makes on an open descriptor (`fstat` is
/// `newfstatat(fd, "", AT_EMPTY_PATH)` in glibc): the filter lets them through when
/// their flags carry `AT_EMPTY_PATH`, given as (number, index of the flags argument).
pub(crate) const EMPTY_PATH_STATS: [(i64, u32); 2] =
    [(libc::SYS_newfstatat, 3), (libc::SYS_statx, 2)];

/// Every other system call the filter stops.
#[cfg(target_arch = "x86_64")]
pub(crate) const TRACED: &[i64] = &[
    libc::SYS_open,
    libc::SYS_creat,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getdents,
    libc::SYS_getdents64,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_chdir,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_rmdir,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_truncate,
    libc::SYS_utimensat,
    libc::SYS_chmod,
    libc::SYS_fchmodat,
    SYS_FCHMODAT2,
    libc::SYS_connect,
];

/// Every other system call the filter stops.
#[cfg(target_arch = "aarch64")]
pub(crate) const TRACED: &[i64] = &[
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_chdir,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_truncate,
    libc::SYS_utimensat,
    libc::SYS_fchmodat,
    SYS_FCHMODAT2,
    libc::SYS_connect,
];

/// A stopped system call, its arguments given meaning. Paths are tracee addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `open`, `creat`, `openat`.
    Open {
        dirfd: c_int,
        path: u64,
        flags: c_int,
    },
    /// `openat2`: the flags are in the `open_how` the tracee points at.
    OpenHow { dirfd: c_int, path: u64, how: u64 },
    /// The stat and access families; `flags` as for `fstatat` (`AT_SYMLINK_NOFOLLOW`,
    /// `AT_EMPTY_PATH`).
    Stat {
        dirfd: c_int,
        path: u64,
        flags: c_int,
    },
    /// `readlink`, `readlinkat`.
    Readlink { dirfd: c_int, path: u64 },
    /// `getdents`, `getdents64`.
    List { fd: c_int },
    /// `execve`, `execveat`.
    Exec {
        dirfd: c_int,
        path: u64,
        flags: c_int,
    },
    /// `chdir`.
    Chdir { path: u64 },
    /// A change to a name: unlink, rmdir, mkdir, mknod, the new name of link and
    /// symlink, truncate, utimensat.
    Write {
        dirfd: c_int,
        path: u64,
        follow: bool,
        /// Whether it changes what a listing of the name's directory records (an entry
        /// made or removed): all but truncate and utimensat.
        entry: bool,
    },
    /// The chmod family: a change to a name's mode, which a listing of its directory
    /// records, unless `mode` is the mode the name already has (the tracer looks).
    Chmod {
        dirfd: c_int,
        path: u64,
        follow: bool,
        mode: u32,
    },
    /// The rename family: both names change.
    Rename {
        from_dirfd: c_int,
        from: u64,
        to_dirfd: c_int,
        to: u64,
    },
    /// `connect`.
    Connect { addr: u64, len: u32 },
}

/// Whether an open with `flags` may change the file or its name (write access, create,
/// truncate).
pub(crate) fn open_writes(flags: c_int) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
}

impl Call {
    /// Whether the call may change a name or a file's content (an `openat2` counts: its
    /// flags are in the tracee's memory).
    pub(crate) fn may_write(&self) -> bool {
        match *self {
            Call::Open { flags, .. } => open_writes(flags),
            Call::OpenHow { .. }
            | Call::Write { .. }
            | Call::Chmod { .. }
            | Call::Rename { .. } => true,
            _ => false,
        }
    }
}

/// Gives meaning to system call `nr` with arguments `a`; `None` for one the tracer
/// ignores (or, for `utimensat`, a call on a descriptor rather than a name).
pub(crate) fn decode(nr: i64, a: [u64; 6]) -> Option<Call> {
    // Descriptors and flags are C ints passed in 64-bit registers: truncation is the ABI.
    let int = |i: usize| a[i] as c_int;
    let cwd = libc::AT_FDCWD;
    let nofollow = |flags: c_int| flags & libc::AT_SYMLINK_NOFOLLOW != 0;
    #[cfg(target_arch = "x86_64")]
    {
        let call = match nr {
            libc::SYS_open => Some(Call::Open {
                dirfd: cwd,
                path: a[0],
                flags: int(1),
            }),
            libc::SYS_creat => Some(Call::Open {
                dirfd: cwd,
                path: a[0],
                flags: libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            }),
            libc::SYS_stat | libc::SYS_access => Some(Call::Stat {
                dirfd: cwd,
                path: a[0],
                flags: 0,
            }),
            libc::SYS_lstat => Some(Call::Stat {
                dirfd: cwd,
                path: a[0],
                flags: libc::AT_SYMLINK_NOFOLLOW,
            }),
            libc::SYS_readlink => Some(Call::Readlink {
                dirfd: cwd,
                path: a[0],
            }),
            libc::SYS_getdents => Some(Call::List { fd: int(0) }),
            libc::SYS_rename => Some(Call::Rename {
                from_dirfd: cwd,
                from: a[0],
                to_dirfd: cwd,
                to: a[1],
            }),
            libc::SYS_renameat => Some(Call::Rename {
                from_dirfd: int(0),
                from: a[1],
                to_dirfd: int(2),
                to: a[3],
            }),
            libc::SYS_unlink | libc::SYS_rmdir | libc::SYS_mkdir | libc::SYS_mknod => {
                Some(Call::Write {
                    dirfd: cwd,
                    path: a[0],
                    follow: false,
                    entry: true,
                })
            }
            libc::SYS_link | libc::SYS_symlink => Some(Call::Write {
                dirfd: cwd,
                path: a[1],
                follow: false,
                entry: true,
            }),
            libc::SYS_chmod => Some(Call::Chmod {
                dirfd: cwd,
                path: a[0],
                follow: true,
                mode: a[1] as u32,
            }),
            _ => None,
        };
        if call.is_some() {
            return call;
        }
    }
    match nr {
        libc::SYS_openat => Some(Call::Open {
            dirfd: int(0),
            path: a[1],
            flags: int(2),
        }),
        libc::SYS_openat2 => Some(Call::OpenHow {
            dirfd: int(0),
            path: a[1],
            how: a[2],
        }),
        libc::SYS_newfstatat => Some(Call::Stat {
            dirfd: int(0),
            path: a[1],
            flags: int(3),
        }),
        libc::SYS_statx => Some(Call::Stat {
            dirfd: int(0),
            path: a[1],
            flags: int(2),
        }),
        libc::SYS_faccessat => Some(Call::Stat {
            dirfd: int(0),
            path: a[1],
            flags: 0,
        }),
        libc::SYS_faccessat2 => Some(Call::Stat {
            dirfd: int(0),
            path: a[1],
            flags: int(3),
        }),
        libc::SYS_readlinkat => Some(Call::Readlink {
            dirfd: int(0),
            path: a[1],
        }),
        libc::SYS_getdents64 => Some(Call::List { fd: int(0) }),
        libc::SYS_execve => Some(Call::Exec {
            dirfd: cwd,
            path: a[0],
            flags: 0,
        }),
        libc::SYS_execveat => Some(Call::Exec {
            dirfd: int(0),
            path: a[1],
            flags: int(4),
        }),
        libc::SYS_chdir => Some(Call::Chdir { path: a[0] }),
        libc::SYS_renameat2 => Some(Call::Rename {
            from_dirfd: int(0),
            from: a[1],
            to_dirfd: int(2),
            to: a[3],
        }),
        libc::SYS_unlinkat | libc::SYS_mkdirat | libc::SYS_mknodat => Some(Call::Write {
            dirfd: int(0),
            path: a[1],
            follow: false,
            entry: true,
        }),
        libc::SYS_linkat => Some(Call::Write {
            dirfd: int(2),
            path: a[3],
            follow: false,
            entry: true,
        }),
        libc::SYS_symlinkat => Some(Call::Write {
            dirfd: int(1),
            path: a[2],
            follow: false,
            entry: true,
        }),
        libc::SYS_truncate => Some(Call::Write {
            dirfd: cwd,
            path: a[0],
            follow: true,
            entry: false,
        }),
        // A null name makes utimensat work on the descriptor (futimens): no name changes.
        libc::SYS_utimensat if a[1] == 0 => None,
        libc::SYS_utimensat => Some(Call::Write {
            dirfd: int(0),
            path: a[1],
            follow: !nofollow(int(3)),
            entry: false,
        }),
        libc::SYS_fchmodat => Some(Call::Chmod {
            dirfd: int(0),
            path: a[1],
            follow: true,
            mode: a[2] as u32,
        }),
        SYS_FCHMODAT2 => Some(Call::Chmod {
            dirfd: int(0),
            path: a[1],
            follow: !nofollow(int(3)),
            mode: a[2] as u32,
        }),
        libc::SYS_connect => Some(Call::Connect {
            addr: a[1],
            len: a[2] as u32,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filtered_call_is_decoded() {
        for &nr in TRACED
            .iter()
            .chain(EMPTY_PATH_STATS.iter().map(|(nr, _)| nr))
        {
            assert!(
                decode(nr, [0, 1, 2, 3, 4, 5]).is_some(),
                "system call {nr} is not decoded"
            );
        }
    }

    #[test]
    fn openat_arguments_are_read_in_place() {
        let flags = (libc::O_WRONLY | libc::O_CREAT) as u64;
        assert_eq!(
            decode(
                libc::SYS_openat,
                [libc::AT_FDCWD as u64, 0x1000, flags, 0o644, 0, 0]
            ),
            Some(Call::Open {
                dirfd: libc::AT_FDCWD,
                path: 0x1000,
                flags: flags as c_int
            })
        );
    }
}
