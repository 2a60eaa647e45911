//! The differential property (issue 8): a random sequence of edits interleaved with
//! requests never serves bytes that differ from a fresh run, and never rebuilds when
//! nothing the recipe depends on changed.
//!
//! A small project (data files that come and go, a listed directory, a glob, two
//! environment variables, counters, a `trove.ron` declaring inputs and env per recipe) is
//! edited by a random sequence of operations: writes, same-size rewrites, `cp -p`,
//! `touch`, saves of the same bytes, deletions, entries added to and removed from the
//! listed directory, env changes, counter bumps, configuration edits (declared inputs and
//! env: the recipe's definition) and reformatting, recipe `VERSION` bumps, branch switches
//! (file sets saved and checked out), new engines on the same store (a new process), and
//! requests to one of two engines sharing the store. Four recipes read through `Cx`: a
//! file that may be absent, a listing and an env var (`left`); a glob and its files
//! (`right`); two files' lengths (`sizes`, so same-size edits rebuild it to the same
//! bytes); and `sizes` and `right` through `cx.get`, an env var and, depending on it, a
//! file (`top`). A *model* keeps the world as plain values and, for every request,
//! computes:
//!
//! - the bytes a fresh run gives (each recipe is a pure function of what it reads); the
//!   same request is also answered by an engine with nothing stored, which must agree;
//! - which builds must run: each stored build (variant) is kept in the model as the list
//!   of inputs it saw, each with the value it had — a file's content or absence, the
//!   listing, the glob's matches and their content, env values, the counters covering the
//!   recipe, its version, its declared inputs and env, and for a dependency its output
//!   bytes (early cutoff). A key is built exactly when none of its stored variants still
//!   sees the same values; otherwise it is a hit. The build log must list exactly those
//!   builds, dependencies included.
//!
//! So a stale serve (other bytes, or a hit the model says is stale) and a needless
//! rebuild (a build while a stored variant still matches) both fail the case, and
//! proptest shrinks it to a minimal sequence of operations, printed in the panic.
//!
//! Not covered: depfiles and command recipes (a file saved in the clock tick a build
//! starts in may legitimately make a depfile build unstored), watchers, concurrent
//! requests and edits during builds (`reliability.rs`), gc. Every file here is younger
//! than the racy window (2 s), so each check re-hashes: the metadata-only fast path of
//! `check_file` is not taken. And on kernels with multigrain timestamps (Linux 6.13 and
//! later, ext4 and tmpfs among others) a write after the engine stat'ed a file always
//! gets a new mtime, so a same-size rewrite never leaves every stat field equal there;
//! on older kernels it does, and the racy rule is what is tested.
//!
//! Runs 64 cases of up to 30 operations by default; `TROVE_PROPTEST_CASES=N` runs N
//! (`PROPTEST_RNG_SEED` fixes the seed). Prints a `figure:` line.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};
use support::{Log, Probe, Project, mtime, set_mtime};
use trove::{Config, Cx, Engine, Reason, Served};

/// The files the edits play with; `src/*.rs` is what `right` globs.
const FILES: [&str; 7] = [
    "data/a.txt",
    "data/b.txt",
    "data/c.txt",
    "extra.txt",
    "src/m1.rs",
    "src/m2.rs",
    "src/m3.rs",
];
/// Indices into `FILES`.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const EXTRA: usize = 3;
const SRC: std::ops::Range<usize> = 4..7;

/// Entries of `list/`, which `left` lists; each holds its own name.
const ENTRIES: [&str; 3] = ["x1", "x2", "x3"];

/// What the configuration may declare for a recipe (bit i of a mask is `DECLARABLE[i]`):
/// a file no recipe reads, a file `top` reads only sometimes, a glob, a directory (its
/// whole tree).
const DECLARABLE: [&str; 4] = ["extra.txt", "data/c.txt", "src/*.rs", "list"];

/// Contents a write chooses from: few, so states come back (branch switches, undo).
const CONTENTS: [&str; 8] = ["", "1", "2", "ab", "ac", "xyz", "xyw", "hello"];

/// Values an environment variable takes; `top` reads `data/c.txt` only when its variable
/// is `c`.
const ENV_VALUES: [&str; 3] = ["x", "y", "c"];

/// Variants kept per key: more than the builds a case can make, so nothing the model
/// remembers is evicted.
const VARIANTS: usize = 64;
const MAX_OPS: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum R {
    /// `left a`, `left b`: `data/<arg>.txt` (maybe absent), the `list/` listing, env 0.
    Left,
    /// The `src/*.rs` glob and the content of every match.
    Right,
    /// The lengths of `data/a.txt` and `data/b.txt`: same-size edits rebuild it to the
    /// same bytes (early cutoff for `top`).
    Sizes,
    /// `sizes` and `right` through `cx.get`, env 1, and `data/c.txt` when env 1 is `c`.
    Top,
}

const RECIPES: [R; 4] = [R::Left, R::Right, R::Sizes, R::Top];

impl R {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        ["left", "right", "sizes", "top"][self.index()]
    }
}

/// A recipe and its argument.
type Key = (R, &'static str);

fn label((r, arg): Key) -> String {
    format!("{} {arg}", r.name())
}

/// The keys a request for `key` serves: itself and, for `top`, its dependencies (served
/// whether `top` is built or validated).
fn served_keys(key: Key) -> Vec<Key> {
    match key.0 {
        R::Top => vec![key, (R::Sizes, ""), (R::Right, "")],
        _ => vec![key],
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Writes a file whole, in place (creating it).
    Write {
        file: usize,
        content: usize,
    },
    /// Rewrites a present, non-empty file in place twice at once with other bytes of the
    /// same length (an editor saving twice within a clock tick).
    SameSize {
        file: usize,
        salt: u8,
    },
    /// `cp -p`: other content, then the file's old mtime put back (an absent file gets an
    /// old one).
    CopyPreserving {
        file: usize,
        content: usize,
    },
    /// `touch`: a new mtime, forward or far back; the same content.
    Touch {
        file: usize,
        back: bool,
    },
    /// The same bytes written again (an editor's save without a change).
    Resave {
        file: usize,
    },
    Delete {
        file: usize,
    },
    AddEntry(usize),
    RemoveEntry(usize),
    /// Sets (or unsets) environment variable 0 or 1.
    SetEnv {
        var: usize,
        value: Option<usize>,
    },
    /// `Engine::set_counter("alice")`, or `set_recipe_counter(recipe, "bob")`.
    Counter {
        recipe: Option<R>,
        value: u64,
    },
    /// Edits `trove.ron`: the inputs (mask over `DECLARABLE`) and env (mask over the two
    /// variables) declared for one recipe. The running engine keeps the configuration it
    /// loaded; a `Reopen` loads this one.
    Declare {
        recipe: R,
        inputs: u8,
        env: u8,
    },
    /// Rewrites `trove.ron` with another layout, order and comments: the same meaning.
    Reformat,
    /// Bumps a recipe's `VERSION` (its code changed).
    Version(R),
    /// Saves the file set under the current branch and checks out another saved one,
    /// writing only the files that differ (as git does).
    Switch(usize),
    /// A new engine in place of engine 0 or 1, on the same store, loading `trove.ron` (a
    /// new process).
    Reopen(usize),
    /// A request to engine 0 or 1 (two processes sharing the store); `arg` picks
    /// `left`'s argument.
    Get {
        recipe: R,
        arg: usize,
        engine: usize,
    },
}

fn recipe() -> impl Strategy<Value = R> {
    prop::sample::select(RECIPES.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    let file = 0..FILES.len();
    let content = 0..CONTENTS.len();
    prop_oneof![
        4 => (file.clone(), content.clone()).prop_map(|(file, content)| Op::Write { file, content }),
        3 => (file.clone(), any::<u8>()).prop_map(|(file, salt)| Op::SameSize { file, salt }),
        2 => (file.clone(), content).prop_map(|(file, content)| Op::CopyPreserving { file, content }),
        2 => (file.clone(), any::<bool>()).prop_map(|(file, back)| Op::Touch { file, back }),
        1 => file.clone().prop_map(|file| Op::Resave { file }),
        2 => file.prop_map(|file| Op::Delete { file }),
        1 => (0..ENTRIES.len()).prop_map(Op::AddEntry),
        1 => (0..ENTRIES.len()).prop_map(Op::RemoveEntry),
        2 => (0..2usize, prop::option::of(0..ENV_VALUES.len()))
            .prop_map(|(var, value)| Op::SetEnv { var, value }),
        2 => (prop::option::of(recipe()), 1..4u64)
            .prop_map(|(recipe, value)| Op::Counter { recipe, value }),
        2 => (recipe(), 0..16u8, 0..4u8)
            .prop_map(|(recipe, inputs, env)| Op::Declare { recipe, inputs, env }),
        1 => Just(Op::Reformat),
        1 => recipe().prop_map(Op::Version),
        2 => (0..3usize).prop_map(Op::Switch),
        2 => (0..2usize).prop_map(Op::Reopen),
        12 => (recipe(), 0..2usize, 0..2usize)
            .prop_map(|(recipe, arg, engine)| Op::Get { recipe, arg, engine }),
    ]
}

// ------------------------------------------------------------------------------- the model

/// The files of the project, as a branch holds them.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tree {
    files: BTreeMap<usize, Vec<u8>>,
    entries: BTreeSet<usize>,
}

/// One input a build saw, with the value it had.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// A file read (or declared): its content, or `None` when absent.
    File(usize, Option<Vec<u8>>),
    /// The `list/` listing, or its whole tree when declared (each entry's content is its
    /// name, so the names say everything).
    Listing(BTreeSet<usize>),
    /// `src/*.rs`: the matches and their content.
    Glob(BTreeMap<usize, Vec<u8>>),
    Env(usize, Option<String>),
    /// A dependency and its output bytes.
    Object(Key, String),
    /// The counters covering the recipe.
    Counters(BTreeMap<String, u64>),
    Version(u32),
    /// The declared inputs and env (masks).
    Definition(u8, u8),
}

/// Declared inputs and env masks, per recipe.
type Declared = [(u8, u8); 4];

struct Model {
    tree: Tree,
    branches: Vec<Tree>,
    branch: usize,
    env: [Option<String>; 2],
    counters: BTreeMap<String, u64>,
    versions: [u32; 4],
    /// What `trove.ron` declares now, and in which layout it is written.
    declared_in_file: Declared,
    layout: bool,
    /// What each running engine loaded.
    declared: [Declared; 2],
    /// Every stored build of each key, as the inputs it saw.
    variants: BTreeMap<Key, Vec<Vec<Seen>>>,
}

/// How the recipes show a file: its text quoted, or `<absent>`.
fn show(bytes: &Option<Vec<u8>>) -> String {
    match bytes {
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
        None => "<absent>".into(),
    }
}

fn show_len(bytes: &Option<Vec<u8>>) -> String {
    bytes
        .as_ref()
        .map_or_else(|| "-".into(), |b| b.len().to_string())
}

fn show_env(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("<unset>")
}

fn entry_names(entries: &BTreeSet<usize>) -> String {
    let names: Vec<&str> = entries.iter().map(|&i| ENTRIES[i]).collect();
    names.join(",")
}

fn glob_text(matches: &BTreeMap<usize, Vec<u8>>) -> String {
    let parts: Vec<String> = matches
        .iter()
        .map(|(&i, content)| {
            let name = FILES[i].strip_prefix("src/").unwrap();
            format!("{name}={}", show(&Some(content.clone())))
        })
        .collect();
    parts.join(",")
}

impl Model {
    fn file(&self, i: usize) -> Option<Vec<u8>> {
        self.tree.files.get(&i).cloned()
    }

    fn glob(&self) -> BTreeMap<usize, Vec<u8>> {
        SRC.filter_map(|i| self.file(i).map(|c| (i, c))).collect()
    }

    /// What `Engine::counters_for` gives the recipe: global counters and its own.
    fn counters_for(&self, r: R) -> BTreeMap<String, u64> {
        let prefix = format!("{}/", r.name());
        self.counters
            .iter()
            .filter(|(k, _)| !k.contains('/') || k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// A fresh run of `key` now, asked of engine `e`: its bytes, and every input it sees
    /// with its value (the engine's configuration decides what is declared).
    fn eval(&self, key: Key, e: usize) -> (String, Vec<Seen>) {
        let (r, arg) = key;
        let (inputs, env) = self.declared[e][r.index()];
        let mut seen = vec![
            Seen::Version(self.versions[r.index()]),
            Seen::Definition(inputs, env),
            Seen::Counters(self.counters_for(r)),
        ];
        for (bit, declared) in DECLARABLE.iter().enumerate() {
            if inputs & (1 << bit) == 0 {
                continue;
            }
            seen.push(match *declared {
                "extra.txt" => Seen::File(EXTRA, self.file(EXTRA)),
                "data/c.txt" => Seen::File(C, self.file(C)),
                "src/*.rs" => Seen::Glob(self.glob()),
                _ => Seen::Listing(self.tree.entries.clone()),
            });
        }
        for var in 0..2 {
            if env & (1 << var) != 0 {
                seen.push(Seen::Env(var, self.env[var].clone()));
            }
        }
        let out = match r {
            R::Left => {
                let file = if arg == "a" { A } else { B };
                let content = self.file(file);
                seen.push(Seen::File(file, content.clone()));
                seen.push(Seen::Listing(self.tree.entries.clone()));
                seen.push(Seen::Env(0, self.env[0].clone()));
                format!(
                    "left {arg}: {} | {} | {}",
                    show(&content),
                    entry_names(&self.tree.entries),
                    show_env(&self.env[0])
                )
            }
            R::Right => {
                let matches = self.glob();
                let out = format!("right: {}", glob_text(&matches));
                seen.push(Seen::Glob(matches));
                out
            }
            R::Sizes => {
                let (a, b) = (self.file(A), self.file(B));
                let out = format!("sizes {} {}", show_len(&a), show_len(&b));
                seen.push(Seen::File(A, a));
                seen.push(Seen::File(B, b));
                out
            }
            R::Top => {
                let sizes = self.eval((R::Sizes, ""), e).0;
                let right = self.eval((R::Right, ""), e).0;
                seen.push(Seen::Object((R::Sizes, ""), sizes.clone()));
                seen.push(Seen::Object((R::Right, ""), right.clone()));
                let var = self.env[1].clone();
                seen.push(Seen::Env(1, var.clone()));
                let c = if var.as_deref() == Some("c") {
                    let c = self.file(C);
                    seen.push(Seen::File(C, c.clone()));
                    show(&c)
                } else {
                    String::new()
                };
                format!("top [{sizes}] [{right}] {} {c}", show_env(&var))
            }
        };
        (out, seen)
    }

    /// Whether an input still has the value it was seen with, for engine `e`.
    fn holds(&self, r: R, seen: &Seen, e: usize) -> bool {
        match seen {
            Seen::File(i, v) => self.file(*i) == *v,
            Seen::Listing(entries) => self.tree.entries == *entries,
            Seen::Glob(matches) => self.glob() == *matches,
            Seen::Env(var, v) => self.env[*var] == *v,
            Seen::Object(dep, out) => self.eval(*dep, e).0 == *out,
            Seen::Counters(c) => self.counters_for(r) == *c,
            Seen::Version(v) => self.versions[r.index()] == *v,
            Seen::Definition(inputs, env) => self.declared[e][r.index()] == (*inputs, *env),
        }
    }

    /// Whether a stored build of `key` may be served now by engine `e`.
    fn has_valid_variant(&self, key: Key, e: usize) -> bool {
        self.variants
            .get(&key)
            .is_some_and(|vs| vs.iter().any(|v| v.iter().all(|s| self.holds(key.0, s, e))))
    }
}

// ---------------------------------------------------------------------- the engine's side

/// The recipes, as the engine runs them: the same functions as `Model::eval`, read
/// through `Cx`.
#[derive(Clone)]
struct Recipes {
    left: Probe<String>,
    right: Probe<String>,
    sizes: Probe<String>,
    top: Probe<String>,
}

fn recipes(log: &Log, vars: &[String; 2], versions: [u32; 4]) -> Recipes {
    let e0 = vars[0].clone();
    let mut left = Probe::new("left", log, move |cx: &mut Cx, arg: &String| {
        let content = cx.try_read(format!("data/{arg}.txt"))?;
        let names = cx.read_dir("list")?;
        let e = cx.env(&e0);
        Ok(format!(
            "left {arg}: {} | {} | {}",
            show(&content),
            names.join(","),
            show_env(&e)
        ))
    });
    let mut right = Probe::new("right", log, |cx: &mut Cx, _: &String| {
        let mut parts = Vec::new();
        for path in cx.glob("src/*.rs")? {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let content = cx.read(&path)?;
            parts.push(format!("{name}={}", show(&Some(content))));
        }
        Ok(format!("right: {}", parts.join(",")))
    });
    let mut sizes = Probe::new("sizes", log, |cx: &mut Cx, _: &String| {
        let a = cx.try_read("data/a.txt")?;
        let b = cx.try_read("data/b.txt")?;
        Ok(format!("sizes {} {}", show_len(&a), show_len(&b)))
    });
    left.version = versions[R::Left.index()];
    right.version = versions[R::Right.index()];
    sizes.version = versions[R::Sizes.index()];
    let (dep_sizes, dep_right, e1) = (sizes.clone(), right.clone(), vars[1].clone());
    let mut top = Probe::new("top", log, move |cx: &mut Cx, _: &String| {
        let sizes = cx.get(&dep_sizes, &String::new())?;
        let right = cx.get(&dep_right, &String::new())?;
        let e = cx.env(&e1);
        let c = if e.as_deref() == Some("c") {
            show(&cx.try_read("data/c.txt")?)
        } else {
            String::new()
        };
        Ok(format!("top [{sizes}] [{right}] {} {c}", show_env(&e)))
    });
    top.version = versions[R::Top.index()];
    Recipes {
        left,
        right,
        sizes,
        top,
    }
}

impl Recipes {
    /// Registers every recipe, as a program does at start: a fresh engine then validates
    /// `top`'s dependencies before anyone asks for them (and uses the current versions).
    fn register(&self, engine: &Engine) {
        engine.register(self.left.clone());
        engine.register(self.right.clone());
        engine.register(self.sizes.clone());
        engine.register(self.top.clone());
    }

    fn get(&self, engine: &Engine, (r, arg): Key) -> Result<Served<String>, trove::Error> {
        let recipe = match r {
            R::Left => &self.left,
            R::Right => &self.right,
            R::Sizes => &self.sizes,
            R::Top => &self.top,
        };
        engine.get_explained(recipe, &arg.to_owned())
    }
}

/// `trove.ron` for what is declared, in one of two layouts that mean the same.
fn config_text(declared: &Declared, vars: &[String; 2], layout: bool) -> String {
    let entry = |r: R| {
        let (inputs, env) = declared[r.index()];
        let mut inputs: Vec<String> = DECLARABLE
            .iter()
            .enumerate()
            .filter(|(bit, _)| inputs & (1 << bit) != 0)
            .map(|(_, d)| format!("{d:?}"))
            .collect();
        let mut env: Vec<String> = (0..2)
            .filter(|var| env & (1 << var) != 0)
            .map(|var| format!("{:?}", vars[var]))
            .collect();
        if layout {
            // Order means nothing: a declaration is a set.
            inputs.reverse();
            env.reverse();
        }
        (inputs.join(", "), env.join(", "))
    };
    if !layout {
        let entries: Vec<String> = RECIPES
            .iter()
            .map(|&r| {
                let (inputs, env) = entry(r);
                format!("{:?}: (inputs: [{inputs}], env: [{env}])", r.name())
            })
            .collect();
        format!(
            "(store: (variants: {VARIANTS}), recipes: {{ {} }})\n",
            entries.join(", ")
        )
    } else {
        let mut text =
            String::from("// the same configuration, laid out again\n(\n    recipes: {\n");
        for &r in RECIPES.iter().rev() {
            let (inputs, env) = entry(r);
            text.push_str(&format!(
                "        // {}\n        {:?}: (\n            env: [{env}],\n            inputs: [{inputs}],\n        ),\n",
                r.name(),
                r.name()
            ));
        }
        text.push_str(&format!("    }},\n    store: (variants: {VARIANTS}),\n)\n"));
        text
    }
}

// ---------------------------------------------------------------------------- a run

/// Counts across cases, for the figure.
#[derive(Default)]
struct Figures {
    cases: AtomicU64,
    ops: AtomicU64,
    gets: AtomicU64,
    builds: AtomicU64,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    dependency_builds: AtomicU64,
    same_size_rewrites: AtomicU64,
    switches: AtomicU64,
    reopens: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

static FIGURES: Figures = Figures {
    cases: AtomicU64::new(0),
    ops: AtomicU64::new(0),
    gets: AtomicU64::new(0),
    builds: AtomicU64::new(0),
    memory_hits: AtomicU64::new(0),
    disk_hits: AtomicU64::new(0),
    dependency_builds: AtomicU64::new(0),
    same_size_rewrites: AtomicU64::new(0),
    switches: AtomicU64::new(0),
    reopens: AtomicU64::new(0),
};

/// Unique environment variable names per case (shrinking reruns cases: each run gets
/// its own, so nothing leaks between them).
static CASE: AtomicU64 = AtomicU64::new(0);

/// The case's environment variables, unset when the case ends (even by a failure).
struct EnvVars([String; 2]);

impl EnvVars {
    fn new() -> EnvVars {
        let n = CASE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        EnvVars([0, 1].map(|i| format!("TROVE_DIFFERENTIAL_{pid}_{n}_E{i}")))
    }

    fn set(&self, var: usize, value: Option<&str>) {
        // SAFETY: this file is its own test binary with a single #[test] (keep it so: a
        // second one would run on another thread). proptest runs its cases one after
        // another on that test's thread (the runner's configuration pins no fork and no
        // timeout thread), and the engine reads the environment only on the thread that
        // asks it for an object (`Cx::env` and validation; it starts threads only to stat
        // traces of 256 files or more, which read no environment). So no thread reads
        // the environment while it is written here.
        unsafe {
            match value {
                Some(v) => std::env::set_var(&self.0[var], v),
                None => std::env::remove_var(&self.0[var]),
            }
        }
    }
}

impl Drop for EnvVars {
    fn drop(&mut self) {
        self.set(0, None);
        self.set(1, None);
    }
}

struct Run {
    project: Project,
    log: Log,
    vars: EnvVars,
    recipes: Recipes,
    /// Two engines on the same store: two processes.
    engines: [Engine; 2],
    model: Model,
    /// A regular file, given as the store path of the fresh runs' engines.
    no_store: tempfile::NamedTempFile,
}

impl Run {
    fn new() -> Run {
        let project = project();
        let vars = EnvVars::new();
        let tree = Tree {
            files: [(A, "ab"), (B, "1"), (EXTRA, "hello"), (4, "xyz")]
                .into_iter()
                .map(|(i, c)| (i, c.as_bytes().to_vec()))
                .collect(),
            entries: [0].into(),
        };
        for dir in ["data", "src", "list"] {
            std::fs::create_dir_all(project.path(dir)).unwrap();
        }
        for (i, content) in &tree.files {
            project.write(FILES[*i], content);
        }
        for &i in &tree.entries {
            project.write(&format!("list/{}", ENTRIES[i]), ENTRIES[i]);
        }
        let model = Model {
            branches: vec![tree.clone(); 3],
            tree,
            branch: 0,
            env: [None, None],
            counters: BTreeMap::new(),
            versions: [1; 4],
            declared_in_file: [(0, 0); 4],
            layout: false,
            declared: [[(0, 0); 4]; 2],
            variants: BTreeMap::new(),
        };
        write_config(&project, &model, &vars.0);
        let log = Log::new();
        let recipes = recipes(&log, &vars.0, model.versions);
        let engines = [0, 1].map(|_| open(&project, &recipes, &model));
        Run {
            project,
            log,
            vars,
            recipes,
            engines,
            model,
            no_store: tempfile::NamedTempFile::new().unwrap(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let p = &self.project;
        let m = &mut self.model;
        match *op {
            Op::Write { file, content } => {
                p.write(FILES[file], CONTENTS[content]);
                m.tree
                    .files
                    .insert(file, CONTENTS[content].as_bytes().to_vec());
            }
            Op::SameSize { file, salt } => {
                let Some(old) = m.file(file).filter(|c| !c.is_empty()) else {
                    return Ok(());
                };
                let last = old.len() - 1;
                let other = |salt: u8| {
                    let c = b'a' + salt % 26;
                    if c == old[last] {
                        b'a' + (c - b'a' + 1) % 26
                    } else {
                        c
                    }
                };
                let (mut first, mut second) = (old.clone(), old.clone());
                first[last] = other(salt);
                second[last] = other(salt.wrapping_add(7));
                p.write(FILES[file], &first);
                p.write(FILES[file], &second);
                count(&FIGURES.same_size_rewrites);
                m.tree.files.insert(file, second);
            }
            Op::CopyPreserving { file, content } => {
                let path = p.path(FILES[file]);
                let old = match m.file(file) {
                    Some(_) => mtime(&path),
                    None => UNIX_EPOCH + Duration::from_secs(1_000_000_000),
                };
                p.write(FILES[file], CONTENTS[content]);
                set_mtime(&path, old);
                m.tree
                    .files
                    .insert(file, CONTENTS[content].as_bytes().to_vec());
            }
            Op::Touch { file, back } => {
                if m.file(file).is_some() {
                    let when = if back {
                        UNIX_EPOCH + Duration::from_secs(1_000_000_000)
                    } else {
                        SystemTime::now() + Duration::from_secs(3600)
                    };
                    set_mtime(&p.path(FILES[file]), when);
                }
            }
            Op::Resave { file } => {
                if let Some(content) = m.file(file) {
                    p.write(FILES[file], content);
                }
            }
            Op::Delete { file } => {
                if m.tree.files.remove(&file).is_some() {
                    p.remove(FILES[file]);
                }
            }
            Op::AddEntry(i) => {
                p.write(&format!("list/{}", ENTRIES[i]), ENTRIES[i]);
                m.tree.entries.insert(i);
            }
            Op::RemoveEntry(i) => {
                if m.tree.entries.remove(&i) {
                    p.remove(&format!("list/{}", ENTRIES[i]));
                }
            }
            Op::SetEnv { var, value } => {
                let value = value.map(|v| ENV_VALUES[v]);
                self.vars.set(var, value);
                m.env[var] = value.map(str::to_owned);
            }
            Op::Counter { recipe, value } => {
                for engine in &self.engines {
                    match recipe {
                        None => engine.set_counter("alice", value),
                        Some(r) => engine.set_recipe_counter(r.name(), "bob", value),
                    }
                }
                match recipe {
                    None => m.counters.insert("alice".into(), value),
                    Some(r) => m.counters.insert(format!("{}/bob", r.name()), value),
                };
            }
            Op::Declare {
                recipe,
                inputs,
                env,
            } => {
                m.declared_in_file[recipe.index()] = (inputs, env);
                write_config(p, m, &self.vars.0);
            }
            Op::Reformat => {
                m.layout = !m.layout;
                write_config(p, m, &self.vars.0);
            }
            Op::Version(r) => {
                m.versions[r.index()] += 1;
                self.recipes = recipes(&self.log, &self.vars.0, m.versions);
                for engine in &self.engines {
                    self.recipes.register(engine);
                }
            }
            Op::Switch(to) => {
                count(&FIGURES.switches);
                m.branches[m.branch] = m.tree.clone();
                m.branch = to;
                let target = m.branches[to].clone();
                for (i, name) in FILES.iter().enumerate() {
                    match (m.tree.files.get(&i), target.files.get(&i)) {
                        (now, Some(then)) if now != Some(then) => {
                            p.write(name, then);
                        }
                        (Some(_), None) => p.remove(name),
                        _ => {}
                    }
                }
                for (i, name) in ENTRIES.iter().enumerate() {
                    match (m.tree.entries.contains(&i), target.entries.contains(&i)) {
                        (false, true) => {
                            p.write(&format!("list/{name}"), name);
                        }
                        (true, false) => p.remove(&format!("list/{name}")),
                        _ => {}
                    }
                }
                m.tree = target;
            }
            Op::Reopen(e) => {
                count(&FIGURES.reopens);
                m.declared[e] = m.declared_in_file;
                self.engines[e] = open(p, &self.recipes, m);
            }
            Op::Get {
                recipe,
                arg,
                engine,
            } => {
                let key = (
                    recipe,
                    if recipe == R::Left {
                        ["a", "b"][arg]
                    } else {
                        ""
                    },
                );
                self.get(key, engine)?;
            }
        }
        Ok(())
    }

    /// A request, checked against the model: the bytes of a fresh run, and exactly the
    /// builds of the keys none of whose stored variants still holds.
    fn get(&mut self, key: Key, e: usize) -> Result<(), TestCaseError> {
        count(&FIGURES.gets);
        let keys = served_keys(key);
        let must_build: Vec<Key> = keys
            .iter()
            .copied()
            .filter(|k| !self.model.has_valid_variant(*k, e))
            .collect();
        let mut expected: Vec<String> = must_build.iter().map(|k| label(*k)).collect();
        expected.sort();
        let (want, _) = self.model.eval(key, e);
        let served = self
            .recipes
            .get(&self.engines[e], key)
            .map_err(|err| TestCaseError::fail(format!("{}: {err}", label(key))))?;
        let mut built = self.log.take();
        built.sort();
        prop_assert_eq!(
            &*served.value,
            &want,
            "{} served other bytes than a fresh run ({})",
            label(key),
            served.reason
        );
        prop_assert_eq!(
            &built,
            &expected,
            "{} ({}): the builds that ran are not those of the keys whose inputs changed",
            label(key),
            served.reason
        );
        let key_built = must_build.contains(&key);
        prop_assert_eq!(
            matches!(served.reason, Reason::Built(_)),
            key_built,
            "{}: reason {}",
            label(key),
            served.reason
        );
        // The model's bytes are what the engine makes with nothing stored.
        let fresh = self.fresh_run(key, e);
        prop_assert_eq!(
            &fresh,
            &want,
            "{}: the model and a fresh run differ",
            label(key)
        );
        count(match served.reason {
            Reason::HitMemory => &FIGURES.memory_hits,
            Reason::HitDisk => &FIGURES.disk_hits,
            _ => &FIGURES.builds,
        });
        for k in must_build {
            if k != key {
                count(&FIGURES.dependency_builds);
            }
            let seen = self.model.eval(k, e).1;
            self.model.variants.entry(k).or_default().push(seen);
        }
        Ok(())
    }

    /// The bytes a fresh run gives for `key` now: an engine with nothing stored and
    /// nothing in memory. Its store path is a regular file, so it has no disk tier at all
    /// (it builds and keeps objects in memory only): the same bytes as a build in an
    /// empty store, without creating a store per request.
    fn fresh_run(&self, key: Key, e: usize) -> String {
        let mut config = self.engines[e].config().clone();
        config.store.path = self.no_store.path().to_path_buf();
        let engine = Engine::open(config).unwrap();
        let log = Log::new();
        let recipes = recipes(&log, &self.vars.0, self.model.versions);
        let served = recipes.get(&engine, key).unwrap();
        assert!(matches!(served.reason, Reason::Built(_)));
        (*served.value).clone()
    }
}

/// A project in a tmpfs (`/dev/shm`) where there is one, else in the temp directory. The
/// store fsyncs every blob, directory and commit; on a busy disk that is most of a case's
/// time, and durability is not what this test is about (the kill and fail-point suites
/// are). File times, inodes and the racy rule work the same on tmpfs.
fn project() -> Project {
    let shm = std::path::Path::new("/dev/shm");
    let dir = shm
        .is_dir()
        .then(|| tempfile::tempdir_in(shm).ok())
        .flatten()
        .unwrap_or_else(|| tempfile::tempdir().unwrap());
    Project { dir }
}

fn write_config(project: &Project, model: &Model, vars: &[String; 2]) {
    project.write(
        "trove.ron",
        config_text(&model.declared_in_file, vars, model.layout),
    );
}

/// An engine on the project's store with `trove.ron`, the recipes registered and the
/// counters set, as a program starting up does.
fn open(project: &Project, recipes: &Recipes, model: &Model) -> Engine {
    let config = Config::load(&project.path("trove.ron")).unwrap();
    assert_eq!(config.store.variants, VARIANTS);
    let engine = Engine::open(config).unwrap();
    recipes.register(&engine);
    for (name, value) in &model.counters {
        match name.split_once('/') {
            Some((recipe, counter)) => engine.set_recipe_counter(recipe, counter, *value),
            None => engine.set_counter(name, *value),
        }
    }
    engine
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    count(&FIGURES.cases);
    let mut run = Run::new();
    for op in ops {
        count(&FIGURES.ops);
        run.apply(op)?;
    }
    // The end of a case: every key once more, from a new engine, then from the same one.
    run.apply(&Op::Reopen(0))?;
    for &recipe in &RECIPES {
        for arg in 0..if recipe == R::Left { 2 } else { 1 } {
            let get = Op::Get {
                recipe,
                arg,
                engine: 0,
            };
            run.apply(&get)?;
            run.apply(&get)?;
        }
    }
    Ok(())
}

#[test]
fn random_edits_interleaved_with_requests_serve_what_a_fresh_run_serves_and_rebuild_only_what_changed()
 {
    let cases = std::env::var("TROVE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        // Every case on this thread: the env vars are set with `set_var` (see `EnvVars`).
        fork: false,
        timeout: 0,
        ..RunnerConfig::default()
    };
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op(), 1..=MAX_OPS), |ops| {
        run_case(&ops)
    });
    let f = &FIGURES;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "figure: differential cases={} ops={} requests={} builds={} memory_hits={} disk_hits={} dependency_builds={} same_size_rewrites={} branch_switches={} new_engines={} failed={} ({:.1} s)",
        get(&f.cases),
        get(&f.ops),
        get(&f.gets),
        get(&f.builds),
        get(&f.memory_hits),
        get(&f.disk_hits),
        get(&f.dependency_builds),
        get(&f.same_size_rewrites),
        get(&f.switches),
        get(&f.reopens),
        u8::from(result.is_err()),
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => {
            panic!(
                "{why}\nminimal failing sequence ({} operations, then a new engine 0 and every \
                 key asked twice):\n{ops:#?}",
                ops.len()
            )
        }
        Err(e) => panic!("{e}"),
    }
}
