//! The `trove` binary, run for real in temporary projects, each with its own trove.ron.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod support;

use support::{Project, stderr};

const COUNTING: &str = r#"(
    recipes: {
        "v": (command: ["sh", "-c", "echo built >> log; printf 'v1'"]),
    },
)"#;

#[test]
fn run_builds_once_then_serves_the_stored_bytes() {
    let p = Project::new(COUNTING);
    let (out, why) = p.run_explained(&["v"]);
    assert_eq!((out.as_str(), why.as_str()), ("v1", "built: no entry"));
    let (out, why) = p.run_explained(&["v"]);
    assert_eq!((out.as_str(), why.as_str()), ("v1", "hit disk"));
    assert_eq!(p.lines("log"), 1, "one build");
}

#[test]
fn run_writes_binary_objects_byte_for_byte() {
    let p = Project::new(
        r#"(recipes: { "bin": (command: ["sh", "-c", "printf '\\000\\001\\377'"]) })"#,
    );
    for _ in 0..2 {
        let out = p.trove(&["run", "bin"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, [0u8, 1, 255]);
    }
}

#[test]
fn extra_arguments_are_appended_to_the_command_and_part_of_the_key() {
    let p = Project::new(
        r#"(recipes: {
            "echo": (command: ["sh", "-c", "echo \"$1\" >> log; printf 'arg=%s' \"$1\"", "sh"]),
        })"#,
    );
    assert_eq!(p.run_explained(&["echo", "x"]).0, "arg=x");
    assert_eq!(p.run_explained(&["echo", "y"]).0, "arg=y");
    let (out, why) = p.run_explained(&["echo", "x"]);
    assert_eq!((out.as_str(), why.as_str()), ("arg=x", "hit disk"));
    assert_eq!(p.lines("log"), 2, "one build per argument set");

    // `--explain` may follow the arguments; arguments that start with a dash go after `--`.
    let out = p.trove(&["run", "echo", "y", "--explain"]);
    assert_eq!(
        (out.stdout.as_slice(), stderr(&out).trim()),
        (&b"arg=y"[..], "hit disk")
    );
    let out = p.trove(&["run", "echo", "--", "-z"]);
    assert_eq!(out.stdout, b"arg=-z", "{}", stderr(&out));
}

#[test]
fn editing_a_file_matched_by_an_input_glob_rebuilds_and_why_names_it() {
    let p = Project::new(
        r#"(recipes: {
            "cat": (command: ["sh", "-c", "echo built >> log; cat data/*.csv"], inputs: ["data/*.csv"]),
        })"#,
    );
    p.write("data/a.csv", "1\n");
    assert_eq!(p.run_explained(&["cat"]).0, "1\n");
    assert_eq!(p.ok(&["why", "cat"]).trim(), "would hit disk");

    p.write("data/a.csv", "1,2\n");
    let why = p.ok(&["why", "cat"]);
    assert!(
        why.starts_with("would build: ") && why.contains("data/a.csv"),
        "{why}"
    );
    assert_eq!(p.run_explained(&["cat"]).0, "1,2\n");
    assert_eq!(p.lines("log"), 2);

    p.write("data/b.csv", "3\n");
    let why = p.ok(&["why", "cat"]);
    assert!(
        why.starts_with("would build: "),
        "a new matching file makes it stale: {why}"
    );
    assert_eq!(p.run_explained(&["cat"]).0, "1,2\n3\n");
    assert_eq!(p.lines("log"), 3);
}

#[test]
fn changing_a_declared_environment_variable_rebuilds() {
    let p = Project::new(
        r#"(recipes: {
            "market": (command: ["sh", "-c", "echo built >> log; printf '%s' \"$MARKET\""], env: ["MARKET"]),
        })"#,
    );
    let run = |market: &str| {
        let out = p
            .command(&["run", "market"])
            .env("MARKET", market)
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    assert_eq!(run("eu"), "eu");
    assert_eq!(run("eu"), "eu");
    assert_eq!(p.lines("log"), 1);
    let why = p
        .command(&["why", "market"])
        .env("MARKET", "us")
        .output()
        .expect("why");
    assert!(
        String::from_utf8_lossy(&why.stdout).contains("MARKET"),
        "{why:?}"
    );
    assert_eq!(run("us"), "us");
    assert_eq!(p.lines("log"), 2);
}

#[test]
fn a_file_listed_in_the_depfile_that_is_created_later_rebuilds() {
    let p = Project::new(
        r#"(recipes: {
            "dep": (command: ["sh", "-c", "echo later.txt > \"$TROVE_DEPFILE\"; echo built >> log; cat later.txt 2>/dev/null; printf x"]),
        })"#,
    );
    assert_eq!(p.run_explained(&["dep"]).0, "x");
    assert_eq!(p.run_explained(&["dep"]).1, "hit disk");
    p.write("later.txt", "now ");
    let why = p.ok(&["why", "dep"]);
    assert!(
        why.starts_with("would build: ") && why.contains("later.txt"),
        "{why}"
    );
    assert_eq!(p.run_explained(&["dep"]).0, "now x");
    assert_eq!(p.lines("log"), 2);
}

#[test]
fn a_dependency_whose_output_did_not_change_does_not_rebuild_its_dependents() {
    let p = Project::new(
        r#"(recipes: {
            "a": (command: ["sh", "-c", "echo a >> a.log; tr -d ' ' < x.txt"], inputs: ["x.txt"]),
            "b": (command: ["sh", "-c", "echo b >> b.log; cat \"$TROVE_NEED_A\""], needs: ["a"]),
        })"#,
    );
    p.write("x.txt", "hello\n");
    assert_eq!(p.run_explained(&["b"]).0, "hello\n");
    p.write("x.txt", "hel lo\n");
    let (out, why) = p.run_explained(&["b"]);
    assert_eq!(out, "hello\n");
    assert!(
        why.starts_with("hit disk\n  a: built: x.txt changed"),
        "b is served; a was rebuilt on the way: {why}"
    );
    assert_eq!(
        (p.lines("a.log"), p.lines("b.log")),
        (2, 1),
        "a rebuilt, b did not"
    );

    p.write("x.txt", "bye\n");
    let why = p.ok(&["why", "b"]);
    assert!(why.contains("dependency a"), "{why}");
    assert_eq!(p.run_explained(&["b"]).0, "bye\n");
    assert_eq!((p.lines("a.log"), p.lines("b.log")), (3, 2));
}

#[test]
fn a_stored_object_that_fails_its_check_is_rebuilt() {
    let p = Project::new(
        r#"(recipes: {
            "empty": (command: ["sh", "-c", "echo built >> log"], check: ["sh", "-c", "test -s \"$TROVE_OUTPUT\""]),
        })"#,
    );
    // The command prints nothing to stdout, so every stored object fails `test -s`.
    p.run_explained(&["empty"]);
    let (_, why) = p.run_explained(&["empty"]);
    assert!(why.starts_with("built: check failed"), "{why}");
    assert_eq!(p.lines("log"), 2);
}

#[test]
fn a_failing_command_exits_with_its_code_and_is_not_cached() {
    let p = Project::new(
        r#"(recipes: {
            "bad": (command: ["sh", "-c", "echo ran >> log; echo oops >&2; exit 3"]),
            "on_bad": (command: ["cat", "/dev/null"], needs: ["bad"]),
        })"#,
    );
    for runs in 1..=2 {
        let out = p.trove(&["run", "bad"]);
        assert_eq!(out.status.code(), Some(3));
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert!(err.contains("oops") && err.contains("error:"), "{err}");
        assert_eq!(p.lines("log"), runs, "the command runs again");
    }
    let out = p.trove(&["run", "on_bad"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a failed `needs` passes its code on: {}",
        stderr(&out)
    );
}

#[test]
fn a_command_that_cannot_be_started_is_named_with_a_hint() {
    let p = Project::new(r#"(recipes: {"x": (command: ["no-such-tool-anywhere", "a"])})"#);
    let out = p.trove(&["run", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot run `no-such-tool-anywhere`"), "{err}");
    assert!(
        err.contains("hint: is `no-such-tool-anywhere` installed"),
        "{err}"
    );
}

#[test]
fn a_config_with_an_unknown_key_is_reported_with_line_and_column() {
    let p = Project::new(
        "(\n    recipes: {\n        \"r\": (command: [\"true\"], inptus: []),\n    },\n)\n",
    );
    for args in [&["run", "r"][..], &["config", "check"], &["status"]] {
        let out = p.trove(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("trove.ron:3:34"), "{args:?}: {err}");
        assert!(err.contains("inputs"), "a hint names the right key: {err}");
    }
}

#[test]
fn config_check_says_ok_with_the_number_of_recipes() {
    let p = Project::new(COUNTING);
    let out = p.ok(&["config", "check"]);
    assert!(
        out.starts_with("ok: ") && out.contains("trove.ron (1 recipe)"),
        "{out}"
    );
}

#[test]
fn the_config_is_found_in_a_parent_directory_or_given_explicitly() {
    let p = Project::new(COUNTING);
    p.write("sub/dir/keep", "");
    let out = p
        .command(&["run", "v"])
        .current_dir(p.path("sub/dir"))
        .output()
        .expect("run");
    assert_eq!(out.stdout, b"v1", "{}", stderr(&out));
    assert_eq!(
        p.lines("log"),
        1,
        "the command runs in the config's directory"
    );

    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = p.path("trove.ron");
    let config = config.to_str().expect("utf-8 path");
    let out = p
        .command(&["--config", config, "run", "v"])
        .current_dir(elsewhere.path())
        .output()
        .expect("run");
    assert_eq!(out.stdout, b"v1");
    let out = p
        .command(&["run", "v"])
        .env("TROVE_CONFIG", config)
        .current_dir(elsewhere.path())
        .output()
        .expect("run");
    assert_eq!(out.stdout, b"v1");
    assert_eq!(p.lines("log"), 1);
}

#[test]
fn an_unknown_recipe_is_a_usage_error_that_suggests_the_nearest_name() {
    let p = Project::new(COUNTING.replace("\"v\"", "\"prices\"").as_str());
    let out = p.trove(&["run", "prics"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("did you mean `prices`?"), "{err}");
}

#[test]
fn a_recipe_without_a_command_cannot_be_run_from_the_command_line() {
    let p = Project::new(r#"(recipes: { "table": (inputs: ["data/*.csv"]) })"#);
    let out = p.trove(&["run", "table"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("library code"), "{}", stderr(&out));
}

/// How many of `pids` wait for a lock (a `->` line of `/proc/locks`).
fn blocked_on_a_lock(pids: &[u32]) -> usize {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    pids.iter()
        .filter(|pid| {
            locks
                .lines()
                .any(|l| l.contains("->") && l.split_whitespace().any(|w| w == pid.to_string()))
        })
        .count()
}

#[test]
fn eight_concurrent_runs_of_one_key_build_it_once_and_print_the_same_bytes() {
    // The command that builds holds on until the test says `go`, which it says once the
    // seven other runs wait on the key's lock: all eight are concurrent, by construction.
    // Untraced: under the tracer, `go` (absent, then created while the build runs) would
    // be an input saved during the build, and the object rightly not stored.
    let p = Project::new(
        r#"(trace: false, recipes: { "slow": (command: ["sh", "-c", "echo built >> log; while [ ! -e go ]; do sleep 0.01; done; printf 'same bytes'"]) })"#,
    );
    let children: Vec<Child> = (0..8)
        .map(|_| {
            p.command(&["run", "slow"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    // A deadline against a hang; the count, not the time, decides.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while blocked_on_a_lock(&pids) < 7 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let waiting = blocked_on_a_lock(&pids);
    p.write("go", "");
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, b"same bytes");
    }
    assert_eq!(waiting, 7, "seven runs waited for the one that built");
    assert_eq!(p.lines("log"), 1, "one build");
}

#[test]
fn raising_a_version_counter_rebuilds_and_why_names_the_counter() {
    let config = |n: u32| {
        format!(
            r#"(versions: {{ "alice": {n} }}, recipes: {{ "v": (command: ["sh", "-c", "echo built >> log; printf 'v1'"]) }})"#
        )
    };
    let p = Project::new(&config(1));
    p.run_explained(&["v"]);
    p.write("trove.ron", &config(2));
    assert_eq!(
        p.ok(&["why", "v"]).trim(),
        "would build: counter alice 1 -> 2"
    );
    assert_eq!(p.run_explained(&["v"]).1, "built: counter alice 1 -> 2");
    assert_eq!(p.lines("log"), 2);
}

#[test]
fn why_json_says_whether_run_would_build() {
    let p = Project::new(COUNTING);
    let before: serde_json::Value =
        serde_json::from_str(&p.ok(&["why", "--json", "v"])).expect("json");
    assert_eq!(before["action"], "build");
    assert_eq!(before["reason"], "would build: no entry");
    p.ok(&["run", "v"]);
    let after: serde_json::Value =
        serde_json::from_str(&p.ok(&["why", "v", "--json"])).expect("json");
    assert_eq!(
        (after["action"].as_str(), after["recipe"].as_str()),
        (Some("serve"), Some("v"))
    );
    assert_eq!(p.lines("log"), 1, "why builds nothing");
}

#[test]
fn status_and_graph_describe_what_the_store_holds() {
    let p = Project::new(
        r#"(recipes: {
            "a": (command: ["cat", "x.txt"], inputs: ["x.txt"]),
            "b": (command: ["sh", "-c", "cat \"$TROVE_NEED_A\""], needs: ["a"]),
        })"#,
    );
    p.write("x.txt", "x");
    p.ok(&["run", "b"]);

    let status: serde_json::Value =
        serde_json::from_str(&p.ok(&["status", "--json"])).expect("json");
    let recipes: Vec<&str> = status
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["recipe"].as_str())
        .collect();
    assert!(recipes.contains(&"a") && recipes.contains(&"b"), "{status}");
    let table = p.ok(&["status"]);
    assert!(
        table.starts_with("OBJECT") && table.contains("on disk"),
        "{table}"
    );

    let graph: serde_json::Value =
        serde_json::from_str(&p.ok(&["graph", "--format", "json"])).expect("json");
    assert!(
        graph["nodes"].as_array().is_some_and(|n| n.len() >= 3),
        "{graph}"
    );
    assert!(
        graph["edges"].as_array().is_some_and(|e| e.len() >= 2),
        "{graph}"
    );
    assert!(p.ok(&["graph"]).starts_with("digraph"));
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn verify_exits_1_after_a_blob_is_corrupted_and_0_on_a_clean_store() {
    let p = Project::new(COUNTING);
    p.ok(&["run", "v"]);
    let out = p.trove(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let blobs = files_under(&p.path(".trove/v1/blobs"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let mut perms = std::fs::metadata(&blobs[0]).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blobs[0], perms).expect("chmod");
    let mut bytes = std::fs::read(&blobs[0]).expect("read");
    *bytes.last_mut().expect("non-empty blob") ^= 0xff;
    std::fs::write(&blobs[0], bytes).expect("write");

    let out = p.trove(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["clean"], false);
    // The corrupt object is rebuilt when next asked for.
    assert_eq!(p.run_explained(&["v"]).0, "v1");
    assert_eq!(p.lines("log"), 2);
}

#[test]
fn gc_refuses_a_size_it_cannot_read() {
    let p = Project::new(COUNTING);
    let out = p.trove(&["gc", "--max-size", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-size"), "{}", stderr(&out));
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends each line the reader produces to the returned channel, from a thread.
fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// How long a test waits for a line it expects; a passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `trove watch`, its output as lines; killed when dropped.
struct Watching {
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    _child: KillOnDrop,
}

impl Watching {
    /// Starts `trove watch ARGS..` and waits until it says it is watching (from then on
    /// every change is seen); returns it with the stderr lines printed before that.
    fn start(p: &Project, args: &[&str]) -> (Watching, Vec<String>) {
        let mut full = vec!["watch"];
        full.extend_from_slice(args);
        let mut child = p
            .command(&full)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watch");
        let watching = Watching {
            stdout: lines_of(child.stdout.take().expect("stdout")),
            stderr: lines_of(child.stderr.take().expect("stderr")),
            _child: KillOnDrop(child),
        };
        let mut before = watching.stderr_until("watching ");
        before.pop();
        (watching, before)
    }

    /// The next line on stdout, waiting for it until the deadline.
    fn line(&self) -> String {
        match self.stdout.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(e) => panic!("no line on stdout within {PATIENCE:?} ({e})"),
        }
    }

    /// The next line on stdout, as JSON.
    fn json(&self) -> serde_json::Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object: {line}: {e}"))
    }

    /// Lines on stderr up to and including the first that starts with `prefix`, waiting
    /// for it until the deadline.
    fn stderr_until(&self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.stderr.recv_timeout(PATIENCE) {
                Ok(line) => {
                    let done = line.starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no `{prefix}` on stderr within {PATIENCE:?} ({e}); saw {seen:?}"),
            }
        }
    }
}

impl Project {
    /// Saves a file as editors do: a temporary file beside it, renamed over it (a new
    /// inode every time).
    fn save(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        let name = path.file_name().expect("a file name").to_string_lossy();
        let temp = path.with_file_name(format!(".{name}.swp"));
        std::fs::write(&temp, text).expect("write");
        std::fs::rename(&temp, &path).expect("rename");
    }

    /// `touch`: the modification time moves to now, the content stays.
    fn touch(&self, rel: &str) {
        let file = std::fs::File::options()
            .write(true)
            .open(self.path(rel))
            .expect("open");
        file.set_modified(std::time::SystemTime::now())
            .expect("set mtime");
    }
}

/// `(blake3 1f3a5c2d.. -> 9c2e0b4a..)`: how a reason names a file's old and new content.
fn hashes(old: &str, new: &str) -> String {
    let short = |text: &str| blake3::hash(text.as_bytes()).to_hex()[..8].to_owned();
    format!("(blake3 {}.. -> {}..)", short(old), short(new))
}

/// `x` reads `data/x.txt`; `wrap` needs `x`; `s` reads `data/s.txt` (a sentinel: an edit
/// to it shows that every earlier event has been handled).
const THREE: &str = r#"(
    watch: (roots: ["data"], debounce_ms: 20),
    recipes: {
        "x": (command: ["cat", "data/x.txt"], inputs: ["data/x.txt"]),
        "wrap": (command: ["sh", "-c", "printf '[%s]' \"$(cat \"$TROVE_NEED_X\")\""], needs: ["x"]),
        "s": (command: ["cat", "data/s.txt"], inputs: ["data/s.txt"]),
    },
)"#;

#[test]
fn watch_reports_an_edit_and_its_dependents_but_not_a_touch_or_a_same_bytes_save() {
    let p = Project::new(THREE);
    p.write("data/x.txt", "one");
    p.write("data/s.txt", "s1");
    assert_eq!(p.ok(&["run", "wrap"]), "[one]");
    p.ok(&["run", "s"]);
    let (w, _) = Watching::start(&p, &["--json"]);

    // Neither a touch nor an editor saving the same bytes (a new inode) changes `x`...
    p.touch("data/x.txt");
    p.save("data/x.txt", "one");
    // ...so the first line is the sentinel's, edited after them.
    p.save("data/s.txt", "s2");
    let line = w.json();
    assert_eq!(
        (&line["event"], &line["recipe"], &line["reason"]),
        (
            &"stale".into(),
            &"s".into(),
            &format!("data/s.txt changed {}", hashes("s1", "s2")).into()
        ),
        "{line}"
    );
    assert_eq!(line["args"], serde_json::json!([]));
    assert_eq!(line["key"].as_str().map(str::len), Some(64));

    // An edit makes `x` stale, and `wrap` through it, in dependency order.
    p.save("data/x.txt", "two");
    let x_changed = format!("data/x.txt changed {}", hashes("one", "two"));
    let line = w.json();
    assert_eq!(
        (&line["recipe"], &line["reason"]),
        (&"x".into(), &x_changed.clone().into())
    );
    let line = w.json();
    assert_eq!(
        (&line["recipe"], &line["reason"]),
        (
            &"wrap".into(),
            &format!("dependency x changed: {x_changed}").into()
        )
    );

    // Stale already, for the same reason: a touch reports nothing again.
    p.touch("data/x.txt");
    p.save("data/s.txt", "s3");
    assert_eq!(w.json()["recipe"], "s");
    // Nothing was built by watching: the run builds both, and says so.
    assert_eq!(
        p.run_explained(&["wrap"]).1,
        format!("built: dependency x changed: {x_changed}\n  x: built: {x_changed}")
    );
}

#[test]
fn watch_prints_a_line_of_text_per_stale_object_naming_the_input() {
    let p = Project::new(THREE);
    p.write("data/x.txt", "one");
    p.write("data/s.txt", "s1");
    p.ok(&["run", "wrap"]);
    let (w, _) = Watching::start(&p, &[]);
    p.save("data/x.txt", "two");
    let x_changed = format!("data/x.txt changed {}", hashes("one", "two"));
    assert_eq!(w.line(), format!("stale: x: {x_changed}"));
    assert_eq!(
        w.line(),
        format!("stale: wrap: dependency x changed: {x_changed}")
    );
}

#[test]
fn watch_rebuild_rebuilds_the_stale_object() {
    let p = Project::new(
        r#"(
            watch: (roots: ["data"], debounce_ms: 20),
            recipes: { "cat": (command: ["sh", "-c", "echo built >> log; cat \"data/$1\"", "sh"], inputs: ["data/x.txt"]) },
        )"#,
    );
    p.write("data/x.txt", "one");
    p.ok(&["run", "cat", "x.txt"]);
    let (w, _) = Watching::start(&p, &["--rebuild"]);

    p.write("data/x.txt", "two!");
    let changed = format!("data/x.txt changed {}", hashes("one", "two!"));
    assert_eq!(w.line(), format!("stale: cat x.txt: {changed}"));
    // The command is given its words back, typed, from the event.
    assert_eq!(w.line(), format!("rebuilt: cat x.txt (built: {changed})"));
    assert_eq!(p.lines("log"), 2);
    assert_eq!(
        p.run_explained(&["cat", "x.txt"]),
        ("two!".to_owned(), "hit disk".to_owned())
    );
}

#[test]
fn watch_warns_once_about_inputs_outside_the_watch_roots() {
    let p = Project::new(
        r#"(
            watch: (roots: ["data"]),
            recipes: { "both": (command: ["cat", "data/x.txt", "other/y.txt"], inputs: ["data/x.txt", "other/y.txt"]) },
        )"#,
    );
    p.write("data/x.txt", "x");
    p.write("other/y.txt", "y");
    p.ok(&["run", "both"]);
    let (_w, before) = Watching::start(&p, &[]);
    assert_eq!(
        before,
        [
            "warning: 1 tracked input lies outside every watch root; changes to it are not reported:",
            "  other/y.txt",
            "hint: to watch it, add its directory to the roots in trove.ron: `watch: (roots: [\"data\", \"other\"])`",
        ]
    );
}

#[test]
fn watch_reloads_a_changed_configuration_and_keeps_the_last_good_one() {
    let config = |version: u32, prefix: &str| {
        format!(
            r#"(
    watch: (roots: ["data"], debounce_ms: 20),
    recipes: {{ "cat": (command: ["sh", "-c", "echo built >> log; printf '{prefix}'; cat data/x.txt"], inputs: ["data/x.txt"], version: {version}) }},
)"#
        )
    };
    let p = Project::new(&config(1, ""));
    p.write("data/x.txt", "one");
    p.ok(&["run", "cat"]);
    let (w, _) = Watching::start(&p, &["--rebuild"]);

    // A configuration that does not parse is reported with its place; the watch goes on
    // with the previous one.
    p.save(
        "trove.ron",
        "(\n    recipes: { \"cat\": (command: [\"cat\" }\n)\n",
    );
    let seen = w.stderr_until("note: still running with the previous configuration");
    assert!(
        seen.iter().any(|l| l.starts_with("warning: trove.ron:2:")),
        "the place of the error: {seen:?}"
    );
    p.write("data/x.txt", "two");
    assert_eq!(
        w.line(),
        format!("stale: cat: data/x.txt changed {}", hashes("one", "two"))
    );
    assert!(
        w.line()
            .starts_with("rebuilt: cat (built: data/x.txt changed")
    );

    // A new version of the recipe (and a new command) is picked up without a restart.
    p.save("trove.ron", &config(2, "v2:"));
    w.stderr_until("reloaded trove.ron");
    assert_eq!(w.line(), "stale: cat: recipe version 1 -> 2");
    assert_eq!(w.line(), "rebuilt: cat (built: recipe version 1 -> 2)");
    assert_eq!(
        p.run_explained(&["cat"]),
        ("v2:two".to_owned(), "hit disk".to_owned())
    );
    assert_eq!(p.lines("log"), 3);
}

#[test]
fn help_explains_each_command_with_an_example() {
    let p = Project::new(COUNTING);
    for command in [
        "run", "why", "recipes", "status", "watch", "graph", "verify", "gc",
    ] {
        let help = p.ok(&[command, "--help"]);
        assert!(help.contains("Examples:"), "{command}: {help}");
    }
}

#[test]
fn graph_and_config_check_name_paths_relative_to_the_project() {
    let p = Project::new(
        r#"(
            watch: (roots: ["data"]),
            recipes: {
                "cat": (
                    command: ["sh", "-c", "echo x.txt > \"$TROVE_DEPFILE\"; cat x.txt data/*.csv"],
                    inputs: ["data/*.csv"],
                ),
            },
        )"#,
    );
    p.write("x.txt", "x");
    p.write("data/a.csv", "1");
    p.ok(&["run", "cat"]);
    let machine_paths = [
        p.dir.path().display().to_string(),
        p.dir
            .path()
            .canonicalize()
            .expect("canonical")
            .display()
            .to_string(),
    ];

    let json = p.ok(&["graph", "--format", "json"]);
    let dot = p.ok(&["graph"]);
    for text in [&json, &dot] {
        for root in &machine_paths {
            assert!(!text.contains(root.as_str()), "{root} in\n{text}");
        }
    }
    let graph: serde_json::Value = serde_json::from_str(&json).expect("json");
    let inputs: Vec<&serde_json::Value> = graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["type"] == "input")
        .collect();
    let named = |name: &str| inputs.iter().find(|n| n["name"] == name).copied();
    assert!(named("x.txt").is_some(), "{json}");
    let glob = named("data/*.csv").unwrap_or_else(|| panic!("no glob in {json}"));
    assert_eq!(
        (&glob["root"], &glob["pattern"]),
        (&serde_json::json!(""), &serde_json::json!("data/*.csv"))
    );
    assert!(dot.contains("label=\"file: x.txt\""), "{dot}");
    assert!(dot.contains("label=\"glob: data/*.csv\""), "{dot}");

    let expected = "ok: trove.ron (1 recipe)\nstore: .trove\nwatch: data\n";
    assert_eq!(p.ok(&["config", "check"]), expected);
    let out = p
        .command(&["config", "check"])
        .current_dir(p.path("data"))
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        stderr(&out)
    );

    // A configuration error in a file found upward names it relative to its project.
    p.write("trove.ron", "(store: (variants: 0))");
    let out = p
        .command(&["config", "check"])
        .current_dir(p.path("data"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: trove.ron:1:20: `variants` must be at least 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gc_keeps_a_variant_whose_input_changed_removes_it_with_stale_and_dead_ones_always() {
    let config = |version: u32| {
        format!(
            r#"(recipes: {{ "cat": (command: ["cat", "x.txt"], inputs: ["x.txt"], version: {version}) }})"#
        )
    };
    let p = Project::new(&config(1));
    p.write("x.txt", "one");
    p.ok(&["run", "cat"]);
    p.write("x.txt", "two!");
    p.ok(&["run", "cat"]);

    // The variant built from "one" comes back if x.txt does: gc keeps it.
    let dry = p.ok(&["gc", "--dry-run"]);
    assert!(!dry.contains("would remove"), "{dry}");
    assert_eq!(
        dry.lines().last(),
        Some("total: 0 items, would free 0 B; 2 variants kept"),
        "{dry}"
    );

    // --stale removes it, naming the input that differs.
    let stale = p.ok(&["gc", "--stale", "--dry-run"]);
    let lines: Vec<&str> = stale
        .lines()
        .filter(|l| l.starts_with("would remove  variant"))
        .collect();
    assert_eq!(lines.len(), 1, "{stale}");
    assert!(
        lines[0].starts_with("would remove  variant cat  (stale: x.txt changed (blake3 "),
        "{stale}"
    );
    assert_eq!(
        p.ok(&["gc", "--stale", "--dry-run"]),
        stale,
        "a dry run removes nothing"
    );

    // A new recipe version makes both old variants dead, and gc removes them.
    p.write("trove.ron", &config(2));
    p.ok(&["run", "cat"]);
    let done = p.ok(&["gc"]);
    let dead: Vec<&str> = done
        .lines()
        .filter(|l| l.starts_with("removed  variant cat  (dead: recipe"))
        .collect();
    assert_eq!(dead.len(), 2, "{done}");
    let after = p.ok(&["gc", "--dry-run", "--json"]);
    let after: serde_json::Value = serde_json::from_str(&after).expect("json");
    assert_eq!(after["removals"], serde_json::json!([]), "{after}");
    assert_eq!(after["kept"], 1, "{after}");
    assert_eq!(
        p.run_explained(&["cat"]),
        ("two!".to_owned(), "hit disk".to_owned()),
        "the live variant stays"
    );
}

#[test]
fn recipes_lists_each_recipe_with_its_command_and_declared_inputs() {
    let p = Project::new(
        r#"(recipes: {
            "calendar": (command: ["python3", "tools/calendar.py"], inputs: ["tools/calendar.py"]),
            "prices": (
                command: ["sh", "-c", "cat data/*.csv"],
                inputs: ["data/*.csv"],
                env: ["MARKET"],
                needs: ["calendar"],
                versions: { "alice": 2 },
                max_age: "1d",
                version: 3,
            ),
            "table": (),
        })"#,
    );
    assert_eq!(
        p.ok(&["recipes"]),
        "calendar (version 1)\n\
         \x20 command:  python3 tools/calendar.py\n\
         \x20 inputs:   tools/calendar.py\n\
         prices (version 3)\n\
         \x20 command:  sh -c 'cat data/*.csv'\n\
         \x20 inputs:   data/*.csv\n\
         \x20 env:      MARKET\n\
         \x20 needs:    calendar\n\
         \x20 versions: alice=2\n\
         \x20 max_age:  1d\n\
         table (version 1)\n\
         \x20 command:  (none: built by library code)\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["recipes", "--json"])).expect("json");
    assert_eq!(
        json[1],
        serde_json::json!({
            "name": "prices",
            "command": ["sh", "-c", "cat data/*.csv"],
            "inputs": ["data/*.csv"],
            "env": ["MARKET"],
            "needs": ["calendar"],
            "version": 3,
            "versions": {"alice": 2},
            "max_age": "1d",
            "check": null,
        })
    );
    assert_eq!(json[2]["command"], serde_json::Value::Null);
    assert!(!p.path(".trove").exists(), "listing recipes stores nothing");
}

/// `trove ARGS..` in `dir`, with no configuration given.
fn trove_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trove"))
        .args(args)
        .current_dir(dir)
        .env_remove("TROVE_CONFIG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run trove")
}

/// Everything under `dir`, files and directories.
fn entries_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path());
        if entry.path().is_dir() {
            out.extend(entries_under(&entry.path()));
        }
    }
    out
}

#[test]
fn outside_a_project_read_only_commands_create_nothing_and_say_where_they_looked() {
    let top = tempfile::tempdir().expect("tempdir");
    let dir = top.path().join("not/a/project");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let looked = format!(
        "hint: looked for trove.ron in {}, {}, {}",
        dir.display(),
        dir.parent().unwrap().display(),
        dir.parent().unwrap().parent().unwrap().display()
    );
    // Commands that only show the store: an empty result, a note, exit 0.
    for (args, stdout) in [
        (&["status"][..], ""),
        (&["status", "--json"], "[]\n"),
        (
            &["graph", "--format", "json"],
            "{\"edges\":[],\"nodes\":[]}\n",
        ),
        (&["graph"], "digraph trove {\n    rankdir=LR;\n}\n"),
        (&["verify", "--json"], ""),
        (
            &["gc", "--dry-run"],
            "total: 0 items, would free 0 B; 0 variants kept\n",
        ),
    ] {
        let out = trove_in(&dir, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        if !stdout.is_empty() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), stdout, "{args:?}");
        }
        assert!(
            err.starts_with("note: no trove.ron here"),
            "{args:?}: {err}"
        );
        assert!(err.contains(&looked), "{args:?}: {err}");
        assert!(err.contains("--config"), "{args:?}: {err}");
    }
    // Commands that need recipes: a usage error, exit 2.
    for args in [&["why", "prices"][..], &["recipes"], &["run", "prices"]] {
        let out = trove_in(&dir, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: `trove {}` needs a configuration", args[0])),
            "{args:?}: {err}"
        );
        assert!(err.contains(&looked), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(
        entries_under(top.path()),
        [
            top.path().join("not"),
            top.path().join("not/a"),
            dir.clone()
        ]
    );
}

#[test]
fn status_in_a_project_with_no_store_yet_creates_none() {
    let p = Project::new(COUNTING);
    let out = p.trove(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"[]\n");
    assert!(
        stderr(&out)
            .starts_with("note: nothing has been stored yet: the store .trove does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!p.path(".trove").exists());

    // A store made by the embedded default (no trove.ron) is shown where it is.
    p.ok(&["run", "v"]);
    std::fs::remove_file(p.path("trove.ron")).expect("rm");
    let status: serde_json::Value =
        serde_json::from_str(&p.ok(&["status", "--json"])).expect("json");
    assert_eq!(status[0]["recipe"], "v", "{status}");
}

/// The scratch directories under `parent` (which also holds the tracer's library), sorted.
fn scratch_dirs(parent: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Waits (up to 20 s) for `path` to exist.
fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes `dir` look a minute old, past the age under which no sweep touches it.
fn age(dir: &Path) {
    let then = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::open(dir)
        .and_then(|f| f.set_modified(then))
        .expect("set the directory's mtime");
}

#[test]
fn a_killed_troves_scratch_directory_is_swept_a_running_or_new_one_is_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = Project::new(
        r#"(recipes: {
            "slow": (command: ["sh", "-c", ": > slow-started; sleep 1000"]),
            "long": (command: ["sh", "-c", ": > long-started; i=0; while [ ! -e go ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done; printf long"]),
            "quick": (command: ["printf", "ok"]),
        })"#,
    );
    let trove = |args: &[&str]| {
        let mut c = p.command(args);
        c.env("TMPDIR", tmp.path());
        c
    };
    // SAFETY: geteuid has no preconditions.
    let parent = tmp
        .path()
        .join(format!("trove-{}", unsafe { libc::geteuid() }));

    // A trove killed with SIGKILL leaves its scratch directory behind.
    let mut slow = trove(&["run", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(&p.path("slow-started"));
    slow.kill().expect("SIGKILL trove");
    slow.wait().expect("wait");
    let killed = scratch_dirs(&parent);
    assert_eq!(killed.len(), 1, "{killed:?}");
    let killed = killed[0].clone();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&parent).expect("parent").permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o700,
        "the scratch directories' parent is private"
    );

    // A build starting now sweeps, but the killed one's directory is too new to judge.
    // Killed if the test fails before it ends (its command waits for `go`).
    let mut long = KillOnDrop(
        trove(&["run", "long"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for(&p.path("long-started"));
    let both = scratch_dirs(&parent);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(
        both.contains(&killed),
        "a new directory was swept: {both:?}"
    );
    let running = both
        .into_iter()
        .find(|d| *d != killed)
        .expect("the running build's");

    // Once both are old, the next build removes the killed one's and keeps the one a
    // running build holds.
    age(&killed);
    age(&running);
    assert_eq!(
        trove(&["run", "quick"]).output().expect("run").stdout,
        b"ok"
    );
    assert_eq!(scratch_dirs(&parent), vec![running.clone()]);

    // The running build was not disturbed, and removes its own when it ends.
    std::fs::write(p.path("go"), "").expect("go");
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(&mut long.0.stdout.take().expect("stdout"), &mut stdout)
        .expect("read");
    assert!(long.0.wait().expect("wait").success());
    assert_eq!(stdout, b"long");
    assert_eq!(scratch_dirs(&parent), Vec::<PathBuf>::new());
}

#[test]
fn a_build_whose_command_removed_the_nested_request_socket_still_ends() {
    // The socket's file is gone when the build ends; stopping its listener must not
    // depend on connecting to it (it did: the build then waited forever).
    let p = Project::new(
        r#"(recipes: { "r": (command: ["sh", "-c", "rm -f \"$TROVE_NESTED_SOCKET\"; printf ok"]) })"#,
    );
    let child = p
        .command(&["run", "r"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = mpsc::channel();
    let mut guard = KillOnDrop(child);
    let stdout = guard.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stdout }, &mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(PATIENCE).expect("the build never ended");
    assert_eq!(out, b"ok");
    assert!(guard.0.wait().expect("wait").success());
}
