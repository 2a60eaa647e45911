//! What the tracer reports for real programs nobody here wrote: gcc, python3, sh and
//! coreutils, and a statically linked busybox (Debian's `busybox-static`, at
//! `/bin/busybox`). Every test runs the program under `run` and asserts on the report.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Dir, argv, execute, trace};
use trove_trace::{Report, RunError, Spec, run};

fn file_names(paths: &BTreeSet<PathBuf>) -> BTreeSet<String> {
    paths
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn gcc_reads_the_headers_it_included_and_records_the_include_dirs_it_searched_in_vain() {
    let dir = Dir::new();
    dir.write("inc1/other.h", "#define OTHER 1\n");
    let used = dir.write("inc2/used.h", "#define USED 42\n");
    let unused = dir.write("inc2/unused.h", "#define UNUSED 1\n");
    let main = dir.write(
        "main.c",
        "#include <stdio.h>\n#include \"used.h\"\nint main(void) { printf(\"%d\\n\", USED); return 0; }\n",
    );
    let gcc_tmp = dir.join("gcc-tmp");
    fs::create_dir(&gcc_tmp).unwrap();
    let report = trace(
        &dir.path,
        &["gcc", "-I", "inc1", "-I", "inc2", "main.c", "-o", "main"],
        &[("TMPDIR", gcc_tmp.to_str().unwrap())],
    );

    assert!(report.reads.contains(&main), "{:#?}", report.reads);
    assert!(report.reads.contains(&used));
    assert!(report.reads.contains(Path::new("/usr/include/stdio.h")));
    assert!(
        !report.reads.contains(&unused),
        "a header in the same dir that nobody included"
    );
    // The quoted include is looked for next to main.c, then in inc1, before inc2.
    assert!(
        report.absent.contains(&dir.join("used.h")),
        "{:#?}",
        report.absent
    );
    assert!(
        report.absent.contains(&dir.join("inc1/used.h")),
        "{:#?}",
        report.absent
    );
    // gcc's temporary files are its own outputs: written, never inputs.
    assert!(
        report.writes.iter().any(|p| p.starts_with(&gcc_tmp)),
        "{:#?}",
        report.writes
    );
    for set in [&report.reads, &report.absent, &report.stats, &report.dirs] {
        let temp_inputs: Vec<_> = set
            .iter()
            .filter(|p| p.starts_with(&gcc_tmp) && **p != gcc_tmp)
            .collect();
        assert!(
            temp_inputs.is_empty(),
            "temp files as inputs: {temp_inputs:#?}"
        );
    }
    assert!(report.writes.contains(&dir.join("main")));
    assert!(!report.reads.contains(&dir.join("main")));
    // The grandchildren gcc ran. `as` and `ld` are symlinks (to x86_64-linux-gnu-as and
    // -ld.bfd): execs names the files that ran, symlinks the names that led to them.
    let execs = file_names(&report.execs);
    for program in ["cc1", "collect2"] {
        assert!(execs.contains(program), "{program} not in {execs:?}");
    }
    for program in ["/usr/bin/as", "/usr/bin/ld"] {
        let ran = fs::canonicalize(program).unwrap();
        assert!(
            report.execs.contains(&ran),
            "{ran:?} not in {:#?}",
            report.execs
        );
        if fs::symlink_metadata(program).unwrap().is_symlink() {
            assert!(
                report.symlinks.contains(Path::new(program)),
                "{program} not in {:#?}",
                report.symlinks
            );
        }
    }
    // gcc found `as` by searching PATH: the entries before /usr/bin were absent.
    assert!(
        report
            .absent
            .iter()
            .any(|p| p.file_name() == Some("as".as_ref())),
        "{:#?}",
        report.absent
    );
    assert!(
        report.execs.iter().all(|p| report.reads.contains(p)),
        "programs are content inputs"
    );
}

#[test]
fn python_reads_the_module_it_imported_lists_its_path_and_records_absent_files() {
    let dir = Dir::new();
    let lib = dir.join("lib");
    let module = dir.write("lib/mymod.py", "VALUE = 7\n");
    let nothere = dir.join("nothere.txt");
    let script = dir.write(
        "main.py",
        &format!(
            "import os\nimport mymod\ntry:\n    import missing_mod\nexcept ImportError:\n    pass\n\
             print(mymod.VALUE, os.path.exists({nothere:?}))\n"
        ),
    );
    // PYTHONDONTWRITEBYTECODE set empty: python writes its bytecode cache, as by default.
    let env = [
        ("PYTHONPATH", lib.to_str().unwrap()),
        ("PYTHONDONTWRITEBYTECODE", ""),
    ];
    let (outcome, stdout) = execute(&dir.path, &["python3", "main.py"], &env, true);
    assert!(outcome.status.success());
    assert_eq!(stdout.trim(), "7 False");
    let report = outcome.report.unwrap();

    assert!(report.reads.contains(&script));
    assert!(report.reads.contains(&module), "{:#?}", report.reads);
    // Python looks for `missing_mod` in the listing of each path entry it caches, rather
    // than probing `missing_mod.py` and `missing_mod/__init__.py` one by one: the listed
    // directory is the input that a new `missing_mod.py` would change.
    assert!(report.dirs.contains(&lib), "{:#?}", report.dirs);
    assert!(
        !report
            .reads
            .iter()
            .any(|p| p.to_string_lossy().contains("missing_mod"))
    );
    assert!(report.absent.contains(&nothere), "{:#?}", report.absent);
    // The bytecode cache python wrote for mymod is its output, not an input or absence.
    let pycache = lib.join("__pycache__");
    assert!(
        report.writes.iter().any(|p| p.starts_with(&pycache)),
        "{:#?}",
        report.writes
    );
    assert!(
        !report.absent.iter().any(|p| p.starts_with(&pycache)),
        "{:#?}",
        report.absent
    );
}

#[test]
fn a_pipeline_reads_its_input_and_ls_lists_its_directory() {
    let dir = Dir::new();
    let a = dir.write("a", "b\na\n");
    dir.write("listed/x", "");
    let (outcome, stdout) = execute(&dir.path, &["sh", "-c", "cat a | sort"], &[], true);
    assert_eq!(stdout, "a\nb\n");
    let report = outcome.report.unwrap();
    assert!(report.reads.contains(&a));
    assert!(
        report.execs.iter().any(|p| p.ends_with("cat"))
            && report.execs.iter().any(|p| p.ends_with("sort"))
    );

    let report = trace(&dir.path, &["ls", "listed"], &[]);
    assert!(
        report.dirs.contains(&dir.join("listed")),
        "{:#?}",
        report.dirs
    );
    assert!(
        !report.reads.contains(&dir.join("listed/x")),
        "ls lists names, it does not read files"
    );
}

#[test]
fn scripts_run_by_sh_and_by_their_shebang_are_inputs() {
    let dir = Dir::new();
    let data = dir.write("data", "content\n");
    let script = dir.write("script.sh", "#!/bin/sh\ncat data\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();

    let report = trace(&dir.path, &["sh", "script.sh"], &[]);
    assert!(report.reads.contains(&script));
    assert!(report.reads.contains(&data));

    let report = trace(&dir.path, &["./script.sh"], &[]);
    assert!(report.execs.contains(&script), "{:#?}", report.execs);
    assert!(report.reads.contains(&script));
    assert!(report.reads.contains(&data));
    // The interpreter the kernel started for the shebang is a program run, too.
    let sh = fs::canonicalize("/bin/sh").unwrap();
    assert!(
        report.execs.contains(&sh),
        "{sh:?} not in {:#?}",
        report.execs
    );
}

#[test]
fn a_grandchild_is_followed() {
    let dir = Dir::new();
    let f = dir.write("f", "deep\n");
    let (outcome, stdout) = execute(
        &dir.path,
        &["sh", "-c", "sh -c 'sh -c \"cat f\"'"],
        &[],
        true,
    );
    assert_eq!(stdout, "deep\n");
    assert!(outcome.report.unwrap().reads.contains(&f));
}

#[test]
fn reading_through_a_symlink_records_the_target_and_the_link() {
    let dir = Dir::new();
    let target = dir.write("real/target.txt", "x\n");
    symlink("real/target.txt", dir.join("link")).unwrap();
    symlink("real", dir.join("dirlink")).unwrap();
    let report = trace(&dir.path, &["sh", "-c", "cat link dirlink/target.txt"], &[]);
    assert!(report.reads.contains(&target), "{:#?}", report.reads);
    assert!(!report.reads.contains(&dir.join("link")));
    assert!(
        report.symlinks.contains(&dir.join("link")),
        "{:#?}",
        report.symlinks
    );
    assert!(
        report.symlinks.contains(&dir.join("dirlink")),
        "{:#?}",
        report.symlinks
    );
}

#[test]
fn a_statically_linked_program_is_traced_like_a_dynamic_one() {
    let dir = Dir::new();
    let f = dir.write("f", "static\n");
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "install Debian's busybox-static for this test"
    );
    let (outcome, stdout) = execute(&dir.path, &["/bin/busybox", "cat", "f"], &[], true);
    assert_eq!(stdout, "static\n");
    let report = outcome.report.unwrap();
    assert!(report.reads.contains(&f), "{:#?}", report.reads);
    assert!(
        report.execs.contains(&fs::canonicalize(busybox).unwrap()),
        "{:#?}",
        report.execs
    );
}

#[test]
fn a_file_the_build_wrote_before_reading_it_is_an_output() {
    let dir = Dir::new();
    let report = trace(
        &dir.path,
        &[
            "sh",
            "-c",
            "echo hi > out.txt; cat out.txt; test -e out.txt",
        ],
        &[],
    );
    let out = dir.join("out.txt");
    assert!(report.writes.contains(&out));
    assert!(!report.reads.contains(&out), "{:#?}", report.reads);
    assert!(!report.stats.contains(&out));
    assert_eq!(report.wrote_inputs, BTreeSet::new());
}

/// A chmod that changes an entry's mode in a directory the command listed before makes
/// the directory a written input (the listing taken after the command would record
/// another mode than the command saw); a chmod to the mode the entry already has changes
/// nothing a listing records: a write of the name alone, so such a build is stored.
#[test]
fn only_a_chmod_that_changes_the_mode_is_an_entry_change() {
    let dir = Dir::new();
    let (same, other) = (dir.write("d/same", "a\n"), dir.write("d/other", "b\n"));
    for path in [&same, &other] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let listed = dir.join("d");
    // coreutils' chmod (fchmodat) and python's os.chmod (chmod, or fchmodat on aarch64).
    for script in [
        "ls d >/dev/null; chmod 644 d/same",
        "ls d >/dev/null; python3 -c 'import os; os.chmod(\"d/same\", 0o644)'",
    ] {
        let report = trace(&dir.path, &["sh", "-c", script], &[]);
        assert!(
            report.dirs.contains(&listed),
            "{script}: {:#?}",
            report.dirs
        );
        assert!(
            report.writes.contains(&same),
            "{script}: {:#?}",
            report.writes
        );
        assert_eq!(report.entries, BTreeSet::new(), "{script}");
        assert_eq!(report.wrote_inputs, BTreeSet::new(), "{script}");
    }
    let report = trace(
        &dir.path,
        &[
            "sh",
            "-c",
            "ls d >/dev/null; chmod 644 d/same; chmod 755 d/other",
        ],
        &[],
    );
    assert_eq!(report.entries, BTreeSet::from([other.clone()]));
    assert_eq!(report.wrote_inputs, BTreeSet::from([listed]));
    assert_eq!(
        fs::metadata(&other).unwrap().permissions().mode() & 0o7777,
        0o755
    );
}

#[test]
fn appending_to_a_file_the_build_read_is_a_write_into_an_input() {
    let dir = Dir::new();
    let input = dir.write("in.txt", "first\n");
    let report = trace(
        &dir.path,
        &["sh", "-c", "cat in.txt; echo more >> in.txt"],
        &[],
    );
    assert!(report.reads.contains(&input));
    assert_eq!(report.wrote_inputs, BTreeSet::from([input]));
}

#[test]
fn a_tcp_connection_is_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = Dir::new();
    let code = format!("import socket\nsocket.create_connection(('127.0.0.1', {port})).close()\n");
    let report = trace(&dir.path, &["python3", "-c", &code], &[]);
    assert!(
        report.connects.contains(&format!("127.0.0.1:{port}")),
        "{:#?}",
        report.connects
    );
}

#[test]
fn a_file_read_by_a_thread_is_reported() {
    let dir = Dir::new();
    let f = dir.write("f.txt", "threaded\n");
    let code = "import threading\n\
                t = threading.Thread(target=lambda: print(open('f.txt').read(), end=''))\n\
                t.start()\nt.join()\n";
    let (outcome, stdout) = execute(&dir.path, &["python3", "-c", code], &[], true);
    assert_eq!(stdout, "threaded\n");
    assert!(outcome.report.unwrap().reads.contains(&f));
}

#[test]
fn an_exec_from_a_process_with_other_threads_is_followed_and_ends() {
    let dir = Dir::new();
    let f = dir.write("f.txt", "after exec\n");
    let code = "import os, threading\n\
                threading.Thread(target=threading.Event().wait, daemon=True).start()\n\
                os.execv('/bin/cat', ['cat', 'f.txt'])\n";
    let (outcome, stdout) = execute(&dir.path, &["python3", "-c", code], &[], true);
    assert!(outcome.status.success());
    assert_eq!(stdout, "after exec\n");
    assert!(outcome.report.unwrap().reads.contains(&f));
}

#[test]
fn a_child_killed_by_a_signal_does_not_stop_the_trace() {
    let dir = Dir::new();
    let f = dir.write("f", "survivor\n");
    let (outcome, stdout) = execute(
        &dir.path,
        &["sh", "-c", "sh -c 'kill -9 $$'; cat f"],
        &[],
        true,
    );
    assert!(outcome.status.success());
    assert_eq!(stdout, "survivor\n");
    assert!(outcome.report.unwrap().reads.contains(&f));
}

#[test]
fn a_background_process_left_running_ends_with_the_command() {
    let dir = Dir::new();
    for traced in [true, false] {
        let (outcome, stdout) = execute(
            &dir.path,
            &["sh", "-c", "sleep 1000 & echo $!"],
            &[],
            traced,
        );
        assert!(outcome.status.success());
        let pid: i32 = stdout.trim().parse().unwrap();
        if traced {
            // Traced, run returns only once every traced process has been seen to end.
            assert!(
                !alive(pid),
                "the background sleep {pid} outlived the command"
            );
        } else {
            // Untraced, its process group was sent SIGKILL, which takes effect shortly.
            assert!(
                ends_within(pid, Duration::from_secs(10)),
                "the background sleep {pid} outlived the command"
            );
        }
    }
}

/// Waits for `pid` to end, up to `limit`: the condition is checked, not hoped for.
fn ends_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Whether `pid` is a process that has not ended (a zombie has ended: it waits for its
/// parent, here possibly an init that does not reap).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start())
                .unwrap_or("");
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

#[test]
fn concurrent_traced_runs_each_report_only_their_own_reads() {
    let dir = Dir::new();
    let files: Vec<PathBuf> = (0..4).map(|i| dir.write(&format!("f{i}"), "x\n")).collect();
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let runs: Vec<_> = files
            .iter()
            .map(|file| {
                scope.spawn(|| {
                    trace(
                        &dir.path,
                        &["sh", "-c", "cat \"$0\"", file.to_str().unwrap()],
                        &[],
                    )
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for (file, report) in files.iter().zip(&reports) {
        let ours: Vec<&PathBuf> = report
            .reads
            .iter()
            .filter(|p| p.starts_with(&dir.path))
            .collect();
        assert_eq!(ours, vec![file]);
    }
}

#[test]
fn the_path_search_for_the_program_is_recorded() {
    let dir = Dir::new();
    let empty = dir.join("empty-bin");
    fs::create_dir(&empty).unwrap();
    let path = format!("{}:/usr/bin:/bin", empty.display());
    let report = trace(&dir.path, &["true"], &[("PATH", &path)]);
    assert!(
        report.absent.contains(&empty.join("true")),
        "{:#?}",
        report.absent
    );
}

#[test]
fn ignored_prefixes_and_globs_are_not_reported() {
    let dir = Dir::new();
    dir.write("store/blob", "x");
    dir.write("cache/a.tmp", "y");
    let kept = dir.write("kept", "z");
    let mut spec = Spec::new(
        argv(&["cat", "store/blob", "cache/a.tmp", "kept"]),
        &dir.path,
        tempfile::tempfile().unwrap(),
    );
    spec.trace = true;
    spec.ignore = vec![dir.join("store")];
    spec.ignore_globs = vec![format!("{}/cache/**", dir.path.display())];
    let report = run(spec).unwrap().report.unwrap();
    assert!(report.reads.contains(&kept));
    assert!(
        !report
            .reads
            .iter()
            .any(|p| p.starts_with(dir.join("store")) || p.starts_with(dir.join("cache")))
    );
    assert!(
        !report
            .reads
            .iter()
            .any(|p| p.starts_with("/proc") || p.starts_with("/dev") || p.starts_with("/sys"))
    );

    let mut spec = Spec::new(argv(&["true"]), &dir.path, tempfile::tempfile().unwrap());
    spec.trace = true;
    spec.ignore_globs = vec!["a[".into()];
    assert!(matches!(run(spec), Err(RunError::Glob { glob, .. }) if glob == "a["));
}

#[test]
fn untraced_the_command_runs_and_its_stdout_lands_in_the_file() {
    let dir = Dir::new();
    dir.write("f", "plain\n");
    let (outcome, stdout) = execute(&dir.path, &["cat", "f"], &[("UNUSED", "1")], false);
    assert!(outcome.status.success());
    assert_eq!(stdout, "plain\n");
    assert!(outcome.report.is_none());
    assert_eq!(outcome.trace_unavailable, None);

    let (outcome, stdout) = execute(
        &dir.path,
        &["sh", "-c", "echo $GREETING; exit 3"],
        &[("GREETING", "hello")],
        false,
    );
    assert_eq!(outcome.status.code(), Some(3));
    assert_eq!(stdout, "hello\n");
    let (outcome, _) = execute(&dir.path, &["sh", "-c", "kill -TERM $$"], &[], true);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&outcome.status),
        Some(libc::SIGTERM)
    );
}

#[test]
fn a_program_that_cannot_start_is_a_spawn_error_naming_it() {
    let dir = Dir::new();
    for trace in [true, false] {
        let mut spec = Spec::new(
            argv(&["no-such-program-here"]),
            &dir.path,
            tempfile::tempfile().unwrap(),
        );
        spec.trace = trace;
        let err = run(spec).unwrap_err();
        assert!(
            matches!(&err, RunError::Spawn { program, .. } if program == "no-such-program-here"),
            "{err}"
        );

        let not_executable = dir.write("data.txt", "x");
        let mut spec = Spec::new(
            argv(&["./data.txt"]),
            &dir.path,
            tempfile::tempfile().unwrap(),
        );
        spec.trace = trace;
        let err = run(spec).unwrap_err();
        assert!(
            matches!(&err, RunError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied),
            "{err} for {not_executable:?}"
        );

        let mut spec = Spec::new(
            argv(&["true"]),
            dir.join("missing-dir"),
            tempfile::tempfile().unwrap(),
        );
        spec.trace = trace;
        let err = run(spec).unwrap_err();
        assert!(
            matches!(&err, RunError::Dir { dir: d, .. } if *d == dir.join("missing-dir")),
            "{err}"
        );
    }
}

/// Runs `f` on a thread of its own where system call `nr` fails with `errno`, as a
/// container's seccomp policy would make it fail. The runner thread and the command
/// inherit the filter; the rest of the test process does not.
fn with_syscall_refused<T: Send>(nr: i64, errno: i32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let code = |c: u32| c as u16;
                let filter = [
                    libc::sock_filter {
                        code: code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
                        jt: 0,
                        jf: 0,
                        k: 0,
                    },
                    libc::sock_filter {
                        code: code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
                        jt: 0,
                        jf: 1,
                        k: nr as u32,
                    },
                    libc::sock_filter {
                        code: code(libc::BPF_RET | libc::BPF_K),
                        jt: 0,
                        jf: 0,
                        k: libc::SECCOMP_RET_ERRNO | errno as u32,
                    },
                    libc::sock_filter {
                        code: code(libc::BPF_RET | libc::BPF_K),
                        jt: 0,
                        jf: 0,
                        k: libc::SECCOMP_RET_ALLOW,
                    },
                ];
                let program = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr().cast_mut(),
                };
                // SAFETY: prctl reads the program, which outlives the calls; both settings
                // apply to this thread only.
                unsafe {
                    assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
                    let program: *const libc::sock_fprog = &program;
                    assert_eq!(
                        libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, program),
                        0
                    );
                }
                f()
            })
            .join()
            .unwrap()
    })
}

#[test]
fn when_ptrace_is_refused_the_command_runs_untraced_and_says_why() {
    let dir = Dir::new();
    dir.write("f", "still runs\n");
    let (outcome, stdout) = with_syscall_refused(libc::SYS_ptrace, libc::EPERM, || {
        execute(&dir.path, &["cat", "f"], &[], true)
    });
    assert_eq!(stdout, "still runs\n");
    assert!(outcome.status.success());
    assert!(outcome.report.is_none());
    let reason = outcome.trace_unavailable.expect("a reason");
    assert!(
        reason.contains("PTRACE_SEIZE") && reason.contains("EPERM"),
        "{reason}"
    );
}

#[test]
fn when_seccomp_is_refused_the_command_runs_untraced_and_says_why() {
    let dir = Dir::new();
    dir.write("f", "still runs\n");
    let (outcome, stdout) = with_syscall_refused(libc::SYS_seccomp, libc::EINVAL, || {
        execute(&dir.path, &["cat", "f"], &[], true)
    });
    assert_eq!(stdout, "still runs\n");
    assert!(outcome.status.success());
    assert!(outcome.report.is_none());
    let reason = outcome.trace_unavailable.expect("a reason");
    assert!(reason.contains("seccomp"), "{reason}");
}

/// Not a timed assertion: prints what tracing costs on a gcc compile, for the record
/// (`cargo test -p trove-trace --test trace wall_times -- --nocapture`).
#[test]
fn traced_and_untraced_gcc_wall_times_are_printed() {
    let dir = Dir::new();
    dir.write(
        "main.c",
        "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n\
         int main(void) { printf(\"%f\\n\", sqrt(2.0)); return 0; }\n",
    );
    let args = ["gcc", "-O2", "main.c", "-o", "main", "-lm"];
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..10 {
        let traced = round % 2 == 1;
        let start = Instant::now();
        let (outcome, _) = execute(&dir.path, &args, &[], traced);
        assert!(outcome.status.success());
        times[usize::from(traced)].push(start.elapsed());
    }
    for (traced, mut runs) in [(false, times[0].clone()), (true, times[1].clone())] {
        runs.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "gcc -O2 main.c -o main -lm, {}: min {:.1} ms, median {:.1} ms over {} runs",
            if traced { "traced  " } else { "untraced" },
            ms(runs[0]),
            ms(runs[runs.len() / 2]),
            runs.len()
        );
    }
}

/// The CPUs a process may run on, as `/proc/PID/status` lists them (`0-1`, `1`).
fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/PID/status")
        .trim()
        .to_owned()
}

/// A sequential command shares one CPU with the tracer (each stop is then a switch on
/// that CPU, not a wake-up across CPUs); one that starts a third process, or a thread,
/// gets every CPU back at once, and so does what it starts after.
#[test]
fn a_sequential_command_shares_the_tracers_cpu_and_a_parallel_one_gets_them_all_back() {
    let ours = cpus_allowed(&fs::read_to_string("/proc/self/status").unwrap());
    assert!(
        std::thread::available_parallelism().unwrap().get() >= 2 && ours.contains(['-', ',']),
        "this test needs a machine with two CPUs or more (this process may use {ours})"
    );
    let dir = Dir::new();
    let grep = "grep Cpus_allowed_list /proc/self/status";
    // One process: `sh -c` execs grep.
    let (_, one) = execute(&dir.path, &["sh", "-c", grep], &[], true);
    let one = cpus_allowed(&one);
    assert!(one.parse::<u32>().is_ok(), "held on one CPU, got {one}");
    // Untraced, nothing is held.
    let (_, untraced) = execute(&dir.path, &["sh", "-c", grep], &[], false);
    assert_eq!(cpus_allowed(&untraced), ours);
    // Two background processes, then grep: the third process gives the CPUs back.
    let parallel = format!("sleep 0.2 & sleep 0.2 & {grep}; wait");
    let (outcome, text) = execute(&dir.path, &["sh", "-c", &parallel], &[], true);
    assert!(outcome.status.success());
    assert_eq!(cpus_allowed(&text), ours);
    // A thread gives them back too.
    let code = "import threading\n\
                t = threading.Thread(target=lambda: None); t.start(); t.join()\n\
                print(open('/proc/self/status').read())\n";
    let (_, text) = execute(&dir.path, &["python3", "-c", code], &[], true);
    assert_eq!(cpus_allowed(&text), ours);
}
