//! `trove-probe`: a minimal trove client for the multi-process suites (`tests.rs`); its
//! recipes are in `recipes.rs`, shared with the suites. Never shipped.
//!
//! - `trove-probe get DIR KEY SLEEP_MS`: serves the object for KEY from the store in DIR,
//!   building it (appending `building KEY` and then `built KEY` to `DIR/builds.log`, with
//!   O_APPEND, and sleeping SLEEP_MS in between) when needed; prints the value.
//! - `trove-probe try-get DIR KEY`: the same with no sleep, but never panics: prints
//!   `served VALUE (REASON)` and exits 0, or `error: ERROR` and exits 1.
//! - `trove-probe many DIR KEYS THREADS SLEEP_MS`: THREADS threads each ask for the keys
//!   `0` to `KEYS - 1` (each thread starting at another key) through one engine; builds
//!   are logged as with `get`.
//! - `trove-probe publish-loop DIR`: builds keys `0`, `1`, ... with large outputs until
//!   killed, printing each key once it is served.
//! - `trove-probe check-large DIR KEY`: serves the large object KEY and exits 0 when its
//!   bytes are right, printing the reason.
//! - `trove-probe file DIR`: serves the object built from `DIR/input.txt` (its content
//!   repeated to 64 KiB), prints the reason, exits 0 when the bytes match the file.
//!
//! Warnings of the engine (a store that could not be written, for example) go to stderr.
//! With `TROVE_PROBE_FSIZE=BYTES` the process runs under `RLIMIT_FSIZE` (and ignores
//! `SIGXFSZ`, so an oversized write fails with `EFBIG` instead of killing it). Built with
//! the `failpoints` feature, `FAILPOINTS` configures the store's fail points.

use std::path::{Path, PathBuf};
use std::time::Duration;

use trove::Engine;

use crate::recipes::{FileCopy, Large, Slow, expand, large_of, value_of};

mod recipes;

/// Applies `TROVE_PROBE_FSIZE`: a file size limit, with `SIGXFSZ` ignored so that an
/// oversized write fails with `EFBIG` (as on a full disk) instead of killing the process.
fn limit_file_size() {
    let Ok(limit) = std::env::var("TROVE_PROBE_FSIZE") else {
        return;
    };
    let bytes: libc::rlim_t = limit.parse().expect("TROVE_PROBE_FSIZE is a number");
    let rlim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: plain system calls on values owned by this function; the process is still
    // single-threaded here.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlim), 0, "setrlimit");
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    limit_file_size();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: trove-probe get DIR KEY SLEEP_MS | try-get DIR KEY | many DIR KEYS THREADS SLEEP_MS | publish-loop DIR | check-large DIR KEY | file DIR";
    let Some(mode) = args.first() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    match (mode.as_str(), &args[1..]) {
        ("get", [dir, key, sleep]) => {
            let dir = PathBuf::from(dir);
            let sleep = Duration::from_millis(sleep.parse().expect("SLEEP_MS is a number"));
            let engine = Engine::open_in(&dir).expect("the store opens");
            let value = engine
                .get(&Slow { dir, sleep }, key)
                .expect("the object is served");
            println!("{value}");
        }
        ("try-get", [dir, key]) => {
            let dir = PathBuf::from(dir);
            let slow = Slow {
                dir: dir.clone(),
                sleep: Duration::ZERO,
            };
            match Engine::open_in(&dir).and_then(|e| e.get_explained(&slow, key)) {
                Ok(served) if *served.value == value_of(key) => {
                    println!("served {} ({})", served.value, served.reason);
                }
                Ok(served) => {
                    println!("wrong value {:?} ({})", served.value, served.reason);
                    std::process::exit(3);
                }
                Err(e) => {
                    println!("error: {e}");
                    std::process::exit(1);
                }
            }
        }
        ("many", [dir, keys, threads, sleep]) => {
            let dir = PathBuf::from(dir);
            let keys: usize = keys.parse().expect("KEYS is a number");
            let threads: usize = threads.parse().expect("THREADS is a number");
            let sleep = Duration::from_millis(sleep.parse().expect("SLEEP_MS is a number"));
            let engine = Engine::open_in(&dir).expect("the store opens");
            let start = std::process::id() as usize;
            std::thread::scope(|s| {
                for t in 0..threads {
                    let engine = &engine;
                    let recipe = Slow {
                        dir: dir.clone(),
                        sleep,
                    };
                    s.spawn(move || {
                        for i in 0..keys {
                            let key = ((start + t * 7 + i) % keys).to_string();
                            let value = engine.get(&recipe, &key).expect("the object is served");
                            assert_eq!(*value, value_of(&key));
                        }
                    });
                }
            });
        }
        ("publish-loop", [dir]) => {
            let engine = Engine::open_in(Path::new(dir)).expect("the store opens");
            for i in 0u64.. {
                let key = (i % 64).to_string();
                engine.get(&Large, &key).expect("the object is served");
                println!("{key}");
            }
        }
        ("check-large", [dir, key]) => {
            // Exits 0 when the served object (stored or rebuilt) has the right bytes.
            let engine = Engine::open_in(Path::new(dir)).expect("the store opens");
            let served = engine
                .get_explained(&Large, key)
                .expect("the object is served");
            let ok = *served.value == large_of(key);
            println!("{}", served.reason);
            std::process::exit(if ok { 0 } else { 1 });
        }
        ("file", [dir]) => {
            let dir = PathBuf::from(dir);
            let engine = Engine::open_in(&dir).expect("the store opens");
            let served = engine
                .get_explained(&FileCopy, &"input.txt".to_owned())
                .expect("the object is served");
            let now = std::fs::read(dir.join("input.txt")).expect("input.txt is readable");
            println!("{}", served.reason);
            std::process::exit(if *served.value == expand(&now) { 0 } else { 1 });
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
