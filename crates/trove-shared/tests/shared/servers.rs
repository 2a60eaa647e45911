//! Suites against the real servers `.ci/servers start` runs on 127.0.0.1: Redis, moto's S3
//! (`.ci/s3-server.py`: an S3 server that checks SigV4 signatures and honours
//! `If-None-Match: *`) and nginx with WebDAV. Their addresses are in
//! the file `TROVE_SHARED_SERVERS` names (else `target/servers.env`). Compiled only with
//! `--features servers`; then a missing file or an unreachable server fails the suite,
//! it never skips.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use trove_shared::{
    Backoff, BlobRef, Credentials, LeaseConfig, Published, Put, Remote, SharedConfig, SharedError,
    SharedTier, Storage, Unavailable, Wake,
};

use crate::hints;
use crate::scenarios::{self, Place};
use crate::support::{SECRET, key, record, unique};

struct Servers {
    vars: HashMap<String, String>,
}

impl Servers {
    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from the servers file"))
    }

    fn port_of(url: &str) -> u16 {
        let after_host = url.rsplit("127.0.0.1:").next().unwrap();
        let digits: String = after_host
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    }
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        // `.ci/shared` names the file; run by hand, the suites look where `.ci/servers`
        // writes it.
        let path = match std::env::var_os("TROVE_SHARED_SERVERS") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/servers.env"),
        };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the server suites need {} ({e})\nhint: run `bash .ci/servers start`, or `bash .ci/shared`",
                path.display()
            )
        });
        let vars: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let servers = Servers { vars };
        for name in ["TROVE_REDIS_URL", "TROVE_S3_ENDPOINT", "TROVE_WEBDAV_URL"] {
            let url = servers.var(name);
            let addr = ("127.0.0.1", Servers::port_of(url))
                .to_socket_addrs()
                .unwrap()
                .next()
                .unwrap();
            if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                panic!(
                    "{name}={url} from {} is unreachable: {e}\nhint: `bash .ci/servers start`",
                    path.display()
                );
            }
        }
        servers
    })
}

fn s3_config(prefix: &str, secret: &[u8]) -> SharedConfig {
    let s = servers();
    let url = format!(
        "s3://{}/{prefix}?endpoint={}&region={}",
        s.var("TROVE_S3_BUCKET"),
        s.var("TROVE_S3_ENDPOINT"),
        s.var("TROVE_S3_REGION")
    );
    SharedConfig::new(&url, secret.to_vec())
        .unwrap()
        .credentials(Credentials::S3 {
            access_key_id: s.var("TROVE_S3_ACCESS_KEY").to_owned(),
            secret_access_key: s.var("TROVE_S3_SECRET_KEY").to_owned(),
        })
}

/// Tiers on one fresh prefix of the S3 bucket.
fn s3() -> impl Fn(&[u8]) -> SharedTier + Sync {
    s3_within(None)
}

/// Tiers on one fresh prefix of the Redis server.
fn redis() -> impl Fn(&[u8]) -> SharedTier + Sync {
    redis_within(None)
}

/// Tiers on one fresh collection of the WebDAV server.
fn webdav() -> impl Fn(&[u8]) -> SharedTier + Sync {
    webdav_within(None)
}

/// What the 64 MiB round trips allow each request, instead of the tier's default 2 s.
/// The servers share this machine's two cores with the test run and, in `.ci/test`, with
/// the Python package's compile: there, one 8 MiB part to moto's S3 server once took over
/// 2 s (load average 3.3) and failed the test. These tests check the bytes, not the speed
/// (the timeout's own tests are below, with short bounds and stopped servers).
const BULK_TIMEOUT: Duration = Duration::from_secs(60);

/// Like [`s3`], each request bounded by `timeout` when one is given.
fn s3_within(timeout: Option<Duration>) -> impl Fn(&[u8]) -> SharedTier + Sync {
    let prefix = unique("s3");
    move |secret: &[u8]| SharedTier::open(within(s3_config(&prefix, secret), timeout)).unwrap()
}

/// Like [`redis`], each request bounded by `timeout` when one is given.
fn redis_within(timeout: Option<Duration>) -> impl Fn(&[u8]) -> SharedTier + Sync {
    let url = format!(
        "{}/0?prefix={}",
        servers().var("TROVE_REDIS_URL"),
        unique("redis")
    );
    move |secret: &[u8]| {
        let config = SharedConfig::new(&url, secret.to_vec()).unwrap();
        SharedTier::open(within(config, timeout)).unwrap()
    }
}

/// Like [`webdav`], each request bounded by `timeout` when one is given.
fn webdav_within(timeout: Option<Duration>) -> impl Fn(&[u8]) -> SharedTier + Sync {
    let url = format!("{}/{}", servers().var("TROVE_WEBDAV_URL"), unique("dav"));
    move |secret: &[u8]| {
        let config = SharedConfig::new(&url, secret.to_vec()).unwrap();
        SharedTier::open(within(config, timeout)).unwrap()
    }
}

fn within(config: SharedConfig, timeout: Option<Duration>) -> SharedConfig {
    match timeout {
        Some(t) => config.timeout(t),
        None => config,
    }
}

fn each_service(scenario: impl Fn(&dyn Place)) {
    scenario(&s3());
    scenario(&redis());
    scenario(&webdav());
}

#[test]
fn s3_serves_small_and_64_mib_objects() {
    let place = s3_within(Some(BULK_TIMEOUT));
    scenarios::round_trip(&place, 0);
    scenarios::round_trip(&place, 4096);
    scenarios::round_trip(&place, 64 << 20);
}

/// The S3 server is a real check, not a stub: a request signed with the wrong secret key
/// is refused (403 SignatureDoesNotMatch), and the tier reports it as `Refused`, never as
/// a miss.
#[test]
fn s3_refuses_a_request_signed_with_the_wrong_secret_key() {
    let s = servers();
    let mut config = s3_config(&unique("s3-badkey"), SECRET);
    config = config.credentials(Credentials::S3 {
        access_key_id: s.var("TROVE_S3_ACCESS_KEY").to_owned(),
        secret_access_key: "not-the-secret-key-0123456789".to_owned(),
    });
    let tier = SharedTier::open(config).unwrap();
    let (remote, why) = unavailable(tier.lookup(&key("bad key")).unwrap_err());
    assert_eq!(remote, Remote::Store);
    match why {
        Unavailable::Refused { message } => {
            assert!(message.contains("SignatureDoesNotMatch"), "{message}")
        }
        other => panic!("not refused: {other:?}"),
    }
    let bytes = b"never stored".to_vec();
    let rec = record(key("bad key"), BlobRef::of(&bytes), 1);
    assert!(tier.publish_bytes(&rec, &bytes).is_err());
}

/// `If-None-Match: *` is honoured: a second create at a path is told the object exists and
/// the first object stays (the server does not overwrite it).
#[test]
fn s3_creates_an_object_only_if_absent() {
    let tier = s3()(SECRET);
    let store: &dyn Storage = tier.storage();
    let path = format!("v1/blobs/00/{}", unique("cond"));
    assert_eq!(store.put_if_absent(&path, b"first").unwrap(), Put::Created);
    assert_eq!(
        store.put_if_absent(&path, b"second").unwrap(),
        Put::AlreadyExists
    );
    assert_eq!(store.get(&path).unwrap().as_deref(), Some(&b"first"[..]));
}

#[test]
fn redis_serves_small_and_64_mib_objects() {
    let place = redis_within(Some(BULK_TIMEOUT));
    scenarios::round_trip(&place, 0);
    scenarios::round_trip(&place, 4096);
    scenarios::round_trip(&place, 64 << 20);
}

#[test]
fn webdav_serves_small_and_64_mib_objects() {
    let place = webdav_within(Some(BULK_TIMEOUT));
    scenarios::round_trip(&place, 0);
    scenarios::round_trip(&place, 4096);
    scenarios::round_trip(&place, 64 << 20);
}

#[test]
fn a_flipped_byte_in_a_stored_blob_is_refused() {
    each_service(scenarios::flipped_byte_is_refused);
}

#[test]
fn a_blob_of_the_wrong_length_is_refused() {
    each_service(scenarios::wrong_length_is_refused);
}

#[test]
fn forged_truncated_unsigned_and_foreign_records_are_refused() {
    each_service(scenarios::bad_records_are_refused);
}

#[test]
fn racing_publishes_leave_one_complete_record() {
    each_service(scenarios::racing_publishes_leave_one_complete_record);
}

#[test]
fn variants_of_a_key_come_newest_first() {
    each_service(scenarios::variants_come_newest_first);
}

#[test]
fn a_read_only_developer_reads_what_ci_published() {
    let prefix = unique("s3-ro");
    let ci = |secret: &[u8]| SharedTier::open(s3_config(&prefix, secret)).unwrap();
    let dev = SharedTier::open(s3_config(&prefix, SECRET).read_only(true)).unwrap();
    scenarios::read_only_and_mismatched_publishes_are_refused(&ci, dev);
}

/// A tier on a fresh Redis prefix with leases of `ttl` on the test Redis.
fn leased(prefix: &str, ttl: Duration) -> SharedTier {
    let redis = servers().var("TROVE_REDIS_URL");
    let lease = LeaseConfig::new(&format!("{redis}/0?prefix={prefix}"), ttl).unwrap();
    let config = SharedConfig::new(&format!("{redis}/0?prefix={prefix}"), SECRET)
        .unwrap()
        .lease(lease);
    SharedTier::open(config).unwrap()
}

#[test]
fn a_lease_is_held_renewed_and_released() {
    let prefix = unique("lease");
    let ttl = Duration::from_millis(900);
    let a = leased(&prefix, ttl);
    let b = leased(&prefix, ttl);
    let k = key(&prefix);
    let lease = a.lease(&k).unwrap().expect("a free lease is acquired");
    assert!(
        b.lease(&k).unwrap().is_none(),
        "a held lease is not acquired twice"
    );
    assert!(lease.renew().unwrap());
    // The background renewal keeps it past its ttl.
    std::thread::sleep(ttl * 2);
    assert!(lease.is_held());
    let left = b.leases().unwrap().holder_ttl(&lease_name(&k)).unwrap();
    assert!(
        left.is_some_and(|d| d > Duration::ZERO && d <= ttl),
        "{left:?}"
    );
    assert!(b.lease(&k).unwrap().is_none());
    assert!(lease.release().unwrap());
    let again = b.lease(&k).unwrap().expect("a released lease is free");
    assert!(again.release().unwrap());
}

fn lease_name(k: &[u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_waiter_is_woken_by_the_publish() {
    let prefix = unique("wake");
    let a = leased(&prefix, Duration::from_secs(20));
    let b = leased(&prefix, Duration::from_secs(20));
    let k = key(&prefix);
    let lease = a.lease(&k).unwrap().unwrap();
    assert!(b.lease(&k).unwrap().is_none());
    let bytes = b"built once".to_vec();
    let rec = record(k, BlobRef::of(&bytes), 1);
    let (woke, waited) = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let started = Instant::now();
            (
                b.wait_for(&k, Duration::from_secs(15)).unwrap(),
                started.elapsed(),
            )
        });
        // The waiter subscribes before it looks at the lease; give it the time to.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(a.publish_bytes(&rec, &bytes).unwrap(), Published::Created);
        waiter.join().unwrap()
    });
    // Only a notification says `Published`; polling would have said nothing before the
    // release.
    assert_eq!(woke, Wake::Published);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let found = b.lookup(&k).unwrap();
    assert_eq!(found.records[0].record(), &rec);
    assert!(lease.release().unwrap());
}

#[test]
fn a_release_without_a_publish_wakes_the_waiter_to_take_over() {
    let prefix = unique("release");
    let a = leased(&prefix, Duration::from_secs(20));
    let b = leased(&prefix, Duration::from_secs(20));
    let k = key(&prefix);
    let lease = a.lease(&k).unwrap().unwrap();
    let woke = std::thread::scope(|s| {
        let waiter = s.spawn(|| b.wait_for(&k, Duration::from_secs(15)).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        assert!(lease.release().unwrap());
        waiter.join().unwrap()
    });
    assert!(matches!(woke, Wake::Released | Wake::Vacant), "{woke:?}");
    assert!(b.lease(&k).unwrap().is_some());
}

#[test]
fn a_lease_left_to_expire_is_taken_over_within_ttl_and_a_second() {
    let prefix = unique("expire");
    let ttl = Duration::from_secs(2);
    let a = leased(&prefix, ttl);
    let b = leased(&prefix, ttl);
    let k = key(&prefix);
    let lease = a.lease(&k).unwrap().unwrap();
    let died = Instant::now();
    lease.abandon(); // the holder dies: no renewal, no release
    let taken = loop {
        if let Some(lease) = b.lease(&k).unwrap() {
            break lease;
        }
        let woke = b.wait_for(&k, Duration::from_secs(10)).unwrap();
        assert_ne!(woke, Wake::TimedOut);
    };
    let after = died.elapsed();
    assert!(
        after <= ttl + Duration::from_secs(1),
        "taken over after {after:?}"
    );
    assert!(
        after >= ttl - Duration::from_millis(300),
        "taken over after {after:?}"
    );
    assert!(taken.release().unwrap());
}

/// A Redis server of this test's own, so stopping it disturbs no other test.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(servers().var("TROVE_REDIS_SERVER"))
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let addr = ("127.0.0.1", port)
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::mem::forget(dir); // removed with the temp directory's parent by the OS
        OwnRedis { child, port }
    }

    fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unavailable(err: SharedError) -> (Remote, Unavailable) {
    match err {
        SharedError::Unavailable { remote, cause, .. } => (remote, cause),
        other => panic!("not Unavailable: {other:?}"),
    }
}

#[test]
fn a_redis_stopped_mid_build_fails_within_the_timeout_and_is_then_skipped() {
    let mut server = OwnRedis::start();
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let timeout = Duration::from_millis(800);
    let ttl = Duration::from_secs(2);
    let config = SharedConfig::new(&url, SECRET)
        .unwrap()
        .timeout(timeout)
        .backoff(Backoff {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(60),
        })
        .lease(LeaseConfig::new(&url, ttl).unwrap());
    let tier = SharedTier::open(config).unwrap();
    let k = key(&unique("stopped"));
    let lease = tier.lease(&k).unwrap().expect("lease");
    let bytes = b"half built".to_vec();
    let rec = record(k, BlobRef::of(&bytes), 1);
    assert_eq!(
        tier.publish_bytes(&rec, &bytes).unwrap(),
        Published::Created
    );

    server.stop();

    let started = Instant::now();
    let (remote, why) = unavailable(tier.lookup(&k).unwrap_err());
    assert!(
        started.elapsed() < timeout + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(remote, Remote::Store);
    assert!(
        matches!(
            why,
            Unavailable::Failed { .. } | Unavailable::TimedOut { .. }
        ),
        "{why:?}"
    );
    let started = Instant::now();
    let (_, why) = unavailable(tier.fetch_blob_bytes(&rec.blob).unwrap_err());
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(matches!(why, Unavailable::BackingOff { .. }), "{why:?}");

    let started = Instant::now();
    let (remote, _) = unavailable(lease.renew().unwrap_err());
    assert!(
        started.elapsed() < timeout + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(remote, Remote::Leases);
    let (_, why) = unavailable(tier.lease(&key("another")).unwrap_err());
    assert!(matches!(why, Unavailable::BackingOff { .. }), "{why:?}");
    // Unrenewable, the lease is given up once its ttl has passed.
    std::thread::sleep(ttl);
    assert!(!lease.is_held());
    let stats = tier.stats();
    assert!(
        stats.store.skipped >= 1 && stats.leases.as_ref().unwrap().skipped >= 1,
        "{stats:?}"
    );
}

#[test]
fn a_small_hit_is_one_request_a_large_one_two() {
    each_service(hints::a_small_hit_is_one_request_a_large_one_two);
}

#[test]
fn a_bad_hint_is_refused_never_served() {
    each_service(hints::a_bad_hint_is_refused_never_served);
}

#[test]
fn version_1_records_are_still_read() {
    each_service(hints::version_1_records_are_still_read);
}

#[test]
fn every_hint_is_listed() {
    each_service(hints::every_hint_is_listed);
}

#[test]
fn every_blob_is_listed_and_orphan_marks_are_kept() {
    each_service(crate::orphans::every_blob_is_listed_and_orphan_marks_are_kept);
}
