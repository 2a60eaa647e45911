//! `trove-probe`: a minimal trove client for the multi-process tests.
//!
//! - `trove-probe get DIR KEY SLEEP_MS`: serves the object for KEY from the store in DIR,
//!   building it (appending `building KEY` and then `built KEY` to `DIR/builds.log`, with
//!   O_APPEND, and sleeping SLEEP_MS in between) when needed; prints the value.
//! - `trove-probe publish-loop DIR`: builds keys `0`, `1`, ... with large outputs until
//!   killed, printing each key once it is served.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use trove::{BuildError, Cx, Engine, Recipe};

/// The value of a key, as every build makes it.
fn value_of(key: &str) -> String {
    format!("value of {key}")
}

/// The bytes of a large object, as every build makes it.
fn large_of(key: &str) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..4 << 20)
        .map(|i: u32| seed.wrapping_add((i % 251) as u8))
        .collect()
}

fn log(dir: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("builds.log"))
        .expect("the build log opens");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("the build log is written");
}

#[derive(Clone)]
struct Slow {
    dir: PathBuf,
    sleep: Duration,
}

impl Recipe for Slow {
    const NAME: &'static str = "slow";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = String;
    fn build(&self, _cx: &mut Cx, key: &String) -> Result<String, BuildError> {
        log(&self.dir, &format!("building {key}"));
        std::thread::sleep(self.sleep);
        log(&self.dir, &format!("built {key}"));
        Ok(value_of(key))
    }
}

#[derive(Clone)]
struct Large;

impl Recipe for Large {
    const NAME: &'static str = "large";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = Vec<u8>;
    fn build(&self, _cx: &mut Cx, key: &String) -> Result<Vec<u8>, BuildError> {
        Ok(large_of(key))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: trove-probe get DIR KEY SLEEP_MS | trove-probe publish-loop DIR | trove-probe check-large DIR KEY";
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
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
