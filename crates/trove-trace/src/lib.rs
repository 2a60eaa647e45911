//! trove's command runner and syscall tracer: runs a command recipe's command and, on
//! Linux, reports every file, absence, directory listing, program, symlink and network
//! peer it touched, so the engine can record them as the object's inputs.
//!
//! # Design
//!
//! [`run`] starts the command on a thread of its own with `fork` and `execve`, in its own
//! process group, standard input from `/dev/null`, standard output into the caller's file
//! (never through memory), standard error inherited, and `PR_SET_PDEATHSIG(SIGKILL)`. It
//! returns when the command's first process has ended, after killing whatever that
//! process left running. [`interrupt_all`] sends `SIGTERM` to every running command's
//! process group and `SIGKILL` after [`INTERRUPT_GRACE`]; each [`run`] then returns
//! [`RunError::Interrupted`].
//!
//! Traced (Linux 5.3+, x86_64 or aarch64, glibc), the child installs a seccomp-bpf filter
//! and the parent seizes it with ptrace before it `execve`s. The filter's
//! `SECCOMP_RET_TRACE` stops only the system calls that name files or peers: the open,
//! stat, access, readlink, getdents, exec, chdir, rename, unlink, mkdir, mknod, rmdir,
//! link, symlink, truncate, utimensat, chmod families and connect. Everything else (read,
//! write, mmap, fstat on a descriptor, ...) runs at full speed, with no stop. Because the
//! tracing is in the kernel, statically linked programs are traced like dynamic ones, and
//! every fork, vfork, clone and thread is followed. At each stop the tracer reads the
//! call with `PTRACE_GET_SYSCALL_INFO`, the names from the tracee's memory
//! (`process_vm_readv`) and the directories they are relative to from `/proc`; it resumes
//! to the call's exit to learn its result (an open that failed with `ENOENT` is an
//! absence, one that succeeded names its file exactly in `/proc/PID/fd`). Stat-like calls
//! (stat, access, readlink, chdir) and read-only opens (`open.rs`) are answered at the
//! first stop by looking the name up from the tracer, which gives their result for half
//! the stops. In dynamically linked programs most look-ups make no stop at all: a library
//! put first in `LD_PRELOAD` (`preload/preload.c`) makes them from a page the filter lets
//! through and logs them in a buffer the tracer drains at the process's next stop
//! (`preload.rs`).
//!
//! After the run, names are resolved the way the kernel resolved them, symlinks and `..`
//! included (the symlinks followed are inputs too), filtered (`/proc`, `/sys`, `/dev`,
//! the caller's prefixes and globs) and folded into a [`Report`]: sorted sets of absolute
//! paths, where a path the command wrote before using it is an output, not an input, and
//! an input written after use is flagged in [`Report::wrote_inputs`].
//!
//! If tracing cannot start (ptrace refused, seccomp unavailable, an older kernel, another
//! platform) the command runs untraced and [`Outcome::trace_unavailable`] says why.
//!
//! Known limits of the traced mode:
//! - a process making system calls of another ABI (a 32-bit program) is listed in
//!   [`Report::gaps`] rather than decoded;
//! - `fstatat`/`statx` calls carrying `AT_EMPTY_PATH` are taken for `fstat` of a
//!   descriptor and not stopped (glibc and Rust pass an empty name with that flag);
//! - files opened through `io_uring`, and network traffic without `connect` (UDP
//!   `sendto` with an address), are not seen;
//! - a program that itself uses ptrace (gdb, strace, LeakSanitizer) cannot attach to
//!   its children, and set-user-ID programs do not gain privileges (`PR_SET_NO_NEW_PRIVS`,
//!   which seccomp requires): such recipes need `trace: false`;
//! - group-stops are resumed, so a traced command cannot be stopped with `SIGSTOP`.
//!
//! # Dependencies
//!
//! - `nix` (Linux only): typed, `Errno`-returning wrappers for the ptrace requests that
//!   take or fill structures (`PTRACE_SEIZE` with its options,
//!   `PTRACE_GET_SYSCALL_INFO`, `PTRACE_GETEVENTMSG`) and for `process_vm_readv`, so the
//!   unsafe code is the kernel ABI's, not ours. Resuming a tracee uses `libc` directly:
//!   nix's `Signal` cannot carry the real-time signals a tracer must pass on.
//! - `libc`: the forked child, which may only make async-signal-safe calls on memory
//!   prepared before the fork, the syscall numbers per architecture, `waitpid`, and the
//!   classic-BPF and seccomp constants. The filter is a few dozen instructions assembled
//!   in `seccomp.rs` rather than built with `seccompiler`: that builder kills a process
//!   whose system call architecture differs from the filter's (a 32-bit program run by a
//!   build), where a tracer must let it run and report the gap.
//! - `globset`: the configuration's `trace_ignore` globs, matched as everywhere else in
//!   trove.
//! - `thiserror`: [`RunError`], typed and carrying the program and directory.
//!
//! # API boundary
//!
//! [`run`], [`Spec`], [`Outcome`], [`Report`], [`RunError`], [`interrupt_all`] and
//! [`INTERRUPT_GRACE`]; everything else is private.

#![deny(missing_docs)]

mod paths;
mod report;
mod runner;

#[cfg(not(target_os = "linux"))]
mod fallback;
#[cfg(not(target_os = "linux"))]
use fallback as imp;
#[cfg(target_os = "linux")]
mod spawn;
#[cfg(target_os = "linux")]
use spawn as imp;

#[cfg(tracer)]
mod cpu;
#[cfg(tracer)]
mod open;
#[cfg(tracer)]
mod preload;
#[cfg(tracer)]
mod seccomp;
#[cfg(tracer)]
mod syscalls;
#[cfg(tracer)]
mod tracee;
#[cfg(tracer)]
mod tracer;

pub use report::Report;

/// Makes every later trace of this process resume read-only opens to their exit stop
/// (`true`) instead of answering them at their seccomp stop (`false`, the default): for
/// tests and measurements that compare the two. Does nothing where there is no tracer.
#[doc(hidden)]
pub fn two_stop_opens(on: bool) {
    #[cfg(tracer)]
    open::TWO_STOP.store(on, std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(tracer))]
    let _ = on;
}
/// Makes every later trace of this process run its commands without the preloaded
/// look-up library (`false`: every look-up stops the tracee, as in a static program) or
/// with it (`true`, the default): for tests and measurements that compare the two. Does
/// nothing where there is no tracer.
#[doc(hidden)]
pub fn preload_lookups(on: bool) {
    #[cfg(tracer)]
    preload::OFF.store(!on, std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(tracer))]
    let _ = on;
}

/// The directory of the tracer's own files that commands load (never their inputs).
pub(crate) fn own_files() -> Option<std::path::PathBuf> {
    #[cfg(tracer)]
    return preload::library()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf);
    #[cfg(not(tracer))]
    None
}

/// `dir`, made with mode 0700 when missing, if it is a directory of this user that
/// others cannot write into (not a symlink to one); `None` otherwise. The tracer keeps its
/// look-up library in such a directory (what is in it is loaded into commands), and
/// trove its scratch directories.
pub fn own_directory(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        // `symlink_metadata`: a symlink planted at the name is not followed.
        let meta = std::fs::symlink_metadata(dir).ok()?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        (meta.is_dir() && meta.uid() == me && meta.mode() & 0o022 == 0).then(|| dir.to_path_buf())
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

pub use runner::{INTERRUPT_GRACE, Outcome, RunError, Spec, interrupt_all, run};
