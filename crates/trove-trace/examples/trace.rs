//! Runs a command under the tracer and prints its report, one section per set:
//! `cargo run -p trove-trace --example trace -- gcc -c main.c`. The command's stdout goes
//! to a temporary file whose size is printed; its stderr passes through.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        eprintln!("usage: trace COMMAND [ARGS..]");
        std::process::exit(2);
    }
    let stdout = tempfile::tempfile()?;
    let probe = stdout.try_clone()?;
    let mut spec = trove_trace::Spec::new(argv, std::env::current_dir()?, stdout);
    spec.trace = true;
    let start = Instant::now();
    let outcome = trove_trace::run(spec)?;
    let elapsed = start.elapsed();
    println!(
        "status: {} in {:.1} ms, stdout {} bytes",
        outcome.status,
        elapsed.as_secs_f64() * 1e3,
        probe.metadata()?.len()
    );
    if let Some(reason) = outcome.trace_unavailable {
        println!("untraced: {reason}");
    }
    let Some(report) = outcome.report else {
        return Ok(());
    };
    let paths = |name: &str, set: &std::collections::BTreeSet<PathBuf>| {
        println!("{name} ({}):", set.len());
        for path in set {
            println!("  {}", path.display());
        }
    };
    paths("reads", &report.reads);
    paths("absent", &report.absent);
    paths("dirs", &report.dirs);
    paths("stats", &report.stats);
    paths("execs", &report.execs);
    paths("symlinks", &report.symlinks);
    paths("writes", &report.writes);
    paths("wrote_inputs", &report.wrote_inputs);
    for (name, set) in [
        ("connects", &report.connects),
        ("unix_connects", &report.unix_connects),
        ("gaps", &report.gaps),
    ] {
        println!("{name} ({}):", set.len());
        for item in set {
            println!("  {item}");
        }
    }
    Ok(())
}
