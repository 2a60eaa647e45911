//! Command recipes under the syscall tracer, with real programs nobody here wrote: what
//! they touched is discovered without declarations, and only a real change rebuilds.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::{Project, stderr};

/// The first line of `trove run --explain`'s reason.
fn reason(p: &Project, args: &[&str]) -> String {
    p.reason(args).lines().next().unwrap_or_default().to_owned()
}

fn one_recipe(command: &str) -> Project {
    Project::new(&format!(
        r#"(recipes: {{ "r": (command: ["sh", "-c", "echo r >> log; {command}"]) }})"#
    ))
}

#[test]
fn gcc_headers_are_discovered_an_edit_or_an_earlier_header_rebuilds_an_unrelated_one_does_not() {
    let p = one_recipe("gcc -E -P -Iinc1 -Iinc2 main.c");
    p.write(
        "main.c",
        "#include \"a.h\"\n#include \"b.h\"\nint x = A + B;\n",
    );
    p.write("inc2/a.h", "#define A 1\n");
    p.write("inc2/b.h", "#define B 2\n");
    p.write("inc2/unused.h", "#define U 0\n");
    std::fs::create_dir(p.path("inc1")).expect("mkdir");
    assert!(p.ok(&["run", "r"]).contains("int x = 1 + 2;"));
    assert_eq!(reason(&p, &["r"]), "hit disk");

    p.write("inc2/unused.h", "#define U 1\n");
    assert_eq!(reason(&p, &["r"]), "hit disk", "a header nobody includes");
    p.write("inc2/a.h", "#define A 5\n");
    let (out, why) = p.run_explained(&["r"]);
    assert!(out.contains("int x = 5 + 2;"), "{out}");
    assert!(why.starts_with("built: inc2/a.h changed"), "{why}");
    // gcc looked for inc1/b.h before it found inc2/b.h: creating it rebuilds.
    p.write("inc1/b.h", "#define B 7\n");
    let (out, why) = p.run_explained(&["r"]);
    assert!(out.contains("int x = 5 + 7;"), "{out}");
    assert!(
        why.starts_with("built: inc1/b.h changed (absent -> "),
        "{why}"
    );
    assert_eq!(reason(&p, &["r"]), "hit disk");
    assert_eq!(p.lines("log"), 3);
}

#[test]
fn gcc_include_search_absences_are_vouched_for_by_their_directory_until_a_header_appears() {
    let p = one_recipe("gcc -E -P -Iinc1 -Iinc2 main.c");
    p.write(
        "main.c",
        "#include \"a.h\"\n#include <stdint.h>\nint x = A;\n",
    );
    p.write("inc2/a.h", "#define A 2\n");
    std::fs::create_dir(p.path("inc1")).expect("mkdir");
    assert!(p.ok(&["run", "r"]).contains("int x = 2;"));
    // The directories (and the store's) out of the racy window, then a build that
    // stamps them: gcc looked for a.h and every system header in inc1/ and inc2/ first.
    std::thread::sleep(Duration::from_millis(2_100));
    p.ok(&["run", "--force", "r"]);
    let config = trove::Config::load(&p.path("trove.ron")).expect("config");
    let rc = config.recipes.get("r").cloned().expect("recipe r");
    let recipe = trove::CommandRecipe::new("r", rc);
    let engine = trove::Engine::open(config).expect("engine");
    let hit = engine.get_explained(&recipe, &Vec::new()).expect("hit");
    assert_eq!(hit.reason, trove::Reason::HitDisk);
    let stats = engine.stats();
    assert!(
        stats.absences_vouched >= 3,
        "absences vouched for by their directory: {}, files checked: {}",
        stats.absences_vouched,
        stats.files_checked
    );
    drop(engine);
    // A header created earlier in the include path than the one gcc found.
    p.write("inc1/a.h", "#define A 1\n");
    let (out, why) = p.run_explained(&["r"]);
    assert!(out.contains("int x = 1;"), "{out}");
    assert!(
        why.starts_with("built: inc1/a.h changed (absent -> "),
        "{why}"
    );
    assert_eq!(reason(&p, &["r"]), "hit disk");
    assert_eq!(p.lines("log"), 3);
}

#[test]
fn python_imports_are_discovered_and_a_module_created_where_it_was_looked_for_rebuilds() {
    let p = one_recipe("python3 -S -B main.py");
    p.write(
        "main.py",
        "import sys\nsys.path.insert(0, 'lib')\nimport helper\ntry:\n    import optional\n    print('optional', optional.X)\nexcept ImportError:\n    print('no optional')\nprint(helper.X)\n",
    );
    p.write("lib/helper.py", "X = 1\n");
    assert_eq!(p.ok(&["run", "r"]), "no optional\n1\n");
    assert_eq!(reason(&p, &["r"]), "hit disk");
    p.write("lib/helper.py", "X = 2\n");
    assert_eq!(p.run_explained(&["r"]).0, "no optional\n2\n");
    p.write("lib/optional.py", "X = 3\n");
    let (out, why) = p.run_explained(&["r"]);
    assert_eq!(out, "optional 3\n2\n");
    assert!(why.starts_with("built: "), "{why}");
    assert_eq!(reason(&p, &["r"]), "hit disk");
}

#[test]
fn a_pipeline_a_listing_a_script_and_a_grandchild_are_all_followed() {
    let p = one_recipe("cat a.txt | sort; ls d; sh s.sh; sh -c 'sh -c \\\"cat g.txt\\\"'");
    p.write("a.txt", "b\na\n");
    p.write("d/x", "");
    p.write("s.sh", "echo script1\n");
    p.write("g.txt", "grand1\n");
    assert_eq!(p.ok(&["run", "r"]), "a\nb\nx\nscript1\ngrand1\n");
    for (file, text, want) in [
        ("a.txt", "c\na\n", "built: a.txt changed"),
        ("d/y", "", "built: d/ listing changed"),
        ("s.sh", "echo script2\n", "built: s.sh changed"),
        ("g.txt", "grand2\n", "built: g.txt changed"),
    ] {
        p.write(file, text);
        let why = reason(&p, &["r"]);
        assert!(why.starts_with(want), "after writing {file}: {why}");
    }
    assert_eq!(p.ok(&["run", "r"]), "a\nc\nx\ny\nscript2\ngrand2\n");
}

#[test]
fn a_symlink_retargeted_rebuilds() {
    let p = one_recipe("cat link");
    p.write("one.txt", "1");
    p.write("two.txt", "2");
    std::os::unix::fs::symlink("one.txt", p.path("link")).expect("symlink");
    assert_eq!(p.ok(&["run", "r"]), "1");
    std::fs::remove_file(p.path("link")).expect("rm");
    std::os::unix::fs::symlink("two.txt", p.path("link")).expect("symlink");
    assert_eq!(p.run_explained(&["r"]).0, "2");
}

#[test]
fn a_statically_linked_program_is_traced_like_any_other() {
    // Debian's busybox-static, installed by .ci/run: no dynamic loader, no LD_PRELOAD.
    let p = one_recipe("/bin/busybox cat data.txt");
    p.write("data.txt", "s1");
    assert_eq!(p.ok(&["run", "r"]), "s1");
    p.write("data.txt", "s2");
    let (out, why) = p.run_explained(&["r"]);
    assert_eq!(out, "s2");
    assert!(why.starts_with("built: data.txt changed"), "{why}");
}

#[test]
fn another_tool_first_on_path_rebuilds() {
    let p = Project::new(r#"(recipes: { "r": (command: ["mytool"]) })"#);
    for (dir, text) in [("bin1", "one"), ("bin2", "two")] {
        p.write(
            &format!("{dir}/mytool"),
            &format!("#!/bin/sh\necho {text}\n"),
        );
        std::fs::set_permissions(
            p.path(&format!("{dir}/mytool")),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }
    let path_with = |dir: &str| format!("{}:/usr/bin:/bin", p.path(dir).display());
    let run = |dir: &str| {
        let out = p
            .command(&["run", "--explain", "r"])
            .env("PATH", path_with(dir))
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        (String::from_utf8(out.stdout).expect("utf-8"), err)
    };
    assert_eq!(run("bin1").0, "one\n");
    assert_eq!(run("bin1").1.trim(), "hit disk");
    let (out, why) = run("bin2");
    assert_eq!(out, "two\n");
    assert!(why.contains("env PATH changed"), "{why}");
    // A variant per PATH: switching back serves the first object.
    assert_eq!(run("bin1").1.trim(), "hit disk");
}

#[test]
fn unrelated_edits_touches_and_the_builds_own_temp_files_rebuild_nothing() {
    let p = one_recipe(
        "t=$(mktemp); sort in.txt > \\\"$t\\\"; cat \\\"$t\\\"; rm \\\"$t\\\"; echo made > out.tmp; cat out.tmp",
    );
    p.write("in.txt", "2\n1\n");
    p.write("unrelated.txt", "x");
    assert_eq!(p.ok(&["run", "r"]), "1\n2\nmade\n");
    assert_eq!(
        reason(&p, &["r"]),
        "hit disk",
        "its own temp and output files"
    );
    p.write("unrelated.txt", "y");
    let file = std::fs::File::options()
        .append(true)
        .open(p.path("in.txt"))
        .expect("open");
    file.set_modified(std::time::SystemTime::now())
        .expect("touch");
    assert_eq!(
        reason(&p, &["r"]),
        "hit disk",
        "an unrelated edit and a touch"
    );
    assert_eq!(reason(&p, &["r"]), "hit disk");
    assert_eq!(p.lines("log"), 1);
}

#[test]
fn a_command_that_writes_into_what_it_read_is_returned_but_not_stored() {
    let p = one_recipe("cat in.txt; echo more >> in.txt");
    p.write("in.txt", "x\n");
    let out = p.trove(&["run", "r"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("wrote into in.txt"),
        "{}",
        stderr(&out)
    );
    let again = p.reason(&["r"]);
    assert_eq!(again.lines().last(), Some("built: no entry"), "{again}");
}

#[test]
fn trace_false_tracks_only_what_is_declared() {
    let p = Project::new(
        r#"(trace: false, recipes: { "r": (command: ["sh", "-c", "echo r >> log; cat a.txt"]) })"#,
    );
    p.write("a.txt", "1");
    assert_eq!(p.ok(&["run", "r"]), "1");
    p.write("a.txt", "2");
    assert_eq!(
        p.run_explained(&["r"]),
        ("1".to_owned(), "hit disk".to_owned()),
        "nothing declared, nothing traced: the documented price of trace: false"
    );
}

#[test]
fn lint_prints_what_the_declaration_does_not_cover_ready_to_paste() {
    let p = Project::new(
        r#"(recipes: { "r": (command: ["sh", "-c", "cat a.txt b.txt; ls d"], inputs: ["a.txt"]) })"#,
    );
    p.write("a.txt", "a");
    p.write("b.txt", "b");
    p.write("d/x", "");
    let out = p.ok(&["lint", "r"]);
    assert!(out.contains("    inputs: [\"b.txt\"],"), "{out}");
    assert!(out.contains("listed: d"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(p.ok(&["lint", "--json"]).trim()).expect("json");
    assert_eq!(json["undeclared"], serde_json::json!(["b.txt"]));
    assert!(!p.path(".trove/v1/index.sqlite").exists() || p.ok(&["status"]).trim().is_empty());
}

#[test]
fn sigint_stops_the_command_and_its_children_and_leaves_nothing_locked() {
    let p = one_recipe("sleep 1000 & echo $! > bg.pid; : > started; sleep 1000");
    let mut child = p
        .command(&["run", "r"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.path("started").exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "128 + SIGINT");
    let bg: i32 = std::fs::read_to_string(p.path("bg.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    // The background sleep was in the command's process group: it is gone too.
    let gone = (0..200).any(|_| {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(bg, 0) } == 0
            && std::fs::read_to_string(format!("/proc/{bg}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
        if alive {
            std::thread::sleep(Duration::from_millis(25));
        }
        !alive
    });
    assert!(gone, "the command's background child outlived trove");
    // Nothing stored, nothing locked: the next run builds at once.
    p.write(
        "trove.ron",
        r#"(recipes: { "r": (command: ["printf", "ok"]) })"#,
    );
    assert_eq!(p.ok(&["run", "r"]), "ok");
}

#[test]
fn a_command_whose_trove_was_killed_does_not_run_on() {
    // `started` is written after both pid files are complete: a pid file that merely
    // exists may still be empty (the shell creates it before `echo` writes).
    let p = one_recipe("sleep 1000 & echo $! > bg.pid; echo $$ > fg.pid; : > started; sleep 1000");
    let mut child = p
        .command(&["run", "r"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.path("started").exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL trove");
    child.wait().expect("wait");
    for file in ["bg.pid", "fg.pid"] {
        let pid: i32 = std::fs::read_to_string(p.path(file))
            .expect("pid")
            .trim()
            .parse()
            .expect("a pid");
        let gone = (0..400).any(|_| {
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(25));
            }
            !alive
        });
        assert!(
            gone,
            "{file}: the command outlived the trove that started it"
        );
    }
    // The kernel released the lock: the key builds again at once.
    p.write(
        "trove.ron",
        r#"(recipes: { "r": (command: ["printf", "again"]) })"#,
    );
    assert_eq!(p.ok(&["run", "r"]), "again");
}

/// The tracer's look-up library comes first in a traced command's `LD_PRELOAD`, before
/// the user's own; the object depends on the user's value alone (switching the library
/// off is still a hit, changing the user's preload rebuilds); `TROVE_TRACE_PRELOAD=off`
/// leaves it out.
#[test]
fn the_look_up_library_is_preloaded_before_the_users_and_is_not_part_of_the_key() {
    let p = Project::new(
        r#"(recipes: { "r": (command: ["sh", "-c", "echo r >> log; echo \"$LD_PRELOAD\""]) })"#,
    );
    let run = |preload: &str, switch: Option<&str>| {
        let mut command = p.command(&["run", "--explain", "r"]);
        command.env("LD_PRELOAD", preload);
        if let Some(switch) = switch {
            command.env("TROVE_TRACE_PRELOAD", switch);
        }
        let out = command.output().expect("run trove");
        assert!(out.status.success(), "{}", stderr(&out));
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr(&out).lines().next().unwrap_or_default().to_owned(),
        )
    };
    let (out, why) = run("libc.so.6", None);
    assert!(why.starts_with("built"), "{why}");
    let (ours, theirs) = out.split_once(':').expect("two preloads");
    assert!(ours.contains("libtrove-preload-"), "{out}");
    assert_eq!(theirs, "libc.so.6");
    assert_eq!(run("libc.so.6", Some("off")).1, "hit disk");
    let (out, why) = run("libm.so.6", Some("off"));
    assert!(why.starts_with("built"), "{why}");
    assert_eq!(out, "libm.so.6", "switched off, the user's preload alone");
    assert_eq!(p.lines("log"), 2);
}

/// Waits until `path` exists (the command reached that point), failing after a minute.
fn wait_for(path: &std::path::Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `trove run --explain r` while the command waits in `sync`: once it has listed
/// (it makes `sync/listed`), `meanwhile` runs, then the command may finish.
fn run_while(
    p: &Project,
    sync: &std::path::Path,
    meanwhile: impl FnOnce(),
) -> std::process::Output {
    let _ = std::fs::remove_file(sync.join("listed"));
    let _ = std::fs::remove_file(sync.join("go"));
    let run = {
        let dir = p.path("");
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_trove"))
                .args(["run", "--force", "--explain", "r"])
                .current_dir(dir)
                .output()
                .expect("trove run")
        })
    };
    wait_for(&sync.join("listed"));
    meanwhile();
    std::fs::write(sync.join("go"), "").expect("go");
    let out = run.join().expect("the run");
    assert!(out.status.success(), "{out:?}");
    out
}

/// A directory the command listed gains an entry while the command still runs: the
/// listing trove takes afterwards is not the one the command saw, so the object is
/// returned and not stored (before, it was stored with the new listing and served
/// without the new entry from then on). The next run lists the entry and is stored.
/// Another process writing into an entry's content meanwhile changes nothing a listing
/// records: that object is stored.
#[test]
fn a_directory_that_gains_an_entry_while_the_command_runs_is_not_stored() {
    // The command and the test meet in a directory trace_ignore leaves out.
    let sync = tempfile::tempdir().expect("tempdir");
    let s = sync.path().display();
    let p = Project::new(&format!(
        r#"(trace_ignore: ["{s}/**"], recipes: {{ "r": (command: ["sh", "-c", "echo r >> log; ls d; touch {s}/listed; while [ ! -e {s}/go ]; do sleep 0.02; done"]) }})"#
    ));
    p.write("d/a", "");
    let out = run_while(&p, sync.path(), || p.write("d/new", ""));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed while the object was built"), "{err}");
    // Not stored: the next run builds, sees the entry, and is stored.
    let why = p.ok(&["why", "r"]);
    assert!(why.starts_with("would build"), "{why}");
    let out = run_while(&p, sync.path(), || {});
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nnew\n");
    assert_eq!(reason(&p, &["r"]), "hit disk");
    // A log appended to in the listed directory while the command runs.
    p.write("d/new", "a line\n");
    let out = run_while(&p, sync.path(), || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(p.path("d/new"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"another\n"))
            .expect("append");
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("changed while"), "{err}");
    assert_eq!(reason(&p, &["r"]), "hit disk");
    assert_eq!(p.lines("log"), 3);
}

/// A command that makes an entry in a directory after listing it wrote into its own
/// input: returned, not stored. Once the entry is there its next run lists it, and only
/// writing into an entry (not a change a listing records) is stored.
#[test]
fn a_command_that_makes_an_entry_in_a_directory_it_listed_is_stored_once_it_no_longer_does() {
    let p = one_recipe("ls d; echo more >> d/notes");
    p.write("d/a", "");
    let (out, why) = p.run_explained(&["r"]);
    assert_eq!(out, "a\n");
    assert!(why.contains("which it had read or listed"), "{why}");
    let (out, why) = p.run_explained(&["r"]);
    assert_eq!(out, "a\nnotes\n");
    assert!(why.starts_with("built: "), "{why}");
    // Appending to an entry that was there changes nothing the listing records.
    assert_eq!(reason(&p, &["r"]), "hit disk");
    // A file made in the directory before it is listed is what the command saw.
    let p = one_recipe("touch d/made; ls d");
    p.write("d/a", "");
    assert_eq!(p.ok(&["run", "r"]), "a\nmade\n");
    assert_eq!(reason(&p, &["r"]), "hit disk");
    assert_eq!(p.lines("log"), 1);
}

/// A chmod to another mode of an entry in a directory the command listed is an entry
/// change: returned, not stored. One to the mode the entry already has changes nothing
/// the listing records (only the entry's ctime, the command's own write), so once the
/// mode is set the build is stored and then served.
#[test]
fn a_command_that_sets_the_mode_an_entry_already_has_is_stored() {
    let p = one_recipe("ls d; chmod 755 d/a");
    p.write("d/a", "");
    std::fs::set_permissions(p.path("d/a"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (out, why) = p.run_explained(&["r"]);
    assert_eq!(out, "a\n");
    assert!(why.contains("which it had read or listed"), "{why}");
    let (out, why) = p.run_explained(&["r"]);
    assert_eq!(out, "a\n");
    assert!(why.starts_with("built: "), "{why}");
    assert!(!why.contains("not stored"), "{why}");
    assert_eq!(reason(&p, &["r"]), "hit disk");
}
