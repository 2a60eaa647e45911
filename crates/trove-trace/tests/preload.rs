//! Look-ups made by the preloaded library without a stop (`src/preload.rs`,
//! `preload/preload.c`) must report exactly what the same look-ups report when each one
//! stops the tracee: real programs traced both ways, in one process, give identical
//! reports, and the library really took the look-ups over.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Mutex;

use common::Dir;
use trove_trace::{Report, preload_lookups};

/// `preload_lookups` is process-wide: the tests of this file take turns.
static MODE: Mutex<()> = Mutex::new(());

fn trace(dir: &Path, args: &[&str]) -> (Report, String) {
    common::trace_output(dir, args, &[("PYTHONDONTWRITEBYTECODE", "1")])
}

/// Traces `args` with the library, then without; both reports must match, and the
/// library must have logged at least `buffered` look-ups.
fn both_ways(dir: &Path, args: &[&str], buffered: usize) -> Report {
    let _turn = MODE.lock().unwrap_or_else(|e| e.into_inner());
    let (with, out_with) = trace(dir, args);
    preload_lookups(false);
    let without = trace(dir, args);
    preload_lookups(true);
    let (without, out_without) = without;
    assert_eq!(
        out_with, out_without,
        "the command behaves the same both ways"
    );
    common::assert_same_paths(&with, &without, "with the library", "without");
    assert_eq!(
        without.buffered, 0,
        "without the library nothing is buffered"
    );
    assert!(
        with.buffered >= buffered,
        "the library logged {} look-ups, expected at least {buffered}",
        with.buffered
    );
    with
}

#[test]
fn gcc_canonicalising_headers_through_symlinks_reports_the_same_without_stops() {
    let dir = Dir::new();
    dir.write("real/inc/a.h", "#include \"b.h\"\n#define A 1\n");
    dir.write("real/inc/b.h", "#include <stdint.h>\n#define B 2\n");
    symlink("real/inc", dir.join("inc")).unwrap();
    symlink("a.h", dir.join("real/inc/alias.h")).unwrap();
    dir.write("sub/none/.keep", "");
    dir.write(
        "main.c",
        "#include \"alias.h\"\n#include <string.h>\n#include <math.h>\n\
         int main(void) { return A + B; }\n",
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
            "main.o",
        ],
        100,
    );
    assert!(report.reads.contains(&dir.join("real/inc/a.h")));
    assert!(report.symlinks.contains(&dir.join("inc")));
    assert!(report.symlinks.contains(&dir.join("real/inc/alias.h")));
    assert!(report.absent.contains(&dir.join("sub/none/alias.h")));
    assert!(report.writes.contains(&dir.join("main.o")));
}

#[test]
fn python_imports_stats_and_realpath_report_the_same_without_stops() {
    let dir = Dir::new();
    dir.write("lib/real/mod_a.py", "import json\nVALUE = 'a'\n");
    symlink("real", dir.join("lib/pkg")).unwrap();
    dir.write("data/file.txt", "data\n");
    // Looked up only with a mode access() refuses (EINVAL): a failure that says nothing
    // about the name, which the library hands back to the tracer.
    dir.write("data/odd-mode.txt", "x\n");
    symlink("../data/file.txt", dir.join("lib/file-link")).unwrap();
    symlink("missing-target", dir.join("dangling")).unwrap();
    symlink("/proc/self/fd/0", dir.join("stdin-link")).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    dir.write("sub/rel.txt", "relative\n");
    let code = r#"import os, sys
sys.path.insert(0, 'lib/pkg')
import mod_a
try:
    import not_there
except ImportError:
    pass
print(open('lib/file-link').read(), end='')
print(os.path.realpath('lib/pkg/../pkg/mod_a.py'))
print(os.path.exists('dangling'), os.path.lexists('dangling'), os.readlink('dangling'))
print(os.access('data/file.txt', os.R_OK), os.access('data/none', os.F_OK))
print(os.access('data/odd-mode.txt', 0o70))
fd = os.open('data', os.O_RDONLY | os.O_DIRECTORY)
print(os.stat('file.txt', dir_fd=fd).st_size)
try:
    os.stat('none.txt', dir_fd=fd)
except FileNotFoundError:
    print('none')
os.close(fd)
os.close(os.open('stdin-link', os.O_RDONLY))
os.chdir('sub')
print(open('rel.txt').read(), end='')
with open('out.txt', 'w') as f:
    f.write(mod_a.VALUE)
"#;
    let report = both_ways(&dir.path, &["python3", "-c", code], 50);
    assert!(report.reads.contains(&dir.join("lib/real/mod_a.py")));
    assert!(report.reads.contains(&dir.join("sub/rel.txt")));
    assert!(report.symlinks.contains(&dir.join("dangling")));
    assert!(report.symlinks.contains(&dir.join("stdin-link")));
    assert!(
        report.absent.contains(&dir.join("dangling"))
            || report.absent.contains(&dir.join("missing-target"))
    );
    assert!(report.absent.contains(&dir.join("data/none.txt")));
    assert!(
        report.stats.contains(&dir.join("data/file.txt"))
            || report.reads.contains(&dir.join("data/file.txt"))
    );
    assert!(report.writes.contains(&dir.join("sub/out.txt")));
    assert!(
        report.stats.contains(&dir.join("data/odd-mode.txt")),
        "{:#?}",
        report.stats
    );
}

/// realpath's walk, made in the library, gives what glibc's gives, errors included.
#[test]
fn realpath_in_the_library_answers_as_glibc_does() {
    let dir = Dir::new();
    dir.write("real/deep/file.c", "int x;\n");
    symlink("real/deep", dir.join("d")).unwrap();
    symlink("../real", dir.join("real/deep/up")).unwrap();
    symlink("loop2", dir.join("loop1")).unwrap();
    symlink("loop1", dir.join("loop2")).unwrap();
    dir.write(
        "rp.c",
        r#"#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char buf[4096];
    for (int i = 1; i < argc; i++) {
        errno = 0;
        char *got = realpath(argv[i], buf);
        char *owned = realpath(argv[i], NULL);
        printf("%s -> %s (%s) %s\n", argv[i], got ? got : "NULL", strerror(errno),
               owned ? owned : "NULL");
        free(owned);
    }
    return 0;
}
"#,
    );
    let (build, _) = common::execute(&dir.path, &["gcc", "rp.c", "-o", "rp"], &[], false);
    assert!(build.status.success());
    let names = [
        "./rp",
        "d/file.c",
        "d/up/deep/./file.c",
        "d/../x",
        "d//file.c/",
        "d/file.c/.",
        "d/file.c/..",
        "real/deep/",
        "none/x",
        "loop1",
        "/",
        "/..",
        ".",
        "d/up/..",
    ];
    let mut args = vec!["./rp"];
    args.extend(names);
    let report = both_ways(&dir.path, &args, names.len());
    let (plain, out) = common::execute(&dir.path, &args, &[], false);
    assert!(plain.status.success());
    let (_, traced) = trace(&dir.path, &args);
    assert_eq!(traced, out, "the same answers as glibc's own realpath");
    assert!(
        out.contains("loop1 -> NULL (Too many levels of symbolic links)"),
        "{out}"
    );
    assert!(
        out.contains("d/file.c/. -> NULL (Not a directory)"),
        "{out}"
    );
    assert!(report.symlinks.contains(&dir.join("d")));
    assert!(report.symlinks.contains(&dir.join("real/deep/up")));
}

/// A process that starts a thread goes back to stops for everything after it, and a
/// static program never had the library: both are traced completely.
#[test]
fn threads_and_static_programs_fall_back_to_stops() {
    let dir = Dir::new();
    dir.write("a.txt", "a\n");
    dir.write("b.txt", "b\n");
    let code = "import threading, os\n\
                open('a.txt').read()\n\
                t = threading.Thread(target=lambda: open('b.txt').read())\n\
                t.start(); t.join()\n\
                os.stat('c.txt') if os.path.exists('c.txt') else None\n";
    let report = both_ways(&dir.path, &["python3", "-c", code], 10);
    assert!(report.reads.contains(&dir.join("a.txt")));
    assert!(report.reads.contains(&dir.join("b.txt")));
    assert!(report.absent.contains(&dir.join("c.txt")));
    let report = both_ways(
        &dir.path,
        &[
            "sh",
            "-c",
            "cat a.txt; /bin/busybox cat b.txt; /bin/busybox ls /nonexistent || true",
        ],
        1,
    );
    assert!(report.reads.contains(&dir.join("b.txt")));
    assert!(report.absent.contains(Path::new("/nonexistent")));
}

/// A process's look-ups are logged before another process's later write, though they
/// made no stop: the tracer reads the other buffers at every write. Here Python reads
/// `x.txt` and then blocks on a FIFO; the shell's write into `x.txt` comes after it
/// opened the FIFO, so after the read: a write into an input, both ways.
#[test]
fn a_read_without_a_stop_comes_before_another_processs_later_write() {
    let dir = Dir::new();
    dir.write("x.txt", "old\n");
    let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated name.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let script = "python3 -c \"open('x.txt').read(); open('fifo').read()\" & \
                  echo go > fifo; echo new > x.txt; wait";
    // Not `both_ways`: whether the FIFO itself reads as an input or the build's own
    // output depends on which of its two ends opened first, with or without the library.
    let _turn = MODE.lock().unwrap_or_else(|e| e.into_inner());
    for library in [true, false] {
        preload_lookups(library);
        let (report, _) = trace(&dir.path, &["sh", "-c", script]);
        preload_lookups(true);
        assert!(
            report.wrote_inputs.contains(&dir.join("x.txt")),
            "library {library}: {report:#?}"
        );
        assert_eq!(report.buffered > 0, library, "{}", report.buffered);
        std::fs::write(dir.join("x.txt"), "old\n").unwrap();
    }
}

/// A process killed by a signal still has its look-ups logged (at its exit stop), and
/// the library's own file is never an input.
#[test]
fn a_killed_processs_look_ups_are_kept_and_the_library_is_not_an_input() {
    let dir = Dir::new();
    dir.write("a.txt", "a\n");
    let script = "python3 -c \"import os; open('a.txt').read(); os.stat('none'); \
                  os.kill(os.getpid(), 9)\"; true";
    let report = both_ways(&dir.path, &["sh", "-c", script], 2);
    assert!(
        report.reads.contains(&dir.join("a.txt")),
        "{:#?}",
        report.reads
    );
    assert!(report.absent.contains(&dir.join("none")));
    let own: Vec<_> = report
        .reads
        .iter()
        .chain(&report.stats)
        .chain(&report.absent)
        .filter(|p| p.to_string_lossy().contains("trove-preload"))
        .collect();
    assert!(own.is_empty(), "{own:#?}");
}
