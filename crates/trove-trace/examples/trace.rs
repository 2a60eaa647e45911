//! Runs a command under the tracer and prints its report, one section per set:
//! `cargo run -p trove-trace --example trace -- gcc -c main.c`. The command's stdout goes
//! to a temporary file whose size is printed; its stderr passes through. With
//! `--untraced` first, the command runs untraced (for timing the difference); with
//! `--stops-only`, traced without the preloaded look-up library (every look-up stops).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::io::Write;
use std::time::Instant;

fn section<T: Display>(
    out: &mut impl Write,
    name: &str,
    items: impl ExactSizeIterator<Item = T>,
) -> std::io::Result<()> {
    writeln!(out, "{name} ({}):", items.len())?;
    for item in items {
        writeln!(out, "  {item}")?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let traced = argv.first().map(String::as_str) != Some("--untraced");
    if !traced {
        argv.remove(0);
    }
    if argv.first().map(String::as_str) == Some("--stops-only") {
        argv.remove(0);
        trove_trace::preload_lookups(false);
    }
    if argv.is_empty() {
        eprintln!("usage: trace [--untraced | --stops-only] COMMAND [ARGS..]");
        std::process::exit(2);
    }
    let stdout = tempfile::tempfile()?;
    let probe = stdout.try_clone()?;
    let mut spec = trove_trace::Spec::new(argv, std::env::current_dir()?, stdout);
    spec.trace = traced;
    let start = Instant::now();
    let outcome = trove_trace::run(spec)?;
    let elapsed = start.elapsed();
    // Written, not println!-ed: a closed pipe (`| head`) ends the listing with an error.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "status: {} in {:.1} ms, stdout {} bytes",
        outcome.status,
        elapsed.as_secs_f64() * 1e3,
        probe.metadata()?.len()
    )?;
    if let Some(reason) = outcome.trace_unavailable {
        writeln!(out, "untraced: {reason}")?;
    }
    let Some(report) = outcome.report else {
        return Ok(());
    };
    let paths = |set: &BTreeSet<std::path::PathBuf>| -> Vec<String> {
        set.iter().map(|p| p.display().to_string()).collect()
    };
    for (name, set) in [
        ("reads", &report.reads),
        ("absent", &report.absent),
        ("dirs", &report.dirs),
        ("stats", &report.stats),
        ("execs", &report.execs),
        ("symlinks", &report.symlinks),
        ("writes", &report.writes),
        ("wrote_inputs", &report.wrote_inputs),
    ] {
        section(&mut out, name, paths(set).into_iter())?;
    }
    for (name, set) in [
        ("connects", &report.connects),
        ("unix_connects", &report.unix_connects),
        ("gaps", &report.gaps),
    ] {
        section(&mut out, name, set.iter())?;
    }
    writeln!(out, "looked up without a stop: {}", report.buffered)?;
    Ok(())
}
