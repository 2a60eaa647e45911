//! Whole-process cases (`trove run` against `cat` and `bkt`), single flight across
//! threads and processes, and the `--child` entry points the harness re-executes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use trove::{Engine, Reason};

use crate::Scale;
use crate::measure::{Met, Row, alternate, fmt_secs, peak_rss, quantile, wait_until, wall_ns};
use crate::recipes::{Bytes, Cold};

const MIB: u64 = 1 << 20;

/// `target/<profile>/`, where this binary and the release `trove` live.
pub(crate) fn exe_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .context("the executable has no directory")?
        .to_owned())
}

pub(crate) fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

/// `bkt`: on PATH, in `target/bench-tools/bin`, or installed there with cargo.
fn find_bkt() -> Result<PathBuf> {
    if let Ok(out) = Command::new("bkt").arg("--version").output()
        && out.status.success()
    {
        return Ok(PathBuf::from("bkt"));
    }
    let target = exe_dir()?
        .parent()
        .context("no target directory")?
        .to_owned();
    let root = target.join("bench-tools");
    let bkt = root.join("bin").join("bkt");
    if bkt.is_file() {
        return Ok(bkt);
    }
    eprintln!(
        "   installing bkt with `cargo install bkt --root {}`",
        root.display()
    );
    let out = Command::new("cargo")
        .args(["install", "--quiet", "bkt", "--root"])
        .arg(&root)
        .output()
        .context("running cargo install bkt")?;
    if !out.status.success() || !bkt.is_file() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "cargo install bkt failed: {}",
            err.lines().last().unwrap_or("no message")
        );
    }
    Ok(bkt)
}

/// A project whose recipe `blob` prints `data` with `cat`, past the racy window.
fn blob_project(data: &[u8]) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("data.bin"), data)?;
    std::fs::write(
        dir.path().join("trove.ron"),
        "(recipes: { \"blob\": (command: [\"cat\", \"data.bin\"], inputs: [\"data.bin\"]) })\n",
    )?;
    // Past the racy window, so a hit is a stat, not a re-hash (as for a real project).
    wait_until(
        Instant::now(),
        Duration::from_nanos(trove_fingerprint::RACY_WINDOW_NS as u64) + Duration::from_millis(200),
    );
    Ok(dir)
}

pub(crate) fn run_hit(scale: Scale) -> Result<Vec<Row>> {
    let trove = exe_dir()?.join("trove");
    if !trove.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release -p trove-cli`",
            trove.display()
        );
    }
    let data = Bytes::make(MIB, 5);
    let dir = blob_project(&data)?;
    let run_in = |dir: &Path| {
        let mut c = Command::new(&trove);
        c.args(["run", "blob"]).current_dir(dir);
        c
    };
    let trove_run = || run_in(dir.path());
    let first = run_ok(&mut trove_run())?;
    ensure!(first.stdout == data, "trove run printed other bytes");
    let second = run_ok(trove_run().arg("--explain"))?;
    let reason = String::from_utf8_lossy(&second.stderr).trim().to_owned();
    ensure!(second.stdout == data, "trove run (hit) printed other bytes");
    ensure!(
        reason.contains("hit"),
        "the second trove run was not a hit: {reason}"
    );
    let cat = || {
        let mut c = Command::new("cat");
        c.arg("data.bin").current_dir(dir.path());
        c
    };
    let time = |mut c: Command| {
        let start = Instant::now();
        let out = run_ok(&mut c).expect("command");
        let t = start.elapsed().as_secs_f64();
        assert_eq!(out.stdout.len(), data.len());
        t
    };
    let reps = scale.pick(41, 15);
    let (t, b) = alternate(reps, || time(trove_run()), || time(cat()));
    let mut rows = vec![Row::ratio_at_most(
        "`trove run` hit of 1 MiB, whole process (vs cat)",
        t,
        b,
        3.0,
        &format!("median of {reps}; stdout read through a pipe; trove says `{reason}`"),
    )];
    match find_bkt() {
        Err(e) => rows.push(Row::not_run(
            "`trove run` hit of 1 MiB (vs bkt hit)",
            "< 1.0",
            &format!("{e:#}"),
        )),
        Ok(bkt) => {
            let cache = dir.path().join("bkt-cache");
            let bkt_run = || {
                let mut c = Command::new(&bkt);
                c.arg(format!("--cache-dir={}", cache.display()))
                    .args(["--ttl=1d", "--", "cat", "data.bin"])
                    .current_dir(dir.path());
                c
            };
            let first = run_ok(&mut bkt_run())?;
            ensure!(first.stdout == data, "bkt printed other bytes");
            let (t, b) = alternate(reps, || time(trove_run()), || time(bkt_run()));
            rows.push(Row::ratio_at_most(
                "`trove run` hit of 1 MiB (vs bkt hit)",
                t,
                b,
                1.0,
                &format!("median of {reps}; bkt 0.8 with --ttl=1d, warm cache"),
            ));
        }
    }
    // Every hit records its use in the index: a store used for a long time is as fast as
    // a new one only while its write-ahead log stays short (`trove_store::WAL_EMPTY_AT`).
    let uses = scale.pick(2000, 600);
    for _ in 0..uses {
        run_ok(&mut trove_run())?;
    }
    let fresh = blob_project(&data)?;
    run_ok(&mut run_in(fresh.path()))?;
    let wal = |dir: &Path| {
        std::fs::metadata(dir.join(".trove/v1/index.sqlite-wal")).map_or(0, |m| m.len())
    };
    let (used_wal, fresh_wal) = (wal(dir.path()), wal(fresh.path()));
    let (u, f) = alternate(reps, || time(trove_run()), || time(run_in(fresh.path())));
    rows.push(Row::ratio_at_most(
        &format!("`trove run` hit after {uses} earlier hits (vs on a new store)"),
        u,
        f,
        1.2,
        &format!(
            "median of {reps}, alternated; the index's write-ahead log, which a process reads \
             when it opens the index: {} after those hits, {} on the new store",
            trove::format_size(used_wal),
            trove::format_size(fresh_wal)
        ),
    ));
    Ok(rows)
}

/// Rows for one single-flight run: the number of builds and how long after the build's
/// end each waiter was served.
fn flight_rows(who: &str, ends: &[i64], received: &[i64], note: &str) -> Vec<Row> {
    let builds = ends.len();
    let mut lags: Vec<f64> = match ends.first() {
        Some(end) => received.iter().map(|r| (r - end) as f64 / 1e9).collect(),
        None => Vec::new(),
    };
    let max = lags.iter().copied().fold(f64::NAN, f64::max);
    let p50 = quantile(&mut lags, 0.5);
    vec![
        Row {
            case: format!("{who} on one cold key: builds"),
            trove: builds.to_string(),
            baseline: "-".to_owned(),
            ratio: None,
            goal: "exactly 1".to_owned(),
            met: if builds == 1 { Met::Yes } else { Met::No },
            note: note.to_owned(),
        },
        Row {
            case: format!("{who} on one cold key: last served after build end"),
            trove: fmt_secs(max),
            baseline: "-".to_owned(),
            ratio: None,
            goal: "<= 5 ms".to_owned(),
            met: if max <= 0.005 { Met::Yes } else { Met::No },
            note: format!(
                "p50 {}; measured from the end of the recipe's build fn (publish included)",
                fmt_secs(p50)
            ),
        },
    ]
}

fn read_ends(log: &Path) -> Result<Vec<i64>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| l.trim().parse::<i64>().context("builds.log"))
        .collect()
}

pub(crate) fn cold_key(scale: Scale) -> Result<Vec<Row>> {
    let _ = scale;
    let mut rows = Vec::new();
    // 64 threads of one process.
    {
        let dir = tempfile::tempdir()?;
        let engine = Engine::open_in(dir.path())?;
        let recipe = Cold {
            log: dir.path().join("builds.log"),
            delay: Duration::from_millis(200),
        };
        let barrier = Arc::new(Barrier::new(64));
        let received: Vec<(i64, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let (engine, recipe, barrier) = (&engine, &recipe, barrier.clone());
                    s.spawn(move || {
                        barrier.wait();
                        let served = engine.get_explained(recipe, &1).expect("cold get");
                        (wall_ns(), matches!(served.reason, Reason::Built(_)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let ends = read_ends(&recipe.log)?;
        let times: Vec<i64> = received.iter().map(|r| r.0).collect();
        let built = received.iter().filter(|r| r.1).count();
        rows.extend(flight_rows(
            "64 threads",
            &ends,
            &times,
            &format!("{built} caller(s) answered `built`, the others `built by another caller`"),
        ));
    }
    // 8 processes.
    {
        let dir = tempfile::tempdir()?;
        drop(Engine::open_in(dir.path())?); // the store exists before the race
        let exe = std::env::current_exe()?;
        let children: Vec<_> = (0..8)
            .map(|_| {
                Command::new(&exe)
                    .args(["--child", "cold-key"])
                    .arg(dir.path())
                    .args(["7", "1000"])
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let mut times = Vec::new();
        let mut reasons = Vec::new();
        for child in children {
            let out = child.wait_with_output()?;
            ensure!(out.status.success(), "a cold-key child failed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            for line in text.lines() {
                if let Some(t) = line.strip_prefix("recv ") {
                    times.push(t.trim().parse::<i64>()?);
                } else if let Some(r) = line.strip_prefix("reason ") {
                    reasons.push(r.to_owned());
                }
            }
        }
        ensure!(times.len() == 8, "only {} children reported", times.len());
        let ends = read_ends(&dir.path().join("builds.log"))?;
        let built = reasons.iter().filter(|r| r.starts_with("built")).count();
        let disk = reasons.iter().filter(|r| r.starts_with("hit disk")).count();
        rows.extend(flight_rows(
            "8 processes",
            &ends,
            &times,
            &format!("{built} child answered `built`, {disk} `hit disk` (after waiting on the key's flock)"),
        ));
    }
    Ok(rows)
}

/// The `--child KIND ..` entry points.
pub(crate) fn child(args: &[String]) -> Result<()> {
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("--child {args:?}: missing argument {i}"))
    };
    match arg(0)? {
        "disk-hit" => {
            let engine = Engine::open_in(Path::new(arg(1)?))?;
            let size: u64 = arg(2)?.parse()?;
            let nonce: u64 = arg(3)?.parse()?;
            let served = engine.get_explained(&Bytes, &(size, nonce))?;
            ensure!(
                matches!(served.reason, Reason::HitDisk),
                "expected a disk hit, got `{}`",
                served.reason
            );
            ensure!(served.value.len() as u64 == size);
            println!("rss {}", peak_rss().context("no VmHWM")?);
        }
        "read-file" => {
            let bytes = std::fs::read(arg(1)?)?;
            std::hint::black_box(&bytes);
            println!("rss {}", peak_rss().context("no VmHWM")?);
        }
        "idle" => {
            let engine = Engine::open_in(Path::new(arg(1)?))?;
            std::hint::black_box(&engine);
            println!("rss {}", peak_rss().context("no VmHWM")?);
        }
        "cold-key" => {
            let dir = Path::new(arg(1)?);
            let nonce: u64 = arg(2)?.parse()?;
            let delay = Duration::from_millis(arg(3)?.parse()?);
            let engine = Engine::open_in(dir)?;
            let recipe = Cold {
                log: dir.join("builds.log"),
                delay,
            };
            let served = engine.get_explained(&recipe, &nonce)?;
            let t = wall_ns();
            println!("recv {t}");
            println!("reason {}", served.reason);
        }
        "trace-hit" => {
            crate::cases_trace::profile_hit(Path::new(arg(1)?), arg(2)?, arg(3)?.parse()?)?;
        }
        "trace-hits" => {
            crate::cases_trace::hit_pair(Path::new(arg(1)?), arg(2)?.parse()?)?;
        }
        "profile" => {
            crate::cases_memory::profile(arg(1)?, arg(2)?.parse()?)?;
        }
        other => bail!("unknown child `{other}`"),
    }
    Ok(())
}
