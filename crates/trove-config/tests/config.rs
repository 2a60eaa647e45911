//! trove.ron as people write it: what is accepted, and where and how mistakes
//! are reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use trove_config::{
    Config, ConfigError, did_you_mean, format_duration, format_size, parse_duration, parse_size,
};

/// The 1-based line and character column of byte `offset`.
fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset];
    let line = 1 + before.matches('\n').count();
    let column = 1 + before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count();
    (line, column)
}

/// Parses `fixture` as `trove.ron` and asserts that it fails exactly at the
/// `$0` marker, with a message and a hint containing the given texts.
#[track_caller]
fn check(fixture: &str, message: &str, hint: &str) {
    let offset = fixture.find("$0").expect("the fixture has no $0 marker");
    let source = fixture.replacen("$0", "", 1);
    let expected = line_column(&source, offset);
    let err = match Config::parse(&source, Path::new("trove.ron")) {
        Ok(_) => panic!("accepted:\n{source}"),
        Err(e) => e,
    };
    check_error(&err, &source, expected, message, hint);
}

#[track_caller]
fn check_error(
    err: &ConfigError,
    source: &str,
    expected: (usize, usize),
    message: &str,
    hint: &str,
) {
    assert_eq!(
        (err.line, err.column),
        expected,
        "wrong position for\n{err}\nin\n{source}"
    );
    assert!(
        err.message.contains(message),
        "message {:?} lacks {message:?}",
        err.message
    );
    let got = err
        .hint
        .as_deref()
        .unwrap_or_else(|| panic!("no hint in\n{err}"));
    assert!(got.contains(hint), "hint {got:?} lacks {hint:?}");
}

fn parse(source: &str) -> Config {
    Config::parse(source, Path::new("/project/trove.ron")).unwrap_or_else(|e| panic!("{e}"))
}

// --- The file as a whole ---------------------------------------------------

#[test]
fn trace_is_a_boolean_and_trace_ignore_a_list_of_globs() {
    let config = Config::parse(
        r#"(trace: false, trace_ignore: ["/opt/**"], recipes: { "a": (command: ["true"], trace: true) })"#,
        Path::new("/p/trove.ron"),
    )
    .unwrap();
    assert!(!config.trace);
    assert_eq!(config.trace_ignore, ["/opt/**"]);
    assert!(config.recipe("a").unwrap().traced(config.trace));
    let e = Config::parse(r#"(trace: "yes")"#, Path::new("/p/trove.ron")).unwrap_err();
    assert_eq!((e.line, e.column), (1, 9), "{e}");
    assert!(e.message.contains("`trace` must be true or false"), "{e}");
    let e = Config::parse(r#"(trace_ignore: ["a[b"])"#, Path::new("/p/trove.ron")).unwrap_err();
    assert!(e.message.contains("invalid glob"), "{e}");
}

#[test]
fn an_error_displays_file_line_column_and_hint() {
    let source = r#"(
    recipes: {
        "prices": (
            command: ["python3", "tools/prices.py"],
            env: ["MARKET"],
            needs: [],
            inptus: ["data/*.csv"],
        ),
    },
)"#;
    let err = Config::parse(source, Path::new("trove.ron")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error: trove.ron:7:13: unknown key `inptus` in recipe \"prices\"\nhint: did you mean `inputs`?"
    );
}

#[test]
fn syntax_errors() {
    check(r#"(max_age: "1d" $0store: ())"#, "expected `,`", "commas");
    check(
        "(\n  max_age: $0\"1d,\n)",
        "unclosed string",
        "close the string",
    );
    check(
        "(recipes: {\"a\": ()}$0",
        "unexpected end of file",
        "not closed",
    );
    check(
        "(max_age: \"1d\") $0(",
        "unexpected text after the configuration",
        "inside it",
    );
    check(
        "(\n  max_age $0\"1d\",\n)",
        "expected `,`",
        "if `max_age` is a key, follow it with `:`",
    );
    check(
        "(max_age: 30$0d)",
        "expected `,`",
        "durations and sizes are strings",
    );
    check("(versions: {\"a\" $01})", "expected `:`", "\"key\": value");
    check("  \n$0", "the file is empty", "`()`");
    check("$0\u{feff}()", "byte order mark", "without a BOM");
    check(
        "(max_age: \"1d\", $0/* never closed ",
        "unclosed `/*` comment",
        "close it with `*/`",
    );
}

#[test]
fn nesting_deeper_than_the_limit_is_an_error_not_a_crash() {
    let source = format!("(max_age: {})", "[".repeat(100_000));
    let err = Config::parse(&source, Path::new("trove.ron")).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(err.column > 1 && err.column < 200, "{err}");
    assert!(err.message.contains("nested too deeply"), "{err}");
    assert!(err.hint.is_some());

    let source = "{\"a\": ".repeat(100_000);
    let err = Config::parse(&source, Path::new("trove.ron")).unwrap_err();
    assert!(err.message.contains("nested too deeply"), "{err}");
}

#[test]
fn files_over_4_mib_are_refused_before_parsing() {
    let source = format!("({})", " ".repeat(9 << 20));
    let err = Config::parse(&source, Path::new("trove.ron")).unwrap_err();
    assert_eq!((err.line, err.column), (0, 0));
    assert!(err.message.contains("the limit is 4 MiB"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trove.ron");
    std::fs::write(&file, vec![b' '; 9 << 20]).unwrap();
    let err = Config::load(&file).unwrap_err();
    assert_eq!(err.message, "config file is 9 MiB; the limit is 4 MiB");
    assert_eq!(err.file, file);

    // Exactly at the limit is fine.
    let mut exact = vec![b' '; 4 << 20];
    exact[0] = b'(';
    exact[1] = b')';
    std::fs::write(&file, exact).unwrap();
    Config::load(&file).unwrap();
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trove.ron");
    std::fs::write(&file, b"(\n  max_age: \"1d\xff\",\n)").unwrap();
    let err = Config::load(&file).unwrap_err();
    assert_eq!((err.line, err.column), (2, 15), "{err}");
    assert!(
        err.message.contains("not valid UTF-8 (byte offset 16)"),
        "{err}"
    );
    assert!(err.hint.is_some());
}

#[test]
fn an_unreadable_file_names_its_path() {
    let err = Config::load(Path::new("/nonexistent/trove.ron")).unwrap_err();
    assert_eq!((err.line, err.column), (0, 0));
    assert!(err.message.contains("/nonexistent/trove.ron"), "{err}");
    assert!(
        err.to_string()
            .starts_with("error: /nonexistent/trove.ron: cannot read"),
        "{err}"
    );
}

// --- Keys ------------------------------------------------------------------

#[test]
fn unknown_keys_anywhere() {
    check(
        "($0max_ages: \"1d\")",
        "unknown key `max_ages` in the configuration",
        "did you mean `max_age`?",
    );
    check(
        "($0colour: 1)",
        "unknown key `colour`",
        "known keys: `store`, `max_age`",
    );
    check(
        "(store: ($0pth: \"x\"))",
        "unknown key `pth` in `store`",
        "did you mean `path`?",
    );
    check(
        "(watch: ($0debounce: 5))",
        "unknown key `debounce` in `watch`",
        "did you mean `debounce_ms`?",
    );
    check(
        "(recipes: {\"prices\": (\n    $0inptus: [],\n)})",
        "unknown key `inptus` in recipe \"prices\"",
        "did you mean `inputs`?",
    );
    check(
        "(recipes: {\"p\": ($0r#cmd: [])})",
        "unknown key `cmd`",
        "known keys: `command`",
    );
}

#[test]
fn keys_set_twice() {
    check(
        "(max_age: \"1d\", $0max_age: \"2d\")",
        "`max_age` is set twice",
        "first set at 1:2",
    );
    check(
        "(versions: {\"a\": 1, $0\"a\": 2})",
        "\"a\" is set twice",
        "first set at 1:13",
    );
    check(
        "(recipes: {\"a\": (),\n $0\"a\": ()})",
        "recipe \"a\" is defined twice",
        "first defined at 1:12",
    );
}

#[test]
fn wrong_types() {
    check(
        "(max_age: $030)",
        "`max_age` must be a string, found an integer",
        "max_age: \"30d\"",
    );
    check(
        "(store: $0\".trove\")",
        "`store` must be a struct",
        "store: (path:",
    );
    check(
        "(store: (path: $0[\"a\"]))",
        "`path` must be a string, found a list",
        "path: \".trove\"",
    );
    check(
        "(store: (max_size: $0true))",
        "`max_size` must be a string, found a boolean",
        "20GiB",
    );
    check(
        "(versions: $0[1])",
        "`versions` in the configuration must be a map",
        "\"alice\": 3",
    );
    check(
        "(versions: {\"a\": $0\"3\"})",
        "version counter \"a\" must be a whole number",
        "\"alice\": 3",
    );
    check(
        "(versions: {\"a\": $0-3})",
        "version counter \"a\" cannot be negative",
        "\"alice\": 3",
    );
    check(
        "(versions: {$0a: 3})",
        "a version counter's name must be a string",
        "\"alice\": 3",
    );
    check(
        "(watch: (roots: $0\"src\"))",
        "`roots` must be a list of strings",
        "roots: [\"src\"",
    );
    check(
        "(watch: (debounce_ms: $01.5))",
        "`debounce_ms` must be a whole number",
        "debounce_ms: 100",
    );
    check(
        "(recipes: $0[])",
        "`recipes` must be a map",
        "\"prices\": (command:",
    );
    check(
        "(recipes: {\"p\": $0[]})",
        "recipe \"p\" must be a struct",
        "\"prices\": (command:",
    );
    check(
        "(recipes: {\"p\": (inputs: $0\"a\")})",
        "`inputs` must be a list of strings",
        "data/**/*.csv",
    );
    check(
        "(recipes: {\"p\": (inputs: [\"a\", $03])})",
        "`inputs` must contain only strings, found an integer",
        "",
    );
    check(
        "(recipes: {\"p\": (command: $0\"python3 x.py\")})",
        "`command` must be a list",
        "[\"python3\"",
    );
    check(
        "(recipes: {\"p\": (env: [$0'c'])})",
        "found a char",
        "MARKET",
    );
    check(
        "(recipes: {\"p\": (version: $0\"2\")})",
        "`version` must be a whole number",
        "version: 2",
    );
    check(
        "(recipes: {\"p\": (version: $0-1)})",
        "`version` cannot be negative",
        "version: 2",
    );
    check(
        "(recipes: {\"p\": (version: $04294967296)})",
        "`version` is too large; the limit is 4294967295",
        "",
    );
    check(
        "(versions: {\"a\": $0999999999999999999999999999999999999999999})",
        "is too large",
        "",
    );
}

// --- Values ----------------------------------------------------------------

#[test]
fn bad_durations_point_at_the_value() {
    for (value, message) in [
        ("30", "`30` has no unit; say which"),
        ("1h30", "`1h30` has no unit after `30`"),
        ("d", "expected a number before `d`"),
        ("-1d", "`-1d` is negative"),
        ("", "the duration is empty"),
        ("1.5h", "has a fraction"),
        ("1x", "unknown unit `x`"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("1h 30m", "unexpected ` `"),
        ("99999999999999999999999w", "too large"),
        ("40000000000000w", "too large"),
    ] {
        check(
            &format!("(\n  max_age: $0\"{value}\",\n)"),
            message,
            "\"1h30m\"",
        );
        check(
            &format!("(recipes: {{\"p\": (max_age: $0\"{value}\")}})"),
            message,
            "500ms",
        );
    }
}

#[test]
fn bad_sizes_point_at_the_value() {
    for (value, message) in [
        ("20XB", "unknown unit `XB`"),
        ("GiB", "does not start with a number"),
        ("-1GiB", "negative"),
        ("1.5GiB", "has a fraction"),
        ("", "the size is empty"),
        ("99999999999999999999", "too large"),
        ("16EiB", "too large"),
    ] {
        check(
            &format!("(store: (max_size: $0\"{value}\"))"),
            message,
            "\"20GiB\"",
        );
    }
}

#[test]
fn bad_globs_point_at_the_pattern() {
    check(
        "(recipes: {\"p\": (inputs: [\"ok/*.csv\",\n   $0\"data/[a.csv\"])})",
        "invalid glob \"data/[a.csv\" in `inputs`: unclosed character class",
        "escape a literal",
    );
    check(
        "(recipes: {\"p\": (inputs: [$0\"{a,b\"])})",
        "invalid glob",
        "globs look like",
    );
    check(
        "(recipes: {\"p\": (inputs: [$0\"[z-a].csv\"])})",
        "invalid glob",
        "globs look like",
    );
}

#[test]
fn needs_must_name_recipes() {
    check(
        "(recipes: {\n  \"calendar\": (),\n  \"prices\": (needs: [$0\"calender\"]),\n})",
        "recipe \"prices\" needs unknown recipe \"calender\"",
        "did you mean \"calendar\"?",
    );
    check(
        "(recipes: {\"prices\": (needs: [$0\"x\"])})",
        "needs unknown recipe \"x\"",
        "defined recipes: `prices`; a recipe built by Rust code needs an entry too",
    );
}

#[test]
fn cycles_in_needs_are_named() {
    check(
        "(recipes: {\n  \"a\": (needs: [\"b\"]),\n  \"b\": (needs: [\"c\"]),\n  \"c\": (needs: [$0\"a\"]),\n})",
        "recipes need each other in a cycle: a -> b -> c -> a",
        "remove one of these `needs`",
    );
    check(
        "(recipes: {\"a\": (needs: [$0\"a\"])})",
        "cycle: a -> a",
        "cannot need itself",
    );
    // A cycle reached from a recipe outside it.
    check(
        "(recipes: {\"a\": (needs: [\"b\"]), \"b\": (needs: [\"c\"]), \"c\": (needs: [$0\"b\"])})",
        "cycle: b -> c -> b",
        "",
    );
}

#[test]
fn two_needs_that_would_share_an_environment_variable_are_refused() {
    check(
        "(recipes: {\"a.b\": (), \"a-b\": (), \"p\": (needs: [\"a-b\", $0\"a.b\"])})",
        "which would share $TROVE_NEED_A_B",
        "rename one of the two recipes",
    );
}

#[test]
fn commands_must_not_be_empty() {
    check(
        "(recipes: {\"p\": (command: $0[])})",
        "`command` is empty",
        "the program and its arguments",
    );
    check(
        "(recipes: {\"p\": (command: [$0\"\", \"x\"])})",
        "the program name in `command` is empty",
        "",
    );
    check(
        "(recipes: {\"p\": (check: $0[])})",
        "`check` is empty",
        "TROVE_OUTPUT",
    );
}

#[test]
fn env_names_must_be_names() {
    check(
        "(recipes: {\"p\": (env: [\"OK\", $0\"\"])})",
        "an environment variable name is empty",
        "MARKET",
    );
    check(
        "(recipes: {\"p\": (env: [$0\"MARKET=us\"])})",
        "environment variable name \"MARKET=us\" contains `=`",
        "list variable names only",
    );
}

#[test]
fn recipe_names_are_restricted() {
    check(
        "(recipes: {$0\"\": ()})",
        "a recipe name is empty",
        "\"prices\"",
    );
    check(
        "(recipes: {$0\"daily prices\": ()})",
        "recipe name \"daily prices\" contains ' '",
        "letters, digits",
    );
    check(
        "(recipes: {$0\"a/b\": ()})",
        "contains '/'",
        "`_`, `.` and `-`",
    );
    check(
        "(recipes: {$0prices: ()})",
        "a recipe name must be a string",
        "\"prices\"",
    );
    parse("(recipes: {\"Prices_v2.daily-1\": ()})");
}

// --- What is accepted ------------------------------------------------------

#[test]
fn every_key_has_a_default() {
    let config = parse("()");
    assert_eq!(
        config.file.as_deref(),
        Some(Path::new("/project/trove.ron"))
    );
    assert_eq!(config.dir, Path::new("/project"));
    assert_eq!(config.store.path, Path::new("/project/.trove"));
    assert_eq!(config.store.max_size, None);
    assert_eq!(config.max_age, None);
    assert!(config.versions.is_empty());
    assert_eq!(config.watch.roots, [PathBuf::from("/project")]);
    assert_eq!(config.watch.debounce, Duration::from_millis(100));
    assert!(config.recipes.is_empty());

    let recipe = &parse("(recipes: {\"r\": ()})").recipes["r"];
    assert_eq!(recipe.name, "r");
    assert_eq!(recipe.command, None);
    assert!(recipe.inputs.is_empty() && recipe.env.is_empty() && recipe.needs.is_empty());
    assert!(recipe.versions.is_empty());
    assert_eq!(
        (recipe.max_age, recipe.check.as_ref(), recipe.version),
        (None, None, 1)
    );

    let default = Config::default_in(Path::new("/project"));
    assert_eq!(
        default,
        Config {
            file: None,
            ..config
        }
    );
}

#[test]
fn the_product_example_reads_as_written() {
    let config = parse(
        r#"(
    store: (path: ".trove", max_size: "20GiB"),
    max_age: "30d",
    versions: { "alice": 3, "bob": 1 },
    watch: (roots: ["src", "data"], debounce_ms: 250),
    recipes: {
        "calendar": (command: ["python3", "tools/calendar.py"]),
        "prices": (
            command: ["python3", "tools/prices.py"],
            inputs: ["tools/prices.py", "data/**/*.csv"],
            env: ["MARKET"],
            needs: ["calendar"],
            versions: { "alice": 1 },
            max_age: "1d",
            check: ["sh", "-c", "test -s \"$TROVE_OUTPUT\""],
            version: 2,
        ),
    },
)"#,
    );
    assert_eq!(config.store.max_size, Some(20 << 30));
    assert_eq!(config.max_age, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(
        config.versions,
        BTreeMap::from([("alice".into(), 3), ("bob".into(), 1)])
    );
    assert_eq!(
        config.watch.roots,
        [
            PathBuf::from("/project/src"),
            PathBuf::from("/project/data")
        ]
    );
    assert_eq!(config.watch.debounce, Duration::from_millis(250));
    let prices = config.recipe("prices").unwrap();
    assert_eq!(
        prices.command.as_deref(),
        Some(&["python3".to_owned(), "tools/prices.py".to_owned()][..])
    );
    assert_eq!(prices.inputs, ["tools/prices.py", "data/**/*.csv"]);
    assert_eq!(prices.env, ["MARKET"]);
    assert_eq!(prices.needs, [trove_config::Need::new("calendar")]);
    assert_eq!(prices.versions, BTreeMap::from([("alice".into(), 1)]));
    assert_eq!(prices.max_age, Some(Duration::from_secs(86_400)));
    assert_eq!(
        prices.check.as_ref().unwrap()[2],
        "test -s \"$TROVE_OUTPUT\""
    );
    assert_eq!(prices.version, 2);
    assert!(config.recipe("nope").is_none());
}

#[test]
fn paths_are_resolved_against_the_files_directory() {
    let config =
        parse(r#"(store: (path: "./cache/objects"), watch: (roots: [".", "src", "/abs"]))"#);
    assert_eq!(config.store.path, Path::new("/project/cache/objects"));
    assert_eq!(
        config.watch.roots,
        [
            PathBuf::from("/project"),
            PathBuf::from("/project/src"),
            PathBuf::from("/abs")
        ]
    );
    let config = parse(r#"(store: (path: "/var/cache/trove"))"#);
    assert_eq!(config.store.path, Path::new("/var/cache/trove"));

    // A relative file name is made absolute against the current directory.
    let config = Config::parse("()", Path::new("trove.ron")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(config.dir, cwd);
    assert_eq!(config.store.path, cwd.join(".trove"));
}

#[test]
fn ron_conveniences_are_accepted() {
    let config = parse(
        r##"#![enable(implicit_some)]
        Config(
            max_age: Some("1d"),   // Some(..) is optional
            store: None,           // None means the default
            versions: { r#"alice"#: 0x10, "bob": 1_000 },
            recipes: { "p": (command: ["echo", "tab\there", "\u{e9}"]) },
        )"##,
    );
    assert_eq!(config.max_age, Some(Duration::from_secs(86_400)));
    assert_eq!(config.store.path, Path::new("/project/.trove"));
    assert_eq!(config.versions["alice"], 16);
    assert_eq!(config.versions["bob"], 1000);
    assert_eq!(
        config.recipes["p"].command.as_ref().unwrap()[1..],
        ["tab\there", "é"]
    );
}

#[test]
fn needs_order_puts_dependencies_first() {
    let config = parse(
        r#"(recipes: {
            "report": (needs: ["prices", "calendar"]),
            "prices": (needs: ["calendar", "fx"]),
            "calendar": (),
            "fx": (needs: ["calendar"]),
        })"#,
    );
    assert_eq!(
        config.needs_order("report"),
        ["calendar", "fx", "prices", "report"]
    );
    assert_eq!(config.needs_order("calendar"), ["calendar"]);
    assert_eq!(config.needs_order("built_in_rust"), ["built_in_rust"]);
}

// --- The local overlay -----------------------------------------------------

/// A directory with `trove.ron` and, if given, `trove.local.ron`.
fn project(main: &str, local: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trove.ron");
    std::fs::write(&file, main).unwrap();
    if let Some(local) = local {
        std::fs::write(dir.path().join("trove.local.ron"), local).unwrap();
    }
    (dir, file)
}

const MAIN: &str = r#"(
    versions: { "alice": 3, "bob": 1 },
    recipes: { "prices": (versions: { "alice": 1, "carol": 5 }), "calendar": () },
)"#;

#[test]
fn the_local_overlay_replaces_counters_by_name() {
    let (dir, file) = project(
        MAIN,
        Some(
            r#"(versions: { "alice": 4, "dave": 1 }, recipes: { "prices": (versions: { "alice": 2 }) })"#,
        ),
    );
    let config = Config::load(&file).unwrap();
    assert_eq!(
        config.versions,
        BTreeMap::from([("alice".into(), 4), ("bob".into(), 1), ("dave".into(), 1)])
    );
    assert_eq!(
        config.recipes["prices"].versions,
        BTreeMap::from([("alice".into(), 2), ("carol".into(), 5)])
    );
    assert_eq!(config.local_file, Some(dir.path().join("trove.local.ron")));

    let (_dir, file) = project(MAIN, None);
    let config = Config::load(&file).unwrap();
    assert_eq!(config.versions["alice"], 3);
    assert_eq!(config.local_file, None);
}

/// Loads MAIN with `fixture` (with a `$0` marker) as trove.local.ron.
#[track_caller]
fn check_local(fixture: &str, message: &str, hint: &str) {
    let offset = fixture.find("$0").unwrap();
    let source = fixture.replacen("$0", "", 1);
    let (dir, file) = project(MAIN, Some(&source));
    let err = Config::load(&file).unwrap_err();
    assert_eq!(err.file, dir.path().join("trove.local.ron"));
    check_error(&err, &source, line_column(&source, offset), message, hint);
}

#[test]
fn the_local_overlay_holds_only_counters() {
    check_local(
        "(\n  $0store: (path: \"x\"),\n)",
        "`store` cannot be set in trove.local.ron",
        "may only contain",
    );
    check_local(
        "($0max_age: \"1d\")",
        "`max_age` cannot be set",
        "may only contain",
    );
    check_local(
        "($0versoins: {})",
        "unknown key `versoins` in trove.local.ron",
        "did you mean `versions`?",
    );
    check_local(
        "(recipes: {\"prices\": ($0command: [\"x\"])})",
        "`command` cannot be set in trove.local.ron",
        "may only contain",
    );
    check_local(
        "(versions: {\"alice\": $0\"4\"})",
        "must be a whole number",
        "\"alice\": 3",
    );
    check_local(
        "(versions: {\"alice\": 4$0",
        "unexpected end of file",
        "not closed",
    );
}

#[test]
fn the_local_overlay_cannot_name_unknown_recipes() {
    check_local(
        "(recipes: {$0\"pricse\": (versions: {\"alice\": 1})})",
        "trove.local.ron names unknown recipe \"pricse\"",
        "did you mean \"prices\"?",
    );
    check_local(
        "(recipes: {$0\"table\": ()})",
        "unknown recipe \"table\"",
        "add \"table\": () to its `recipes`",
    );
}

// --- Finding the file ------------------------------------------------------

#[test]
fn discover_walks_up_to_the_nearest_trove_ron() {
    let root = tempfile::tempdir().unwrap();
    let deep = root.path().join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    // A trove.ron above the temporary directory is outside the test's control;
    // none below it is found.
    if let Some(found) = Config::discover(&deep).unwrap() {
        assert!(!found.starts_with(root.path()), "{}", found.display());
    }

    std::fs::write(root.path().join("trove.ron"), "()").unwrap();
    assert_eq!(
        Config::discover(&deep).unwrap(),
        Some(root.path().join("trove.ron"))
    );

    std::fs::write(root.path().join("a/trove.ron"), "()").unwrap();
    assert_eq!(
        Config::discover(&deep).unwrap(),
        Some(root.path().join("a/trove.ron"))
    );
    assert_eq!(
        Config::discover(root.path()).unwrap(),
        Some(root.path().join("trove.ron"))
    );

    // A directory named trove.ron is not a configuration.
    std::fs::create_dir(deep.join("trove.ron")).unwrap();
    assert_eq!(
        Config::discover(&deep).unwrap(),
        Some(root.path().join("a/trove.ron"))
    );
}

// --- Units -----------------------------------------------------------------

#[test]
fn durations() {
    let s = Duration::from_secs;
    for (text, expected) in [
        ("30d", s(30 * 86_400)),
        ("1h", s(3_600)),
        ("15m", s(900)),
        ("1s", s(1)),
        ("500ms", Duration::from_millis(500)),
        ("1w", s(7 * 86_400)),
        ("1h30m", s(5_400)),
        (
            "1w2d3h4m5s6ms",
            s(9 * 86_400 + 3 * 3_600 + 4 * 60 + 5) + Duration::from_millis(6),
        ),
        ("0s", Duration::ZERO),
        ("90m", s(5_400)),
        ("250us", Duration::from_micros(250)),
        ("7ns", Duration::from_nanos(7)),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for text in [
        "30",
        "d",
        "-1d",
        "",
        "1.5h",
        "1x",
        "30m1h",
        "1h 30m",
        " 1h",
        "1H",
        "99999999999999999999999w",
    ] {
        assert!(parse_duration(text).is_err(), "{text} was accepted");
    }
}

#[test]
fn durations_format_as_they_are_written() {
    for (d, text) in [
        (Duration::from_secs(86_400), "1d"),
        (Duration::from_secs(5_400), "1h30m"),
        (Duration::from_millis(500), "500ms"),
        (Duration::from_secs(30 * 86_400), "30d"),
        (Duration::ZERO, "0s"),
        (Duration::new(61, 1_000_001), "1m1s1ms1ns"),
    ] {
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text), Ok(d), "round trip of {text}");
    }
}

#[test]
fn sizes() {
    for (text, expected) in [
        ("20GiB", 20u64 << 30),
        ("512MiB", 512 << 20),
        ("1KiB", 1024),
        ("10GB", 10_000_000_000),
        ("123", 123),
        ("0", 0),
        ("1 TiB", 1 << 40),
        ("5kb", 5_000),
        ("7B", 7),
        ("15EiB", 15 << 60),
    ] {
        assert_eq!(parse_size(text), Ok(expected), "{text}");
    }
    for text in [
        "",
        "GiB",
        "20XB",
        "-1GiB",
        "1.5GiB",
        "20 G",
        "99999999999999999999",
        "16EiB",
        "0x10",
    ] {
        assert!(parse_size(text).is_err(), "{text} was accepted");
    }
}

#[test]
fn store_variants_is_a_whole_number_from_1_and_defaults_to_4() {
    assert_eq!(parse("()").store.variants, 4);
    assert_eq!(parse("(store: (variants: 1))").store.variants, 1);
    assert_eq!(parse("(store: (variants: 12))").store.variants, 12);
    check(
        "(store: (variants: $00))",
        "`variants` must be at least 1",
        "variants: 4",
    );
    check(
        "(store: (variants: $0\"4\"))",
        "`variants` must be a whole number, found the string \"4\"",
        "variants: 4",
    );
    check(
        "(store: (variants: $0-2))",
        "`variants` cannot be negative",
        "variants: 4",
    );
    check(
        "(store: (variants: $01001))",
        "`variants` is too large; the limit is 1000",
        "variants: 4",
    );
    check(
        "(store: (varaints: 4))"
            .replace("varaints", "$0varaints")
            .as_str(),
        "unknown key `varaints` in `store`",
        "did you mean `variants`?",
    );
    let err = Config::parse("(\n    store: (variants: 0),\n)", Path::new("trove.ron")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("error: trove.ron:2:23: `variants` must be at least 1\nhint: "),
        "{err}"
    );
}

#[test]
fn sizes_may_be_plain_integers() {
    assert_eq!(
        parse("(store: (max_size: 4096))").store.max_size,
        Some(4096)
    );
    check(
        "(store: (max_size: $0-1))",
        "`max_size` cannot be negative",
        "20GiB",
    );
}

#[test]
fn sizes_are_written_in_the_units_they_are_read_in() {
    assert_eq!(format_size(12), "12 B");
    assert_eq!(format_size(1536), "1.5 KiB");
    assert_eq!(format_size(20 << 20), "20 MiB");
    assert_eq!(format_size(9 << 20), "9 MiB");
    for n in [1u64 << 10, 20 << 20, 3 << 30] {
        let text = format_size(n).replace(' ', "");
        assert_eq!(parse_size(&text), Ok(n), "{text}");
    }
}

#[test]
fn a_typo_suggests_the_nearest_known_word_and_nonsense_suggests_nothing() {
    assert_eq!(
        did_you_mean("price", ["calendar", "prices"]),
        Some("prices")
    );
    assert_eq!(
        did_you_mean("prcies", ["calendar", "prices"]),
        Some("prices")
    );
    assert_eq!(
        did_you_mean("inptus", ["command", "inputs", "env"]),
        Some("inputs")
    );
    assert_eq!(did_you_mean("zzz", ["calendar", "prices"]), None);
}
