//! Helpers shared by the tracer's test files: a canonical temporary directory, and
//! running a command (traced or not) with its standard output kept.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use trove_trace::{Outcome, Report, Spec, run};

/// A temporary directory with its canonical path (the tracer reports canonical paths).
pub(crate) struct Dir {
    _tmp: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl Dir {
    pub(crate) fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let path = fs::canonicalize(tmp.path()).unwrap();
        Dir { _tmp: tmp, path }
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(crate) fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }
}

pub(crate) fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Runs `args` in `dir` and returns the outcome and the command's stdout.
pub(crate) fn execute(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    trace: bool,
) -> (Outcome, String) {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut spec = Spec::new(argv(args), dir, stdout.try_clone().unwrap());
    spec.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec.trace = trace;
    let outcome = run(spec).unwrap_or_else(|e| panic!("{args:?} did not run: {e}"));
    let mut text = String::new();
    stdout.rewind().unwrap();
    stdout.read_to_string(&mut text).unwrap();
    (outcome, text)
}

/// Runs `args` traced in `dir`; the command must succeed and the tracer must have run
/// and decoded every call. Returns the report and the command's stdout.
pub(crate) fn trace_output(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Report, String) {
    let (outcome, stdout) = execute(dir, args, env, true);
    assert_eq!(
        outcome.trace_unavailable, None,
        "the tracer must run on this machine"
    );
    assert!(
        outcome.status.success(),
        "{args:?} failed: {:?}",
        outcome.status
    );
    let report = outcome.report.expect("a traced run has a report");
    assert_eq!(report.gaps, BTreeSet::new(), "the trace is complete");
    (report, stdout)
}

/// [`trace_output`] without the output.
pub(crate) fn trace(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Report {
    trace_output(dir, args, env).0
}

/// Asserts that two reports of the same command list the same paths in every set, naming
/// what only one of them (`a` and `b` are how the two were made) has.
pub(crate) fn assert_same_paths(one: &Report, two: &Report, a: &str, b: &str) {
    for (what, x, y) in [
        ("reads", &one.reads, &two.reads),
        ("absent", &one.absent, &two.absent),
        ("stats", &one.stats, &two.stats),
        ("symlinks", &one.symlinks, &two.symlinks),
        ("dirs", &one.dirs, &two.dirs),
        ("execs", &one.execs, &two.execs),
        ("writes", &one.writes, &two.writes),
        ("wrote_inputs", &one.wrote_inputs, &two.wrote_inputs),
    ] {
        let only_one: Vec<_> = x.difference(y).collect();
        let only_two: Vec<_> = y.difference(x).collect();
        assert!(
            only_one.is_empty() && only_two.is_empty(),
            "{what}: only {a} {only_one:#?}, only {b} {only_two:#?}"
        );
    }
}
