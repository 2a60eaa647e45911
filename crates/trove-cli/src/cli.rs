//! The command-line surface: every command, flag and help text, as clap derives them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// trove builds, caches and serves expensive objects the way a build system serves
/// build outputs: each object is rebuilt only when an input it read has changed.
#[derive(Parser, Debug)]
#[command(
    name = "trove",
    version,
    about = "Build, cache and serve expensive objects; rebuild only what changed",
    long_about = "Build, cache and serve expensive objects; rebuild only what changed.\n\n\
        Recipes are declared in trove.ron (found in the working directory or one of its \
        parents, or given with --config). A command recipe's object is its command's \
        stdout; trove keeps it in a store (.trove by default) and serves it again while \
        every input the command read is unchanged.",
    after_help = "Examples:\n  \
        trove run prices              print the `prices` object, building it if needed\n  \
        trove why prices              say whether `run` would build, and why\n  \
        trove recipes                 list the recipes of trove.ron\n  \
        trove watch                   report objects that go stale as files change\n  \
        trove status                  list what the store holds\n  \
        trove gc --dry-run            list what garbage collection would remove\n\n\
        Exit codes: 0 success; a failing command recipe's own exit code; 1 other \
        failures; 2 usage and configuration errors."
)]
pub(crate) struct Cli {
    /// The configuration file (default: trove.ron in the working directory or its
    /// nearest parent that has one).
    #[arg(long, global = true, value_name = "PATH", env = "TROVE_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    /// More diagnostics on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Serve a command recipe's object, building it first if needed.
    #[command(
        long_about = "Serve a command recipe's object, building it first if needed.\n\n\
            The object's bytes are written to stdout exactly as the command printed them. \
            Extra ARGS are appended to the recipe's command and are part of the key: each \
            set of arguments is its own object. Put them after `--` when they start with \
            a dash. If the command fails, nothing is cached and trove exits with the \
            command's exit code.\n\n\
            With a shared tier (`shared:` in trove.ron), an object missing from the local \
            store is looked for there (`hit shared`: verified, then copied into the local \
            store); an object built here is uploaded after the object is written and stdout \
            closed, before trove exits (at most ten times `shared.timeout`).",
        after_help = "Examples:\n  \
            trove run prices                     the object, built or served\n  \
            trove run prices --explain           ...and why, on stderr (\"hit disk\", \"built: data/fx.csv changed ...\")\n  \
            trove run report -- --year 2024      extra arguments for the command"
    )]
    Run(RunArgs),

    /// Say what `run` would do and why, without building anything.
    #[command(
        long_about = "Say what `run` would do and why, without building anything.\n\n\
            Prints `hit disk` when the stored object is still valid, or `built: ` and the \
            deciding reason: the input that changed (with its old and new fingerprints), \
            the counter that moved, the dependency that changed, `no entry`...",
        after_help = "Examples:\n  \
            trove why prices           e.g. \"built: data/fx.csv changed (blake3 1f3a.. -> 9c2e..)\"\n  \
            trove why prices --json    the same as one JSON object"
    )]
    Why(WhyArgs),

    /// List the configuration's recipes: command, declared inputs, env, needs, version.
    #[command(after_help = "Examples:\n  \
        trove recipes            one block per recipe\n  \
        trove recipes --json     one JSON array, one object per recipe")]
    Recipes(JsonFlag),
    /// Run command recipes once under the syscall tracer and print what they read that
    /// their declared `inputs` do not cover, ready to paste.
    #[command(
        long_about = "Run command recipes once under the syscall tracer (nothing is \
        stored) and print what each read under the project that its declared `inputs` do not \
        cover, as an `inputs: [..]` line ready to paste into trove.ron, with the paths it \
        looked for and did not find, the directories it listed, and any input it wrote into. \
        Files outside the project (compilers, libraries) are tracked automatically when \
        tracing is on and are only counted.\n\nExamples:\n  \
        trove lint            every command recipe\n  \
        trove lint prices     one recipe\n  \
        trove lint --json     one JSON object per recipe"
    )]
    Lint(LintArgs),

    /// List the stored objects: recipe, arguments, residency, size, age, hits, reason.
    #[command(after_help = "Examples:\n  \
        trove status                     a table\n  \
        trove status --json              one JSON array, one object per stored variant\n  \
        trove status --shared            the shared tier's keys, its health and counters\n  \
        trove status --shared --json     the same as one JSON object")]
    Status(StatusArgs),

    /// Watch the inputs and report each object that goes stale, and why.
    #[command(
        long_about = "Watch the inputs and report each object that goes stale, and why.\n\n\
            Watches the configuration's watch.roots (honouring .gitignore) and trove.ron. \
            For every change, validates the stored objects that read the changed file (and \
            their dependents) and prints one line per object that is now really stale: \
            `stale: RECIPE ARGS: REASON`. A touch, or a save of the same bytes, prints \
            nothing. Inputs outside every root are named at start-up. A changed trove.ron \
            is reloaded; one that does not parse is reported and the previous one kept. \
            With --rebuild, rebuilds the stale command-recipe objects in dependency order. \
            Runs until interrupted (Ctrl-C).",
        after_help = "Examples:\n  \
            trove watch                   report what goes stale\n  \
            trove watch --rebuild         ...and rebuild it\n  \
            trove watch --json            one JSON object a line, for scripts"
    )]
    Watch(WatchArgs),

    /// Print the dependency graph of stored objects and their inputs.
    #[command(after_help = "Examples:\n  \
        trove graph | dot -Tsvg > graph.svg     render with Graphviz\n  \
        trove graph --format json               nodes (objects, inputs) and edges")]
    Graph(GraphArgs),

    /// Check every stored blob's blake3 and every record; quarantine what is corrupt.
    #[command(
        long_about = "Check every stored blob's blake3 and every record; quarantine what \
            is corrupt.\n\nExits with 1 when anything corrupt was found (as `git fsck` \
            does); a quarantined object is simply rebuilt when next asked for.",
        after_help = "Examples:\n  \
            trove verify\n  \
            trove verify --json"
    )]
    Verify(JsonFlag),

    /// Remove what can never be served again, saying why for each.
    #[command(
        long_about = "Remove what can never be served again, saying why for each: variants \
            built by another recipe version or definition, under an older version counter, \
            or expired (dead); quarantined entries; orphan blobs; temporary files left by \
            killed processes.\n\n\
            A variant whose input files merely differ from today's is kept: switching back \
            to a branch serves it again. It goes only when the store is over its size \
            limit (--max-size, else store.max_size; least recently used first) or with \
            --stale.",
        after_help = "Examples:\n  \
            trove gc --dry-run           list what would be removed, and why\n  \
            trove gc                     remove it\n  \
            trove gc --max-size 2GiB     also trim the store to 2 GiB\n  \
            trove gc --stale             also remove what `trove status` shows as stale\n  \
            trove gc --shared --max-age 30d --max-size 100GiB --dry-run\n                               \
            what trimming the shared tier would remove"
    )]
    Gc(GcArgs),

    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `trove run`.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The recipe, as named under `recipes:` in trove.ron.
    pub(crate) recipe: String,
    /// Extra arguments, appended to the recipe's command and part of the key.
    pub(crate) args: Vec<String>,
    /// Also write why the object was served or built to stderr.
    #[arg(long)]
    pub(crate) explain: bool,
    /// Build anew, whatever is stored, and replace the stored object.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `trove lint`.
#[derive(Args, Debug)]
pub(crate) struct LintArgs {
    /// The recipe to lint; every command recipe when left out.
    pub(crate) recipe: Option<String>,
    /// Print one JSON object per recipe instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `trove why`.
#[derive(Args, Debug)]
pub(crate) struct WhyArgs {
    /// The recipe, as named under `recipes:` in trove.ron.
    pub(crate) recipe: String,
    /// The extra arguments `run` would be given.
    pub(crate) args: Vec<String>,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `trove status`.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// List the team's shared tier instead of the local store: each key's recipe,
    /// arguments, variants, size and age, then the tier's health and counters.
    #[arg(long)]
    pub(crate) shared: bool,
}

/// A command whose only option is `--json`.
#[derive(Args, Debug)]
pub(crate) struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `trove watch`.
#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    /// Rebuild each stale command-recipe object, in dependency order.
    #[arg(long)]
    pub(crate) rebuild: bool,
    /// Print one JSON object a line instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `trove graph`.
#[derive(Args, Debug)]
pub(crate) struct GraphArgs {
    /// Output format: Graphviz DOT or JSON.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub(crate) format: GraphFormat,
}

/// The formats of `trove graph`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GraphFormat {
    /// Graphviz DOT (render with `dot -Tsvg`).
    Dot,
    /// `{"nodes": [...], "edges": [...]}`.
    Json,
}

/// `trove gc`.
#[derive(Args, Debug)]
pub(crate) struct GcArgs {
    /// List what would be removed; remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Trim the store to this size, least recently used first (e.g. 500MiB, 20GiB);
    /// default: the configuration's store.max_size.
    #[arg(long, value_name = "SIZE")]
    pub(crate) max_size: Option<String>,
    /// Also remove the variants that would not be served now (an input differs from
    /// today's: what `trove status` shows as stale), although switching back to a branch
    /// would serve them again.
    #[arg(long, conflicts_with = "shared")]
    pub(crate) stale: bool,
    /// Trim the team's shared tier instead of the local store: variants older than
    /// --max-age, then the oldest until --max-size holds (record first, then its blob).
    #[arg(long)]
    pub(crate) shared: bool,
    /// With --shared: remove variants built longer ago than this (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION", requires = "shared")]
    pub(crate) max_age: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `trove config ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Parse and validate the configuration; print `ok: PATH (N recipes)` or the
    /// problem with its file, line and column.
    #[command(after_help = "Examples:\n  \
        trove config check\n  \
        trove --config ci/trove.ron config check")]
    Check,
}
