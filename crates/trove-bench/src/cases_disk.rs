//! Disk-tier cases: disk hit, publish, fingerprinting, cacache, a 1,000,000-entry index.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use trove::{Config, Engine, Options, Reason};
use trove_store::{BlobId, NewRecord, Store};

use crate::Scale;
use crate::measure::{Met, Row, alternate, fmt_secs, median, once, per_op, quantile};
use crate::recipes::Bytes;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// An engine whose memory tier keeps at most the object just served: getting two keys
/// in turn makes every get a disk hit.
fn cold_memory_engine(dir: &Path) -> Result<Engine> {
    Ok(Engine::open_with(
        Config::default_in(dir),
        Options {
            memory_limit: 0,
            ..Options::default()
        },
    )?)
}

fn reduced(full: u64, ran: u64) -> String {
    if full == ran {
        String::new()
    } else {
        format!(
            "reduced by --quick: {} -> {}; ",
            trove::format_size(full),
            trove::format_size(ran)
        )
    }
}

pub(crate) fn disk_hit(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let engine = cold_memory_engine(dir.path())?;
    let big = scale.pick(256 * MIB, 64 * MIB);
    let cases = [
        (4 * KIB, 4 * KIB, 3.0, 200, scale.pick(15, 7)),
        (MIB, MIB, 1.5, 20, scale.pick(15, 7)),
        (256 * MIB, big, 1.2, 1, scale.pick(7, 5)),
    ];
    let mut rows = Vec::new();
    for (i, &(full, size, goal, iters, reps)) in cases.iter().enumerate() {
        let nonces = [2 * i as u64 + 1, 2 * i as u64 + 2];
        let mut raw = Vec::new();
        for n in nonces {
            engine.get(&Bytes, &(size, n))?;
            let path = dir.path().join(format!("raw-{size}-{n}"));
            std::fs::write(&path, Bytes::make(size, n))?;
            raw.push(path);
        }
        // Every get below alternates the two keys: the other one was evicted.
        for n in nonces {
            let served = engine.get_explained(&Bytes, &(size, n))?;
            ensure!(
                matches!(served.reason, Reason::HitDisk),
                "expected a disk hit for {}, got `{}`",
                trove::format_size(size),
                served.reason
            );
        }
        let mut turn = 0usize;
        let mut turn_b = 0usize;
        let (t, b) = alternate(
            reps,
            || {
                per_op(iters, || {
                    turn += 1;
                    engine
                        .get(&Bytes, &(size, nonces[turn % 2]))
                        .expect("disk hit")
                })
            },
            || {
                per_op(iters, || {
                    turn_b += 1;
                    std::fs::read(&raw[turn_b % 2]).expect("read")
                })
            },
        );
        let served = engine.get_explained(&Bytes, &(size, nonces[(turn + 1) % 2]))?;
        ensure!(
            matches!(served.reason, Reason::HitDisk),
            "the measured gets were not disk hits: `{}`",
            served.reason
        );
        let parts = breakdown(dir.path(), &engine, size, nonces[0], iters.max(20))?;
        rows.push(Row::ratio_at_most(
            &format!("disk hit, Vec<u8> {} (vs fs::read)", trove::format_size(full)),
            t,
            b,
            goal,
            &format!(
                "{}median of {reps} x {iters}; page cache warm for both; includes blake3 verify; {parts}",
                reduced(full, size)
            ),
        ));
    }
    rows.push(peak_rss_row(dir.path(), &engine, big, 256 * MIB)?);
    Ok(rows)
}

/// Where a disk hit's time goes: the store calls it makes, timed one by one through a
/// second handle on the same store.
fn breakdown(dir: &Path, engine: &Engine, size: u64, nonce: u64, iters: u64) -> Result<String> {
    let store = Store::open(&dir.join(".trove"))?;
    let key = engine.key(&Bytes, &(size, nonce))?.0;
    let rec = store
        .variants(&key)?
        .into_iter()
        .next()
        .context("no variant")?;
    let variants = per_op(iters, || store.variants(&key).expect("variants"));
    let read = per_op(iters, || store.read_blob(&rec.blob).expect("read_blob"));
    let touch = per_op(iters, || store.touch(rec.id, 1).expect("touch"));
    Ok(format!(
        "of which Store::variants {}, read_blob {}, touch {}",
        fmt_secs(variants),
        fmt_secs(read),
        fmt_secs(touch)
    ))
}

/// Peak RSS of a child process serving the big object from disk, against its size.
fn peak_rss_row(dir: &Path, engine: &Engine, size: u64, full: u64) -> Result<Row> {
    let nonce = 99;
    engine.get(&Bytes, &(size, nonce))?;
    let raw = dir.join("raw-rss");
    std::fs::write(&raw, Bytes::make(size, nonce))?;
    let exe = std::env::current_exe()?;
    let run = |args: &[&str]| -> Result<u64> {
        let out = Command::new(&exe).arg("--child").args(args).output()?;
        ensure!(
            out.status.success(),
            "child {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("rss "))
            .context("the child printed no rss")?;
        Ok(rss.trim().parse()?)
    };
    let dir_s = dir.to_string_lossy();
    let (size_s, nonce_s) = (size.to_string(), nonce.to_string());
    let trove = run(&["disk-hit", &dir_s, &size_s, &nonce_s])?;
    let plain = run(&["read-file", &raw.to_string_lossy()])?;
    let idle = run(&["idle", &dir_s])?;
    let ratio = trove as f64 / size as f64;
    Ok(Row {
        case: format!(
            "peak RSS, disk hit of {} in a child (vs object size)",
            trove::format_size(full)
        ),
        trove: trove::format_size(trove),
        baseline: trove::format_size(size),
        ratio: Some(ratio),
        goal: "<= 1.2".to_owned(),
        met: if ratio <= 1.2 { Met::Yes } else { Met::No },
        note: format!(
            "{}VmHWM; a child doing fs::read of the same file peaks at {}, one that only opens the engine at {}",
            reduced(full, size),
            trove::format_size(plain),
            trove::format_size(idle)
        ),
    })
}

/// Write temp + fsync + rename + fsync of the directory: the atomic publish baseline.
fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = dir.join(format!(".tmp-{name}"));
    let dest = dir.join(name);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &dest)?;
    File::open(dir)?.sync_all()?;
    Ok(dest)
}

fn record(key_seed: u64, blob: BlobId) -> NewRecord {
    NewRecord {
        key: *blake3::hash(&key_seed.to_le_bytes()).as_bytes(),
        recipe: "bench".to_owned(),
        args: format!("[{key_seed}]"),
        recipe_version: 1,
        created_ms: 1_700_000_000_000,
        blob,
        codec: 0,
        trace: vec![1, 0, 0, 0],
        reason: "built: no entry".to_owned(),
    }
}

pub(crate) fn publish(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let engine = cold_memory_engine(dir.path())?;
    let store = Store::open(&dir.path().join("store-direct"))?;
    let base_dir = dir.path().join("baseline");
    std::fs::create_dir_all(&base_dir)?;
    let big = scale.pick(256 * MIB, 64 * MIB);
    let mut rows = Vec::new();
    let mut nonce = 1000u64;
    for (full, size, reps) in [
        (MIB, MIB, scale.pick(15, 7)),
        (256 * MIB, big, scale.pick(5, 3)),
    ] {
        let mut make = Vec::new();
        let mut write_base = || {
            nonce += 1;
            let bytes = Bytes::make(size, nonce);
            let start = Instant::now();
            let path = atomic_write(&base_dir, &nonce.to_string(), &bytes).expect("write");
            let t = start.elapsed().as_secs_f64();
            let _ = std::fs::remove_file(path);
            t
        };
        let mut n_engine = 1_000_000u64 + size;
        let (t, b) = alternate(
            reps,
            || {
                n_engine += 1;
                once(|| engine.get(&Bytes, &(size, n_engine)).expect("cold build"))
            },
            &mut write_base,
        );
        let mut n_store = 2_000_000u64 + size;
        let (s, b2) = alternate(
            reps,
            || {
                n_store += 1;
                let bytes = Bytes::make(size, n_store);
                let start = Instant::now();
                let blob = store.put_blob(&bytes).expect("put_blob");
                store.insert(&record(n_store, blob)).expect("insert");
                start.elapsed().as_secs_f64()
            },
            &mut write_base,
        );
        for k in 0..3 {
            make.push(once(|| Bytes::make(size, k)));
        }
        let make = median(&mut make);
        let note = reduced(full, size);
        rows.push(Row::ratio_at_most(
            &format!("publish {} via a cold get (vs temp+fsync+rename+dir fsync)", trove::format_size(full)),
            t,
            b,
            1.3,
            &format!(
                "{note}median of {reps}; includes the build itself (making the bytes: {}) and the key lock",
                fmt_secs(make)
            ),
        ));
        rows.push(Row::ratio_at_most(
            &format!(
                "publish {}: Store::put_blob + insert (same baseline)",
                trove::format_size(full)
            ),
            s,
            b2,
            1.3,
            &format!(
                "{note}median of {reps}; the store alone: hash, blob publish, index insert (fsync)"
            ),
        ));
    }
    Ok(rows)
}

pub(crate) fn fingerprint(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let size = scale.pick(GIB, 256 * MIB);
    let path = dir.path().join("input.bin");
    {
        let mut f = File::create(&path)?;
        let chunk: Vec<u8> = (0..16 * MIB).map(|i| (i * 7 % 251) as u8).collect();
        for _ in 0..size / (16 * MIB) {
            f.write_all(&chunk)?;
        }
    }
    // Warm the page cache for both sides.
    let _ = trove_fingerprint::fingerprint_file(&path)?;
    let reps = scale.pick(7, 5);
    let (t, b) = alternate(
        reps,
        || once(|| trove_fingerprint::fingerprint_file(&path).expect("fingerprint")),
        || {
            once(|| {
                let mut h = blake3::Hasher::new();
                h.update_mmap_rayon(&path).expect("hash");
                h.finalize()
            })
        },
    );
    let gibs = |s: f64| format!("{:.2} GiB/s", size as f64 / GIB as f64 / s);
    let ratio = b / t;
    Ok(vec![Row {
        case: format!(
            "fingerprint a {} file (vs blake3 update_mmap_rayon)",
            trove::format_size(GIB)
        ),
        trove: gibs(t),
        baseline: gibs(b),
        ratio: Some(ratio),
        goal: ">= 0.9 (throughput)".to_owned(),
        met: if ratio >= 0.9 { Met::Yes } else { Met::No },
        note: format!(
            "{}median of {reps}; page cache warm; ratio here is throughput, higher is better",
            reduced(GIB, size)
        ),
    }])
}

pub(crate) fn cacache(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("trove"))?;
    let cache = dir.path().join("cacache");
    let reps = scale.pick(11, 5);
    let mut rows = Vec::new();
    for (size, iters, get_iters) in [(4 * KIB, 50u64, 500u64), (MIB, 20, 50)] {
        let mut seed = size * 10_000_000;
        let mut next = || {
            seed += 1;
            (seed, Bytes::make(size, seed))
        };
        // put: fresh content and key each time, made before the clock starts.
        let mut put_trove = || {
            let items: Vec<(u64, Vec<u8>)> = (0..iters).map(|_| next()).collect();
            let start = Instant::now();
            for (k, bytes) in &items {
                let blob = store.put_blob(bytes).expect("put_blob");
                store.insert(&record(*k, blob)).expect("insert");
            }
            start.elapsed().as_secs_f64() / iters as f64
        };
        let mut seed_c = size * 20_000_000;
        let mut put_cacache = || {
            let items: Vec<(u64, Vec<u8>)> = (0..iters)
                .map(|_| {
                    seed_c += 1;
                    (seed_c, Bytes::make(size, seed_c))
                })
                .collect();
            let start = Instant::now();
            for (k, bytes) in &items {
                cacache::write_sync(&cache, k.to_string(), bytes).expect("cacache put");
            }
            start.elapsed().as_secs_f64() / iters as f64
        };
        let (t, b) = alternate(reps, &mut put_trove, &mut put_cacache);
        rows.push(Row::ratio_at_most(
            &format!("put {} (vs cacache::write_sync)", trove::format_size(size)),
            t,
            b,
            1.0,
            &format!(
                "median of {reps} x {iters}; trove fsyncs blob, directory and index (durable), cacache 13 never fsyncs"
            ),
        ));
        // get: one stored key each side.
        let key_seed = size * 30_000_000;
        let bytes = Bytes::make(size, key_seed);
        let blob = store.put_blob(&bytes)?;
        let rec = record(key_seed, blob);
        store.insert(&rec)?;
        cacache::write_sync(&cache, "get-key", &bytes)?;
        let (t, b) = alternate(
            reps,
            || {
                per_op(get_iters, || {
                    let v = store.variants(&rec.key).expect("variants");
                    store.read_blob(&v[0].blob).expect("read_blob")
                })
            },
            || {
                per_op(get_iters, || {
                    cacache::read_sync(&cache, "get-key").expect("cacache get")
                })
            },
        );
        rows.push(Row::ratio_at_most(
            &format!(
                "get {}: variants + read_blob (vs cacache::read_sync)",
                trove::format_size(size)
            ),
            t,
            b,
            1.0,
            &format!("median of {reps} x {get_iters}; both verify content (blake3 vs sha256)"),
        ));
    }
    Ok(rows)
}

/// The store's record checksum (`trove-store`'s `Signed::checksum`, kept private there):
/// blake3 in derive-key mode over the length-prefixed fields.
fn checksum(rec: &NewRecord) -> [u8; 32] {
    fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let mut h = blake3::Hasher::new_derive_key("trove-store v1 record");
    field(&mut h, &rec.key);
    field(&mut h, rec.recipe.as_bytes());
    field(&mut h, rec.args.as_bytes());
    field(&mut h, &rec.recipe_version.to_le_bytes());
    field(&mut h, &rec.created_ms.to_le_bytes());
    field(&mut h, &rec.blob.hash);
    field(&mut h, &rec.blob.len.to_le_bytes());
    field(&mut h, &[rec.codec]);
    field(&mut h, &rec.trace);
    field(&mut h, rec.reason.as_bytes());
    *h.finalize().as_bytes()
}

/// Fills the index with `n` valid rows in one transaction (through SQLite directly:
/// `Store::insert` commits and fsyncs each row). Returns the keys.
fn fill_index(root: &Path, n: u64) -> Result<Vec<[u8; 32]>> {
    let index_path = Store::open(root)?.index_path().to_owned();
    let blob = BlobId {
        hash: *blake3::hash(b"one shared blob").as_bytes(),
        len: 4096,
    };
    let mut recs: Vec<NewRecord> = (0..n).map(|i| record(i, blob)).collect();
    // Inserting in key order keeps the key index's pages sequential: far quicker to fill.
    recs.sort_by_key(|r| r.key);
    let mut conn = rusqlite::Connection::open(&index_path)?;
    conn.execute_batch("PRAGMA synchronous=OFF;")?;
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare(
            "INSERT INTO variants (key, recipe, args, recipe_version, created_ms, \
             last_used_ms, hits, blob_hash, blob_len, codec, trace, reason, status, \
             status_reason, checksum) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, ?7, ?8, ?9, ?10, 0, NULL, ?11)",
        )?;
        for r in &recs {
            st.execute(rusqlite::params![
                &r.key[..],
                r.recipe,
                r.args,
                i64::from(r.recipe_version),
                r.created_ms,
                &r.blob.hash[..],
                r.blob.len as i64,
                i64::from(r.codec),
                &r.trace[..],
                r.reason,
                &checksum(r)[..],
            ])?;
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(recs.into_iter().map(|r| r.key).collect())
}

pub(crate) fn index(scale: Scale) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("store");
    let n = scale.pick(1_000_000, 100_000);
    let fill = Instant::now();
    let keys = fill_index(&root, n)?;
    let fill = fill.elapsed().as_secs_f64();
    let file_size = std::fs::metadata(root.join("v1").join("index.sqlite"))?.len();
    let reps = scale.pick(11, 5);
    let mut opens: Vec<f64> = (0..reps)
        .map(|_| once(|| Store::open(&root).expect("open")))
        .collect();
    let open = median(&mut opens);
    let store = Store::open(&root)?;
    ensure!(
        store.variants(&keys[0])?.len() == 1,
        "a filled row did not read back: the checksum replica is out of date"
    );
    let mut lookups = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..scale.pick(20_000, 5_000) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let key = &keys[(x >> 33) as usize % keys.len()];
        let start = Instant::now();
        let v = store.variants(key)?;
        lookups.push(start.elapsed().as_secs_f64());
        ensure!(v.len() == 1, "lookup found {} rows", v.len());
    }
    let p50 = quantile(&mut lookups, 0.5);
    let p99 = quantile(&mut lookups, 0.99);
    let entries = if n == 1_000_000 {
        String::new()
    } else {
        format!("reduced by --quick: 1,000,000 -> {n} entries; ")
    };
    Ok(vec![
        Row {
            case: "index of 1,000,000 entries: Store::open".to_owned(),
            trove: fmt_secs(open),
            baseline: "-".to_owned(),
            ratio: None,
            goal: "<= 50 ms".to_owned(),
            met: if open <= 0.050 { Met::Yes } else { Met::No },
            note: format!(
                "{entries}median of {reps} opens, page cache warm; index file {}; filled in {:.1} s",
                trove::format_size(file_size),
                fill
            ),
        },
        Row {
            case: "index of 1,000,000 entries: variants() lookup p50".to_owned(),
            trove: fmt_secs(p50),
            baseline: "-".to_owned(),
            ratio: None,
            goal: "<= 20 us".to_owned(),
            met: if p50 <= 20e-6 { Met::Yes } else { Met::No },
            note: format!(
                "{entries}{} random existing keys; p99 {}",
                lookups.len(),
                fmt_secs(p99)
            ),
        },
    ])
}
