//! The shared tier against raw OpenDAL and raw Redis, in the same run, on the servers
//! `.ci/servers start` runs. Prints one `figure:` line per case: trove's median, the
//! baseline's median, their ratio. Each repetition runs trove and the baseline in turn,
//! the order flipping every repetition.
//!
//! Also a breakdown of each download (the streaming path unverified, then verified) and
//! how many requests it makes.
//!
//! ```sh
//! bash .ci/servers start
//! cargo run --release -p trove-shared --features servers --example shared_bench
//! bash .ci/servers stop
//! ```

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trove_shared::{
    BlobRef, Credentials, LeaseConfig, RemoteStore, SharedConfig, SharedRecord, SharedTier, Storage,
};

const SECRET: &[u8] = b"benchmark secret, sixteen bytes or more";

fn servers() -> HashMap<String, String> {
    let path = std::env::var_os("TROVE_SHARED_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/servers.env")
        });
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

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bench-{:x}", nanos % 1_000_000_000_000)
}

/// Median of `reps` alternating measurements of `trove` and `baseline`, each the mean of
/// `iters` calls.
fn compare(
    reps: usize,
    iters: u32,
    mut trove: impl FnMut(),
    mut baseline: impl FnMut(),
) -> (Duration, Duration) {
    let mut t = Vec::with_capacity(reps);
    let mut b = Vec::with_capacity(reps);
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..iters {
            f();
        }
        started.elapsed() / iters
    };
    trove();
    baseline();
    for rep in 0..reps {
        if rep % 2 == 0 {
            t.push(time(&mut trove));
            b.push(time(&mut baseline));
        } else {
            b.push(time(&mut baseline));
            t.push(time(&mut trove));
        }
    }
    t.sort();
    b.sort();
    (t[reps / 2], b[reps / 2])
}

fn figure(name: &str, (trove, baseline): (Duration, Duration), goal: &str, note: &str) {
    let ratio = trove.as_secs_f64() / baseline.as_secs_f64();
    println!(
        "figure: {name}: trove {trove:.2?} baseline {baseline:.2?} ratio {ratio:.2} (goal {goal}; {note})"
    );
}

/// Peak resident memory since the last reset, and the current one, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// How much above the resident memory before it `f` pushed the peak.
fn peak_growth(f: impl FnOnce()) -> u64 {
    // Writing 5 to clear_refs resets VmHWM to the current resident size (Linux >= 4.0).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (_, before) = rss();
    f();
    let (peak, _) = rss();
    peak.saturating_sub(before)
}

fn noise_file(len: u64) -> (std::fs::File, BlobRef) {
    let mut file = tempfile::tempfile().unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut state = len | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for b in &mut buf[..n] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        file.write_all(&buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(0)).unwrap();
    (
        file,
        BlobRef {
            hash: *hasher.finalize().as_bytes(),
            len,
        },
    )
}

fn record(key: [u8; 32], blob: BlobRef) -> SharedRecord {
    SharedRecord {
        key,
        recipe: "bench".into(),
        args: "()".into(),
        recipe_version: 1,
        created_ms: 1,
        blob,
        codec: 0,
        trace: vec![0; 200],
        reason: "built: no entry".into(),
    }
}

fn service(name: &str, config: SharedConfig) {
    // A bound for a busy machine: the figures are times, never timeouts.
    let config = config.timeout(Duration::from_secs(60));
    let store = Arc::new(RemoteStore::open(&config).unwrap());
    let tier = SharedTier::with_storage(store.clone() as Arc<dyn Storage>, &config).unwrap();
    const MIB: u64 = 1 << 20;

    let (mut big, big_blob) = noise_file(64 * MIB);
    let big_key = *blake3::hash(format!("{name} big").as_bytes()).as_bytes();
    let up = peak_growth(|| {
        tier.publish(&record(big_key, big_blob), &mut big).unwrap();
    });
    let mut out = tempfile::tempfile().unwrap();
    let down = peak_growth(|| tier.fetch_blob(&big_blob, &mut out).unwrap());
    println!(
        "figure: {name}: peak RSS growth publishing 64 MiB from a file {:.1} MiB, fetching it into a file {:.1} MiB (goal < 128 MiB: never two copies)",
        up as f64 / MIB as f64,
        down as f64 / MIB as f64
    );

    let small = vec![7u8; 4096];
    let small_blob = BlobRef::of(&small);
    let small_key = *blake3::hash(format!("{name} small").as_bytes()).as_bytes();
    tier.publish_bytes(&record(small_key, small_blob), &small)
        .unwrap();
    let op = store.operator().clone();
    for (label, blob, reps, iters) in [("4 KiB", small_blob, 31, 50), ("64 MiB", big_blob, 7, 1)] {
        let path = blob.path();
        let times = compare(
            reps,
            iters,
            || {
                let mut v = Vec::with_capacity(blob.len as usize);
                tier.fetch_blob(&blob, &mut v).unwrap();
            },
            || {
                let bytes = store.block_on(op.read(&path)).unwrap();
                assert_eq!(bytes.len() as u64, blob.len);
            },
        );
        figure(
            &format!("{name}: fetch_blob {label} into memory (vs raw OpenDAL read)"),
            times,
            "<= 1.2",
            &format!("median of {reps} x {iters}; trove streams, checks length and blake3"),
        );
    }
    // Into a file, as a shared hit does (the local tier is a directory): trove streams
    // and verifies; the baseline reads the whole object, then writes it.
    for (label, blob, reps, iters) in [("4 KiB", small_blob, 31, 50), ("64 MiB", big_blob, 7, 1)] {
        let path = blob.path();
        let mut ours = tempfile::tempfile().unwrap();
        let mut theirs = tempfile::tempfile().unwrap();
        let rewind = |f: &mut std::fs::File| {
            f.set_len(0).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
        };
        let times = compare(
            reps,
            iters,
            || {
                rewind(&mut ours);
                tier.fetch_blob(&blob, &mut ours).unwrap();
            },
            || {
                rewind(&mut theirs);
                let bytes = store.block_on(op.read(&path)).unwrap();
                for chunk in bytes {
                    theirs.write_all(&chunk).unwrap();
                }
            },
        );
        figure(
            &format!("{name}: fetch_blob {label} into a file (vs raw OpenDAL read, then written)"),
            times,
            "<= 1.2",
            &format!("median of {reps} x {iters}; what a shared hit's download is"),
        );
    }
    breakdown(name, &tier, &store, small_blob, 31, 50);
    breakdown(name, &tier, &store, big_blob, 7, 1);
    // A shared hit as the engine makes it: the key's hint (one GET, carrying a small
    // object), then the object: nothing more for 4 KiB, the blob streamed into a file for
    // 64 MiB. The baseline reads the same bytes raw (into a file for 64 MiB).
    for (label, key, blob, reps, iters) in [
        ("4 KiB", small_key, small_blob, 31, 20),
        ("64 MiB", big_key, big_blob, 7, 1),
    ] {
        let path = blob.path();
        let mut ours = tempfile::tempfile().unwrap();
        let mut theirs = tempfile::tempfile().unwrap();
        let rewind = |f: &mut std::fs::File| {
            f.set_len(0).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
        };
        let times = compare(
            reps,
            iters,
            || {
                rewind(&mut ours);
                let found = tier.lookup_newest(&key).unwrap();
                tier.fetch(&found.records[0], &mut ours).unwrap();
            },
            || {
                rewind(&mut theirs);
                let bytes = store.block_on(op.read(&path)).unwrap();
                for chunk in bytes {
                    theirs.write_all(&chunk).unwrap();
                }
            },
        );
        figure(
            &format!(
                "{name}: shared hit {label} = lookup_newest + fetch into a file (vs raw OpenDAL read of the blob, then written)"
            ),
            times,
            "<= 1.2",
            &format!("median of {reps} x {iters}; the hint carries objects up to 64 KiB"),
        );
    }
    // The fallback (no hint, or one that does not serve here; a tier written before
    // hints): list the key's records, read each, then the object.
    let times = compare(
        15,
        20,
        || {
            let found = tier.lookup(&small_key).unwrap();
            tier.fetch(&found.records[0], &mut Vec::new()).unwrap();
        },
        || {
            store.block_on(op.read(&small_blob.path())).unwrap();
        },
    );
    figure(
        &format!("{name}: fallback hit 4 KiB = lookup (LIST + GET) + fetch (vs raw OpenDAL read)"),
        times,
        "none",
        "median of 15 x 20; what a hit costs when the hint is missing or another variant's",
    );
    if let Some(log) = s3_log().filter(|_| name.starts_with("s3")) {
        let count = || std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
        for (label, key) in [("4 KiB", small_key), ("64 MiB", big_key)] {
            let n = if label == "4 KiB" { 20 } else { 3 };
            let before = count();
            for _ in 0..n {
                let found = tier.lookup_newest(&key).unwrap();
                tier.fetch(&found.records[0], &mut std::io::sink()).unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
            println!(
                "figure: {name}: requests per {label} shared hit: {:.1} (the S3 server's log)",
                (count() - before) as f64 / n as f64
            );
        }
    }
}

/// Where a verified download's time goes, against the raw read: the same streaming
/// path trove takes (`reader` + `into_stream`, each chunk copied out) without verifying,
/// then `fetch_blob` (the stream, plus the length and blake3 check, the backoff gate and
/// the per-chunk timeout). Also how many requests each makes (the S3 server's log).
fn breakdown(
    name: &str,
    tier: &SharedTier,
    store: &RemoteStore,
    blob: BlobRef,
    reps: usize,
    iters: u32,
) {
    use futures::StreamExt;
    let op = store.operator().clone();
    let path = blob.path();
    let label = if blob.len < 1 << 20 {
        "4 KiB"
    } else {
        "64 MiB"
    };
    let stream_only = || {
        let mut v: Vec<u8> = Vec::with_capacity(blob.len as usize);
        store.block_on(async {
            let reader = op.reader(&path).await.unwrap();
            let mut stream = reader.into_stream(..).await.unwrap();
            while let Some(buffer) = stream.next().await {
                for bytes in buffer.unwrap() {
                    v.extend_from_slice(&bytes);
                }
            }
        });
        assert_eq!(v.len() as u64, blob.len);
    };
    let times = compare(reps, iters, stream_only, || {
        store.block_on(op.read(&path)).unwrap();
    });
    figure(
        &format!(
            "{name}: breakdown {label}: the streaming path copied out, unverified (vs raw read)"
        ),
        times,
        "none",
        "what streaming into the caller's writer costs by itself",
    );
    let times = compare(
        reps,
        iters,
        || {
            let mut v = Vec::with_capacity(blob.len as usize);
            tier.fetch_blob(&blob, &mut v).unwrap();
        },
        stream_only,
    );
    figure(
        &format!("{name}: breakdown {label}: fetch_blob (vs the same stream unverified)"),
        times,
        "none",
        "what verifying (blake3, length), the backoff gate and the timeouts add",
    );
    let log = s3_log();
    if let Some(log) = log.filter(|_| name.starts_with("s3")) {
        let count = || std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
        let n = 20;
        let before = count();
        for _ in 0..n {
            tier.fetch_blob_bytes(&blob).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let trove = count() - before;
        let before = count();
        for _ in 0..n {
            store.block_on(op.read(&path)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let raw = count() - before;
        println!(
            "figure: {name}: requests per {label} download: fetch_blob {:.1}, raw read {:.1} (the S3 server's log)",
            trove as f64 / n as f64,
            raw as f64 / n as f64
        );
    }
}

/// The S3 server's request log, beside the servers file.
fn s3_log() -> Option<PathBuf> {
    let env = std::env::var_os("TROVE_SHARED_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/servers.env")
        });
    let log = env.parent()?.join("servers/s3.log");
    log.exists().then_some(log)
}

fn main() {
    // What verifying costs by itself: blake3 over 64 MiB in memory, one thread (as a
    // download hashes it), against copying it.
    let big = vec![5u8; 64 << 20];
    let mut copy = vec![0u8; 64 << 20];
    let times = compare(
        7,
        1,
        || {
            let mut h = blake3::Hasher::new();
            h.update(&big);
            std::hint::black_box(h.finalize());
        },
        || {
            copy.copy_from_slice(std::hint::black_box(&big));
            std::hint::black_box(&mut copy);
        },
    );
    figure(
        "reference: blake3 of 64 MiB, one thread (vs copying 64 MiB)",
        times,
        "none",
        "median of 7; the cost a verified download adds to the transfer",
    );
    drop((big, copy));

    let s = servers();
    let id = run_id();
    // `TROVE_BENCH_ONLY=leases`: the lease rows only (to compare two builds quickly).
    let only_leases = std::env::var("TROVE_BENCH_ONLY").is_ok_and(|v| v == "leases");
    let s3 = SharedConfig::new(
        &format!(
            "s3://{}/{id}?endpoint={}&region={}",
            s["TROVE_S3_BUCKET"], s["TROVE_S3_ENDPOINT"], s["TROVE_S3_REGION"]
        ),
        SECRET,
    )
    .unwrap()
    .credentials(Credentials::S3 {
        access_key_id: s["TROVE_S3_ACCESS_KEY"].clone(),
        secret_access_key: s["TROVE_S3_SECRET_KEY"].clone(),
    });
    let redis = format!("{}/0?prefix={id}", s["TROVE_REDIS_URL"]);
    if !only_leases {
        service("s3 (moto)", s3);
        service("redis", SharedConfig::new(&redis, SECRET).unwrap());
        let dav = format!("{}/{id}", s["TROVE_WEBDAV_URL"]);
        service("webdav (nginx)", SharedConfig::new(&dav, SECRET).unwrap());
    }

    // Leases: acquire + release against Redis's own round trip.
    let config = SharedConfig::new("memory://", SECRET)
        .unwrap()
        .lease(LeaseConfig::new(&redis, Duration::from_secs(30)).unwrap());
    let tier = SharedTier::open(config).unwrap();
    let client = redis::Client::open(s["TROVE_REDIS_URL"].as_str()).unwrap();
    let key = *blake3::hash(id.as_bytes()).as_bytes();
    // The PING on a runtime driven by the calling thread (the fastest round trip), and on
    // one shaped like the tier's (two workers drive the socket, the caller blocks).
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (label, rt) in [
        ("current-thread runtime", &current),
        ("2-worker runtime like the tier's", &workers),
    ] {
        let mut conn = rt.block_on(client.get_connection_manager()).unwrap();
        let times = compare(
            31,
            200,
            || {
                let lease = tier.lease(&key).unwrap().unwrap();
                assert!(lease.release().unwrap());
            },
            || {
                let pong: String = rt
                    .block_on(redis::cmd("PING").query_async(&mut conn))
                    .unwrap();
                assert_eq!(pong, "PONG");
            },
        );
        figure(
            &format!("lease acquire + release (vs one Redis PING on a {label})"),
            times,
            "<= 2.5 (two round trips)",
            "median of 31 x 200; acquire = SET NX PX; release = a Lua compare-and-delete",
        );
    }
}
