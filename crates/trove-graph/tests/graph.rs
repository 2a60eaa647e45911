//! The dependency graph's behaviour, one sentence per test.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use trove_graph::{Graph, InputKind, glob_input_name};

fn key(n: u8) -> [u8; 32] {
    [n; 32]
}

fn file(path: &str) -> (InputKind, String) {
    (InputKind::File, path.to_owned())
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

/// model (1) reads model.bin; table (2) reads prices.csv and model; report (3) reads
/// table; other (4) reads prices.csv only.
fn pipeline() -> Graph {
    let mut graph = Graph::new();
    graph.set_object_inputs(key(1), "model", "v1", &[file("/p/model.bin")], &[]);
    graph.set_object_inputs(key(2), "table", "eu", &[file("/p/prices.csv")], &[key(1)]);
    graph.set_object_inputs(key(3), "report", "", &[], &[key(2)]);
    graph.set_object_inputs(key(4), "other", "", &[file("/p/prices.csv")], &[]);
    graph
}

#[test]
fn a_file_maps_back_to_every_object_that_read_it() {
    let graph = pipeline();
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/prices.csv")),
        vec![key(2), key(4)]
    );
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/model.bin")),
        vec![key(1)]
    );
    assert!(
        graph
            .objects_reading_path(Path::new("/p/unread.txt"))
            .is_empty()
    );
}

#[test]
fn modules_and_depfile_sources_map_back_like_files() {
    let mut graph = Graph::new();
    graph.set_object_inputs(
        key(1),
        "a",
        "",
        &[(InputKind::Module, "/p/plugin.so".into())],
        &[],
    );
    graph.set_object_inputs(
        key(2),
        "b",
        "",
        &[(InputKind::Source, "/p/gen.h".into())],
        &[],
    );
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/plugin.so")),
        vec![key(1)]
    );
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/gen.h")),
        vec![key(2)]
    );
}

#[test]
fn an_environment_variable_maps_back_to_the_objects_that_read_it() {
    let mut graph = Graph::new();
    graph.set_object_inputs(key(1), "a", "", &[(InputKind::Env, "SCALE".into())], &[]);
    assert_eq!(graph.objects_reading_env("SCALE"), vec![key(1)]);
    assert!(graph.objects_reading_env("OTHER").is_empty());
    // A file that happens to be named like the variable is a different input.
    assert!(graph.objects_reading_path(Path::new("SCALE")).is_empty());
}

#[test]
fn dependents_are_transitive_through_objects_and_come_in_dependency_order() {
    let graph = pipeline();
    assert_eq!(graph.dependents(&[key(1)]), vec![key(1), key(2), key(3)]);
    assert_eq!(graph.dependents(&[key(3)]), vec![key(3)]);
    // Asking for a dependent and its dependency together still orders them.
    assert_eq!(
        graph.dependents(&[key(2), key(1)]),
        vec![key(1), key(2), key(3)]
    );
}

#[test]
fn dependency_order_puts_every_dependency_first_in_a_diamond() {
    // 9 depends on 5 and 6, which both depend on 1; keys are chosen so that key order
    // alone would be wrong.
    let mut graph = Graph::new();
    graph.set_object_inputs(key(9), "top", "", &[], &[key(6), key(5)]);
    graph.set_object_inputs(key(5), "left", "", &[], &[key(200)]);
    graph.set_object_inputs(key(6), "right", "", &[], &[key(200)]);
    graph.set_object_inputs(key(200), "base", "", &[file("/p/base")], &[]);
    let stale = graph.dependents(&[key(200)]);
    assert_eq!(stale, vec![key(200), key(5), key(6), key(9)]);
}

#[test]
fn a_dependency_cycle_does_not_hang_and_lists_each_object_once() {
    let mut graph = Graph::new();
    graph.set_object_inputs(key(1), "a", "", &[], &[key(2)]);
    graph.set_object_inputs(key(2), "b", "", &[], &[key(1)]);
    graph.set_object_inputs(key(3), "c", "", &[], &[key(2)]);
    let stale = graph.dependents(&[key(1)]);
    assert_eq!(stale.len(), 3);
    assert_eq!(stale.iter().collect::<HashSet<_>>().len(), 3);
    assert_eq!(stale.last(), Some(&key(3)));
}

#[test]
fn unknown_keys_are_returned_as_their_own_dependents() {
    let graph = pipeline();
    assert_eq!(graph.dependents(&[key(77)]), vec![key(77)]);
}

#[test]
fn a_changed_path_makes_its_readers_and_their_dependents_stale_with_the_reason() {
    let graph = pipeline();
    let changed = paths(&["/p/model.bin"]);
    let stale = graph.stale_after_paths(&changed);
    let want: Vec<_> = [1, 2, 3]
        .iter()
        .map(|&n| (key(n), changed[0].clone()))
        .collect();
    assert_eq!(stale, want);
}

#[test]
fn each_stale_object_comes_once_with_the_first_path_that_made_it_stale() {
    let graph = pipeline();
    let changed = paths(&["/p/prices.csv", "/p/model.bin"]);
    let stale = graph.stale_after_paths(&changed);
    let prices = &changed[0];
    let model = &changed[1];
    assert_eq!(
        stale,
        vec![
            (key(1), model.clone()),
            (key(2), prices.clone()),
            (key(3), prices.clone()),
            (key(4), prices.clone()),
        ]
    );
}

#[test]
fn a_new_file_under_a_glob_root_marks_the_object_only_if_it_matches_the_pattern() {
    let mut graph = Graph::new();
    let csvs = glob_input_name(Path::new("/p"), "data/**/*.csv");
    graph.set_object_inputs(key(1), "prices", "", &[(InputKind::Glob, csvs)], &[]);

    assert_eq!(
        graph.objects_reading_path(Path::new("/p/data/new.csv")),
        vec![key(1)]
    );
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/data/eu/2024.csv")),
        vec![key(1)]
    );
    assert!(
        graph
            .objects_reading_path(Path::new("/p/data/new.txt"))
            .is_empty()
    );
    assert!(
        graph
            .objects_reading_path(Path::new("/p/other/new.csv"))
            .is_empty()
    );
    assert!(
        graph
            .objects_reading_path(Path::new("/elsewhere/data/new.csv"))
            .is_empty()
    );
}

#[test]
fn a_star_in_a_glob_does_not_cross_directories() {
    let mut graph = Graph::new();
    let csvs = glob_input_name(Path::new("/p/data"), "*.csv");
    graph.set_object_inputs(key(1), "prices", "", &[(InputKind::Glob, csvs)], &[]);
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/data/a.csv")),
        vec![key(1)]
    );
    assert!(
        graph
            .objects_reading_path(Path::new("/p/data/sub/a.csv"))
            .is_empty()
    );
}

#[test]
fn adding_or_removing_an_entry_marks_objects_that_listed_its_directory() {
    let mut graph = Graph::new();
    graph.set_object_inputs(key(1), "ls", "", &[(InputKind::Dir, "/p/data".into())], &[]);
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/data/new.csv")),
        vec![key(1)]
    );
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/data")),
        vec![key(1)]
    );
    assert!(
        graph
            .objects_reading_path(Path::new("/p/data/sub/deep.csv"))
            .is_empty()
    );
}

#[test]
fn removing_or_renaming_a_directory_marks_objects_that_read_files_inside_it() {
    let graph = pipeline();
    assert_eq!(
        graph.objects_reading_path(Path::new("/p")),
        vec![key(1), key(2), key(4)]
    );
    // A sibling whose name merely starts the same is not inside.
    assert!(
        graph
            .objects_reading_path(Path::new("/p/prices"))
            .is_empty()
    );
}

#[test]
fn removing_an_object_drops_the_inputs_nothing_else_reads() {
    let mut graph = pipeline();
    assert_eq!((graph.object_count(), graph.input_count()), (4, 2));

    graph.remove_object(&key(4));
    // prices.csv is still read by table.
    assert_eq!((graph.object_count(), graph.input_count()), (3, 2));
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/prices.csv")),
        vec![key(2)]
    );

    graph.remove_object(&key(3));
    graph.remove_object(&key(2));
    assert_eq!((graph.object_count(), graph.input_count()), (1, 1));
    assert!(graph.input_id(InputKind::File, "/p/prices.csv").is_none());
    assert!(
        graph
            .objects_reading_path(Path::new("/p/prices.csv"))
            .is_empty()
    );
}

#[test]
fn removing_an_object_others_depend_on_keeps_them_reachable() {
    let mut graph = pipeline();
    graph.remove_object(&key(1));
    // model.bin is gone with model's edges, but table still depends on model's key.
    assert!(
        graph
            .objects_reading_path(Path::new("/p/model.bin"))
            .is_empty()
    );
    assert_eq!(graph.dependents(&[key(1)]), vec![key(1), key(2), key(3)]);
    // Once nothing depends on it, the leftover node goes too.
    graph.remove_object(&key(3));
    graph.remove_object(&key(2));
    assert!(graph.object_id(&key(1)).is_none());
}

#[test]
fn setting_an_objects_inputs_replaces_the_previous_ones() {
    let mut graph = pipeline();
    graph.set_object_inputs(key(4), "other", "", &[file("/p/fresh.csv")], &[]);
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/prices.csv")),
        vec![key(2)]
    );
    assert_eq!(
        graph.objects_reading_path(Path::new("/p/fresh.csv")),
        vec![key(4)]
    );

    let kept = graph.input_id(InputKind::File, "/p/fresh.csv");
    graph.set_object_inputs(key(4), "other", "", &[file("/p/fresh.csv")], &[]);
    assert_eq!(graph.input_id(InputKind::File, "/p/fresh.csv"), kept);
    assert_eq!(graph.input_count(), 3);
}

#[test]
fn adding_nodes_and_edges_twice_changes_nothing() {
    let mut graph = Graph::new();
    let a = graph.add_object(key(1), "a", "");
    assert_eq!(graph.add_object(key(1), "a", ""), a);
    let f = graph.add_input(InputKind::File, "/p/f");
    assert_eq!(graph.add_input(InputKind::File, "/p/f"), f);
    graph.depends_on(a, f);
    graph.depends_on(a, f);
    assert_eq!(graph.to_json()["edges"].as_array().map(Vec::len), Some(1));
    assert_eq!((graph.object_count(), graph.input_count()), (1, 1));
}

/// Checks that `dot` is well formed: balanced braces, every node declared once, every
/// edge between declared nodes. Returns the declared ids and the edges.
fn check_dot(dot: &str) -> (Vec<String>, Vec<(String, String)>) {
    assert!(dot.starts_with("digraph trove {\n"), "{dot}");
    assert!(dot.ends_with("}\n"), "{dot}");
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for c in dot.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => in_string = !in_string,
            (false, _, '{') => depth += 1,
            (false, _, '}') => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{dot}");
    }
    assert_eq!((depth, in_string), (0, false), "{dot}");

    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for line in dot.lines().map(str::trim) {
        if let Some((from, to)) = line.strip_suffix(';').and_then(|l| l.split_once(" -> ")) {
            edges.push((from.to_owned(), to.to_owned()));
        } else if let Some((id, attributes)) = line.split_once(" [") {
            assert!(attributes.ends_with("];"), "{line}");
            nodes.push(id.to_owned());
        }
    }
    let declared: HashSet<&String> = nodes.iter().collect();
    assert_eq!(
        declared.len(),
        nodes.len(),
        "a node is declared twice:\n{dot}"
    );
    for (from, to) in &edges {
        assert!(
            declared.contains(from) && declared.contains(to),
            "{from} -> {to}:\n{dot}"
        );
    }
    (nodes, edges)
}

/// Runs Graphviz on `dot`: a prerequisite of the test suite (`.ci/packages` installs it).
fn graphviz_accepts(dot: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Graphviz's `dot` must be installed (`.ci/packages` installs graphviz)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "dot -Tsvg rejected:\n{dot}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn dot_output_declares_every_node_and_only_links_declared_ones() {
    let mut graph = pipeline();
    let csvs = glob_input_name(Path::new("/p"), "data/**/*.csv");
    graph.set_object_inputs(
        key(5),
        "odd \"quoted\" recipe",
        "back\\slash {braces}\nnewline",
        &[(InputKind::Glob, csvs), (InputKind::Env, "SCALE".into())],
        &[key(2)],
    );
    let dot = graph.to_dot();
    let (nodes, edges) = check_dot(&dot);
    assert_eq!(nodes.len(), graph.object_count() + graph.input_count());
    assert_eq!(edges.len(), 8);
    assert!(dot.contains("shape=box, label=\"table eu\""), "{dot}");
    assert!(
        dot.contains("shape=ellipse, label=\"file: /p/prices.csv\""),
        "{dot}"
    );
    assert!(dot.contains("label=\"glob: /p/data/**/*.csv\""), "{dot}");
    assert!(dot.contains(r#"label="odd \"quoted\" recipe back\\slash {braces}\nnewline""#));
    assert!(!dot.contains('\0'));
    graphviz_accepts(&dot);
}

#[test]
fn json_lists_nodes_and_edges() {
    let mut graph = Graph::new();
    let csvs = glob_input_name(Path::new("/p"), "*.csv");
    graph.set_object_inputs(key(1), "model", "v1", &[file("/p/model.bin")], &[]);
    graph.set_object_inputs(key(2), "table", "eu", &[(InputKind::Glob, csvs)], &[key(1)]);
    let json = graph.to_json();
    let want = serde_json::json!({
        "nodes": [
            {"id": 0, "type": "object", "recipe": "model", "args": "v1", "key": "01".repeat(32)},
            {"id": 1, "type": "object", "recipe": "table", "args": "eu", "key": "02".repeat(32)},
            {"id": 2, "type": "input", "kind": "file", "name": "/p/model.bin"},
            {"id": 3, "type": "input", "kind": "glob", "name": "/p/*.csv",
             "root": "/p", "pattern": "*.csv"},
        ],
        "edges": [{"from": 0, "to": 2}, {"from": 1, "to": 0}, {"from": 1, "to": 3}],
    });
    assert_eq!(json, want);
}

#[test]
fn the_same_graph_built_in_another_order_renders_the_same() {
    let forward = pipeline();
    let mut backward = Graph::new();
    // Leftovers of a different history must not show either.
    backward.set_object_inputs(key(9), "gone", "", &[file("/p/gone")], &[]);
    backward.set_object_inputs(key(4), "other", "", &[file("/p/prices.csv")], &[]);
    backward.set_object_inputs(key(3), "report", "", &[], &[key(2)]);
    backward.set_object_inputs(key(2), "table", "eu", &[file("/p/prices.csv")], &[key(1)]);
    backward.remove_object(&key(9));
    backward.set_object_inputs(key(1), "model", "v1", &[file("/p/model.bin")], &[]);
    assert_eq!(forward.to_dot(), backward.to_dot());
    assert_eq!(forward.to_json(), backward.to_json());
}

#[test]
fn the_graph_of_nothing_is_still_valid_dot() {
    let (nodes, edges) = check_dot(&Graph::new().to_dot());
    assert!(nodes.is_empty() && edges.is_empty());
}
