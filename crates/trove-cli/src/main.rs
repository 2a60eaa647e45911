//! `trove`, the command line: serve and build command recipes, explain, watch, and look
//! after the store.
//!
//! The binary is a thin shell over the engine, `trove`, its one trove dependency. Data
//! goes to stdout, diagnostics to stderr (`failure.rs` renders them); every failure
//! becomes a [`Failure`] with its exit code.

mod admin;
mod cli;
mod failure;
mod human;
mod interrupt;
mod lint;
mod output;
mod project;
mod recipes;
mod run;
mod shared;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    interrupt::install();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(),
    }
}

/// Runs the command; `Ok` carries the exit code of a command that ran to the end (verify
/// exits 1 when it found corruption without failing itself).
///
/// Commands that only look at the store (`status`, `graph`, `verify`, `gc`) never create
/// one: without a store they report an empty one. `run`, `why` and `recipes` need a
/// configuration file and say where they looked when there is none (exit 2).
fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Config(ConfigCommand::Check) => admin::config_check(config_flag),
        Command::Run(args) => match run::run_nested(config_flag, &args)? {
            Some(code) => Ok(code),
            None => run::run(&project::open_configured(config_flag, "run")?, &args),
        },
        Command::Why(args) => run::why(&project::open_configured(config_flag, "why")?, &args),
        Command::Recipes(flag) => recipes::recipes(config_flag, flag.json),
        Command::Lint(args) => lint::lint(&project::open_configured(config_flag, "lint")?, &args),
        Command::Status(args) if args.shared => shared::status(config_flag, args.json),
        Command::Status(args) => admin::status(project::open_existing(config_flag)?, args.json),
        Command::Watch(args) => watch::watch(&project::open(config_flag)?, &args),
        Command::Graph(args) => admin::graph(project::open_existing(config_flag)?, args.format),
        Command::Verify(flag) => admin::verify(project::open_existing(config_flag)?, flag.json),
        Command::Gc(args) if args.shared => shared::gc(config_flag, &args),
        Command::Gc(args) => admin::gc(config_flag, &args),
    }
}

/// tracing to stderr: `RUST_LOG` when set, otherwise warnings, or more with each `-v`.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(human::color_on_stderr())
        .with_target(verbose >= 2)
        .try_init();
}

/// Whether stderr is a terminal a person watches (for progress displays).
fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
