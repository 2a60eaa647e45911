//! Starting a command on Linux: `fork`, a child that only makes async-signal-safe calls
//! prepared in advance, and a handshake with the parent over a socket pair.
//!
//! The child joins a process group of its own, asks for `SIGKILL` when its parent thread
//! dies, resets its signal mask and `SIGPIPE`, takes `/dev/null` and the output file as
//! standard input and output and enters the working directory. Traced, it then installs
//! the seccomp filter, says so, and waits for one byte, `T`, sent once the parent has
//! seized it with ptrace; if ptrace is refused the parent closes the socket, the child
//! exits, and the command starts afresh untraced. Any failure before `execve` succeeds is
//! sent back as a stage and an errno; the socket is close-on-exec, so end of file means
//! the program is running.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use libc::{c_char, c_int};

use crate::runner::{Executed, Job, Registration, RunError, signal_group};

/// What the child reports, in the first byte of a five-byte message (the errno follows).
const FILTER_INSTALLED: u8 = 1;
const FAILED_STDIO: u8 = 2;
const FAILED_CHDIR: u8 = 3;
const FAILED_SECCOMP: u8 = 4;
const FAILED_EXEC: u8 = 5;

/// Everything the child needs, allocated before `fork`.
struct Plan {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const c_char>,
    dir: CString,
    stdin: OwnedFd,
    stdout: OwnedFd,
    parent: libc::pid_t,
}

fn c_string(bytes: &[u8], job: &Job) -> Result<CString, RunError> {
    CString::new(bytes).map_err(|_| spawn_error(job, io::Error::other("it contains a NUL byte")))
}

fn spawn_error(job: &Job, source: io::Error) -> RunError {
    let program = job.argv.first().cloned().unwrap_or_default();
    RunError::Spawn {
        program,
        dir: job.dir.clone(),
        source,
    }
}

/// The job's environment with `library` first in `LD_PRELOAD` (after it, the command's
/// own preloads, in their order).
#[cfg(tracer)]
fn preloading(
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    library: &std::path::Path,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let key = std::ffi::OsStr::new("LD_PRELOAD");
    let mut value = library.as_os_str().to_os_string();
    let mut env = env.to_vec();
    if let Some(at) = env.iter().rposition(|(k, _)| k == key) {
        let (_, theirs) = env.remove(at);
        if !theirs.is_empty() {
            value.push(":");
            value.push(theirs);
        }
    }
    env.retain(|(k, _)| k != key);
    env.push((key.to_os_string(), value));
    env
}

impl Plan {
    fn new(job: &Job) -> Result<Plan, RunError> {
        Plan::with_env(job, &job.env)
    }

    fn with_env(
        job: &Job,
        env: &[(std::ffi::OsString, std::ffi::OsString)],
    ) -> Result<Plan, RunError> {
        let program = c_string(job.program.as_os_str().as_bytes(), job)?;
        let argv: Vec<CString> = job
            .argv
            .iter()
            .map(|a| c_string(a.as_bytes(), job))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = env
            .iter()
            .map(|(k, v)| c_string(&[k.as_bytes(), b"=", v.as_bytes()].concat(), job))
            .collect::<Result<_, _>>()?;
        let dir = c_string(job.dir.as_os_str().as_bytes(), job)?;
        let dir_error = |source| RunError::Dir {
            dir: job.dir.clone(),
            source,
        };
        // Both descriptors are duplicated to numbers >= 3 (try_clone does), so the
        // child's dup2 onto 0 and 1 never meets one of them already sitting there.
        let stdin = std::fs::File::open("/dev/null").map_err(dir_error)?;
        let stdin = OwnedFd::from(stdin.try_clone().map_err(dir_error)?);
        let stdout = OwnedFd::from(job.stdout.try_clone().map_err(dir_error)?);
        let argv_ptrs = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let env_ptrs = env
            .iter()
            .map(|e| e.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        // SAFETY: getpid cannot fail.
        let parent = unsafe { libc::getpid() };
        Ok(Plan {
            program,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            dir,
            stdin,
            stdout,
            parent,
        })
    }
}

/// A forked command, not yet reaped.
struct Child {
    pid: i32,
    socket: OwnedFd,
    registration: Registration,
}

impl Child {
    /// Sends the traced child its go-ahead: the tracer is attached.
    fn tell(&self, word: u8) {
        // SAFETY: one byte from a valid buffer; MSG_NOSIGNAL so a child already gone
        // yields EPIPE instead of SIGPIPE.
        unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                [word].as_ptr().cast(),
                1,
                libc::MSG_NOSIGNAL,
            );
        }
    }

    /// Leaves the interrupt list, then waits for the child to end: in this order, so
    /// that `interrupt_all` never signals a group whose id may have been reused. Returns
    /// the raw wait status (`None` if already reaped) and whether it was interrupted.
    fn end(self) -> (Option<i32>, bool) {
        let Child {
            pid,
            socket,
            registration,
        } = self;
        let interrupted = registration.interrupted();
        drop(registration);
        drop(socket);
        (reap(pid), interrupted)
    }

    /// The child's next message, or `None` at end of file (the program is running, or
    /// the child is gone).
    fn message(&self) -> Option<(u8, i32)> {
        let mut buf = [0u8; 5];
        let mut have = 0;
        while have < buf.len() {
            // SAFETY: reads into the unfilled tail of a valid buffer.
            let n = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buf[have..].as_mut_ptr().cast(),
                    5 - have,
                    0,
                )
            };
            match n {
                n if n > 0 => have += n as usize,
                0 => return None,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => return None,
            }
        }
        Some((buf[0], i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]])))
    }
}

/// Runs the job on Linux: traced when asked and possible, untraced otherwise.
pub(crate) fn execute(mut job: Job) -> Result<Executed, RunError> {
    let Some(log) = job.log.take() else {
        return untraced(&job, spawn(&Plan::new(&job)?, None)?, None);
    };
    #[cfg(tracer)]
    {
        traced(&job, log)
    }
    #[cfg(not(tracer))]
    {
        drop(log);
        let reason =
            "tracing needs Linux on x86_64 or aarch64 with glibc; the command ran untraced";
        untraced(
            &job,
            spawn(&Plan::new(&job)?, None)?,
            Some(reason.to_string()),
        )
    }
}

/// Runs the job untraced after the tracer could not start, saying why.
fn fall_back(job: &Job, reason: String) -> Result<Executed, RunError> {
    untraced(job, spawn(&Plan::new(job)?, None)?, Some(reason))
}

#[cfg(tracer)]
fn traced(job: &Job, log: crate::report::Log) -> Result<Executed, RunError> {
    use nix::sys::ptrace;
    use nix::unistd::Pid;

    if let Some(reason) = crate::tracer::unavailable() {
        return fall_back(job, reason);
    }
    let program = crate::seccomp::program();
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // The look-up library, where it can be used: ld.so splits LD_PRELOAD at ':' and ' '.
    let plan = match crate::preload::library()
        .filter(|lib| !lib.as_os_str().as_bytes().iter().any(|b| b" :".contains(b)))
    {
        Some(lib) => Plan::with_env(job, &preloading(&job.env, lib))?,
        None => Plan::new(job)?,
    };
    let child = spawn(&plan, Some(&filter))?;
    match child.message() {
        Some((FILTER_INSTALLED, _)) => {}
        Some((FAILED_SECCOMP, errno)) => {
            if child.end().1 {
                return Err(RunError::Interrupted);
            }
            let reason = format!(
                "the seccomp filter could not be installed ({}): the kernel lacks seccomp-bpf \
                 or a policy forbids it",
                io::Error::from_raw_os_error(errno)
            );
            return fall_back(job, reason);
        }
        Some((stage, errno)) => {
            child.end();
            return Err(failure(job, stage, errno));
        }
        None => {
            let (_, interrupted) = child.end();
            return Err(ended_early(job, interrupted));
        }
    }
    if let Err(errno) = ptrace::seize(Pid::from_raw(child.pid), crate::tracer::options()) {
        // The child holds a filter that needs a tracer: it goes (closing the socket tells
        // it so), and the command starts again without one. Nothing has run yet. (A
        // child that is already gone was interrupted, not refused.)
        if child.end().1 {
            return Err(RunError::Interrupted);
        }
        let reason = format!(
            "ptrace(PTRACE_SEIZE) was refused ({errno}): this process may not trace its \
             children here (a container or Yama policy)"
        );
        return fall_back(job, reason);
    }
    child.tell(b'T');
    let (status, log) = crate::tracer::trace(child.pid, log);
    // Every traced process is gone, so the socket holds whatever the child sent last: an
    // execve failure, or nothing.
    let message = child.message();
    let (_, interrupted) = child.end();
    if let Some((stage, errno)) = message {
        return Err(failure(job, stage, errno));
    }
    if interrupted {
        return Err(RunError::Interrupted);
    }
    let Some(status) = status else {
        let source = io::Error::other("the command's exit status was not seen");
        return Err(RunError::Setup {
            what: "tracing",
            source,
        });
    };
    Ok(Executed {
        status: ExitStatus::from_raw(status),
        log: Some(log),
        trace_unavailable: None,
    })
}

/// Waits for a command that runs untraced.
fn untraced(job: &Job, child: Child, reason: Option<String>) -> Result<Executed, RunError> {
    if let Some((stage, errno)) = child.message() {
        child.end();
        return Err(failure(job, stage, errno));
    }
    // Learn that the command's first process ended without reaping it: while it is a
    // zombie its process group id cannot be reused, so the group can be killed safely.
    loop {
        // SAFETY: waitid fills the zeroed siginfo_t it is given.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                child.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            break;
        }
        let source = io::Error::last_os_error();
        if source.kind() != io::ErrorKind::Interrupted {
            return Err(RunError::Setup {
                what: "waitid",
                source,
            });
        }
    }
    signal_group(child.pid, libc::SIGKILL);
    let (status, interrupted) = child.end();
    if interrupted {
        return Err(RunError::Interrupted);
    }
    let status = status.ok_or_else(|| RunError::Setup {
        what: "waitpid",
        source: io::Error::last_os_error(),
    })?;
    Ok(Executed {
        status: ExitStatus::from_raw(status),
        log: None,
        trace_unavailable: reason,
    })
}

fn failure(job: &Job, stage: u8, errno: i32) -> RunError {
    let source = io::Error::from_raw_os_error(errno);
    match stage {
        FAILED_CHDIR | FAILED_STDIO => RunError::Dir {
            dir: job.dir.clone(),
            source,
        },
        _ => spawn_error(job, source),
    }
}

fn ended_early(job: &Job, interrupted: bool) -> RunError {
    if interrupted {
        RunError::Interrupted
    } else {
        spawn_error(
            job,
            io::Error::other("its process ended before the program started"),
        )
    }
}

/// Waits until `pid` has ended and returns its raw wait status (`None` if it cannot be
/// waited for). A seized child that stops on the way is let go on.
fn reap(pid: i32) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status it is given.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if rc == pid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Some(status);
            }
            // SAFETY: resumes a stopped tracee of this thread; errors mean it is gone.
            unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) };
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// Forks the child (see the module documentation); `filter` is set when it is traced.
fn spawn(plan: &Plan, filter: Option<&libc::sock_fprog>) -> Result<Child, RunError> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: socketpair writes two descriptors into the array it is given.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(RunError::Setup {
            what: "socketpair",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (ours, theirs) = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    // Known to interrupt_all before the command exists (see `Registration`).
    let registration = Registration::new();
    // SAFETY: the child runs only `child`, which makes async-signal-safe calls on memory
    // prepared before the fork and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RunError::Setup {
            what: "fork",
            source: io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        // SAFETY: in the child of a fork, see above.
        unsafe { child(plan, theirs.as_raw_fd(), ours.as_raw_fd(), filter) }
    }
    drop(theirs);
    // Also set here, so the group exists before `started` lets interrupt_all signal it.
    // SAFETY: setpgid has no memory effects; it fails harmlessly once the child has exec'd.
    unsafe { libc::setpgid(pid, pid) };
    // A pause here lets a test interrupt a command that already runs but is not yet
    // `started` (the window a loaded machine can open on its own).
    #[cfg(feature = "failpoints")]
    fail::fail_point!("trace::spawn-started");
    registration.started(pid);
    Ok(Child {
        pid,
        socket: ours,
        registration,
    })
}

/// The forked child. Only async-signal-safe calls: the parent may hold locks (the
/// allocator's among them) that no thread in the child will ever release.
unsafe fn child(plan: &Plan, socket: c_int, other: c_int, filter: Option<&libc::sock_fprog>) -> ! {
    // SAFETY (whole body): plain system calls on descriptors and C strings prepared by
    // the parent; every pointer passed stays valid because the parent's memory was copied.
    unsafe {
        libc::close(other);
        libc::setpgid(0, 0);
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
            || libc::getppid() != plan.parent
        {
            // The parent is already gone: nobody would wait for or stop this command.
            libc::_exit(127);
        }
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::dup2(plan.stdin.as_raw_fd(), 0) < 0 || libc::dup2(plan.stdout.as_raw_fd(), 1) < 0 {
            fail(socket, FAILED_STDIO);
        }
        if libc::chdir(plan.dir.as_ptr()) != 0 {
            fail(socket, FAILED_CHDIR);
        }
        if let Some(filter) = filter {
            // The filter goes in before the tracer attaches: until then this process
            // makes no call it stops (read, send and _exit are not among them), and once
            // attached the tracer never waits on this socket, so a signal that stops the
            // tracee here cannot deadlock the two.
            let filter: *const libc::sock_fprog = filter;
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, filter) != 0
            {
                fail(socket, FAILED_SECCOMP);
            }
            send_message(socket, FILTER_INSTALLED, 0);
            let mut word = 0u8;
            loop {
                let n = libc::read(socket, (&raw mut word).cast(), 1);
                if n == 1 && word == b'T' {
                    break;
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                // No tracer is coming: with the filter in place, every traced call
                // would fail with ENOSYS. The parent starts the command afresh.
                libc::_exit(127);
            }
        }
        libc::execve(
            plan.program.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.env_ptrs.as_ptr(),
        );
        fail(socket, FAILED_EXEC)
    }
}

/// Reports `stage` with the current errno and ends the child.
unsafe fn fail(socket: c_int, stage: u8) -> ! {
    // SAFETY: reads errno and sends from a stack buffer, then exits without unwinding.
    unsafe {
        send_message(socket, stage, *libc::__errno_location());
        libc::_exit(127)
    }
}

unsafe fn send_message(socket: c_int, kind: u8, errno: i32) {
    let e = errno.to_ne_bytes();
    let msg = [kind, e[0], e[1], e[2], e[3]];
    // SAFETY: five bytes from a stack buffer.
    unsafe {
        libc::send(socket, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL);
    }
}
