//! Stale serves found by real use, each pinned by the `trove` binary in a real project:
//! a recipe's definition is an input, depfiles as compilers write them, inputs changing
//! while the build runs, dependencies with arguments, nested runs and cycles.

mod support;

use support::{Project, stderr};

/// Two command recipes that log each build, so a test can tell which ones ran.
fn two_recipes(a_command: &str, extra: &str) -> String {
    format!(
        r#"(
    recipes: {{
        "a": (command: ["sh", "-c", "echo a >> log; {a_command}"]{extra}),
        "b": (command: ["sh", "-c", "echo b >> log; printf b"]),
    }},
)"#
    )
}

/// The first line of `trove run --explain`'s reason.
fn first_reason(p: &Project, args: &[&str]) -> String {
    p.reason(args).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn editing_a_recipes_command_rebuilds_exactly_that_recipe_and_says_so() {
    let p = Project::new(&two_recipes("printf a1", ""));
    assert_eq!(first_reason(&p, &["a"]), "built: no entry");
    assert_eq!(first_reason(&p, &["b"]), "built: no entry");

    p.config(&two_recipes("printf a2", ""));
    let (out, why) = p.run_explained(&["a"]);
    assert_eq!(out, "a2", "the new command's output, never the old object");
    assert_eq!(why, "built: recipe definition changed (command)");
    assert_eq!(
        first_reason(&p, &["b"]),
        "hit disk",
        "another recipe's edit"
    );
}

#[test]
fn reformatting_the_file_or_editing_comments_rebuilds_nothing() {
    let p = Project::new(&two_recipes("printf a1", ""));
    p.ok(&["run", "a"]);
    p.ok(&["run", "b"]);
    let reformatted = format!(
        "// the team's recipes\n{}\n\n// end\n",
        two_recipes("printf a1", "")
            .replace("    ", "\t")
            .replace(": ", ":  ")
    );
    p.config(&reformatted);
    assert_eq!(first_reason(&p, &["a"]), "hit disk");
    assert_eq!(first_reason(&p, &["b"]), "hit disk");
    assert_eq!(p.lines("log"), 2, "two builds in all");
}

#[test]
fn editing_inputs_env_check_or_version_rebuilds_with_the_part_named() {
    let p = Project::new(&two_recipes("printf a", ""));
    p.write("data.txt", "x");
    p.ok(&["run", "a"]);
    let cases = [
        (
            r#", inputs: ["data.txt"]"#,
            "built: recipe definition changed (inputs)",
        ),
        (
            r#", inputs: ["data.txt"], env: ["MARKET"]"#,
            "built: recipe definition changed (env)",
        ),
        (
            r#", inputs: ["data.txt"], env: ["MARKET"], check: ["true"]"#,
            "built: recipe definition changed (check)",
        ),
        (
            r#", inputs: ["data.txt"], env: ["MARKET"], check: ["true"], version: 2"#,
            "built: recipe version 1 -> 2",
        ),
    ];
    for (extra, expected) in cases {
        p.config(&two_recipes("printf a", extra));
        assert_eq!(first_reason(&p, &["a"]), expected, "after adding {extra}");
        assert_eq!(
            first_reason(&p, &["a"]),
            "hit disk",
            "and then it is stored"
        );
    }
}

#[test]
fn editing_needs_rebuilds_the_recipe_that_needs() {
    let p = Project::new(&two_recipes("printf a", ""));
    p.ok(&["run", "a"]);
    p.config(&two_recipes(
        "cat \\\"$TROVE_NEED_B\\\"",
        r#", needs: ["b"]"#,
    ));
    let (out, why) = p.run_explained(&["a"]);
    assert_eq!(out, "b");
    assert!(
        why.starts_with("built: recipe definition changed (command, needs)"),
        "{why}"
    );
}

#[test]
fn a_broken_edit_is_a_configuration_error_and_the_store_keeps_the_object() {
    let p = Project::new(&two_recipes("printf a1", ""));
    p.ok(&["run", "a"]);
    p.config(&two_recipes("printf a1", ", bogus: 1"));
    let out = p.trove(&["run", "a"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    p.config(&two_recipes("printf a1", ""));
    assert_eq!(first_reason(&p, &["a"]), "hit disk");
}

/// Waits for `rel` to exist in the project, up to a deadline.
fn wait_for(p: &Project, rel: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !p.path(rel).exists() {
        assert!(std::time::Instant::now() < deadline, "{rel} never appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_depfile_input_saved_while_the_command_runs_is_not_stored_as_what_was_built() {
    // The command reads the header, then waits for the test to save a new version of it
    // (same size: only the content differs), then names it in its depfile. The object
    // was made from the old header; recording the new one would serve it as fresh.
    // Untraced: the depfile alone says what was read (the tracer would see it too).
    let p = Project::new(
        r#"(recipes: { "o": (trace: false, command: ["sh", "-c",
            "cat h.h; : > started; while [ ! -e go ]; do sleep 0.01; done; echo h.h > \"$TROVE_DEPFILE\""
        ]) })"#,
    );
    p.write("h.h", "old\n");
    let child = p
        .command(&["run", "--explain", "o"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&p, "started");
    p.write("h.h", "new\n");
    p.write("go", "");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"old\n", "the caller gets what was built");

    std::fs::remove_file(p.path("go")).expect("rm go");
    std::fs::remove_file(p.path("started")).expect("rm started");
    // The next request must not serve "old" as if it were made from the new header.
    let mut next = p.command(&["run", "--explain", "o"]);
    next.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = next.spawn().expect("spawn");
    wait_for(&p, "started");
    p.write("go", "");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.stdout, b"new\n");
    assert_eq!(stderr(&out).trim(), "built: no entry");
}

#[test]
fn needs_name_recipes_with_arguments_and_each_object_is_built_for_its_arguments() {
    let p = Project::new(
        r#"(recipes: {
            "fx": (command: ["sh", "-c", "echo \"fx $1\" >> log; printf 'rate-%s' \"$1\"", "sh"]),
            "prices": (
                command: ["sh", "-c", "printf 'eur='; cat \"$TROVE_NEED_FX\""],
                needs: [("fx", ["EUR"])],
            ),
        })"#,
    );
    assert_eq!(p.ok(&["run", "prices"]), "eur=rate-EUR");
    assert_eq!(p.ok(&["run", "fx", "EUR"]), "rate-EUR", "the same object");
    assert_eq!(
        p.lines("log"),
        1,
        "fx EUR was built once, for both requests"
    );
}

#[test]
fn a_need_with_arguments_that_is_not_a_string_list_names_line_and_column() {
    let p = Project::new(
        r#"(recipes: {
    "fx": (command: ["true"]),
    "prices": (command: ["true"], needs: [("fx", "EUR")]),
})"#,
    );
    let out = p.trove(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("trove.ron:3:"), "{}", stderr(&out));
}

/// A project whose `outer` recipe runs `trove run inner` in its command.
fn nested_project(inner_command: &str) -> Project {
    let trove = env!("CARGO_BIN_EXE_trove");
    Project::new(&format!(
        r#"(recipes: {{
            "inner": (command: ["sh", "-c", "echo inner >> log; {inner_command}"], inputs: ["inner.txt"]),
            "outer": (command: ["sh", "-c", "echo outer >> log; printf 'outer('; {trove} run inner; printf ')'"]),
        }})"#
    ))
}

#[test]
fn a_nested_trove_run_joins_the_outer_objects_trace() {
    let p = nested_project("cat inner.txt");
    p.write("inner.txt", "1");
    assert_eq!(p.ok(&["run", "outer"]), "outer(1)");
    assert_eq!(first_reason(&p, &["outer"]), "hit disk");

    // Editing what the nested object read rebuilds both: the outer one names its
    // dependency instead of serving "outer(1)".
    p.write("inner.txt", "2");
    let (out, why) = p.run_explained(&["outer"]);
    assert_eq!(out, "outer(2)");
    assert!(why.starts_with("built: dependency inner changed"), "{why}");
    assert_eq!(
        p.lines("log"),
        4,
        "outer, inner, then inner and outer again"
    );
}

#[test]
fn a_nested_object_rebuilt_with_the_same_bytes_does_not_rebuild_the_outer_one() {
    let p = nested_project("cut -c1 inner.txt");
    p.write("inner.txt", "1a");
    assert_eq!(p.ok(&["run", "outer"]), "outer(1\n)");
    p.write("inner.txt", "1b");
    assert_eq!(first_reason(&p, &["outer"]), "hit disk", "early cutoff");
    assert_eq!(p.lines("log"), 3, "outer and inner, then inner alone");
}

#[test]
fn recipes_that_run_each_other_are_a_cycle_error_not_a_wait_that_lasts_forever() {
    let trove = env!("CARGO_BIN_EXE_trove");
    let p = Project::new(&format!(
        r#"(recipes: {{
            "a": (command: ["sh", "-c", "{trove} run b"]),
            "b": (command: ["sh", "-c", "{trove} run a"]),
        }})"#
    ));
    let out = p.trove(&["run", "a"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cycle"), "{}", stderr(&out));
    // Nothing is left locked or stored: a request that breaks the cycle works at once.
    p.config(&format!(
        r#"(recipes: {{
            "a": (command: ["sh", "-c", "{trove} run b"]),
            "b": (command: ["printf", "b"]),
        }})"#
    ));
    assert_eq!(p.ok(&["run", "a"]), "b");
}

#[test]
fn why_predicts_and_run_explain_lists_the_dependencies_built_on_the_way() {
    let p = Project::new(
        r#"(recipes: {
            "cal": (command: ["sh", "-c", "cut -c1 cal.txt"], inputs: ["cal.txt"]),
            "prices": (command: ["sh", "-c", "cat \"$TROVE_NEED_CAL\""], needs: ["cal"]),
        })"#,
    );
    p.write("cal.txt", "1a");
    assert_eq!(p.ok(&["why", "prices"]).trim(), "would build: no entry");
    assert_eq!(
        p.reason(&["prices"]),
        "built: no entry\n  cal: built: no entry"
    );
    assert_eq!(p.ok(&["why", "prices"]).trim(), "would hit disk");
    // cal is rebuilt on the way and comes out the same: prices is served, and --explain
    // says what was built to find that out.
    p.write("cal.txt", "1b");
    let why = p.reason(&["prices"]);
    assert!(
        why.starts_with("hit disk\n  cal: built: cal.txt changed"),
        "{why}"
    );
}

#[test]
fn run_force_rebuilds_and_replaces_the_stored_object() {
    // Untraced, and n.txt is not declared: an input nobody tracked.
    let p = Project::new(
        r#"(recipes: { "t": (trace: false, command: ["sh", "-c", "echo t >> log; cat n.txt"]) })"#,
    );
    p.write("n.txt", "1");
    assert_eq!(p.ok(&["run", "t"]), "1");
    // An input nobody tracked changed: only forcing can know.
    p.write("n.txt", "2");
    assert_eq!(
        p.run_explained(&["t"]),
        ("1".to_owned(), "hit disk".to_owned())
    );
    let out = p.trove(&["run", "--force", "--explain", "t"]);
    assert_eq!(out.stdout, b"2");
    assert_eq!(stderr(&out).trim(), "built: forced");
    assert_eq!(
        p.run_explained(&["t"]),
        ("2".to_owned(), "hit disk".to_owned())
    );
    assert_eq!(p.lines("log"), 2);
}

#[test]
fn a_declared_glob_matches_files_that_gitignore_hides() {
    let p = Project::new(
        r#"(recipes: { "bins": (command: ["sh", "-c", "cat data/*.bin"], inputs: ["data/*.bin"]) })"#,
    );
    p.write(".gitignore", "*.bin\n");
    p.write("data/a.bin", "a1");
    assert_eq!(p.ok(&["run", "bins"]), "a1");
    p.write("data/a.bin", "a2");
    let (out, why) = p.run_explained(&["bins"]);
    assert_eq!(out, "a2", "never the object made from a1");
    assert!(why.starts_with("built: data/a.bin changed"), "{why}");
    p.write("data/b.bin", "b");
    assert!(first_reason(&p, &["bins"]).starts_with("built: glob data/*.bin changed"));
}

#[test]
fn a_directory_named_in_inputs_covers_its_whole_tree() {
    let p = Project::new(
        r#"(recipes: { "tree": (command: ["sh", "-c", "echo t >> log; find conf | sort"], inputs: ["conf"]) })"#,
    );
    p.write("conf/a.txt", "1");
    p.write("conf/deep/b.txt", "2");
    p.ok(&["run", "tree"]);
    assert_eq!(first_reason(&p, &["tree"]), "hit disk");
    // Content deep inside, a new empty directory, a mode change: each rebuilds.
    p.write("conf/deep/b.txt", "3");
    assert!(first_reason(&p, &["tree"]).starts_with("built: conf/deep/b.txt changed"));
    std::fs::create_dir(p.path("conf/empty")).expect("mkdir");
    assert!(first_reason(&p, &["tree"]).starts_with("built: conf/ tree changed"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.path("conf/a.txt"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    assert!(first_reason(&p, &["tree"]).starts_with("built: conf/ tree changed"));
    assert_eq!(first_reason(&p, &["tree"]), "hit disk");
    assert_eq!(p.lines("log"), 4);
}

#[test]
fn two_processes_each_building_one_side_of_a_cycle_fail_instead_of_waiting_forever() {
    // `trove run a` and `trove run b` start at once; each holds its own key while its
    // command asks for the other's. Nobody is an ancestor of anybody: only the store's
    // wait-for graph can see the cycle.
    let trove = env!("CARGO_BIN_EXE_trove");
    let p = Project::new(&format!(
        r#"(recipes: {{
            "a": (command: ["sh", "-c", ": > a.started; while [ ! -e b.started ]; do sleep 0.01; done; {trove} run b"]),
            "b": (command: ["sh", "-c", ": > b.started; while [ ! -e a.started ]; do sleep 0.01; done; {trove} run a"]),
        }})"#
    ));
    let spawn = |name: &str| {
        p.command(&["run", name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    assert!(!a.status.success() && !b.status.success());
    let both = format!("{}{}", stderr(&a), stderr(&b));
    assert!(both.contains("cycle"), "{both}");
    assert!(
        std::fs::read_dir(p.path(".trove/v1/locks/waits")).map_or(0, |d| d.count()) == 0,
        "no wait is left registered"
    );
}
