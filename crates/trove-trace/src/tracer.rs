//! The ptrace loop: follows every process and thread of a command and logs the system
//! calls the seccomp filter stops.
//!
//! A filtered call stops its thread at `PTRACE_EVENT_SECCOMP`, before it runs. The tracer
//! reads the call (`PTRACE_GET_SYSCALL_INFO`) and its names (tracee memory, `/proc`),
//! resumes it with `PTRACE_SYSCALL` to see its result at the syscall-exit stop, logs the
//! use, and resumes with `PTRACE_CONT`. Stat-like calls, whose result is only whether and
//! what the name is, are answered at the first stop by looking the name up (see
//! [`Tracer::probe`]), and so are opens that cannot write (`crate::open`). Forks, vforks,
//! clones and execs are followed
//! through the ptrace options. At every stop but an exec's, what the process's preloaded
//! library looked up without a stop is drained into the log first (`crate::preload`).
//! The loop ends when `waitpid` has no child or tracee left;
//! once the command's first process has ended, every process still traced is killed, so
//! a background process cannot keep the run (or a stopped tracee) alive.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use libc::c_int;
use nix::sys::ptrace::{self, Options};
use nix::unistd::Pid;

use crate::open::{Answer, OneStop};
use crate::paths::may_pass_a_link;
use crate::report::{Log, Name, Use};
use crate::syscalls::{Call, NATIVE_ARCH, decode};
use crate::tracee::{self, Peer, absolute_name, base_dir, proc_link};

/// The ptrace options every tracee carries.
pub(crate) fn options() -> Options {
    Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_TRACEEXIT
        | Options::PTRACE_O_EXITKILL
}

/// Why the tracer cannot run on this kernel, if it cannot.
pub(crate) fn unavailable() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (version < (5, 3)).then(|| {
        format!(
            "the kernel is Linux {}, older than 5.3, which lacks PTRACE_GET_SYSCALL_INFO",
            release.trim()
        )
    })
}

/// Traces the command whose first process `leader` is seized and about to `execve`.
/// Returns the leader's raw wait status (`None` if it was never seen to end) and the log.
pub(crate) fn trace(leader: i32, log: Log) -> (Option<i32>, Log) {
    let mut tracer = Tracer {
        leader,
        leader_status: None,
        live: HashSet::from([leader]),
        pending: HashMap::new(),
        flagged: HashSet::new(),
        cpu: crate::cpu::Sharing::start(leader),
        one_stop: OneStop::default(),
        buffers: crate::preload::Cursors::default(),
        log,
    };
    loop {
        let mut status = 0;
        // __WNOTHREAD: only this thread's children and tracees (the runner thread has no
        // other children), never a child another thread of the process is waiting for.
        // SAFETY: waitpid writes the status it is given.
        let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
        if tid < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break; // ECHILD: every traced process is gone.
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            tracer.exited(tid, status);
        } else if libc::WIFSTOPPED(status) {
            tracer.stopped(tid, status);
        }
    }
    (tracer.leader_status, tracer.log)
}

/// A system call seen at its seccomp stop, waiting for its result.
enum Pending {
    Open {
        name: PathBuf,
        flags: c_int,
        /// `O_CREAT` of a name that did not exist when the call was made: if it succeeds,
        /// its directory gains an entry.
        creates: bool,
    },
    List {
        dir: PathBuf,
    },
    Exec {
        name: PathBuf,
    },
    Write {
        name: PathBuf,
        follow: bool,
        entry: bool,
    },
    Rename {
        from: Option<PathBuf>,
        to: Option<PathBuf>,
    },
    Connect {
        peer: Peer,
    },
}

struct Tracer {
    leader: i32,
    leader_status: Option<i32>,
    /// Threads and processes attached and not yet seen to end.
    live: HashSet<i32>,
    /// Per thread, the system call between its seccomp stop and its exit stop.
    pending: HashMap<i32, Pending>,
    /// Threads already reported in `gaps` for calls of another ABI.
    flagged: HashSet<i32>,
    /// The tracer and a sequential command held on one CPU (`crate::cpu`).
    cpu: crate::cpu::Sharing,
    /// Read-only opens answered at their seccomp stop (`crate::open`).
    one_stop: OneStop,
    /// The preloaded library's buffers read so far (`crate::preload`).
    buffers: crate::preload::Cursors,
    log: Log,
}

/// Whether an open with `flags` of `name` (looked up now, while the tracee is stopped at
/// the call) would make a new entry: `O_CREAT` of a name nothing is at. Through a
/// dangling symlink the file is made at its target, in another directory: counted as a
/// new entry too, which at worst makes the symlink's directory's listing count as
/// written.
fn creates(name: &std::path::Path, flags: c_int) -> bool {
    flags & libc::O_CREAT != 0 && std::fs::symlink_metadata(name).is_err()
}

/// Whether a chmod of `name` to `mode` (looked up now, while the tracee is stopped at the
/// call) leaves the mode as it is. Then it changes nothing a listing of the directory
/// records (only the name's ctime, as a touch changes its times): a write of the name,
/// not an entry change, so a build that sets the same mode on every run is stored.
fn keeps_mode(name: &std::path::Path, follow: bool, mode: u32) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let now = if follow {
        std::fs::metadata(name)
    } else {
        std::fs::symlink_metadata(name)
    };
    now.is_ok_and(|now| now.permissions().mode() & 0o7777 == mode & 0o7777)
}

/// How a stopped tracee is let go on.
fn resume(tid: i32, request: libc::c_uint, signal: c_int) {
    // nix's resume calls take a `Signal`, which cannot carry the real-time signals a
    // tracer must pass on; the raw request can. Errors mean the tracee is gone.
    // SAFETY: PTRACE_CONT/PTRACE_SYSCALL take no pointers; `data` is the signal number.
    unsafe {
        libc::ptrace(request, tid, 0, signal as libc::c_long);
    }
}

impl Tracer {
    fn exited(&mut self, tid: i32, status: i32) {
        self.live.remove(&tid);
        self.pending.remove(&tid);
        self.buffers.forget(tid);
        if tid == self.leader {
            self.leader_status = Some(status);
            // The command is over; what it left running goes too. A tracee cannot be
            // reaped by anyone before this tracer has seen it end, so these ids are ours.
            for &tid in &self.live {
                // SAFETY: kill has no memory effects.
                unsafe { libc::kill(tid, libc::SIGKILL) };
            }
        }
    }

    fn stopped(&mut self, tid: i32, status: i32) {
        self.live.insert(tid);
        let signal = libc::WSTOPSIG(status);
        let event = status >> 16;
        if event != 0 && event != libc::PTRACE_EVENT_STOP && event != libc::PTRACE_EVENT_EXEC {
            // What the process looked up without a stop comes before this stop (a filtered
            // call, a fork, its exit; not an exec, whose old memory is gone and was read at
            // the execve's own stop).
            self.buffers.drain(tid, &mut self.log);
        }
        if self.leader_status.is_some() {
            // A process that appeared after the command ended (a fork racing its end).
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(tid, libc::SIGKILL) };
            resume(tid, libc::PTRACE_CONT, 0);
            return;
        }
        let mut inject = 0;
        if signal == libc::SIGTRAP | 0x80 {
            self.syscall_exit(tid);
        } else if event == libc::PTRACE_EVENT_SECCOMP {
            self.seccomp_stop(tid);
        } else if event == libc::PTRACE_EVENT_EXEC {
            self.exec_event(tid);
        } else if matches!(
            event,
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE
        ) {
            if let Ok(child) = ptrace::getevent(Pid::from_raw(tid)) {
                self.live.insert(child as i32);
                self.cpu
                    .appeared(event == libc::PTRACE_EVENT_CLONE, self.live.iter());
            }
        } else if event == 0 {
            // A signal on its way to the tracee: deliver it.
            inject = signal;
        }
        // Anything else is PTRACE_EVENT_EXIT (drained above) or PTRACE_EVENT_STOP: a new
        // tracee's first stop, or a group-stop, which is resumed (a traced command cannot
        // be stopped by SIGSTOP).
        let request = if self.pending.contains_key(&tid) {
            libc::PTRACE_SYSCALL
        } else {
            libc::PTRACE_CONT
        };
        resume(tid, request, inject);
    }

    /// `execve` succeeded in thread `tid`; if another thread called it, that thread now
    /// has the leader's id and its old id is gone without an exit report.
    fn exec_event(&mut self, tid: i32) {
        let Ok(former) = ptrace::getevent(Pid::from_raw(tid)) else {
            self.buffers.forget(tid);
            return;
        };
        let former = former as i32;
        self.buffers.forget(tid);
        self.buffers.forget(former);
        if former != tid {
            self.live.remove(&former);
            if let Some(pending) = self.pending.remove(&former) {
                self.pending.insert(tid, pending);
            }
        }
    }

    fn seccomp_stop(&mut self, tid: i32) {
        let Ok(info) = ptrace::syscall_info(Pid::from_raw(tid)) else {
            return;
        };
        if info.op != libc::PTRACE_SYSCALL_INFO_SECCOMP {
            return;
        }
        // SAFETY: `op` says the kernel filled the seccomp member of the union.
        let call = unsafe { info.u.seccomp };
        #[cfg(target_arch = "x86_64")]
        let x32 = call.nr & u64::from(crate::syscalls::X32_BIT) != 0;
        #[cfg(not(target_arch = "x86_64"))]
        let x32 = false;
        if info.arch != NATIVE_ARCH || x32 {
            self.foreign(tid, info.arch);
            return;
        }
        let Some(call) = decode(call.nr as i64, call.args) else {
            return;
        };
        if call.may_write() {
            // The other processes' look-ups so far come before this write in the log.
            for &other in self.live.iter().filter(|&&t| t != tid) {
                self.buffers.peek(other, &mut self.log);
            }
        }
        if let Some(pending) = self.enter(tid, call) {
            self.pending.insert(tid, pending);
        }
    }

    /// Notes, once per thread, that it makes calls the tracer does not decode.
    fn foreign(&mut self, tid: i32, arch: u32) {
        if self.flagged.insert(tid) {
            let who = proc_link(tid, "exe")
                .map_or_else(|| "a process".to_string(), |exe| exe.display().to_string());
            self.log.gaps.insert(format!(
                "{who} made system calls of another ABI (32-bit or x32, audit arch {arch:#x}); \
                 the files they touched were not recorded"
            ));
        }
    }

    /// Answers a stat-like call (stat, access, readlink, chdir) at its seccomp stop by
    /// looking the name up here, as the call is about to: nothing runs in the tracee in
    /// between, so the answer is the call's own, for one `stat` instead of a second stop
    /// at the call's exit (gcc makes thousands of readlink calls per compile).
    fn probe(&mut self, name: PathBuf, follow: bool, readlink: bool) {
        let found = if follow {
            std::fs::metadata(&name)
        } else {
            std::fs::symlink_metadata(&name)
        };
        let what = match found {
            Ok(meta) if readlink && meta.file_type().is_symlink() => Use::Link,
            Ok(_) => Use::Stat,
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => Use::Absent,
                // Refused for its permissions: it exists, and its mode decided.
                Some(libc::EACCES) => Use::Stat,
                _ => return,
            },
        };
        self.log.record(what, Name::Raw { path: name, follow });
    }

    /// Reads what a stopped call names, while the tracee cannot change it.
    fn enter(&mut self, tid: i32, call: Call) -> Option<Pending> {
        let named = |dirfd: c_int, path: u64| absolute_name(tid, dirfd, path);
        let follow = |flags: c_int| flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        Some(match call {
            Call::Open { dirfd, path, flags } => {
                let name = named(dirfd, path)?;
                if self.one_stop.open(&mut self.log, &name, flags) == Answer::Recorded {
                    return None;
                }
                let creates = creates(&name, flags);
                Pending::Open {
                    name,
                    flags,
                    creates,
                }
            }
            Call::OpenHow { dirfd, path, how } => {
                // struct open_how starts with the u64 flags.
                let mut bytes = [0u8; 8];
                if tracee::read_memory(tid, how, &mut bytes) != 8 {
                    return None;
                }
                let flags = u64::from_ne_bytes(bytes) as c_int;
                let name = named(dirfd, path)?;
                let creates = creates(&name, flags);
                Pending::Open {
                    name,
                    flags,
                    creates,
                }
            }
            Call::Stat { dirfd, path, flags } => {
                self.probe(named(dirfd, path)?, follow(flags), false);
                return None;
            }
            Call::Readlink { dirfd, path } => {
                self.probe(named(dirfd, path)?, false, true);
                return None;
            }
            Call::Chdir { path } => {
                self.probe(named(libc::AT_FDCWD, path)?, true, false);
                return None;
            }
            Call::List { fd } => Pending::List {
                dir: base_dir(tid, fd)?,
            },
            Call::Exec { dirfd, path, flags } => {
                let name = match named(dirfd, path) {
                    Some(name) => name,
                    // execveat(fd, "", AT_EMPTY_PATH): fexecve of an open file.
                    None if flags & libc::AT_EMPTY_PATH != 0 => base_dir(tid, dirfd)?,
                    None => return None,
                };
                Pending::Exec { name }
            }
            Call::Write {
                dirfd,
                path,
                follow,
                entry,
            } => Pending::Write {
                name: named(dirfd, path)?,
                follow,
                entry,
            },
            Call::Chmod {
                dirfd,
                path,
                follow,
                mode,
            } => {
                let name = named(dirfd, path)?;
                let entry = !keeps_mode(&name, follow, mode);
                Pending::Write {
                    name,
                    follow,
                    entry,
                }
            }
            Call::Rename {
                from_dirfd,
                from,
                to_dirfd,
                to,
            } => Pending::Rename {
                from: named(from_dirfd, from),
                to: named(to_dirfd, to),
            },
            Call::Connect { addr, len } => Pending::Connect {
                peer: tracee::read_peer(tid, addr, len)?,
            },
        })
    }

    fn syscall_exit(&mut self, tid: i32) {
        let Some(pending) = self.pending.remove(&tid) else {
            return;
        };
        let Ok(info) = ptrace::syscall_info(Pid::from_raw(tid)) else {
            return;
        };
        if info.op != libc::PTRACE_SYSCALL_INFO_EXIT {
            return;
        }
        // SAFETY: `op` says the kernel filled the exit member of the union.
        let exit = unsafe { info.u.exit };
        let errno = if exit.is_error != 0 {
            -exit.sval as c_int
        } else {
            0
        };
        // ERESTARTSYS and kin: the call will be made again and stop again.
        if (512..=516).contains(&errno) {
            return;
        }
        self.finish(tid, pending, exit.sval, errno);
    }

    /// Logs a finished call from its result (`errno` 0 for success).
    fn finish(&mut self, tid: i32, pending: Pending, result: i64, errno: c_int) {
        let missing = errno == libc::ENOENT || errno == libc::ENOTDIR;
        // Refused for its permissions: it exists, and its mode is what decided.
        let denied = errno == libc::EACCES;
        let log = &mut self.log;
        let raw = |path: PathBuf, follow: bool| Name::Raw { path, follow };
        match pending {
            // An unnamed file: it gets a name (a write) only if linked in later.
            Pending::Open { flags, .. } if flags & libc::O_TMPFILE == libc::O_TMPFILE => {}
            Pending::Open {
                name,
                flags,
                creates,
            } => {
                let writes = crate::syscalls::open_writes(flags);
                // A file made: its directory gained an entry. Written only: the content
                // of an entry, which a listing does not record.
                let write = if creates { Use::Entry } else { Use::Write };
                let follow = flags & libc::O_NOFOLLOW == 0;
                if errno != 0 {
                    if missing && flags & libc::O_CREAT == 0 {
                        log.record(Use::Absent, raw(name, follow));
                    } else if denied {
                        log.record(Use::Stat, raw(name, follow));
                    }
                } else if flags & libc::O_PATH != 0 {
                    log.record(Use::Stat, raw(name, follow));
                } else {
                    // The kernel's own name for what was opened: exact, symlinks resolved.
                    let exact = proc_link(tid, &format!("fd/{result}"));
                    match exact {
                        Some(exact) if writes => log.record(write, Name::Exact(exact)),
                        Some(exact) => {
                            if may_pass_a_link(&name, &exact) {
                                log.record(Use::Via, raw(name, true));
                            }
                            log.record(Use::Read, Name::Exact(exact));
                        }
                        None if writes => log.record(write, raw(name, follow)),
                        None => log.record(Use::Read, raw(name, follow)),
                    }
                }
            }
            Pending::List { dir } if errno == 0 => log.record(Use::List, Name::Exact(dir)),
            Pending::Exec { name } if errno == 0 => {
                log.record(Use::Exec, raw(name, true));
                // The file the kernel really ran (a script's interpreter), and what it
                // mapped without an open the filter could see (the dynamic loader).
                if let Some(exe) = proc_link(tid, "exe") {
                    log.record(Use::Exec, Name::Exact(exe));
                }
                for file in tracee::mapped_files(tid) {
                    log.record(Use::Read, Name::Exact(file));
                }
            }
            Pending::Exec { name } if missing => log.record(Use::Absent, raw(name, true)),
            Pending::Exec { name } => log.record(Use::Stat, raw(name, true)),
            Pending::Write {
                name,
                follow,
                entry,
            } if errno == 0 => {
                let what = if entry { Use::Entry } else { Use::Write };
                log.record(what, raw(name, follow))
            }
            Pending::Rename { from, to } if errno == 0 => {
                for name in [from, to].into_iter().flatten() {
                    log.record(Use::Entry, raw(name, false));
                }
            }
            Pending::Connect {
                peer: Peer::Net(peer),
            } => {
                log.connects.insert(peer);
            }
            Pending::Connect {
                peer: Peer::Unix(path),
            } if errno == 0 || errno == libc::EINPROGRESS => {
                log.unix_connects.insert(path);
            }
            Pending::List { .. }
            | Pending::Write { .. }
            | Pending::Rename { .. }
            | Pending::Connect { .. } => {}
        }
    }
}
