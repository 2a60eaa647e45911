//! The public face of the crate: what to run ([`Spec`]), what came of it ([`Outcome`]),
//! what can go wrong ([`RunError`]), and stopping every running command
//! ([`interrupt_all`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::paths::Filter;
use crate::report::{Log, Name, Report, Use};

/// How long [`interrupt_all`] lets a command handle `SIGTERM` before it sends `SIGKILL`.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// A command to run.
#[derive(Debug)]
pub struct Spec {
    /// The program and its arguments. A program without `/` is looked up in the `PATH`
    /// the command will see (from [`env`](Spec::env) if set there).
    pub argv: Vec<String>,
    /// The working directory the command starts in.
    pub dir: PathBuf,
    /// Variables added to (or replacing those of) the environment this process inherited.
    pub env: Vec<(String, String)>,
    /// Where the command's standard output goes (typically a temporary file): it is
    /// never buffered in memory. Standard input is `/dev/null`; standard error is
    /// inherited.
    pub stdout: File,
    /// Run under the syscall tracer and return a [`Report`].
    pub trace: bool,
    /// Path prefixes a report never lists (the store directory), in addition to
    /// `/proc`, `/sys` and `/dev`.
    pub ignore: Vec<PathBuf>,
    /// Globs (`globset` syntax, matched against absolute paths) a report never lists:
    /// the configuration's `trace_ignore`.
    pub ignore_globs: Vec<String>,
}

impl Spec {
    /// A spec that runs `argv` in `dir` with its standard output going to `stdout`,
    /// untraced, with the inherited environment and nothing ignored.
    pub fn new(argv: Vec<String>, dir: impl Into<PathBuf>, stdout: File) -> Spec {
        Spec {
            argv,
            dir: dir.into(),
            env: Vec::new(),
            stdout,
            trace: false,
            ignore: Vec::new(),
            ignore_globs: Vec::new(),
        }
    }
}

/// What came of a command that ran.
#[derive(Debug)]
pub struct Outcome {
    /// How the command's first process ended (its exit code or the signal that killed it).
    pub status: ExitStatus,
    /// What the command touched; `None` when it ran untraced.
    pub report: Option<Report>,
    /// Why tracing was asked for but could not start, as a sentence naming the cause;
    /// the command then ran untraced.
    pub trace_unavailable: Option<String>,
}

/// Why a command could not be run to its end.
#[derive(thiserror::Error, Debug)]
pub enum RunError {
    /// The spec's `argv` was empty.
    #[error("the command is empty: it names no program to run")]
    EmptyCommand,
    /// The program could not be found or executed.
    #[error("cannot run `{program}` (in {}): {source}", dir.display())]
    Spawn {
        /// The program as the spec named it.
        program: String,
        /// The working directory it was to run in.
        dir: PathBuf,
        /// What the lookup or `execve` reported.
        source: io::Error,
    },
    /// The working directory could not be entered.
    #[error("cannot start a command in {}: {source}", dir.display())]
    Dir {
        /// The working directory.
        dir: PathBuf,
        /// What `chdir` (or opening standard input and output) reported.
        source: io::Error,
    },
    /// An ignore glob does not parse.
    #[error("the trace ignore glob `{glob}` is invalid: {reason}")]
    Glob {
        /// The glob as given.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The machinery around the command failed (a socket, `fork`, `waitpid`, a thread).
    #[error("cannot run a command: {what} failed: {source}")]
    Setup {
        /// The step that failed.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// [`interrupt_all`] stopped the command; it and its processes are gone.
    #[error("interrupted: the command was stopped")]
    Interrupted,
}

/// Runs a command to its end and, when [`Spec::trace`] is set, reports what it touched.
///
/// The command runs in a process group of its own, with `PR_SET_PDEATHSIG(SIGKILL)` so it
/// dies if the thread running it does, from a thread that lives until it has ended. When
/// its first process ends, whatever it left running is killed: its process group, and
/// under the tracer every process it started. Traced, the tracer holds `PTRACE_O_EXITKILL`,
/// so if this process dies every traced process dies with it.
///
/// If tracing was asked for but cannot start (ptrace refused, no seccomp, an old kernel,
/// an unsupported platform), the command runs untraced and
/// [`Outcome::trace_unavailable`] says why.
///
/// # Example
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let out = tempfile::tempfile()?;
/// let mut spec = trove_trace::Spec::new(
///     vec!["sh".into(), "-c".into(), "cat /etc/hostname".into()],
///     "/",
///     out,
/// );
/// spec.trace = true;
/// let outcome = trove_trace::run(spec)?;
/// assert!(outcome.status.success());
/// if let Some(report) = outcome.report {
///     assert!(report.reads.contains(std::path::Path::new("/etc/hostname")));
/// }
/// # Ok(())
/// # }
/// ```
pub fn run(spec: Spec) -> Result<Outcome, RunError> {
    let Some(program) = spec.argv.first() else {
        return Err(RunError::EmptyCommand);
    };
    let filter = if spec.trace {
        let mut ignore = spec.ignore.clone();
        ignore.extend(crate::own_files());
        let filter = Filter::new(&ignore, &spec.ignore_globs);
        Some(filter.map_err(|(glob, e)| RunError::Glob {
            glob,
            reason: e.to_string(),
        })?)
    } else {
        None
    };
    // The child enters `dir` before it execs, so a relative program path must not be
    // relative to a relative `dir` as well.
    let dir = std::path::absolute(&spec.dir).map_err(|source| RunError::Dir {
        dir: spec.dir.clone(),
        source,
    })?;
    let env = merged_env(&spec.env);
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let (path, probed) =
        find_program(program, &dir, path_var).map_err(|source| RunError::Spawn {
            program: program.clone(),
            dir: dir.clone(),
            source,
        })?;
    let log = filter.as_ref().map(|_| {
        // The lookup above is part of what the command depends on: a program placed
        // earlier in PATH would run instead.
        let mut log = Log::default();
        for path in probed {
            log.record(Use::Absent, Name::Raw { path, follow: true });
        }
        log
    });
    let job = Job {
        program: path,
        argv: spec.argv,
        env,
        dir,
        stdout: spec.stdout,
        log,
    };
    let executed = thread::scope(|scope| {
        // A thread of its own: the death signal is tied to the thread that forks, and a
        // fresh thread has no other children for the tracer's waitpid to meet.
        let runner = thread::Builder::new()
            .name("trove-trace".into())
            .spawn_scoped(scope, move || crate::imp::execute(job))
            .map_err(|source| RunError::Setup {
                what: "starting the runner thread",
                source,
            })?;
        runner.join().unwrap_or_else(|_| {
            Err(RunError::Setup {
                what: "the runner thread",
                source: io::Error::other("it panicked"),
            })
        })
    })?;
    let report = match (executed.log, filter) {
        (Some(log), Some(filter)) => Some(log.into_report(&filter)),
        _ => None,
    };
    Ok(Outcome {
        status: executed.status,
        report,
        trace_unavailable: executed.trace_unavailable,
    })
}

/// What the platform runner is given.
pub(crate) struct Job {
    pub(crate) program: PathBuf,
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) dir: PathBuf,
    pub(crate) stdout: File,
    /// Present when tracing is asked for; holds what was recorded before the start.
    pub(crate) log: Option<Log>,
}

/// What the platform runner returns.
pub(crate) struct Executed {
    pub(crate) status: ExitStatus,
    pub(crate) log: Option<Log>,
    pub(crate) trace_unavailable: Option<String>,
}

/// The inherited environment with `extra` added, later entries replacing earlier ones.
fn merged_env(extra: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (key, value) in extra {
        let key = OsString::from(key);
        env.retain(|(k, _)| *k != key);
        env.push((key, OsString::from(value)));
    }
    env
}

/// The file `program` names, looked up in `path_var` when it has no `/`, with the
/// candidates that did not exist (the search order the command depends on).
fn find_program(
    program: &str,
    dir: &Path,
    path_var: Option<&OsStr>,
) -> io::Result<(PathBuf, Vec<PathBuf>)> {
    if program.contains('/') {
        return Ok((dir.join(program), Vec::new()));
    }
    let mut probed = Vec::new();
    let default_path = OsStr::new("/usr/local/bin:/usr/bin:/bin");
    for entry in std::env::split_paths(path_var.unwrap_or(default_path)) {
        let candidate = dir.join(entry).join(program);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
                return Ok((candidate, probed));
            }
            Ok(_) => {}
            Err(_) => probed.push(candidate),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no such program in PATH",
    ))
}

/// One running command, as [`interrupt_all`] sees it.
#[derive(Debug)]
struct Running {
    /// The command's process group; 0 while it is being started (no group yet).
    pgid: AtomicI32,
    interrupted: AtomicBool,
}

static RUNNING: Mutex<Vec<Arc<Running>>> = Mutex::new(Vec::new());

/// A command's place in the list [`interrupt_all`] walks; leaving it on drop.
///
/// Entered *before* the command's first process is created, so no interrupt can fall
/// between the command starting and [`interrupt_all`] knowing of it: a command that
/// ran at once and reported itself running (a script writing a pipe) was once missed
/// that way and ran on after the interrupt. The two sides meet as in Dekker's protocol:
/// [`interrupt_all`] sets `interrupted` and then reads `pgid`; [`Registration::started`]
/// sets `pgid` and then reads `interrupted` (both sequentially consistent), so at least
/// one of them sees the other's store and signals the group.
pub(crate) struct Registration(Arc<Running>);

impl Registration {
    /// Enters a command about to be started.
    pub(crate) fn new() -> Registration {
        let running = Arc::new(Running {
            pgid: AtomicI32::new(0),
            interrupted: AtomicBool::new(false),
        });
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(running.clone());
        Registration(running)
    }

    /// The command's process group `pgid` exists: an interrupt from now on signals it,
    /// and one that came while it was being started is delivered now.
    pub(crate) fn started(&self, pgid: i32) {
        self.0.pgid.store(pgid, Ordering::SeqCst);
        if self.0.interrupted.load(Ordering::SeqCst) {
            signal_group(pgid, libc::SIGTERM);
        }
    }

    /// Whether [`interrupt_all`] was called while the command ran.
    pub(crate) fn interrupted(&self) -> bool {
        self.0.interrupted.load(Ordering::SeqCst)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|r| !Arc::ptr_eq(r, &self.0));
    }
}

/// Sends `signal` to the group of `r` if it has one yet (a group id of 0 would name the
/// caller's own group).
fn signal_running(r: &Running, signal: libc::c_int) {
    let pgid = r.pgid.load(Ordering::SeqCst);
    if pgid > 0 {
        signal_group(pgid, signal);
    }
}

/// Stops every command this process is running: `SIGTERM` to each one's process group
/// now, `SIGKILL` to those still running after [`INTERRUPT_GRACE`]. Each [`run`] then
/// returns [`RunError::Interrupted`] once its command's processes are gone.
///
/// Returns at once (the escalation runs on a thread of its own). Meant for the thread
/// that handles `SIGINT`/`SIGTERM` (not for an async signal handler: it takes a lock).
/// Commands started after the call are not affected.
pub fn interrupt_all() {
    let targets: Vec<Arc<Running>> = {
        let running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        for r in running.iter() {
            r.interrupted.store(true, Ordering::SeqCst);
            signal_running(r, libc::SIGTERM);
        }
        running.clone()
    };
    if targets.is_empty() {
        return;
    }
    let escalate = move || {
        thread::sleep(INTERRUPT_GRACE);
        let running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        for target in &targets {
            // Only a command still registered: its group id cannot have been reused.
            if running.iter().any(|r| Arc::ptr_eq(r, target)) {
                signal_running(target, libc::SIGKILL);
            }
        }
    };
    let escalation = thread::Builder::new()
        .name("trove-trace-kill".into())
        .spawn(escalate);
    if escalation.is_err() {
        // No thread for the grace period: skip it rather than leave commands running.
        for r in RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            signal_running(r, libc::SIGKILL);
        }
    }
}

/// Sends `signal` to process group `pgid`; a group already gone is not an error.
pub(crate) fn signal_group(pgid: i32, signal: libc::c_int) {
    // SAFETY: killpg has no memory effects; a stale or empty group yields ESRCH.
    unsafe {
        libc::killpg(pgid, signal);
    }
}
