//! The graph itself: nodes, edges, the reverse indexes, and invalidation queries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::path::{MAIN_SEPARATOR, Path, PathBuf};

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::names::{CompiledGlob, path_input_name};

/// A node of the graph: an object (identified by its key) or an input (identified by
/// its kind and name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Node {
    /// An object, built by `recipe` from `args`.
    ///
    /// An object that other objects depend on but that the graph was never told about
    /// itself (see [`Graph::set_object_inputs`]) has an empty `recipe` and `args`.
    Object {
        /// The object's key: blake3 of its recipe name and canonical arguments.
        key: [u8; 32],
        /// The recipe's name.
        recipe: String,
        /// The arguments, as people read them.
        args: String,
    },
    /// Something an object read while it was built.
    Input {
        /// What kind of input this is; it decides how `name` is read.
        kind: InputKind,
        /// The input's name: a path from [`path_input_name`](crate::path_input_name), a
        /// glob from [`glob_input_name`](crate::glob_input_name), a variable's name, ...
        name: String,
    },
}

/// The kinds of input an object can read. Serialized in lower case (`"file"`, `"glob"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A file's content; the name is a path.
    File,
    /// A directory's listing; the name is the directory's path.
    Dir,
    /// A glob's matches; the name comes from [`glob_input_name`](crate::glob_input_name).
    Glob,
    /// An environment variable; the name is the variable's name.
    Env,
    /// A module, plugin or script loaded by the build; the name is a path.
    Module,
    /// A version counter; the name is the counter's name.
    Counter,
    /// A volatile source (URL, clock) with a time to live; the name is the source's name.
    Volatile,
    /// A file an external command reported reading (depfile); the name is a path.
    Source,
}

impl InputKind {
    /// The lower-case name used in DOT labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::File => "file",
            InputKind::Dir => "dir",
            InputKind::Glob => "glob",
            InputKind::Env => "env",
            InputKind::Module => "module",
            InputKind::Counter => "counter",
            InputKind::Volatile => "volatile",
            InputKind::Source => "source",
        }
    }

    /// Whether the input's name is a path the watcher can report (files, directories,
    /// modules, sources) or anchored at one (a glob's root).
    fn is_path_like(self) -> bool {
        matches!(
            self,
            InputKind::File
                | InputKind::Dir
                | InputKind::Glob
                | InputKind::Module
                | InputKind::Source
        )
    }
}

/// A node's handle in one [`Graph`]. It stays valid until that node is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex);

/// The dependency graph of objects and inputs.
///
/// Edges point from an object to what it depends on: an input it read, or another object
/// it asked for. The graph keeps a reverse index from input names to input nodes so that
/// "which objects read this path" costs a few hash lookups, not a scan.
///
/// ```
/// use std::path::{Path, PathBuf};
/// use trove_graph::{Graph, InputKind};
///
/// let mut graph = Graph::new();
/// let (model, table) = ([1; 32], [2; 32]);
/// graph.set_object_inputs(model, "model", "v1", &[(InputKind::File, "/p/model.bin".into())], &[]);
/// graph.set_object_inputs(table, "table", "eu", &[(InputKind::Env, "SCALE".into())], &[model]);
///
/// assert_eq!(graph.objects_reading_path(Path::new("/p/model.bin")), vec![model]);
/// assert_eq!(
///     graph.stale_after_paths(&[PathBuf::from("/p/model.bin")]),
///     vec![(model, PathBuf::from("/p/model.bin")), (table, PathBuf::from("/p/model.bin"))],
/// );
/// ```
#[derive(Debug, Default)]
pub struct Graph {
    pub(crate) graph: StableGraph<Node, ()>,
    objects: HashMap<[u8; 32], NodeIndex>,
    /// Objects the graph was told about (by `add_object` or `set_object_inputs`), as
    /// opposed to placeholders created because another object depends on them. A
    /// placeholder is removed as soon as nothing depends on it.
    declared: HashSet<NodeIndex>,
    inputs: HashMap<(InputKind, String), NodeIndex>,
    /// Path-like inputs by the path they are anchored at: their name, or a glob's root.
    anchors: HashMap<String, Vec<NodeIndex>>,
    /// The same anchors, ordered, to find the inputs under a removed or renamed directory.
    anchor_names: BTreeSet<String>,
    globs: HashMap<NodeIndex, CompiledGlob>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the object `key`, or updates its recipe and arguments if it is already there.
    /// Returns its id either way.
    pub fn add_object(&mut self, key: [u8; 32], recipe: &str, args: &str) -> NodeId {
        let id = match self.objects.get(&key) {
            Some(&id) => {
                if let Some(Node::Object {
                    recipe: old_recipe,
                    args: old_args,
                    ..
                }) = self.graph.node_weight_mut(id)
                {
                    if old_recipe != recipe {
                        recipe.clone_into(old_recipe);
                    }
                    if old_args != args {
                        args.clone_into(old_args);
                    }
                }
                id
            }
            None => self.insert_object(key, recipe, args),
        };
        self.declared.insert(id);
        NodeId(id)
    }

    /// Adds the input `(kind, name)`, or finds it if it is already there.
    pub fn add_input(&mut self, kind: InputKind, name: &str) -> NodeId {
        if let Some(&id) = self.inputs.get(&(kind, name.to_owned())) {
            return NodeId(id);
        }
        let id = self.graph.add_node(Node::Input {
            kind,
            name: name.to_owned(),
        });
        self.inputs.insert((kind, name.to_owned()), id);
        if kind.is_path_like() {
            let anchor = if kind == InputKind::Glob {
                let glob = CompiledGlob::new(name);
                let root = glob.root().to_owned();
                self.globs.insert(id, glob);
                root
            } else {
                name.to_owned()
            };
            self.anchors.entry(anchor.clone()).or_default().push(id);
            self.anchor_names.insert(anchor);
        }
        NodeId(id)
    }

    /// Records that `object` depends on `on` (an input or another object). Adding the same
    /// edge twice changes nothing. An id that is not in the graph, or an `object` that is
    /// not an object, is ignored (and is a bug in the caller: debug builds panic).
    pub fn depends_on(&mut self, object: NodeId, on: NodeId) {
        let valid = matches!(self.graph.node_weight(object.0), Some(Node::Object { .. }))
            && self.graph.contains_node(on.0);
        debug_assert!(
            valid,
            "depends_on({object:?}, {on:?}): not an object and a node"
        );
        if valid && self.graph.find_edge(object.0, on.0).is_none() {
            self.graph.add_edge(object.0, on.0, ());
        }
    }

    /// Removes the object `key` and its edges to what it depends on. Inputs that no
    /// object depends on any more are removed too.
    ///
    /// If other objects still depend on `key`, its node stays, without edges of its own,
    /// so that [`dependents`](Self::dependents) still finds them when it is rebuilt.
    pub fn remove_object(&mut self, key: &[u8; 32]) {
        let Some(&id) = self.objects.get(key) else {
            return;
        };
        self.declared.remove(&id);
        self.clear_dependencies(id);
        self.remove_if_orphan(id);
    }

    /// Replaces everything the object `key` depends on with `inputs` and `objects`, in one
    /// call: what the engine does after every build, from the build's trace. The object is
    /// added if needed, and its recipe and arguments updated. Objects in `objects` that the
    /// graph does not know yet are added as placeholders (empty recipe and arguments)
    /// until their own `set_object_inputs`. Inputs no object depends on any more are
    /// removed.
    pub fn set_object_inputs(
        &mut self,
        key: [u8; 32],
        recipe: &str,
        args: &str,
        inputs: &[(InputKind, String)],
        objects: &[[u8; 32]],
    ) {
        let object = self.add_object(key, recipe, args);
        // Remove the old edges first but the orphans last, so an input that is both old
        // and new keeps its node (and its id) instead of being removed and re-added.
        let old = self.take_dependencies(object.0);
        for (kind, name) in inputs {
            let input = self.add_input(*kind, name);
            self.depends_on(object, input);
        }
        for dependency in objects {
            let dependency = match self.objects.get(dependency) {
                Some(&id) => id,
                None => self.insert_object(*dependency, "", ""),
            };
            self.depends_on(object, NodeId(dependency));
        }
        for node in old {
            self.remove_if_orphan(node);
        }
    }

    /// The objects that read `path` directly, sorted by key:
    ///
    /// - a `File`, `Module` or `Source` input named `path`;
    /// - a `Dir` input named `path` or `path`'s parent (an entry was added or removed);
    /// - a `Glob` input whose root is an ancestor of `path` and whose pattern matches it
    ///   (see [`glob_matches`](crate::glob_matches)), or whose root is `path` itself;
    /// - any path-like input *under* `path`: when a directory is removed or renamed the
    ///   watcher may name only the directory, not every file that was in it.
    ///
    /// Paths are compared as spelled by [`path_input_name`](crate::path_input_name).
    pub fn objects_reading_path(&self, path: &Path) -> Vec<[u8; 32]> {
        let mut keys: Vec<[u8; 32]> = self
            .inputs_touched_by(path)
            .into_iter()
            .flat_map(|input| self.direct_readers(input))
            .map(|object| self.key_of(object))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The objects that read the environment variable `name` directly, sorted by key.
    pub fn objects_reading_env(&self, name: &str) -> Vec<[u8; 32]> {
        let Some(&input) = self.inputs.get(&(InputKind::Env, name.to_owned())) else {
            return Vec::new();
        };
        let mut keys: Vec<[u8; 32]> = self
            .direct_readers(input)
            .map(|object| self.key_of(object))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// `keys` and every object that depends on one of them, directly or through other
    /// objects, each once, in dependency order: an object comes after everything it
    /// depends on, so this is the order to rebuild in. Ties are broken by key, so the
    /// order is deterministic. Keys the graph does not know come first, as given.
    ///
    /// A dependency cycle (which the engine does not create) does not hang: its members
    /// come out in key order once nothing outside the cycle is left to go first.
    pub fn dependents(&self, keys: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = Vec::new();
        for key in keys {
            if let Some(&id) = self.objects.get(key) {
                if seen.insert(id) {
                    stack.push(id);
                }
            } else if !unknown.contains(key) {
                unknown.push(*key);
            }
        }
        self.collect_dependents(&mut stack, &mut seen);
        unknown.extend(
            self.dependency_order(&seen)
                .into_iter()
                .map(|id| self.key_of(id)),
        );
        unknown
    }

    /// The objects made stale by changes to `paths`: those reading a path directly (as in
    /// [`objects_reading_path`](Self::objects_reading_path)), then everything depending
    /// on them, in dependency order. Each object comes once, with the first path in
    /// `paths` that made it stale, so the caller can say "X went stale because Y changed".
    pub fn stale_after_paths(&self, paths: &[PathBuf]) -> Vec<([u8; 32], PathBuf)> {
        // One traversal per path, in order: an object reached by an earlier path keeps
        // that path, and so do its dependents, which that traversal already reached.
        let mut reason: HashMap<NodeIndex, usize> = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let mut stack: Vec<NodeIndex> = Vec::new();
            for input in self.inputs_touched_by(path) {
                for object in self.direct_readers(input) {
                    if let std::collections::hash_map::Entry::Vacant(entry) = reason.entry(object) {
                        entry.insert(index);
                        stack.push(object);
                    }
                }
            }
            while let Some(object) = stack.pop() {
                for dependent in self.direct_dependents(object) {
                    if let std::collections::hash_map::Entry::Vacant(entry) =
                        reason.entry(dependent)
                    {
                        entry.insert(index);
                        stack.push(dependent);
                    }
                }
            }
        }
        let stale: HashSet<NodeIndex> = reason.keys().copied().collect();
        self.dependency_order(&stale)
            .into_iter()
            .map(|id| (self.key_of(id), paths[reason[&id]].clone()))
            .collect()
    }

    /// The number of object nodes, placeholders included.
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// The number of input nodes.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// The node with id `id`, if it is still in the graph.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.graph.node_weight(id.0)
    }

    /// The id of the object `key`, if it is in the graph.
    pub fn object_id(&self, key: &[u8; 32]) -> Option<NodeId> {
        self.objects.get(key).copied().map(NodeId)
    }

    /// The id of the input `(kind, name)`, if it is in the graph.
    pub fn input_id(&self, kind: InputKind, name: &str) -> Option<NodeId> {
        self.inputs
            .get(&(kind, name.to_owned()))
            .copied()
            .map(NodeId)
    }

    fn insert_object(&mut self, key: [u8; 32], recipe: &str, args: &str) -> NodeIndex {
        let id = self.graph.add_node(Node::Object {
            key,
            recipe: recipe.to_owned(),
            args: args.to_owned(),
        });
        self.objects.insert(key, id);
        id
    }

    fn key_of(&self, object: NodeIndex) -> [u8; 32] {
        match &self.graph[object] {
            Node::Object { key, .. } => *key,
            Node::Input { .. } => unreachable!("object indexes only hold object nodes"),
        }
    }

    fn is_object(&self, node: NodeIndex) -> bool {
        matches!(self.graph.node_weight(node), Some(Node::Object { .. }))
    }

    /// Objects with an edge to `node`.
    fn direct_readers(&self, node: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph
            .neighbors_directed(node, Direction::Incoming)
            .filter(|&n| self.is_object(n))
    }

    /// Objects that depend on the object `object` directly.
    fn direct_dependents(&self, object: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.direct_readers(object)
    }

    /// Objects `object` depends on directly.
    fn direct_dependencies(&self, object: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph
            .neighbors_directed(object, Direction::Outgoing)
            .filter(|&n| self.is_object(n))
    }

    fn collect_dependents(&self, stack: &mut Vec<NodeIndex>, seen: &mut HashSet<NodeIndex>) {
        while let Some(object) = stack.pop() {
            for dependent in self.direct_dependents(object) {
                if seen.insert(dependent) {
                    stack.push(dependent);
                }
            }
        }
    }

    /// The input nodes a change to `path` can affect; see `objects_reading_path`.
    fn inputs_touched_by(&self, path: &Path) -> Vec<NodeIndex> {
        let mut found = Vec::new();
        let name = path_input_name(path);
        // The path itself: a file, a directory, a glob's root.
        if let Some(nodes) = self.anchors.get(&name) {
            found.extend(nodes);
        }
        // Its parent's listing, and globs rooted at any ancestor whose pattern matches.
        for (depth, ancestor) in path.ancestors().skip(1).enumerate() {
            let Some(nodes) = self.anchors.get(&*path_input_name(ancestor)) else {
                continue;
            };
            for &node in nodes {
                let hit = match &self.graph[node] {
                    Node::Input {
                        kind: InputKind::Dir,
                        ..
                    } => depth == 0,
                    Node::Input {
                        kind: InputKind::Glob,
                        ..
                    } => self.globs.get(&node).is_some_and(|glob| glob.matches(path)),
                    _ => false,
                };
                if hit {
                    found.push(node);
                }
            }
        }
        // Anything under it, in case it was a directory that went away as a whole.
        let prefix = if name.ends_with(MAIN_SEPARATOR) || name.ends_with('/') {
            name
        } else {
            let mut prefix = name;
            prefix.push(MAIN_SEPARATOR);
            prefix
        };
        for anchor in self
            .anchor_names
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|anchor| anchor.starts_with(&prefix))
        {
            found.extend(&self.anchors[anchor]);
        }
        found
    }

    /// Removes the edges from `object` to what it depends on and returns their targets.
    fn take_dependencies(&mut self, object: NodeIndex) -> Vec<NodeIndex> {
        let edges: Vec<_> = self
            .graph
            .edges_directed(object, Direction::Outgoing)
            .map(|edge| (edge.id(), edge.target()))
            .collect();
        edges
            .into_iter()
            .map(|(edge, target)| {
                self.graph.remove_edge(edge);
                target
            })
            .collect()
    }

    fn clear_dependencies(&mut self, object: NodeIndex) {
        for node in self.take_dependencies(object) {
            self.remove_if_orphan(node);
        }
    }

    /// Removes `node` if nothing depends on it and it is an input or an undeclared object.
    fn remove_if_orphan(&mut self, node: NodeIndex) {
        let Some(weight) = self.graph.node_weight(node) else {
            return;
        };
        if self
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .next()
            .is_some()
        {
            return;
        }
        match weight.clone() {
            Node::Input { kind, name } => {
                self.graph.remove_node(node);
                self.inputs.remove(&(kind, name.clone()));
                if kind.is_path_like() {
                    let anchor = match self.globs.remove(&node) {
                        Some(glob) => glob.root().to_owned(),
                        None => name,
                    };
                    if let Some(nodes) = self.anchors.get_mut(&anchor) {
                        nodes.retain(|&n| n != node);
                        if nodes.is_empty() {
                            self.anchors.remove(&anchor);
                            self.anchor_names.remove(&anchor);
                        }
                    }
                }
            }
            Node::Object { key, .. } => {
                if self.declared.contains(&node) {
                    return;
                }
                // An undeclared object has no dependencies of its own, unless it was
                // declared once and removed; drop those too.
                self.clear_dependencies(node);
                self.graph.remove_node(node);
                self.objects.remove(&key);
            }
        }
    }

    /// The objects of `set` in dependency order (Kahn's algorithm, smallest key first
    /// among those ready). A cycle is broken at its smallest key.
    fn dependency_order(&self, set: &HashSet<NodeIndex>) -> Vec<NodeIndex> {
        let mut waiting: HashMap<NodeIndex, usize> = HashMap::with_capacity(set.len());
        let mut ready: BTreeSet<([u8; 32], NodeIndex)> = BTreeSet::new();
        for &object in set {
            let count = self
                .direct_dependencies(object)
                .filter(|dependency| set.contains(dependency))
                .count();
            if count == 0 {
                ready.insert((self.key_of(object), object));
            } else {
                waiting.insert(object, count);
            }
        }
        let mut order = Vec::with_capacity(set.len());
        loop {
            let next = match ready.pop_first() {
                Some((_, object)) => object,
                None => {
                    // Only cycles are left (or nothing): release the smallest key.
                    let Some((_, object)) = waiting.keys().map(|&o| (self.key_of(o), o)).min()
                    else {
                        break;
                    };
                    waiting.remove(&object);
                    object
                }
            };
            order.push(next);
            for dependent in self.direct_dependents(next) {
                if let Some(count) = waiting.get_mut(&dependent) {
                    *count -= 1;
                    if *count == 0 {
                        waiting.remove(&dependent);
                        ready.insert((self.key_of(dependent), dependent));
                    }
                }
            }
        }
        order
    }
}
