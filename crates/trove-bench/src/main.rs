//! `trove-bench`: trove against the machine's limits and its peers, in the same run.
//!
//! ```text
//! cargo build --release -p trove-cli
//! cargo run --release -p trove-bench -- [--quick] [--case NAME]...
//! ```
//!
//! Every case runs trove and its baseline alternately in the same process and prints the
//! medians and their ratio (trove / baseline, lower is better unless the goal says
//! otherwise). `--quick` shrinks sizes and repetitions to about a minute and says so in
//! the table. `--child KIND ..` is internal: the harness re-executes itself for the cases
//! that need a separate process (peak RSS, cross-process single flight).

mod cases_disk;
mod cases_memory;
mod cases_process;
mod cases_trace;
mod measure;
mod recipes;
mod trace_project;

use std::time::Instant;

use anyhow::{Result, bail};

use measure::{Met, Row};

/// How big and how often: the full run or `--quick`.
#[derive(Clone, Copy)]
pub(crate) struct Scale {
    pub(crate) quick: bool,
}

impl Scale {
    /// `full` normally, `quick` with `--quick`.
    pub(crate) fn pick<T>(self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// A named group of rows.
struct Case {
    name: &'static str,
    about: &'static str,
    run: fn(Scale) -> Result<Vec<Row>>,
}

const CASES: &[Case] = &[
    Case {
        name: "memory-hit",
        about: "memory-tier hit, small args, vs Mutex<HashMap> + key hashing",
        run: cases_memory::memory_hit,
    },
    Case {
        name: "watch-hit",
        about: "memory-tier hit of a 10,000-file object with the watcher, vs no inputs",
        run: cases_memory::watch_hit,
    },
    Case {
        name: "revalidate",
        about: "memory-tier hit revalidating 10,000 files by stat, vs fs::metadata loops",
        run: cases_memory::revalidate,
    },
    Case {
        name: "disk-hit",
        about: "disk-tier hit of Vec<u8> objects, vs fs::read; peak RSS in a child",
        run: cases_disk::disk_hit,
    },
    Case {
        name: "publish",
        about: "cold build and publish, vs write temp + fsync + rename + dir fsync",
        run: cases_disk::publish,
    },
    Case {
        name: "fingerprint",
        about: "fingerprint_file of a large file vs blake3 update_mmap_rayon",
        run: cases_disk::fingerprint,
    },
    Case {
        name: "cacache",
        about: "store put/get vs cacache write_sync/read_sync",
        run: cases_disk::cacache,
    },
    Case {
        name: "index",
        about: "index of 1,000,000 entries: open time and lookup p50",
        run: cases_disk::index,
    },
    Case {
        name: "run",
        about: "`trove run` hit of 1 MiB, whole process, vs cat and bkt",
        run: cases_process::run_hit,
    },
    Case {
        name: "cold-key",
        about: "64 threads and 8 processes on one cold key",
        run: cases_process::cold_key,
    },
    Case {
        name: "trace",
        about: "command recipes under the syscall tracer: gcc and python3 builds, a traced hit",
        run: cases_trace::trace,
    },
];

fn main() -> Result<()> {
    if let Some(code) = without_cargo_library_path()? {
        std::process::exit(code);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return cases_process::child(&args[1..]);
    }
    let mut quick = false;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--case" => match it.next() {
                Some(name) => only.push(name.clone()),
                None => bail!("--case needs a NAME"),
            },
            "--list" => {
                for c in CASES {
                    println!("{:<12} {}", c.name, c.about);
                }
                return Ok(());
            }
            "-h" | "--help" => {
                println!(
                    "usage: trove-bench [--quick] [--case NAME]... [--list]\n\
                     Runs trove against its baselines in alternation and prints a table."
                );
                return Ok(());
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    for name in &only {
        if !CASES.iter().any(|c| c.name == name) {
            let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
            bail!("unknown case `{name}`; cases: {}", names.join(", "));
        }
    }
    let scale = Scale { quick };
    let started = Instant::now();
    let mut rows = Vec::new();
    for case in CASES {
        if !only.is_empty() && !only.iter().any(|n| n == case.name) {
            continue;
        }
        eprintln!("== {} ({})", case.name, case.about);
        let t = Instant::now();
        match (case.run)(scale) {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::not_run(case.name, "-", &format!("{e:#}"))),
        }
        eprintln!("   {:.1} s", t.elapsed().as_secs_f64());
    }
    print_table(&rows);
    println!(
        "\n{} run, {:.0} s. ratio = trove / baseline, lower is better unless the goal says otherwise.",
        if quick {
            "quick (reduced sizes, see notes)"
        } else {
            "full"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo run` puts the build's library directories (under `target/` and the rustup
/// toolchain) on `LD_LIBRARY_PATH` for the binary it starts. trove-bench needs none of
/// them, but every program a case starts (trove, gcc, python3, cat, bkt) would search them
/// for each library it loads, and a traced command would record each miss as an input. So
/// trove-bench runs itself again once without them, and the cases see the environment a
/// shell gives: `cargo run` and `target/release/trove-bench` measure the same thing.
/// Returns the exit code of that run, or `None` when this process is the one to measure.
fn without_cargo_library_path() -> Result<Option<i32>> {
    const AGAIN: &str = "TROVE_BENCH_LIBRARY_PATH_CLEARED";
    let (Some(_), Some(paths), None) = (
        std::env::var_os("CARGO"),
        std::env::var_os("LD_LIBRARY_PATH"),
        std::env::var_os(AGAIN),
    ) else {
        return Ok(None);
    };
    let exe = std::env::current_exe()?;
    // target/<profile>/trove-bench: cargo's entries are under target/.
    let target = exe.parent().and_then(std::path::Path::parent);
    let toolchains = std::env::var_os("RUSTUP_HOME")
        .map(|home| std::path::PathBuf::from(home).join("toolchains"));
    let all: Vec<std::path::PathBuf> = std::env::split_paths(&paths).collect();
    let kept: Vec<&std::path::PathBuf> = all
        .iter()
        .filter(|p| !target.is_some_and(|t| p.starts_with(t)))
        .filter(|p| !toolchains.as_ref().is_some_and(|t| p.starts_with(t)))
        .collect();
    if kept.len() == all.len() {
        return Ok(None);
    }
    let mut again = std::process::Command::new(exe);
    again.args(std::env::args_os().skip(1)).env(AGAIN, "1");
    if kept.is_empty() {
        again.env_remove("LD_LIBRARY_PATH");
    } else {
        again.env("LD_LIBRARY_PATH", std::env::join_paths(kept)?);
    }
    let status = again.status()?;
    Ok(Some(status.code().unwrap_or(1)))
}

/// Prints the rows as a Markdown table (readable in a terminal, pasteable into
/// BENCHMARKS.md).
fn print_table(rows: &[Row]) {
    println!("| case | trove | baseline | ratio | goal | met | note |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let ratio = r
            .ratio
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
        let met = match r.met {
            Met::Yes => "yes",
            Met::No => "**no**",
            Met::NotApplicable => "-",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.case, r.trove, r.baseline, ratio, r.goal, met, r.note
        );
    }
}
