//! The `trove` binary run for real in a temporary project: shared by the CLI suites.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A temporary project directory with a trove.ron.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new(config: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = Project { dir };
        project.write("trove.ron", config);
        project
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    /// Lines in a log file the test commands append to (0 if it does not exist).
    pub(crate) fn lines(&self, rel: &str) -> usize {
        std::fs::read_to_string(self.path(rel)).map_or(0, |s| s.lines().count())
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trove"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("TROVE_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("MARKET")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn trove(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run trove")
    }

    /// Runs trove, expecting success; returns stdout as text.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.trove(args);
        assert!(
            out.status.success(),
            "trove {args:?} failed with {:?}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `trove run --explain ARGS..`, expecting success: (stdout, reason on stderr).
    pub(crate) fn run_explained(&self, args: &[&str]) -> (String, String) {
        let mut full = vec!["run", "--explain"];
        full.extend_from_slice(args);
        let out = self.trove(&full);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "trove {full:?} failed:\n{stderr}");
        (
            String::from_utf8(out.stdout).expect("utf-8"),
            stderr.trim().to_owned(),
        )
    }
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl Project {
    /// Rewrites trove.ron.
    pub(crate) fn config(&self, text: &str) {
        self.write("trove.ron", text);
    }

    /// The reason `trove run --explain` gave, expecting success.
    pub(crate) fn reason(&self, args: &[&str]) -> String {
        self.run_explained(args).1
    }
}
