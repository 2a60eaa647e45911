//! Hostile configuration files: each is refused with the file and, where the problem has
//! one, its line and column; nothing crashes, and size and depth are bounded.

use std::path::Path;

use trove_config::{Config, ConfigError};

fn load(dir: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let path = dir.join("trove.ron");
    std::fs::write(&path, bytes).unwrap();
    Config::load(&path)
}

#[test]
fn hostile_configuration_files_are_refused_with_a_position_and_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let deep = "(".repeat(100_000);
    let deep_list = format!("(versions: {})", "[".repeat(50_000));
    let long_line = format!("(max_age: \"{}\")", "9".repeat(1 << 20));
    let huge = format!("(max_age: \"1d\")\n{}", " ".repeat(5 << 20));
    // (name, bytes, must carry a line and column)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("over 4 MiB", huge.into_bytes(), false),
        ("100000 nested parentheses", deep.into_bytes(), true),
        ("50000 nested lists", deep_list.into_bytes(), true),
        ("invalid UTF-8", b"(max_age: \"1d\xff\")".to_vec(), true),
        ("a NUL byte", b"(max_age: \"1\0d\")".to_vec(), true),
        ("an unterminated string", b"(store: (path: \"abc".to_vec(), true),
        ("a 1 MiB number", long_line.into_bytes(), true),
        ("a huge integer", b"(versions: {\"a\": 99999999999999999999999999})".to_vec(), true),
        ("a negative counter", b"(versions: {\"a\": -1})".to_vec(), true),
        ("an unknown key", b"(stroe: (path: \".trove\"))".to_vec(), true),
        ("a bad glob", b"(recipes: {\"r\": (command: [\"x\"], inputs: [\"a/[\"])})".to_vec(), true),
        ("a bad size", b"(store: (path: \".trove\", max_size: \"12 parsecs\"))".to_vec(), true),
        ("a cycle of needs", b"(recipes: {\"a\": (command: [\"x\"], needs: [\"b\"]), \"b\": (command: [\"x\"], needs: [\"a\"])})".to_vec(), false),
        ("a byte order mark and garbage", b"\xef\xbb\xbf)))".to_vec(), true),
        ("a lone closing bracket", b"]".to_vec(), true),
    ];
    let mut crashes = 0;
    let mut refused = 0;
    for (name, bytes, positioned) in &cases {
        let outcome = std::panic::catch_unwind(|| load(dir.path(), bytes));
        match outcome {
            Err(_) => {
                crashes += 1;
                eprintln!("CRASH: {name}");
            }
            Ok(Ok(_)) => eprintln!("figure: config {name} -> accepted"),
            Ok(Err(e)) => {
                refused += 1;
                let shown = e.to_string();
                assert!(
                    shown.contains("trove.ron"),
                    "{name}: names the file: {shown}"
                );
                if *positioned {
                    assert!(
                        e.line > 0 && e.column > 0,
                        "{name}: has a position: {shown}"
                    );
                }
                let first = shown.lines().next().unwrap_or_default();
                eprintln!(
                    "figure: config {name} -> {}",
                    &first[..first.len().min(160)]
                );
            }
        }
    }
    eprintln!(
        "figure: hostile configs cases={} refused={refused} crashes={crashes}",
        cases.len()
    );
    assert_eq!(crashes, 0);
}

#[test]
fn parent_directory_paths_in_a_configuration_resolve_against_its_directory() {
    // `..` in the store path or the inputs is the user's own choice (a store shared by
    // sibling projects); it is resolved against the configuration's directory, never
    // treated as a path inside the store.
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let config = load(
        &project,
        b"(store: (path: \"../shared/.trove\"), recipes: {\"r\": (command: [\"x\"], inputs: [\"../data/*.csv\"])})",
    );
    match config {
        Ok(c) => {
            eprintln!(
                "figure: config `..` store path -> {}",
                c.store.path.display()
            );
            assert!(c.store.path.starts_with(&project));
        }
        Err(e) => {
            eprintln!("figure: config `..` paths -> {e}");
            assert!(e.line > 0);
        }
    }
}
