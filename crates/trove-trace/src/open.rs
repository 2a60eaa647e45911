//! Read-only opens answered at their seccomp stop.
//!
//! An `open`/`openat` that cannot create, truncate or write is, for the report, a look-up:
//! the name resolved the way the call is about to resolve it, and whether that found a
//! readable file. The tracer does that look-up itself while the thread is stopped before
//! the call, instead of resuming it to a second stop at the call's exit: one stop instead
//! of two for the bulk of a compiler's or an interpreter's opens (gcc's include search,
//! Python's module search), and for a name that is not there one system call of the
//! tracer's (`openat2`) instead of three (resume to the exit, `wait4`,
//! `PTRACE_GET_SYSCALL_INFO`) and two context switches.
//!
//! The look-up is an `openat2(O_PATH, RESOLVE_NO_SYMLINKS)` of the absolute name, then,
//! if a symlink is on the way, `openat2(O_PATH, RESOLVE_NO_MAGICLINKS)`: it opens nothing
//! (no device or FIFO is ever opened by the tracer, `O_PATH` has no side effects and
//! checks no permission of the file itself) and refuses the `/proc` magic links, whose
//! meaning differs between the tracer and the tracee (`/dev/fd/N` is the tracer's own
//! descriptor here). Then, as the call's exit would have shown:
//! - not found (`ENOENT`, `ENOTDIR`, also `O_DIRECTORY` on a non-directory): `Absent`;
//! - refused on the way (`EACCES`): `Stat`, as a refused open is;
//! - found a regular file or a directory the caller may read (`faccessat2(R_OK,
//!   AT_EACCESS)` on the descriptor, the permission check of an `O_RDONLY` open): its
//!   exact name, `Read` of that and `Via` of the name given when the two differ: what the
//!   exit stop records from `/proc/TID/fd/N`. The exact name is the given one with `.`
//!   and `..` applied when a first look-up with `RESOLVE_NO_SYMLINKS` succeeds (no
//!   symlink on the way), else the kernel's (`/proc/self/fd/N`) after a second look-up
//!   that follows symlinks;
//! - found but not readable: `Stat`, as a refused open.
//!
//! Everything else takes the two-stop path of `tracer.rs`, unchanged: flags other than
//! `O_CLOEXEC`, `O_NOCTTY`, `O_NONBLOCK`, `O_DIRECTORY`, `O_LARGEFILE` (so `O_PATH`,
//! `O_NOFOLLOW`, `O_NOATIME`, every write), `openat2` calls (their `resolve` flags),
//! names under `/proc`, `/dev` and `/sys`, a magic link on the way (`ELOOP`), special
//! files (FIFOs, devices, sockets: their open can block or fail in ways a look-up cannot
//! tell), any other error, and kernels without `openat2` (before 5.6) or `faccessat2`
//! (before 5.8) or whose seccomp policy refuses them, found out at the first attempt.
//! Soundness: ARCHITECTURE.md, "Read-only opens at one stop".

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use libc::c_int;

use crate::paths::{lexical, may_pass_a_link};
use crate::report::{Log, Name, Use};

/// The kernel's `O_LARGEFILE` (glibc's headers define it as 0 on 64-bit targets, where
/// the kernel implies it, but a program may still pass the bit).
#[cfg(target_arch = "x86_64")]
const KERNEL_O_LARGEFILE: c_int = 0o100000;
#[cfg(target_arch = "aarch64")]
const KERNEL_O_LARGEFILE: c_int = 0o400000;

/// The flags a read-only open may carry and still be answered at one stop.
const ONE_STOP_FLAGS: c_int =
    libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_DIRECTORY | KERNEL_O_LARGEFILE;

/// Where the pseudo filesystems are; a name under them takes the two-stop path.
const PSEUDO: [&str; 3] = ["/proc", "/dev", "/sys"];

/// Set by [`crate::two_stop_opens`]: every open takes the two-stop path.
pub(crate) static TWO_STOP: AtomicBool = AtomicBool::new(false);

/// Whether this kernel has what the one-stop path needs; `None` until first tried.
pub(crate) struct OneStop {
    works: Option<bool>,
}

impl Default for OneStop {
    fn default() -> OneStop {
        OneStop {
            works: TWO_STOP.load(Ordering::Relaxed).then_some(false),
        }
    }
}

/// What the look-up made of an open.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Recorded: the call needs no exit stop.
    Recorded,
    /// Take the two-stop path.
    Exit,
}

impl OneStop {
    /// Answers the read-only open of `name` (absolute, as the tracee gave it joined to its
    /// directory) with `flags` by recording what its exit would have, or says it cannot.
    pub(crate) fn open(&mut self, log: &mut Log, name: &Path, flags: c_int) -> Answer {
        if self.works == Some(false)
            || flags & libc::O_ACCMODE != libc::O_RDONLY
            || flags & !ONE_STOP_FLAGS != 0
        {
            return Answer::Exit;
        }
        let plain = lexical(name);
        if PSEUDO.iter().any(|p| plain.starts_with(p)) {
            return Answer::Exit;
        }
        let Ok(c_name) = CString::new(name.as_os_str().as_bytes()) else {
            return Answer::Exit;
        };
        let raw = |what: Use| {
            (
                what,
                Name::Raw {
                    path: name.to_path_buf(),
                    follow: true,
                },
            )
        };
        let (what, recorded) = match look_up(&c_name, &plain, flags & libc::O_DIRECTORY) {
            Found::Missing => raw(Use::Absent),
            Found::Refused => raw(Use::Stat),
            Found::Other => return Answer::Exit,
            Found::Unsupported => {
                self.works = Some(false);
                return Answer::Exit;
            }
            Found::Readable(exact) => {
                self.works = Some(true);
                if may_pass_a_link(name, &exact) {
                    log.record(
                        Use::Via,
                        Name::Raw {
                            path: name.to_path_buf(),
                            follow: true,
                        },
                    );
                }
                (Use::Read, Name::Exact(exact))
            }
        };
        log.record(what, recorded);
        Answer::Recorded
    }
}

/// What an `O_RDONLY` open of a name would find.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// `ENOENT` or `ENOTDIR`.
    Missing,
    /// `EACCES`, on the way or on the file itself.
    Refused,
    /// A regular file or directory the caller may read, by the kernel's name for it.
    Readable(PathBuf),
    /// Anything the look-up does not decide (special files, magic links, other errors).
    Other,
    /// This kernel lacks `openat2` or `faccessat2`.
    Unsupported,
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Looks `name` up as an `O_RDONLY` open with `directory` (`O_DIRECTORY` or 0) would.
///
/// First with `RESOLVE_NO_SYMLINKS`: a name reached without any symlink is the file's
/// exact name once `.` and `..` are applied (the kernel walked exactly those components;
/// `..` of a real directory is its parent, across a mount point too), so no
/// `/proc/self/fd` read is needed; a look-up that fails before any symlink fails the same
/// way with them. Only a name with a symlink on the way (`ELOOP`) is looked up again,
/// following ordinary symlinks, and named by the kernel.
fn look_up(name: &CString, plain: &Path, directory: c_int) -> Found {
    match open_path(name, directory, libc::RESOLVE_NO_SYMLINKS) {
        Ok(fd) => {
            let found = readable(fd, Some(plain));
            // SAFETY: `fd` is the descriptor just opened, closed once.
            unsafe { libc::close(fd) };
            found
        }
        Err(libc::ELOOP) => match open_path(name, directory, libc::RESOLVE_NO_MAGICLINKS) {
            Ok(fd) => {
                let found = readable(fd, None);
                // SAFETY: as above.
                unsafe { libc::close(fd) };
                found
            }
            Err(errno) => failed(errno),
        },
        Err(errno) => failed(errno),
    }
}

/// What a failed look-up means.
fn failed(errno: c_int) -> Found {
    match errno {
        libc::ENOENT | libc::ENOTDIR => Found::Missing,
        libc::EACCES => Found::Refused,
        // No openat2 here, or a container's seccomp policy refusing it (older Docker
        // profiles answer EPERM, which no O_PATH look-up returns otherwise).
        libc::ENOSYS | libc::E2BIG | libc::EPERM => Found::Unsupported,
        _ => Found::Other,
    }
}

/// `openat2(name, O_PATH | directory, resolve)`: the descriptor or the errno.
fn open_path(name: &CString, directory: c_int, resolve: u64) -> Result<c_int, c_int> {
    // SAFETY: open_how is plain integers: all zeroes is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC | directory) as u64;
    how.resolve = resolve;
    // SAFETY: `name` is NUL-terminated and `how` a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            name.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd as c_int)
    }
}

/// What the open would give for the file `fd` (an `O_PATH` descriptor) refers to;
/// `exact` is its name when known without asking the kernel.
fn readable(fd: c_int, exact: Option<&Path>) -> Found {
    // SAFETY: fstat writes one `stat` into the zeroed buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Found::Other;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFDIR {
        return Found::Other;
    }
    // The permission check of an O_RDONLY open, on this very file, with the effective
    // ids (the tracer runs with the tracee's credentials: NO_NEW_PRIVS keeps set-user-ID
    // programs from gaining any).
    // SAFETY: the name is a static empty C string; AT_EMPTY_PATH makes `fd` the file.
    let access = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd,
            c"".as_ptr(),
            libc::R_OK,
            libc::AT_EACCESS | libc::AT_EMPTY_PATH,
        )
    };
    if access != 0 {
        return match errno() {
            libc::EACCES => Found::Refused,
            // No faccessat2 (or no AT_EMPTY_PATH for it), or a policy refusing it (EPERM:
            // older Docker profiles did).
            libc::ENOSYS | libc::EINVAL | libc::EPERM => Found::Unsupported,
            _ => Found::Other,
        };
    }
    if let Some(exact) = exact {
        return Found::Readable(exact.to_path_buf());
    }
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(exact)
            if exact.is_absolute() && !exact.as_os_str().as_bytes().ends_with(b" (deleted)") =>
        {
            Found::Readable(exact)
        }
        _ => Found::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn answer(name: &Path, flags: c_int) -> (Answer, Vec<(Use, Name)>) {
        let mut log = Log::default();
        let got = OneStop::default().open(&mut log, name, flags);
        (got, log.entries().to_vec())
    }

    #[test]
    fn a_missing_name_is_an_absence_and_a_found_one_a_read_of_its_exact_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/a.h"), "x").unwrap();
        symlink(root.join("real"), root.join("link")).unwrap();
        let raw = |p: PathBuf| Name::Raw {
            path: p,
            follow: true,
        };

        let missing = root.join("link/none.h");
        assert_eq!(
            answer(&missing, libc::O_RDONLY | libc::O_CLOEXEC),
            (Answer::Recorded, vec![(Use::Absent, raw(missing.clone()))])
        );
        let through = root.join("link/a.h");
        assert_eq!(
            answer(&through, libc::O_RDONLY),
            (
                Answer::Recorded,
                vec![
                    (Use::Via, raw(through.clone())),
                    (Use::Read, Name::Exact(root.join("real/a.h")))
                ]
            )
        );
        // No symlink on the way: no Via, as at the exit stop.
        let direct = root.join("real/./a.h");
        assert_eq!(
            answer(&direct, libc::O_RDONLY).1,
            vec![(Use::Read, Name::Exact(root.join("real/a.h")))]
        );
        // A `..` may undo a symlink (`link/../real` with `link` -> `real`): the report
        // resolves such a name and records the links it passes, here none.
        let up = root.join("real/../real/a.h");
        assert_eq!(
            answer(&up, libc::O_RDONLY).1,
            vec![
                (Use::Via, raw(up.clone())),
                (Use::Read, Name::Exact(root.join("real/a.h")))
            ]
        );
        // `..` after a symlink goes where the kernel goes: the link's target's parent.
        fs::create_dir(root.join("real/sub")).unwrap();
        symlink(root.join("real/sub"), root.join("deep")).unwrap();
        let after_link = root.join("deep/../a.h");
        assert_eq!(
            answer(&after_link, libc::O_RDONLY).1,
            vec![
                (Use::Via, raw(after_link.clone())),
                (Use::Read, Name::Exact(root.join("real/a.h")))
            ]
        );
        // O_DIRECTORY on a file fails with ENOTDIR: an absence, as at the exit stop.
        assert_eq!(
            answer(&direct, libc::O_RDONLY | libc::O_DIRECTORY).1,
            vec![(Use::Absent, raw(direct.clone()))]
        );
        // A file under a regular file: ENOTDIR.
        let under = root.join("real/a.h/b");
        assert_eq!(answer(&under, 0).1, vec![(Use::Absent, raw(under.clone()))]);
    }

    #[test]
    fn writes_special_files_magic_links_and_pseudo_filesystems_take_two_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::write(root.join("f"), "x").unwrap();
        let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated name.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        symlink("/proc/self/fd/0", root.join("magic")).unwrap();
        for (name, flags) in [
            (root.join("f"), libc::O_WRONLY),
            (root.join("f"), libc::O_RDONLY | libc::O_CREAT),
            (root.join("f"), libc::O_RDONLY | libc::O_TRUNC),
            (root.join("f"), libc::O_RDONLY | libc::O_NOFOLLOW),
            (root.join("f"), libc::O_PATH),
            (root.join("fifo"), libc::O_RDONLY),
            (root.join("magic"), libc::O_RDONLY),
            (PathBuf::from("/dev/null"), libc::O_RDONLY),
            (PathBuf::from("/proc/self/status"), libc::O_RDONLY),
        ] {
            assert_eq!(
                answer(&name, flags),
                (Answer::Exit, vec![]),
                "{name:?} {flags:#o}"
            );
        }
    }

    #[test]
    fn an_unreadable_file_is_a_stat_as_a_refused_open() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Root reads every file: what the tracee would see too.
            let tmp = tempfile::tempdir().unwrap();
            let f = fs::canonicalize(tmp.path()).unwrap().join("secret");
            fs::write(&f, "x").unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
            assert_eq!(answer(&f, 0).1, vec![(Use::Read, Name::Exact(f.clone()))]);
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let f = fs::canonicalize(tmp.path()).unwrap().join("secret");
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
        let raw = Name::Raw {
            path: f.clone(),
            follow: true,
        };
        assert_eq!(answer(&f, 0).1, vec![(Use::Stat, raw)]);
    }
}
