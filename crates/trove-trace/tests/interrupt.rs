//! Stopping commands: `interrupt_all`, and the death of the process that traces them.
//!
//! A test binary of its own because `interrupt_all` stops every command of the process:
//! in the main suite it would stop the other tests' commands. The tests here that call
//! it take `SERIAL`, so one test's interrupt never meets another's command.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use trove_trace::{INTERRUPT_GRACE, Outcome, RunError, Spec, interrupt_all, run};

static SERIAL: Mutex<()> = Mutex::new(());

/// A FIFO the command writes its process ids to once it is running.
struct Ready {
    _dir: tempfile::TempDir,
    path: PathBuf,
    file: fs::File,
}

impl Ready {
    fn new() -> Ready {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready");
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // Opened read-write so that neither side's open blocks.
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        Ready {
            _dir: dir,
            path,
            file,
        }
    }

    /// The process ids the command wrote, waiting at most a minute for them.
    fn pids(&mut self) -> Vec<i32> {
        let mut poll = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd it is given.
        let ready = unsafe { libc::poll(&mut poll, 1, 60_000) };
        assert_eq!(ready, 1, "the command never said it was running");
        let mut buf = [0u8; 256];
        let n = self.file.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

fn spec(script: &str, ready: &Path, traced: bool) -> Spec {
    let argv = vec![
        "sh".into(),
        "-c".into(),
        script.replace("READY", ready.to_str().unwrap()),
        "sh".into(),
    ];
    let mut spec = Spec::new(argv, "/", tempfile::tempfile().unwrap());
    spec.trace = traced;
    spec
}

/// `pid`'s state letter from `/proc`, if it exists.
fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether `pid` has not ended (a zombie has: it waits for its parent, which here may be
/// an init that does not reap).
fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// The processes of group `pgid` that have not ended.
fn group_members(pgid: i32) -> Vec<(i32, char)> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields[0].chars().next().unwrap();
        if fields[2].parse::<i32>() == Ok(pgid) && state != 'Z' && state != 'X' {
            members.push((pid, state));
        }
    }
    members
}

/// Waits for every listed process and the whole group to end, up to `limit`.
fn all_end_within(pids: &[i32], pgid: i32, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        let members = group_members(pgid);
        if left.is_empty() && members.is_empty() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "still running: {left:?}, group {pgid}: {members:?}"
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A command's run, on a thread of its own.
type Running = thread::JoinHandle<Result<Outcome, RunError>>;

/// Runs `script` (where `READY` names a FIFO) on a thread of its own and waits until it
/// wrote its process ids there; the FIFO is returned to live as long as the test.
fn start(script: &str, traced: bool) -> (Running, Vec<i32>, Ready) {
    let mut ready = Ready::new();
    let spec = spec(script, &ready.path, traced);
    let handle = thread::spawn(move || run(spec));
    let pids = ready.pids();
    (handle, pids, ready)
}

fn interrupt_and_join(handle: Running) -> Duration {
    let start = Instant::now();
    interrupt_all();
    let result = handle.join().unwrap();
    let elapsed = start.elapsed();
    assert!(matches!(result, Err(RunError::Interrupted)), "{result:?}");
    elapsed
}

#[test]
fn interrupt_all_stops_a_command_and_its_children() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for traced in [true, false] {
        let (handle, pids, _ready) = start("sleep 1000 & echo $$ $! > READY; sleep 1000", traced);
        let (shell, background) = (pids[0], pids[1]);
        assert!(alive(shell) && alive(background));
        interrupt_and_join(handle);
        if traced {
            // The tracer returns only after it has seen every traced process end.
            assert!(
                !alive(shell) && !alive(background),
                "traced processes outlived run"
            );
            assert_eq!(group_members(shell), vec![]);
        } else {
            // The shell was reaped; the rest of its group was sent SIGKILL on the way out.
            assert!(!alive(shell));
            all_end_within(&[background], shell, Duration::from_secs(10)).unwrap();
        }
    }
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for traced in [true, false] {
        let script = "trap '' TERM; sleep 1000 & echo $$ $! > READY; sleep 1000";
        let (handle, pids, _ready) = start(script, traced);
        let elapsed = interrupt_and_join(handle);
        assert!(
            elapsed >= INTERRUPT_GRACE,
            "SIGKILL came before the grace period: {elapsed:?}"
        );
        all_end_within(&pids, pids[0], Duration::from_secs(10)).unwrap();
    }
}

/// The command runs and says so before its runner hands it to `interrupt_all` (a fail
/// point holds the runner there for 300 ms): the interrupt must still stop it. Before
/// the command was entered ahead of its fork, such an interrupt found nothing to stop
/// and the command ran on (seen once as a hang of this binary under a loaded CI run).
#[cfg(feature = "failpoints")]
#[test]
fn an_interrupt_while_a_command_is_being_started_still_stops_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    fail::cfg("trace::spawn-started", "sleep(300)").unwrap();
    // Untraced: a traced command waits for its tracer before it runs anything.
    let (handle, pids, _ready) = start("sleep 1000 & echo $$ $! > READY; sleep 1000", false);
    // The runner is still paused at the fail point. The command must end by the
    // `SIGTERM` it is owed as soon as the runner goes on, not only by the `SIGKILL` that
    // follows the grace period.
    interrupt_all();
    let ended = all_end_within(&pids, pids[0], INTERRUPT_GRACE - Duration::from_millis(500));
    fail::remove("trace::spawn-started");
    scenario.teardown();
    ended.unwrap();
    let result = handle.join().unwrap();
    assert!(matches!(result, Err(RunError::Interrupted)), "{result:?}");
}

#[test]
fn interrupt_all_without_commands_does_nothing_and_later_commands_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    interrupt_all();
    let mut spec = Spec::new(vec!["true".into()], "/", tempfile::tempfile().unwrap());
    spec.trace = true;
    assert!(run(spec).unwrap().status.success());
}

const TRACER_ROLE: &str = "TROVE_TRACE_TEST_TRACER_FIFO";

/// Whether `pid` is blocked in a sleep system call (from `/proc/PID/syscall`).
fn sleeping(pid: i32) -> bool {
    let Ok(syscall) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let nr = syscall
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep)
}

/// The traced processes die with their tracer (`PTRACE_O_EXITKILL`). The tracer here is a
/// second copy of this test binary, running this same test with `TRACER_ROLE` set: it
/// runs a traced command that never ends, and is killed with SIGKILL. The background
/// sleep (a static busybox, which makes no filtered call once it sleeps) has no death
/// signal of its own (only the command's first process has): only EXITKILL can end it.
#[test]
fn traced_processes_die_when_their_tracer_is_killed() {
    let script = "/bin/busybox sleep 1000 & echo $$ $! > READY; wait";
    if let Ok(fifo) = std::env::var(TRACER_ROLE) {
        let outcome = run(spec(script, Path::new(&fifo), true));
        panic!("the traced command was to be killed with its tracer, it ended: {outcome:?}");
    }
    let mut ready = Ready::new();
    let mut tracer = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "traced_processes_die_when_their_tracer_is_killed",
            "--test-threads=1",
        ])
        .env(TRACER_ROLE, &ready.path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pids = ready.pids();
    let background = pids[1];
    let start = Instant::now();
    while !sleeping(background) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the background sleep never slept"
        );
        thread::sleep(Duration::from_millis(5));
    }
    tracer.kill().unwrap();
    tracer.wait().unwrap();
    all_end_within(&pids, pids[0], Duration::from_secs(10)).unwrap();
}
