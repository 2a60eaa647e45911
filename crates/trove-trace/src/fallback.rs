//! Running a command where the Linux runner does not exist (other Unix systems): through
//! `std::process::Command`, in a process group of its own, never traced.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::runner::{Executed, Job, Registration, RunError};

/// Runs the job untraced; asking for a trace yields a `trace_unavailable` sentence.
pub(crate) fn execute(job: Job) -> Result<Executed, RunError> {
    let spawn_error = |source: io::Error| RunError::Spawn {
        program: job.argv.first().cloned().unwrap_or_default(),
        dir: job.dir.clone(),
        source,
    };
    let stdout = job.stdout.try_clone().map_err(spawn_error)?;
    let mut command = Command::new(&job.program);
    command
        .arg0(job.argv.first().map(String::as_str).unwrap_or_default())
        .args(job.argv.iter().skip(1))
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&job.dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .process_group(0);
    let registration = Registration::new();
    let mut child = command.spawn().map_err(spawn_error)?;
    registration.started(child.id() as i32);
    let status = child.wait().map_err(|source| RunError::Setup {
        what: "wait",
        source,
    })?;
    if registration.interrupted() {
        return Err(RunError::Interrupted);
    }
    let trace_unavailable = job
        .log
        .map(|_| "tracing needs Linux (x86_64 or aarch64); the command ran untraced".to_string());
    Ok(Executed {
        status,
        log: None,
        trace_unavailable,
    })
}
