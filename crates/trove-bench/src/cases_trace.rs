//! Tracing command recipes (issue 10): what the syscall tracer costs a build, and what a
//! traced object's many inputs cost a hit.
//!
//! One generated project holds a C file including twelve headers (in two `-I`
//! directories, each header including a system header) and a python3 script importing
//! thirty modules; its `trove.ron` defines each command twice, `trace: true` and
//! `trace: false` with the project files declared as `inputs` (what one writes without a
//! tracer); after the first builds a fifth recipe, `cc-declared`, declares the very files
//! the traced compile read (its trace's regular files, system ones included): the hit
//! row's baseline, the "declared one with the same files" (the 13-file
//! declaration stays as a reference row). The build rows time whole `trove run --force`
//! processes of the two in alternation (the bare command joins the rotation, for the
//! note), wall time and the CPU time of each process tree; the hit row times
//! `Engine::get_explained` on a freshly opened engine, so every repetition is a disk hit
//! that validates the whole trace. The hit row runs first, while the index's write-ahead
//! log is short (every `trove run` process reads it whole when it opens the index; the
//! builds grow it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use trove::{CommandRecipe, Config, Engine, Reason};

use crate::Scale;
use crate::cases_process::run_ok;
use crate::measure::{Row, fmt_secs, median, wait_until};

use crate::trace_project::{GCC, Project};

/// One timed run: wall seconds, and the CPU seconds (user + system) of the process and
/// the descendants it waited for (NaN for what runs in this process).
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
}

/// Times a command that must succeed. Its stdout, when piped, is drained; its CPU time
/// comes from `wait4`, which counts the whole tree (trove, the tracer thread, gcc, cc1,
/// as): the figure the other builds on this machine disturb least.
// The child is reaped by `wait4`, which `Child::wait` cannot replace: it gives no usage.
#[allow(clippy::zombie_processes)]
fn time(mut c: Command) -> Sample {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let mut child = c
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut sink = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut sink)
            .expect("read the command's stdout");
    }
    let mut err = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut err).expect("read the command's stderr");
    }
    let pid = i32::try_from(child.id()).expect("a pid fits an i32");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, which wait4 overwrites.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `child` is our child, not waited for yet (`Child::wait` is never called on
    // it); wait4 writes the status and the usage it is given.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let status = std::process::ExitStatus::from_raw(status);
    assert!(
        status.success(),
        "{c:?} failed ({status}): {}",
        String::from_utf8_lossy(&err).trim()
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Sample {
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
    }
}

/// A run in this process: wall seconds only.
fn here(wall: f64) -> Sample {
    Sample {
        wall,
        cpu: f64::NAN,
    }
}

/// Runs each contender once per repetition, the first one a step later each time (so none
/// always runs first, on a colder or warmer machine), and returns each one's median
/// wall and CPU seconds.
fn rotate(reps: usize, runs: &mut [&mut dyn FnMut() -> Sample]) -> Vec<Sample> {
    let n = runs.len();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(reps); n];
    for rep in 0..reps {
        for step in 0..n {
            let i = (rep + step) % n;
            samples[i].push(runs[i]());
        }
    }
    samples
        .iter()
        .map(|s| Sample {
            wall: median(&mut s.iter().map(|x| x.wall).collect::<Vec<_>>()),
            cpu: median(&mut s.iter().map(|x| x.cpu).collect::<Vec<_>>()),
        })
        .collect()
}

/// What a stored object's trace holds, counted from the engine's dependency graph.
#[derive(Default)]
struct Inputs {
    total: usize,
    /// Paths (files, programs, directories stat'ed) that exist, under the project and
    /// elsewhere.
    project: usize,
    system: usize,
    /// Paths looked up and not found.
    absent: usize,
    /// Programs executed (counted in `project` or `system` too).
    programs: usize,
    listings: usize,
    env: usize,
    /// Every path input (present or absent): what a hit stats and a build fingerprints.
    paths: Vec<PathBuf>,
    /// The size of the regular files among them: what a traced build hashes.
    bytes: u64,
}

impl Inputs {
    fn of(engine: &Engine, recipe: &str, root: &Path) -> Result<Inputs> {
        let graph = engine.graph()?.to_json();
        let nodes = graph["nodes"].as_array().context("graph nodes")?;
        let edges = graph["edges"].as_array().context("graph edges")?;
        let object = nodes
            .iter()
            .find(|n| n["type"] == "object" && n["recipe"] == recipe)
            .with_context(|| format!("no stored object of `{recipe}`"))?;
        let id = object["id"].as_u64().context("node id")?;
        let by_id: BTreeMap<u64, _> = nodes
            .iter()
            .filter_map(|n| Some((n["id"].as_u64()?, n)))
            .collect();
        let mut counts = Inputs::default();
        for edge in edges.iter().filter(|e| e["from"].as_u64() == Some(id)) {
            let Some(node) = edge["to"].as_u64().and_then(|to| by_id.get(&to)) else {
                continue;
            };
            counts.total += 1;
            let name = node["name"].as_str().unwrap_or_default();
            match node["kind"].as_str().unwrap_or_default() {
                "env" => counts.env += 1,
                "dir" => counts.listings += 1,
                kind => {
                    let path = Path::new(name);
                    counts.paths.push(path.to_owned());
                    if let Ok(meta) = std::fs::metadata(path)
                        && meta.is_file()
                    {
                        counts.bytes += meta.len();
                    }
                    if std::fs::symlink_metadata(path).is_err() {
                        counts.absent += 1;
                    } else if path.starts_with(root) {
                        counts.project += 1;
                    } else {
                        counts.system += 1;
                    }
                    if kind == "module" {
                        counts.programs += 1;
                    }
                }
            }
        }
        Ok(counts)
    }

    /// The regular files among the paths (what a declaration of the same files names),
    /// leaving out paths the configuration would read as globs.
    fn files(&self) -> Vec<String> {
        self.paths
            .iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.contains(['*', '?', '[', '{']))
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "{} inputs: {} project paths, {} system paths ({} programs), {} absent paths, {} listings, {} env",
            self.total,
            self.project,
            self.system,
            self.programs,
            self.absent,
            self.listings,
            self.env
        )
    }
}

/// Seconds to fingerprint every path of a trace, as a traced build does once its command
/// has exited (each file hashed with blake3, absences and directories by their lookup).
fn fingerprint_all(paths: &[PathBuf]) -> f64 {
    let start = Instant::now();
    for p in paths {
        let _ = std::hint::black_box(trove_fingerprint::fingerprint_file(p));
    }
    start.elapsed().as_secs_f64()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The size of the store's SQLite write-ahead logs (`*-wal` files) under `root/.trove`.
fn wal_bytes(root: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() && depth > 0 => walk(&path, depth - 1),
                    Ok(t) if t.is_file() && path.to_string_lossy().ends_with("-wal") => {
                        e.metadata().map_or(0, |m| m.len())
                    }
                    _ => 0,
                }
            })
            .sum()
    }
    walk(&root.join(".trove"), 2)
}

/// A build row: `trove run --force` traced against untraced; the bare command and the
/// fingerprinting of the traced paths join the rotation, for the note.
fn build_row(
    project: &Project,
    case: &str,
    (traced, untraced): (&str, &str),
    argv: &[String],
    inputs: &Inputs,
    reps: usize,
    goal: f64,
) -> Result<Row> {
    let out = project.root.join(".bare-out");
    let mut t = || time(project.trove_run(traced, true));
    let mut u = || time(project.trove_run(untraced, true));
    let mut b = || time(project.bare(argv, &out).expect("bare command"));
    let mut f = || here(fingerprint_all(&inputs.paths));
    let wal_before = wal_bytes(&project.root);
    let m = rotate(reps, &mut [&mut t, &mut u, &mut b, &mut f]);
    let wal_after = wal_bytes(&project.root);
    Ok(Row::ratio_at_most(
        case,
        m[0].wall,
        m[1].wall,
        goal,
        &format!(
            "median of {reps}, whole `trove run --force` processes, alternated; CPU time of the \
             process tree: {} traced, {} untraced ({:.2}); the bare command: {} (CPU {}); \
             fingerprinting the trace's {} paths, {} of files hashed (the traced build does it \
             after the command): {}; the index's write-ahead log, which every `trove run` \
             reads when it opens the index, went from {} to {} over the row; traced object: {}",
            fmt_secs(m[0].cpu),
            fmt_secs(m[1].cpu),
            m[0].cpu / m[1].cpu,
            fmt_secs(m[2].wall),
            fmt_secs(m[2].cpu),
            inputs.paths.len(),
            trove::format_size(inputs.bytes),
            fmt_secs(m[3].wall),
            mib(wal_before),
            mib(wal_after),
            inputs.describe()
        ),
    ))
}

pub(crate) fn trace(scale: Scale) -> Result<Vec<Row>> {
    let project = Project::make()?;
    let root = &project.root;
    // Past the racy window, so a hit is a stat per file, not a re-hash (as for a real
    // project whose files were not saved in the last two seconds).
    wait_until(
        Instant::now(),
        Duration::from_nanos(trove_fingerprint::RACY_WINDOW_NS as u64) + Duration::from_millis(200),
    );
    // First builds: python writes its __pycache__ (untraced first, so the traced build
    // reads the bytecode as every later run does), gcc warms the page cache.
    for recipe in ["py-untraced", "py-traced", "cc-untraced", "cc-traced"] {
        run_ok(&mut project.trove_run(recipe, true))?;
    }
    // The bytecode just written must leave the racy window too before objects are stored.
    wait_until(
        Instant::now(),
        Duration::from_nanos(trove_fingerprint::RACY_WINDOW_NS as u64) + Duration::from_millis(200),
    );
    for recipe in ["py-untraced", "py-traced", "cc-untraced", "cc-traced"] {
        run_ok(&mut project.trove_run(recipe, true))?;
        let hit = run_ok(project.trove_run(recipe, false).arg("--explain"))?;
        let reason = String::from_utf8_lossy(&hit.stderr).trim().to_owned();
        ensure!(
            reason.starts_with("hit"),
            "`trove run {recipe}` after a build was not a hit: {reason}"
        );
    }
    // The comparison: a declared recipe with the same files the traced compile
    // read (every regular file of its trace, system files included), built as many times
    // as the traced one so far (twice), so both keys hold as many stored variants (a disk
    // hit reads every variant's row).
    let same = {
        let engine = Engine::open(Config::load(&root.join("trove.ron"))?)?;
        Inputs::of(&engine, "cc-traced", root)?.files()
    };
    std::fs::write(
        root.join("trove.ron"),
        crate::trace_project::config(&project.python, &same),
    )?;
    for _ in 0..2 {
        run_ok(&mut project.trove_run("cc-declared", true))?;
    }
    let hit = run_ok(project.trove_run("cc-declared", false).arg("--explain"))?;
    let reason = String::from_utf8_lossy(&hit.stderr).trim().to_owned();
    ensure!(
        reason.starts_with("hit"),
        "`trove run cc-declared` after a build was not a hit: {reason}"
    );
    let config = Config::load(&root.join("trove.ron"))?;
    let engine = Engine::open(config.clone())?;
    let cc_same = Inputs::of(&engine, "cc-declared", root)?;
    let cc_inputs = Inputs::of(&engine, "cc-traced", root)?;
    let cc_declared = Inputs::of(&engine, "cc-untraced", root)?;
    let py_inputs = Inputs::of(&engine, "py-traced", root)?;
    drop(engine);
    ensure!(
        cc_inputs.system > 0 && py_inputs.system > 0,
        "the traced objects hold no system files: the tracer did not run (see `trove run cc-traced` on stderr)"
    );
    eprintln!("   cc-traced: {}", cc_inputs.describe());
    eprintln!("   cc-untraced: {}", cc_declared.describe());
    eprintln!("   cc-declared: {}", cc_same.describe());
    eprintln!("   py-traced: {}", py_inputs.describe());

    // The hit: the engine in-process, a new one per repetition (opened outside the
    // timing), so each get is a disk hit that decodes and validates the whole trace and
    // reads the blob; only the get is timed.
    let recipe = |name: &str| command_recipe(&config, name);
    let (traced, declared, same_files) = (
        recipe("cc-traced")?,
        recipe("cc-untraced")?,
        recipe("cc-declared")?,
    );
    // Per contender: files checked, absences vouched for by their directory, and directory
    // inputs answered without a `stat` of their own, per hit.
    let counted = std::cell::RefCell::new([(0u64, 0u64, 0u64); 3]);
    let hit = |recipe: &CommandRecipe, which: usize| -> Sample {
        let (t, stats) = disk_hit(&config, recipe);
        counted.borrow_mut()[which] = (
            stats.files_checked,
            stats.absences_vouched,
            stats.dirs_answered,
        );
        here(t)
    };
    // A hit is a fraction of a millisecond, and one in a few lands on a busy moment of
    // this shared machine: the median of 41 moved by +-0.08 from run to run, the median
    // of 201 (`--child trace-hits`) by +-0.02. Each repetition costs an engine open, a few
    // ms.
    let reps = scale.pick(201, 61);
    let mut t = || hit(&traced, 0);
    let mut d = || hit(&declared, 1);
    let mut sf = || hit(&same_files, 2);
    // The floor of validating a trace: one lookup per path, on this thread.
    let mut s = || {
        let start = Instant::now();
        for p in &cc_inputs.paths {
            let _ = std::hint::black_box(trove_fingerprint::Stat::of(p));
        }
        here(start.elapsed().as_secs_f64())
    };
    let m = rotate(reps, &mut [&mut t, &mut sf, &mut d, &mut s]);
    // The same comparison as whole `trove run` processes (what a user waits for).
    let mut pt = || time(project.trove_run("cc-traced", false));
    let mut pd = || time(project.trove_run("cc-declared", false));
    let process_reps = scale.pick(41, 15);
    let p = rotate(process_reps, &mut [&mut pt, &mut pd]);
    let [(ft, vt, dt), (fd, _, _), (fs, _, _)] = *counted.borrow();
    let hit_row = Row::ratio_at_most(
        "gcc object: disk hit of the traced one (vs declared with the same files)",
        m[0].wall,
        m[1].wall,
        1.2,
        &format!(
            "median of {reps} Engine::get_explained disk hits, a new engine each (open not timed); \
             per hit: traced {ft} files checked ({dt} of them directories a group's stat \
             answered) and {vt} absences vouched for by their directory, declared {fs} files checked; declared object: {}; as whole `trove run` \
             processes (median of {process_reps}): {} vs {} ({:.2})",
            cc_same.describe(),
            fmt_secs(p[0].wall),
            fmt_secs(p[1].wall),
            p[0].wall / p[1].wall
        ),
    );
    let reference_row = Row::reference(
        "gcc object: disk hit of the traced one (vs the 13 project files declared; reference, no goal)",
        m[0].wall,
        m[2].wall,
        &format!(
            "the same {reps} traced hits against the declaration one writes without a tracer \
             (it checks {fd} files, not the system headers, compiler or libraries the traced \
             one does); a serial stat of every traced path, absences included: {}; declared \
             object: {}",
            fmt_secs(m[3].wall),
            cc_declared.describe(),
        ),
    );

    // The builds come after the hits: each forced build grows the index's write-ahead
    // log, and every `trove run` process reads all of it when it opens the index.
    let gcc: Vec<String> = GCC.iter().map(|w| (*w).to_owned()).collect();
    let python = vec![project.python.clone(), "py/main.py".to_owned()];
    let gcc_row = build_row(
        &project,
        "gcc -O2 -c with 12 headers: build traced (vs `trace: false`)",
        ("cc-traced", "cc-untraced"),
        &gcc,
        &cc_inputs,
        scale.pick(31, 7),
        1.10,
    )?;
    let py_row = build_row(
        &project,
        "python3 importing 30 modules: build traced (vs `trace: false`)",
        ("py-traced", "py-untraced"),
        &python,
        &py_inputs,
        scale.pick(41, 9),
        1.25,
    )?;
    Ok(vec![gcc_row, py_row, hit_row, reference_row])
}

/// The recipe `name` of the project's configuration.
fn command_recipe(config: &Config, name: &str) -> Result<CommandRecipe> {
    let rc = config.recipes.get(name).cloned();
    Ok(CommandRecipe::new(
        name,
        rc.with_context(|| format!("no recipe `{name}`"))?,
    ))
}

/// One disk hit of `recipe` on a newly opened engine (the open is not timed): its
/// seconds and what the engine counted.
fn disk_hit(config: &Config, recipe: &CommandRecipe) -> (f64, trove::Stats) {
    let engine = Engine::open(config.clone()).expect("open the engine");
    let start = Instant::now();
    let served = engine.get_explained(recipe, &Vec::new()).expect("disk hit");
    let t = start.elapsed().as_secs_f64();
    assert!(
        matches!(served.reason, Reason::HitDisk),
        "expected a disk hit, got `{}`",
        served.reason
    );
    (t, engine.stats())
}

/// One disk hit of `recipe` on `engine`, then the engine dropped (as the row drops it):
/// the function callgrind collects (`--toggle-collect='*hot_loop*'`). Returns its
/// seconds (the drop not included).
fn hot_loop_trace_hit(engine: Engine, recipe: &CommandRecipe) -> f64 {
    let start = Instant::now();
    let served = engine.get_explained(recipe, &Vec::new()).expect("disk hit");
    let spent = start.elapsed().as_secs_f64();
    assert!(matches!(served.reason, Reason::HitDisk));
    spent
}

/// `--child trace-hit PROJECT RECIPE ITERS`: the hit row's loop on a project kept with
/// `TROVE_BENCH_KEEP=1`, for a profiler: each hit on an engine opened just before it
/// (not timed), as in the row.
pub(crate) fn profile_hit(project: &Path, recipe: &str, iters: usize) -> Result<()> {
    let config = Config::load(&project.join("trove.ron"))?;
    let recipe = command_recipe(&config, recipe)?;
    let mut spent = 0.0;
    for _ in 0..iters {
        spent += hot_loop_trace_hit(Engine::open(config.clone())?, &recipe);
    }
    println!(
        "trace-hit: {} per hit",
        fmt_secs(spent / iters.max(1) as f64)
    );
    Ok(())
}

/// `--child trace-hits PROJECT REPS`: the hit row alone on a kept project (traced against
/// declared with the same files, alternated, a new engine each), to compare two builds
/// of trove quickly.
pub(crate) fn hit_pair(project: &Path, reps: usize) -> Result<()> {
    let config = Config::load(&project.join("trove.ron"))?;
    let (traced, declared) = (
        command_recipe(&config, "cc-traced")?,
        command_recipe(&config, "cc-declared")?,
    );
    let hit = |recipe: &CommandRecipe| here(disk_hit(&config, recipe).0);
    let m = rotate(reps, &mut [&mut || hit(&traced), &mut || hit(&declared)]);
    println!(
        "traced {} declared {} ratio {:.3}",
        fmt_secs(m[0].wall),
        fmt_secs(m[1].wall),
        m[0].wall / m[1].wall
    );
    Ok(())
}
