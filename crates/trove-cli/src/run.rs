//! `trove run` and `trove why`.

use std::io::Write;

use crate::cli::{RunArgs, WhyArgs};
use crate::failure::Failure;
use crate::human::{self, Spinner};
use crate::project::{self, Project};

/// Serves (building if needed) the object and writes its bytes, exactly, to stdout.
pub(crate) fn run(project: &Project, args: &RunArgs) -> Result<u8, Failure> {
    let recipe = project::command_recipe(&project.config, &args.recipe)?;
    let mut spinner = Spinner::start(format!("trove run {}", args.recipe));
    let served = if args.force {
        project.engine.refresh(&recipe, &args.args)
    } else {
        project.engine.get_explained(&recipe, &args.args)
    };
    spinner.clear();
    let served = served?;
    if args.explain {
        eprintln!("{}", served.reason);
        for (what, reason) in &served.dependencies {
            eprintln!("  {what}: {reason}");
        }
    }
    write_object(&served.value)?;
    if project.config.shared.is_some() {
        // The answer is complete: whoever reads stdout gets its end of file now, and the
        // upload started after the build finishes (bounded) before the process exits.
        release_stdout();
        project.engine.finish_uploads();
    }
    Ok(0)
}

/// Points stdout at /dev/null, which closes the descriptor the caller reads: a pipe's
/// reader sees the end of the object while this process still finishes its uploads.
fn release_stdout() {
    #[cfg(unix)]
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto descriptor 1 atomically replaces it with /dev/null; nothing
        // holds a borrowed handle to the old descriptor (stdout's lock was released).
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

/// A `trove run` inside a command recipe's build asks that build, which serves the object
/// with its own tracer and records it as a dependency (see `trove::NestedRequest`).
/// `None` when this run is not nested (or names another configuration, or no build
/// answers): it is then served here.
pub(crate) fn run_nested(
    config_flag: Option<&std::path::Path>,
    args: &RunArgs,
) -> Result<Option<u8>, Failure> {
    #[cfg(unix)]
    {
        let Some(socket) = std::env::var_os(trove::NESTED_SOCKET_VAR) else {
            return Ok(None);
        };
        if config_flag.is_some() {
            return Ok(None);
        }
        let request = trove::NestedRequest {
            recipe: args.recipe.clone(),
            args: args.args.clone(),
            force: args.force,
        };
        let mut out = std::io::stdout().lock();
        let Some(answer) =
            trove::ask_outer_build(std::path::Path::new(&socket), &request, &mut out)
        else {
            return Ok(None);
        };
        let answer = answer?;
        out.flush()?;
        if !answer.ok {
            eprintln!("error: {}", answer.error);
            return Ok(Some(answer.code));
        }
        if args.explain {
            eprintln!("{}", answer.reason);
            for line in &answer.dependencies {
                eprintln!("  {line}");
            }
        }
        Ok(Some(0))
    }
    #[cfg(not(unix))]
    {
        let _ = (config_flag, args);
        Ok(None)
    }
}

/// Streams the object to stdout: the kernel copies it from the verified blob file
/// (`sendfile`), or 64 KiB at a time where it cannot; never the whole object in memory.
fn write_object(blob: &trove::Blob) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    // Nothing is buffered before the object, but a flush costs nothing and makes sure.
    out.flush()?;
    #[cfg(unix)]
    blob.copy_to_fd(&out)?;
    #[cfg(not(unix))]
    blob.copy_to(&mut out)?;
    out.flush()
}

/// Says what `run` would do and why, building nothing.
pub(crate) fn why(project: &Project, args: &WhyArgs) -> Result<u8, Failure> {
    let recipe = project::command_recipe(&project.config, &args.recipe)?;
    let reason = project.engine.explain(&recipe, &args.args)?;
    if args.json {
        let key = project.engine.key(&recipe, &args.args)?;
        crate::output::emit_json(&crate::output::Why {
            recipe: &args.recipe,
            args: &args.args,
            key: key.hex(),
            action: if reason.builds() { "build" } else { "serve" },
            reason: reason.to_string(),
        })?;
    } else {
        human::emit(&reason.to_string())?;
    }
    Ok(0)
}
