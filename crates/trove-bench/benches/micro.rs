//! Micro figures (`cargo bench -p trove-bench`): key encoding, a memory-tier hit against a
//! locked `HashMap`, and a file check against a bare `fs::metadata`.
//!
//! These are single numbers on a noisy machine; the ratios that matter are in the
//! `trove-bench` binary, which runs trove and its baseline alternately.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use divan::{Bencher, black_box};
use trove::{BuildError, Cx, Engine, Recipe};

fn main() {
    divan::main();
}

#[derive(Clone)]
struct Small;

impl Recipe for Small {
    const NAME: &'static str = "small";
    const VERSION: u32 = 1;
    type Args = (String, u32);
    type Output = Vec<u64>;
    fn build(&self, _cx: &mut Cx, args: &(String, u32)) -> Result<Vec<u64>, BuildError> {
        Ok(vec![u64::from(args.1); 4])
    }
}

fn args() -> (String, u32) {
    ("EU prices 2024".to_owned(), 7)
}

/// A store and one small file, kept for the whole run.
struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    file: PathBuf,
    state: trove_fingerprint::FileState,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open_in(dir.path()).expect("engine");
    engine.get(&Small, &args()).expect("build");
    let file = dir.path().join("input.txt");
    std::fs::write(&file, "a small input\n").expect("write");
    let (state, _) = trove_fingerprint::fingerprint_file(&file).expect("fingerprint");
    Fixture {
        _dir: dir,
        engine,
        file,
        state,
    }
});

#[divan::bench]
fn key_of_small_args(b: Bencher) {
    let a = args();
    b.bench(|| trove_fingerprint::key_of("small", black_box(&a)));
}

#[divan::bench]
fn encode_small_args(b: Bencher) {
    let a = args();
    b.bench(|| trove_fingerprint::encode(black_box(&a)));
}

#[divan::bench]
fn memory_hit(b: Bencher) {
    let engine = &FIXTURE.engine;
    let a = args();
    b.bench(|| engine.get(&Small, black_box(&a)).expect("hit"));
}

#[divan::bench]
fn hashmap_hit_with_key(b: Bencher) {
    let a = args();
    let mut map = HashMap::new();
    map.insert(
        trove_fingerprint::key_of("small", &a).expect("key").0,
        Arc::new(vec![7u64; 4]),
    );
    let map = Mutex::new(map);
    b.bench(|| {
        let key = trove_fingerprint::key_of("small", black_box(&a)).expect("key");
        map.lock().expect("lock").get(&key.0).cloned()
    });
}

#[divan::bench]
fn check_file_unchanged(b: Bencher) {
    let f = &*FIXTURE;
    b.bench(|| trove_fingerprint::check_file(black_box(&f.state), &f.file).expect("check"));
}

#[divan::bench]
fn fs_metadata(b: Bencher) {
    let f = &*FIXTURE;
    b.bench(|| std::fs::metadata(black_box(&f.file)).expect("stat"));
}
