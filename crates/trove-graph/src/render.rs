//! The graph as Graphviz DOT and as JSON, for `trove graph --format dot|json`.
//!
//! Both number the nodes in the order of [`Node`]'s `Ord` (objects by key, then inputs by
//! kind and name) and sort the edges, so the same graph always renders to the same text,
//! whatever order it was built in.

use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::stable_graph::NodeIndex;
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use serde_json::{Value, json};
use trove_fingerprint::hex;

use crate::graph::{Graph, InputKind, Node};
use crate::names::{display_glob_name, split_glob_name};

/// Nodes in their rendering order, and edges as pairs of positions in that order.
struct Layout<'g> {
    nodes: Vec<&'g Node>,
    edges: Vec<(usize, usize)>,
}

fn layout(graph: &Graph) -> Layout<'_> {
    let mut indices: Vec<NodeIndex> = graph.graph.node_indices().collect();
    indices.sort_by(|a, b| graph.graph[*a].cmp(&graph.graph[*b]));
    let position: HashMap<NodeIndex, usize> = indices
        .iter()
        .enumerate()
        .map(|(position, &index)| (index, position))
        .collect();
    let mut edges: Vec<(usize, usize)> = (&graph.graph)
        .edge_references()
        .map(|edge| (position[&edge.source()], position[&edge.target()]))
        .collect();
    edges.sort_unstable();
    Layout {
        nodes: indices.iter().map(|&index| &graph.graph[index]).collect(),
        edges,
    }
}

/// An input's name as people read it (a glob as `root/pattern`).
fn display_name(kind: InputKind, name: &str) -> String {
    if kind == InputKind::Glob {
        display_glob_name(name)
    } else {
        name.to_owned()
    }
}

/// Escapes text for a double-quoted DOT string.
fn dot_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn object_label(key: &[u8; 32], recipe: &str, args: &str) -> String {
    match (recipe.is_empty(), args.is_empty()) {
        // A placeholder: the graph knows only its key.
        (true, _) => format!("object {}", &hex(key)[..12]),
        (false, true) => recipe.to_owned(),
        (false, false) => format!("{recipe} {args}"),
    }
}

pub(crate) fn to_dot(graph: &Graph) -> String {
    let Layout { nodes, edges } = layout(graph);
    let mut out = String::from("digraph trove {\n    rankdir=LR;\n");
    for (id, node) in nodes.iter().enumerate() {
        let _ = match node {
            Node::Object { key, recipe, args } => writeln!(
                out,
                "    n{id} [shape=box, label=\"{}\", tooltip=\"{}\"];",
                dot_escape(&object_label(key, recipe, args)),
                hex(key),
            ),
            Node::Input { kind, name } => writeln!(
                out,
                "    n{id} [shape=ellipse, label=\"{}: {}\"];",
                kind.as_str(),
                dot_escape(&display_name(*kind, name)),
            ),
        };
    }
    for (from, to) in edges {
        let _ = writeln!(out, "    n{from} -> n{to};");
    }
    out.push_str("}\n");
    out
}

pub(crate) fn to_json(graph: &Graph) -> Value {
    let Layout { nodes, edges } = layout(graph);
    let nodes: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(id, node)| match node {
            Node::Object { key, recipe, args } => json!({
                "id": id,
                "type": "object",
                "recipe": recipe,
                "args": args,
                "key": hex(key),
            }),
            Node::Input { kind, name } => {
                let mut value = json!({
                    "id": id,
                    "type": "input",
                    "kind": kind.as_str(),
                    "name": display_name(*kind, name),
                });
                if *kind == InputKind::Glob {
                    let (root, pattern) = split_glob_name(name);
                    value["root"] = json!(root);
                    value["pattern"] = json!(pattern);
                }
                value
            }
        })
        .collect();
    let edges: Vec<Value> = edges
        .into_iter()
        .map(|(from, to)| json!({ "from": from, "to": to }))
        .collect();
    json!({ "nodes": nodes, "edges": edges })
}
