//! Read-only opens answered at their seccomp stop (`src/open.rs`) must report exactly
//! what the two-stop path (the open's result read at its exit) reports: the same real
//! programs traced both ways, in one process, give identical reports.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Mutex;

use common::Dir;
use trove_trace::{Report, two_stop_opens};

/// `two_stop_opens` is process-wide: the tests of this file take turns.
static MODE: Mutex<()> = Mutex::new(());

/// Runs `args` traced in `dir` (bytecode caches off, so both ways read the same files);
/// returns the report and stdout.
fn trace(dir: &Path, args: &[&str]) -> (Report, String) {
    common::trace_output(dir, args, &[("PYTHONDONTWRITEBYTECODE", "1")])
}

/// Traces `args` with opens answered at one stop, then at two; both reports must match.
fn both_ways(dir: &Path, args: &[&str]) -> Report {
    let _turn = MODE.lock().unwrap_or_else(|e| e.into_inner());
    let (one, out_one) = trace(dir, args);
    two_stop_opens(true);
    let two = trace(dir, args);
    two_stop_opens(false);
    let (two, out_two) = two;
    assert_eq!(out_one, out_two, "the command behaves the same both ways");
    common::assert_same_paths(&one, &two, "at one stop", "at two");
    assert_eq!(one, two);
    one
}

#[test]
fn gcc_through_symlinked_include_dirs_reports_the_same_at_one_stop() {
    let dir = Dir::new();
    dir.write("real/inc/a.h", "#include \"b.h\"\n#define A 1\n");
    dir.write("real/inc/b.h", "#include <stdint.h>\n#define B 2\n");
    symlink("real/inc", dir.join("inc")).unwrap();
    symlink("a.h", dir.join("real/inc/alias.h")).unwrap();
    dir.write("sub/none/.keep", "");
    dir.write(
        "main.c",
        "#include \"alias.h\"\n#include <string.h>\nint main(void) { return A + B; }\n",
    );
    let report = both_ways(
        &dir.path,
        &[
            "gcc",
            "-pipe",
            "-Isub/none",
            "-Iinc",
            "-I../nowhere",
            "-c",
            "main.c",
            "-o",
            "/dev/null",
        ],
    );
    assert!(
        report.reads.contains(&dir.join("real/inc/a.h")),
        "{:#?}",
        report.reads
    );
    assert!(report.reads.contains(&dir.join("real/inc/b.h")));
    assert!(
        report.symlinks.contains(&dir.join("inc")),
        "{:#?}",
        report.symlinks
    );
    assert!(report.symlinks.contains(&dir.join("real/inc/alias.h")));
    assert!(
        report.absent.contains(&dir.join("sub/none/alias.h")),
        "{:#?}",
        report.absent
    );
}

#[test]
fn python_imports_and_odd_opens_report_the_same_at_one_stop() {
    let dir = Dir::new();
    dir.write("lib/real/mod_a.py", "import json\nVALUE = 'a'\n");
    symlink("real", dir.join("lib/pkg")).unwrap();
    dir.write("data/file.txt", "data\n");
    symlink("../data/file.txt", dir.join("lib/file-link")).unwrap();
    symlink("/proc/self/fd/0", dir.join("stdin-link")).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    dir.write("sub/rel.txt", "relative\n");
    let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated name.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let code = r#"import os, sys, threading
sys.path.insert(0, 'lib/pkg')
import mod_a
try:
    import not_there
except ImportError:
    pass
print(open('lib/file-link').read(), end='')
os.close(os.open('data', os.O_RDONLY | os.O_DIRECTORY))
for name, flags in [('data/file.txt', os.O_RDONLY | os.O_DIRECTORY),
                    ('data/file.txt/x', os.O_RDONLY), ('fifo', os.O_RDONLY | os.O_NONBLOCK),
                    ('stdin-link', os.O_RDONLY), ('/dev/null', os.O_RDONLY),
                    ('/proc/self/status', os.O_RDONLY), ('lib/../data/./file.txt', os.O_RDONLY)]:
    try:
        os.close(os.open(name, flags))
    except OSError:
        pass
t = threading.Thread(target=os.chdir, args=('sub',))
t.start(); t.join()
print(open('rel.txt').read(), end='')
print(mod_a.VALUE)
"#;
    let report = both_ways(&dir.path, &["python3", "-c", code]);
    assert!(
        report.reads.contains(&dir.join("lib/real/mod_a.py")),
        "{:#?}",
        report.reads
    );
    assert!(report.reads.contains(&dir.join("data/file.txt")));
    // The relative open after another thread's chdir is resolved in the new directory.
    assert!(
        report.reads.contains(&dir.join("sub/rel.txt")),
        "{:#?}",
        report.reads
    );
    assert!(
        report.symlinks.contains(&dir.join("lib/pkg")),
        "{:#?}",
        report.symlinks
    );
    assert!(report.symlinks.contains(&dir.join("lib/file-link")));
    assert!(
        report.absent.contains(&dir.join("data/file.txt/x")),
        "{:#?}",
        report.absent
    );
    assert!(report.stats.contains(&dir.join("data")) || report.dirs.contains(&dir.join("data")));
}

/// One process of the command renames two files into each other's place over and over
/// while another reads them. Whatever the interleaving, a name that was read and renamed
/// is never reported as a clean input: it is a write, so the engine stores nothing
/// (`wrote_inputs`) or treats it as the build's own output.
#[test]
fn an_open_racing_a_rename_by_another_process_is_never_a_clean_input() {
    let dir = Dir::new();
    dir.write("a.txt", "a\n");
    dir.write("b.txt", "b\n");
    let script = "for i in $(seq 200); do mv a.txt t.txt; mv b.txt a.txt; mv t.txt b.txt; done & \
                  for i in $(seq 200); do cat a.txt b.txt >/dev/null 2>&1; done; wait";
    let _turn = MODE.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..3 {
        let (report, _) = trace(&dir.path, &["sh", "-c", script]);
        for name in ["a.txt", "b.txt", "t.txt"] {
            let path = dir.join(name);
            assert!(
                report.writes.contains(&path),
                "{name} was renamed: {:#?}",
                report.writes
            );
            assert!(
                !report.reads.contains(&path) || report.wrote_inputs.contains(&path),
                "{name} is read and renamed but not a write into an input: {report:#?}"
            );
        }
    }
}

#[test]
fn a_symlink_undone_by_dot_dot_is_recorded_both_ways() {
    // `sib/../real/target.txt` with `sib` -> `real` opens `real/target.txt`, which is
    // also the name's lexical form; yet retargeting `sib` to a directory elsewhere changes
    // what `..` leads to, so `sib` is an input.
    let dir = Dir::new();
    let target = dir.write("real/target.txt", "x\n");
    symlink("real", dir.join("sib")).unwrap();
    let report = both_ways(&dir.path, &["cat", "sib/../real/target.txt"]);
    assert!(report.reads.contains(&target), "{:#?}", report.reads);
    assert!(
        report.symlinks.contains(&dir.join("sib")),
        "{:#?}",
        report.symlinks
    );
}
