//! A local hit with a shared tier configured against the same hit without one, in the
//! same run: the shared tier must cost nothing when the local one answers (issue 12, goal
//! <= 1.05x). Two engines on one project and one store, one opened from `trove.ron`
//! (no `shared:`), the other from `trove-shared.ron` (the same, plus `shared:` naming the
//! S3 server and the Redis of `.ci/servers`). Prints one `figure:` line per case: the
//! median with the shared tier, without it, and their ratio; each repetition runs both in
//! turn, the order flipping every repetition.
//!
//! ```sh
//! bash .ci/servers start
//! cargo run --release -p trove-examples --example shared_local_hit
//! bash .ci/servers stop
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trove::{BuildError, Config, Cx, Engine, Options, Reason, Recipe, Secret};

const SECRET: &[u8] = b"benchmark secret, sixteen bytes or more";

/// A file's bytes (a 4 KiB page), tracked.
#[derive(Clone)]
struct Page;

impl Recipe for Page {
    const NAME: &'static str = "page";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = Vec<u8>;
    fn build(&self, cx: &mut Cx, path: &String) -> Result<Vec<u8>, BuildError> {
        cx.read(path)
    }
}

fn servers() -> HashMap<String, String> {
    let path = std::env::var_os("TROVE_SHARED_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/servers.env"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} ({e}); run `bash .ci/servers start` first",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Median of `reps` alternating measurements of `with` and `without`, each the mean of
/// `iters` calls.
fn compare(
    reps: usize,
    iters: u32,
    mut with: impl FnMut(),
    mut without: impl FnMut(),
) -> (Duration, Duration) {
    let mut w = Vec::with_capacity(reps);
    let mut wo = Vec::with_capacity(reps);
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..iters {
            f();
        }
        started.elapsed() / iters
    };
    with();
    without();
    for rep in 0..reps {
        if rep % 2 == 0 {
            w.push(time(&mut with));
            wo.push(time(&mut without));
        } else {
            wo.push(time(&mut without));
            w.push(time(&mut with));
        }
    }
    w.sort();
    wo.sort();
    (w[reps / 2], wo[reps / 2])
}

fn figure(name: &str, (with, without): (Duration, Duration), goal: &str, note: &str) {
    let ratio = with.as_secs_f64() / without.as_secs_f64();
    println!(
        "figure: {name}: with shared {with:.2?} without {without:.2?} ratio {ratio:.3} (goal {goal}; {note})"
    );
}

fn open(config: &Path, memory_limit: u64) -> Engine {
    let options = Options {
        memory_limit,
        shared_secret: Some(Secret(SECRET.to_vec())),
        ..Options::default()
    };
    Engine::open_with(Config::load(config).unwrap(), options).unwrap()
}

fn main() {
    let s = servers();
    // The engine hands OpenDAL no credentials: it finds them where every S3 client does.
    // SAFETY: nothing else runs yet; no other thread reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", &s["TROVE_S3_ACCESS_KEY"]);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", &s["TROVE_S3_SECRET_KEY"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("page.txt"), vec![b'p'; 4096]).unwrap();
    std::fs::write(root.join("trove.ron"), "(store: (path: \".trove\"))\n").unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::fs::write(
        root.join("trove-shared.ron"),
        format!(
            "(store: (path: \".trove\"), shared: (url: \"s3://{}/local-hit-{:x}?endpoint={}&region={}\", lease: (url: \"{}\", ttl: \"30s\"), timeout: \"2s\"))\n",
            s["TROVE_S3_BUCKET"],
            nanos % 1_000_000_000_000,
            s["TROVE_S3_ENDPOINT"],
            s["TROVE_S3_REGION"],
            s["TROVE_REDIS_URL"],
        ),
    )
    .unwrap();
    let plain_config = root.join("trove.ron");
    let shared_config = root.join("trove-shared.ron");
    let page = "page.txt".to_owned();

    // Built once (and uploaded by the shared engine), then served from the local tiers.
    let builder = open(&shared_config, 1 << 30);
    let first = builder.get_explained(&Page, &page).unwrap();
    assert!(
        matches!(first.reason, Reason::Built(_)),
        "{:?}",
        first.reason
    );
    builder.finish_uploads();
    drop(builder);

    // Disk hits: engines that keep nothing in memory.
    let with = open(&shared_config, 0);
    let without = open(&plain_config, 0);
    for e in [&with, &without] {
        let served = e.get_explained(&Page, &page).unwrap();
        assert_eq!(served.reason, Reason::HitDisk, "{:?}", served.reason);
    }
    let times = compare(
        31,
        200,
        || {
            with.get(&Page, &page).unwrap();
        },
        || {
            without.get(&Page, &page).unwrap();
        },
    );
    figure(
        "local disk hit of a 4 KiB object (shared tier configured vs none)",
        times,
        "<= 1.05",
        "median of 31 x 200; the shared tier is asked only after the disk tier misses",
    );
    assert_eq!(
        with.stats().shared_hits + with.stats().shared_unavailable,
        0
    );
    drop((with, without));

    // Memory hits.
    let with = open(&shared_config, 1 << 30);
    let without = open(&plain_config, 1 << 30);
    for e in [&with, &without] {
        e.get(&Page, &page).unwrap();
        let served = e.get_explained(&Page, &page).unwrap();
        assert_eq!(served.reason, Reason::HitMemory, "{:?}", served.reason);
    }
    let times = compare(
        31,
        2000,
        || {
            with.get(&Page, &page).unwrap();
        },
        || {
            without.get(&Page, &page).unwrap();
        },
    );
    figure(
        "local memory hit of a 4 KiB object (shared tier configured vs none)",
        times,
        "<= 1.05",
        "median of 31 x 2000",
    );
    drop((with, without));

    // Opening an engine (what every `trove run` does once): the shared tier adds its
    // runtime, its OpenDAL operator and its Redis client, and contacts nothing yet.
    let times = compare(
        11,
        5,
        || drop(open(&shared_config, 1 << 30)),
        || drop(open(&plain_config, 1 << 30)),
    );
    figure(
        "opening an engine (shared tier configured vs none)",
        times,
        "none",
        "median of 11 x 5; once per process",
    );
}
