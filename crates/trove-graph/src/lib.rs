//! trove's dependency graph of objects and inputs.
//!
//! The engine builds a [`Graph`] from the stored traces: an edge goes from each object to
//! every input it read and every object it asked for. The graph answers the questions
//! invalidation asks ("which objects read this path, and what depends on them, in the
//! order to rebuild them") and renders itself for `trove graph --format dot|json`.
//!
//! *Architecture invariant:* this crate is pure. It does no IO and reads no clock: paths
//! are names, compared as spelled (see [`path_input_name`] and [`glob_input_name`]).
//!
//! ```
//! use std::path::{Path, PathBuf};
//! use trove_graph::{Graph, InputKind, glob_input_name};
//!
//! let mut graph = Graph::new();
//! let prices = [7; 32];
//! let csvs = glob_input_name(Path::new("/p"), "data/**/*.csv");
//! graph.set_object_inputs(prices, "prices", "", &[(InputKind::Glob, csvs)], &[]);
//!
//! let changed = [PathBuf::from("/p/data/new.csv")];
//! assert_eq!(graph.stale_after_paths(&changed), vec![(prices, changed[0].clone())]);
//! assert!(graph.objects_reading_path(Path::new("/p/data/notes.txt")).is_empty());
//! ```

mod graph;
mod names;
mod render;

pub use graph::{Graph, InputKind, Node, NodeId};
pub use names::{glob_input_name, glob_matches, path_input_name};

impl Graph {
    /// The graph in Graphviz DOT: objects as boxes labelled `recipe args` (with the key as
    /// tooltip), inputs as ellipses labelled `kind: name`, edges from an object to what it
    /// depends on. Nodes are named `n0`, `n1`, ... in a deterministic order (objects by key,
    /// then inputs by kind and name), so the same graph always gives the same text.
    pub fn to_dot(&self) -> String {
        render::to_dot(self)
    }

    /// The graph as JSON, in the same deterministic order as [`to_dot`](Self::to_dot):
    ///
    /// ```json
    /// {"nodes": [{"id": 0, "type": "object", "recipe": "table", "args": "eu", "key": "<hex>"},
    ///            {"id": 1, "type": "input", "kind": "glob", "name": "/p/data/*.csv",
    ///             "root": "/p", "pattern": "data/*.csv"}],
    ///  "edges": [{"from": 0, "to": 1}]}
    /// ```
    ///
    /// `root` and `pattern` appear on glob inputs only; their `name` is `root/pattern`.
    pub fn to_json(&self) -> serde_json::Value {
        render::to_json(self)
    }
}
