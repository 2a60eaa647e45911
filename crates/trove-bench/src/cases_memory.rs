//! Memory-tier cases: a hit with small arguments, a hit with the watcher, revalidation by
//! `stat`. Each set-up is shared with the `--child profile` entry, so callgrind sees the
//! same loop the table measures.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use trove::{Config, Engine, Reason, Recipe};

use crate::Scale;
use crate::measure::{Row, alternate, per_op, wait_until};
use crate::recipes::{ManyFiles, Small, SmallArgs};

/// Files of the revalidation and watcher cases.
pub(crate) const FILES: usize = 10_000;

fn small_args() -> SmallArgs {
    ("EU prices 2024".to_owned(), 7)
}

type Baseline = Mutex<HashMap<[u8; 32], Arc<Vec<u64>>>>;

/// An engine with the small object hot, and the baseline map holding the same object.
pub(crate) fn memory_setup(dir: &Path) -> Result<(Engine, Baseline)> {
    let engine = Engine::open_in(dir)?;
    let args = small_args();
    let object = engine.get(&Small, &args)?;
    let served = engine.get_explained(&Small, &args)?;
    ensure!(
        matches!(served.reason, Reason::HitMemory),
        "expected a memory hit, got `{}`",
        served.reason
    );
    let mut map = HashMap::new();
    map.insert(trove_fingerprint::key_of(Small::NAME, &args)?.0, object);
    Ok((engine, Mutex::new(map)))
}

/// The trove side of the memory hit: `iters` gets.
#[inline(never)]
pub(crate) fn hot_loop_memory_hit(engine: &Engine, iters: u64) -> f64 {
    let args = small_args();
    per_op(iters, || {
        engine.get(&Small, black_box(&args)).expect("memory hit")
    })
}

/// The baseline: key hashing over the same canonical encoding, a lock, a map lookup.
#[inline(never)]
fn hot_loop_hashmap(map: &Baseline, iters: u64) -> f64 {
    let args = small_args();
    per_op(iters, || {
        let key = trove_fingerprint::key_of(Small::NAME, black_box(&args)).expect("key");
        map.lock().expect("lock").get(&key.0).cloned()
    })
}

pub(crate) fn memory_hit(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let (engine, map) = memory_setup(dir.path())?;
    let iters = scale.pick(200_000, 50_000);
    let reps = scale.pick(15, 7);
    let (t, b) = alternate(
        reps,
        || hot_loop_memory_hit(&engine, iters),
        || hot_loop_hashmap(&map, iters),
    );
    Ok(vec![Row::ratio_at_most(
        "memory hit, small args (vs Mutex<HashMap> + key_of)",
        t,
        b,
        2.0,
        &format!("median of {reps} x {iters} gets"),
    )])
}

/// Makes `FILES` small files under `dir/data`, 100 per directory; returns their absolute
/// paths and when they were written.
pub(crate) fn make_files(dir: &Path) -> Result<(Vec<PathBuf>, Instant)> {
    let mut files = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let sub = dir.join("data").join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        let path = sub.join(format!("f{i:05}.txt"));
        std::fs::write(&path, format!("row {i}: some small input file\n"))?;
        files.push(path);
    }
    Ok((files, Instant::now()))
}

/// An engine whose configuration watches `data`, with the 10,000-file object built (after
/// the racy window has passed, so its files are checked by `stat` alone).
pub(crate) fn files_setup(dir: &Path) -> Result<(Engine, ManyFiles)> {
    let (files, written) = make_files(dir)?;
    let config = Config::parse("(watch: (roots: [\"data\"]))", &dir.join("trove.ron"))?;
    let engine = Engine::open(config)?;
    // Files modified within RACY_WINDOW_NS of their fingerprint are re-hashed on every
    // check; a real project's files are older than that.
    let racy = Duration::from_nanos(trove_fingerprint::RACY_WINDOW_NS as u64);
    wait_until(written, racy + Duration::from_millis(200));
    let recipe = ManyFiles {
        files: Arc::new(files),
    };
    engine.get(&recipe, &1)?;
    let served = engine.get_explained(&recipe, &1)?;
    ensure!(
        matches!(served.reason, Reason::HitMemory),
        "expected a memory hit, got `{}`",
        served.reason
    );
    Ok((engine, recipe))
}

/// `iters` gets of the 10,000-file object.
#[inline(never)]
pub(crate) fn hot_loop_many_files(engine: &Engine, recipe: &ManyFiles, iters: u64) -> f64 {
    per_op(iters, || engine.get(recipe, &1).expect("memory hit"))
}

#[inline(never)]
fn serial_stat(files: &[PathBuf], iters: u64) -> f64 {
    per_op(iters, || {
        let mut n = 0u64;
        for f in files {
            n += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        }
        n
    })
}

fn parallel_stat(files: &[PathBuf], iters: u64, threads: usize) -> f64 {
    per_op(iters, || {
        let chunk = files.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
                            .sum::<u64>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .sum::<u64>()
        })
    })
}

pub(crate) fn revalidate(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let (engine, recipe) = files_setup(dir.path())?;
    let iters = scale.pick(20, 10);
    let reps = scale.pick(15, 7);
    let files = recipe.files.clone();
    let (t, b) = alternate(
        reps,
        || hot_loop_many_files(&engine, &recipe, iters),
        || serial_stat(&files, iters),
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (p, b2) = alternate(
        reps,
        || parallel_stat(&files, iters, threads),
        || serial_stat(&files, iters),
    );
    let note = format!("{FILES} files, no watcher; median of {reps} x {iters} gets");
    Ok(vec![
        Row::ratio_at_most(
            "revalidate 10k unchanged files (vs serial fs::metadata)",
            t,
            b,
            1.2,
            &note,
        ),
        Row::ratio_at_most(
            "revalidate 10k files, parallel-stat goal (vs serial fs::metadata)",
            t,
            b,
            1.0,
            "the same ratio against the issue's second goal: below 1.0 needs stat on several threads",
        ),
        Row::ratio_at_most(
            "reference: parallel fs::metadata loop (vs serial)",
            p,
            b2,
            1.0,
            &format!(
                "{threads} threads, std::thread::scope; shows what parallel stat could give on this machine"
            ),
        ),
    ])
}

/// An engine with the watcher running, the 10,000-file object verified once under it, and
/// the no-input object hot.
pub(crate) fn watch_setup(dir: &Path) -> Result<(Engine, ManyFiles, trove::WatchGuard)> {
    let (engine, recipe) = files_setup(dir)?;
    let guard = engine.watch().context("starting the watcher")?;
    let args = small_args();
    engine.get(&Small, &args)?;
    // The first get under the watcher validates by stat and claims freshness.
    for _ in 0..3 {
        engine.get(&recipe, &1)?;
        engine.get(&Small, &args)?;
    }
    Ok((engine, recipe, guard))
}

pub(crate) fn watch_hit(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let (engine, recipe, _guard) = watch_setup(dir.path())?;
    // Is the watched path really free of system calls? One get must be far below the
    // 10,000 stats it replaces.
    let one = per_op(10, || engine.get(&recipe, &1));
    let iters = scale.pick(100_000, 20_000);
    let reps = scale.pick(15, 7);
    let (t, b) = alternate(
        reps,
        || hot_loop_many_files(&engine, &recipe, iters),
        || hot_loop_memory_hit(&engine, iters),
    );
    Ok(vec![Row::ratio_at_most(
        "memory hit with watcher, 10k-file object (vs no-input object)",
        t,
        b,
        1.5,
        &format!(
            "median of {reps} x {iters} gets; first gets after watch: {}",
            crate::measure::fmt_secs(one)
        ),
    )])
}

/// `--child profile NAME ITERS`: the set-up of a memory case, then only its trove loop,
/// for `valgrind --tool=callgrind --toggle-collect='*hot_loop*'`.
pub(crate) fn profile(name: &str, iters: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let secs = match name {
        "memory-hit" => {
            let (engine, _) = memory_setup(dir.path())?;
            hot_loop_memory_hit(&engine, iters)
        }
        "revalidate" => {
            let (engine, recipe) = files_setup(dir.path())?;
            hot_loop_many_files(&engine, &recipe, iters)
        }
        "watch-hit" => {
            let (engine, recipe, _guard) = watch_setup(dir.path())?;
            hot_loop_many_files(&engine, &recipe, iters)
        }
        other => anyhow::bail!("no profile for `{other}`: memory-hit, revalidate, watch-hit"),
    };
    println!("{name}: {} per get", crate::measure::fmt_secs(secs));
    Ok(())
}
