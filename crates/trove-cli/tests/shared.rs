//! The shared tier from the command line: two projects at different paths, each with its
//! own store, as two machines sharing a directory as the team's store (OpenDAL's `fs`
//! service). Servers and network namespaces are the multi-host suites' business.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::{Project, stderr};

const SECRET: &str = "the team's secret, thirty-two b.";

/// The team's store.
struct Team(tempfile::TempDir);

impl Team {
    fn new() -> Team {
        Team(tempfile::tempdir().unwrap())
    }

    fn url(&self) -> String {
        format!("file://{}", self.0.path().display())
    }

    fn files(&self, what: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0.path().join("v1").join(what), &mut out);
        out.sort();
        out
    }
}

/// A machine: its own project (at its own path) whose trove.ron names the team's store,
/// with a generous timeout unless `settings` sets one.
fn machine(url: &str, settings: &str) -> Project {
    let settings = if settings.contains("timeout") {
        settings.to_owned()
    } else {
        format!("{settings}, timeout: \"10s\"")
    };
    let p = Project::new(&format!(
        r#"(
    shared: (url: {url:?}{settings}),
    recipes: {{
        "x": (command: ["cat", "data/x.txt"], inputs: ["data/x.txt"]),
        "big": (command: ["cat", "data/big.txt"], inputs: ["data/big.txt"]),
        "huge": (command: ["cat", "data/huge.txt"], inputs: ["data/huge.txt"]),
    }},
)"#
    ));
    p.write("data/x.txt", "the same input on every machine\n");
    p.write("data/big.txt", &"b".repeat(10_000));
    // Over 64 KiB: not carried inline by its record, so a hit downloads its blob.
    p.write("data/huge.txt", &"h".repeat(100 << 10));
    p
}

/// trove with the team's secret in the environment.
fn trove(p: &Project, args: &[&str]) -> Output {
    p.command(args)
        .env("TROVE_SHARED_SECRET", SECRET)
        .output()
        .unwrap()
}

/// `trove run --explain RECIPE`, expecting success: (stdout, stderr).
fn run(p: &Project, recipe: &str) -> (String, String) {
    let out = trove(p, &["run", "--explain", recipe]);
    let err = stderr(&out);
    assert!(out.status.success(), "trove run {recipe} failed:\n{err}");
    (
        String::from_utf8(out.stdout).unwrap(),
        err.trim().to_owned(),
    )
}

fn ok(p: &Project, args: &[&str]) -> String {
    let out = trove(p, args);
    assert!(out.status.success(), "trove {args:?}:\n{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn machine_b_is_served_what_machine_a_built_then_from_its_own_disk() {
    let team = Team::new();
    let a = machine(&team.url(), "");
    let (out, reason) = run(&a, "x");
    assert_eq!(out, "the same input on every machine\n");
    assert_eq!(reason, "built: no entry");
    // The upload finished before `trove run` exited.
    assert_eq!(team.files("records").len(), 1);

    let b = machine(&team.url(), "");
    let why = ok(&b, &["why", "x"]);
    assert_eq!(why.trim(), "would hit shared");
    let (out, reason) = run(&b, "x");
    assert_eq!(out, "the same input on every machine\n");
    assert_eq!(reason, "hit shared");
    let (out, reason) = run(&b, "x");
    assert_eq!(out, "the same input on every machine\n");
    assert_eq!(reason, "hit disk");
}

#[test]
fn a_read_only_machine_never_uploads() {
    let team = Team::new();
    let dev = machine(&team.url(), ", read_only: true");
    let (_, reason) = run(&dev, "x");
    assert_eq!(reason, "built: no entry");
    assert!(team.files("records").is_empty());
    assert!(team.files("blobs").is_empty());
}

#[test]
fn forged_and_foreign_records_and_a_flipped_blob_byte_are_refused_and_rebuilt() {
    let team = Team::new();
    run(&machine(&team.url(), ""), "x");

    // Signed with another key (B reads only, so the store keeps A's record alone).
    let b = machine(&team.url(), ", read_only: true");
    let out = b
        .command(&["run", "--explain", "x"])
        .env("TROVE_SHARED_SECRET", "another team's secret, 32 bytes")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("built: shared record refused (record signed with another key"),
        "{err}"
    );

    // Forged: a byte of the record's body changed, and of its hint (a signed copy).
    let files = [team.files("records"), team.files("newest")].concat();
    assert_eq!(files.len(), 2, "the record and its hint");
    for file in &files {
        let mut forged = std::fs::read(file).unwrap();
        let at = forged.len() / 2;
        forged[at] ^= 1;
        std::fs::write(file, &forged).unwrap();
    }
    let (out, reason) = run(&machine(&team.url(), ""), "x");
    assert_eq!(out, "the same input on every machine\n");
    assert!(
        reason.contains("built: shared record refused (forged record"),
        "{reason}"
    );

    // A flipped byte in the blob of an object over 64 KiB (a smaller one travels in its
    // record and hint, verified with them).
    run(&machine(&team.url(), ""), "huge");
    let blob = team
        .files("blobs")
        .into_iter()
        .find(|b| std::fs::metadata(b).unwrap().len() > 64 << 10)
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&blob, &bytes).unwrap();
    let (out, reason) = run(&machine(&team.url(), ""), "huge");
    assert_eq!(out, "h".repeat(100 << 10));
    assert!(
        reason.contains("built: blob corrupt (shared blob "),
        "{reason}"
    );
}

#[test]
fn a_shared_tier_that_is_down_builds_locally_within_its_timeout_and_says_why_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = machine(
        &format!("webdav://127.0.0.1:{port}/trove"),
        ", timeout: \"500ms\"",
    );
    let start = Instant::now();
    let out = trove(&p, &["run", "x"]);
    let elapsed = start.elapsed();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "the same input on every machine\n"
    );
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(err.matches("shared tier unavailable").count(), 1, "{err}");
    let (_, reason) = run(&p, "big");
    assert!(
        reason.contains("built: no entry (shared tier unavailable: "),
        "{reason}"
    );
}

#[test]
fn a_missing_secret_is_a_configuration_error() {
    let team = Team::new();
    let p = machine(&team.url(), ", secret_env: \"TROVE_TEST_NEVER_SET\"");
    let out = p.trove(&["run", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`TROVE_TEST_NEVER_SET` is not set"), "{err}");
    assert!(err.contains("trove.ron:2:"), "{err}");
}

#[test]
fn config_check_names_the_shared_tier_and_whether_its_secret_is_set() {
    let team = Team::new();
    let p = machine(&team.url(), ", read_only: true");
    let text = ok(&p, &["config", "check"]);
    let expected = format!(
        "shared: {} (read-only), secret from $TROVE_SHARED_SECRET (set)",
        team.url()
    );
    assert!(text.lines().any(|l| l == expected), "{text}");
    let out = p.trove(&["config", "check"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(NOT SET)"));
}

#[test]
fn a_bad_shared_url_is_a_configuration_error_with_its_place() {
    let p = machine("ftp://host/trove", "");
    let out = p.trove(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("trove.ron:2:19: unsupported scheme `ftp`"),
        "{err}"
    );
}

#[test]
fn status_and_gc_of_the_shared_tier() {
    let team = Team::new();
    let a = machine(&team.url(), "");
    run(&a, "big");
    std::thread::sleep(Duration::from_millis(10));
    run(&a, "x");

    let text = ok(&a, &["status", "--shared"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("OBJECT") && lines[0].contains("VARIANTS"),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("big ")), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("x ")), "{text}");
    assert!(
        lines.last().unwrap().starts_with("shared: file://"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&a, &["status", "--shared", "--json"])).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 2, "{json}");
    let entry = &json["entries"][0];
    for field in ["recipe", "args", "key", "variants", "size", "age_secs"] {
        assert!(!entry[field].is_null(), "{field} in {json}");
    }
    assert_eq!(json["health"]["read_only"], false);
    assert_eq!(json["health"]["records_verified"], 2);
    assert!(json["refused"].as_array().unwrap().is_empty());

    // By size: the oldest (big) goes; a dry run only says so.
    let dry = ok(&a, &["gc", "--shared", "--max-size", "1KiB", "--dry-run"]);
    assert!(dry.starts_with("would remove  big "), "{dry}");
    assert!(dry.contains("(over the size limit (1 KiB))"), "{dry}");
    assert_eq!(team.files("records").len(), 2);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&a, &["gc", "--shared", "--max-size", "1KiB", "--json"])).unwrap();
    assert_eq!(json["removals"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["kept"], 1);
    assert_eq!(team.files("records").len(), 1);
    assert_eq!(team.files("blobs").len(), 1);

    // By age.
    std::thread::sleep(Duration::from_millis(10));
    let text = ok(&a, &["gc", "--shared", "--max-age", "5ms"]);
    assert!(text.starts_with("removed  x "), "{text}");
    assert!(text.contains("(older than 5ms)"), "{text}");
    assert!(team.files("records").is_empty() && team.files("blobs").is_empty());
    let text = ok(&a, &["status", "--shared"]);
    assert!(text.starts_with("the shared tier holds nothing"), "{text}");

    // A blob no record names (a publish cut before its record) is kept through the
    // grace period, and the output says so.
    let stray = b"a blob whose record never came";
    let hash = blake3::hash(stray).to_hex().to_string();
    let dir = team.0.path().join("v1/blobs").join(&hash[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hash), stray).unwrap();
    let text = ok(&a, &["gc", "--shared", "--max-age", "30d"]);
    assert!(
        text.starts_with("kept 1 blob no record names: a publish may be between"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&a, &["gc", "--shared", "--max-age", "30d", "--json"])).unwrap();
    assert_eq!(json["orphans_waiting"], 1, "{json}");
    assert!(json["orphans"].as_array().unwrap().is_empty(), "{json}");
    assert!(json["orphans_skipped"].is_null(), "{json}");
    assert_eq!(team.files("blobs").len(), 1);
}

#[test]
fn shared_commands_need_a_shared_tier_and_gc_needs_a_limit() {
    let p = Project::new("(recipes: {})");
    let out = p.trove(&["status", "--shared"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("needs a shared tier"),
        "{}",
        stderr(&out)
    );
    let team = Team::new();
    let p = machine(&team.url(), "");
    let out = trove(&p, &["gc", "--shared"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-age, --max-size or both"));
    let out = trove(&p, &["gc", "--max-age", "1d"]);
    assert_eq!(out.status.code(), Some(2), "--max-age requires --shared");
}
