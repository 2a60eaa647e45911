//! Suites that need no server: an in-process store, a directory as the shared file
//! system, and ports on 127.0.0.1 that refuse or never answer.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trove_shared::{
    Backoff, BlobRef, Credentials, LeaseConfig, Published, Remote, RemoteStore, SharedConfig,
    SharedError, SharedTier, Storage, Unavailable,
};

use crate::hints;
use crate::scenarios::{self, Place};
use crate::support::{SECRET, key, noise_file, record, unique};

/// Tiers sharing one in-process store.
fn memory() -> impl Fn(&[u8]) -> SharedTier + Sync {
    let config = SharedConfig::new("memory://", SECRET).unwrap();
    let store: Arc<dyn Storage> = Arc::new(RemoteStore::open(&config).unwrap());
    move |secret: &[u8]| {
        let config = SharedConfig::new("memory://", secret.to_vec()).unwrap();
        SharedTier::with_storage(store.clone(), &config).unwrap()
    }
}

/// Tiers on one directory, as machines mounting one shared file system.
fn directory() -> (tempfile::TempDir, impl Fn(&[u8]) -> SharedTier + Sync) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    (dir, move |secret: &[u8]| {
        SharedTier::open(SharedConfig::new(&url, secret.to_vec()).unwrap()).unwrap()
    })
}

fn each_place(scenario: impl Fn(&dyn Place)) {
    scenario(&memory());
    let (_dir, place) = directory();
    scenario(&place);
}

#[test]
fn an_object_published_by_one_machine_is_served_to_another() {
    each_place(|p| scenarios::round_trip(p, 0));
    each_place(|p| scenarios::round_trip(p, 5_000));
    each_place(|p| scenarios::round_trip(p, 9 << 20));
}

#[test]
fn a_flipped_byte_in_a_stored_blob_is_refused() {
    each_place(scenarios::flipped_byte_is_refused);
}

#[test]
fn a_blob_of_the_wrong_length_is_refused() {
    each_place(scenarios::wrong_length_is_refused);
}

#[test]
fn forged_truncated_unsigned_and_foreign_records_are_refused() {
    each_place(scenarios::bad_records_are_refused);
}

#[test]
fn racing_publishes_leave_one_complete_record() {
    each_place(scenarios::racing_publishes_leave_one_complete_record);
}

#[test]
fn variants_of_a_key_come_newest_first() {
    each_place(scenarios::variants_come_newest_first);
}

#[test]
fn a_read_only_tier_never_writes() {
    let (dir, place) = directory();
    let url = format!("file://{}", dir.path().display());
    let read_only =
        SharedTier::open(SharedConfig::new(&url, SECRET).unwrap().read_only(true)).unwrap();
    scenarios::read_only_and_mismatched_publishes_are_refused(&place, read_only);
}

#[test]
fn a_background_publish_does_not_hold_the_caller() {
    let (_dir, place) = directory();
    let tier = Arc::new(place(SECRET));
    let (mut file, blob) = noise_file(3 << 20, 11);
    let path = tempfile::NamedTempFile::new().unwrap();
    std::io::copy(&mut file, &mut path.as_file()).unwrap();
    let k = key(&unique("background"));
    let handle = tier.publish_in_background(record(k, blob, 1), PathBuf::from(path.path()));
    assert_eq!(handle.wait().unwrap(), Published::Created);
    assert_eq!(place(SECRET).lookup(&k).unwrap().records.len(), 1);
}

fn s3_at(port: u16, timeout: Duration, backoff: Backoff) -> SharedTier {
    let url = format!("s3://bucket/p?endpoint=http://127.0.0.1:{port}&region=us-east-1");
    let config = SharedConfig::new(&url, SECRET)
        .unwrap()
        .timeout(timeout)
        .backoff(backoff)
        .credentials(Credentials::S3 {
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
        });
    SharedTier::open(config).unwrap()
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cause(err: SharedError) -> (Remote, Unavailable) {
    match err {
        SharedError::Unavailable { remote, cause, .. } => (remote, cause),
        other => panic!("not Unavailable: {other:?}"),
    }
}

#[test]
fn a_store_that_is_down_fails_at_once_and_is_then_skipped() {
    let backoff = Backoff {
        initial: Duration::from_millis(300),
        max: Duration::from_secs(10),
    };
    let tier = s3_at(dead_port(), Duration::from_secs(2), backoff);
    let k = key("down");
    let started = Instant::now();
    let (remote, first) = cause(tier.lookup(&k).unwrap_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(remote, Remote::Store);
    assert!(matches!(first, Unavailable::Failed { .. }), "{first:?}");

    let started = Instant::now();
    let (_, second) = cause(tier.lookup(&k).unwrap_err());
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(
        matches!(second, Unavailable::BackingOff { .. }),
        "{second:?}"
    );
    let stats = tier.stats().store;
    assert_eq!((stats.calls, stats.failures, stats.skipped), (1, 1, 1));

    // After the interval the store is tried again; a second failure doubles it.
    std::thread::sleep(stats.retry_in.unwrap() + Duration::from_millis(20));
    let (_, third) = cause(tier.lookup(&k).unwrap_err());
    assert!(matches!(third, Unavailable::Failed { .. }), "{third:?}");
    let stats = tier.stats().store;
    assert_eq!((stats.calls, stats.failing_in_a_row), (2, 2));
    assert!(stats.retry_in.unwrap() > Duration::from_millis(300));
}

#[test]
fn a_store_that_never_answers_times_out_within_the_timeout() {
    // Connections are accepted by the kernel and never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let timeout = Duration::from_millis(500);
    let tier = s3_at(port, timeout, Backoff::default());
    let bytes = b"x".to_vec();
    let rec = record(key("silent"), BlobRef::of(&bytes), 1);
    for attempt in [
        Box::new(|| tier.lookup(&rec.key).map(|_| ())) as Box<dyn Fn() -> Result<(), SharedError>>,
        Box::new(|| tier.publish_bytes(&rec, &bytes).map(|_| ())),
    ] {
        let started = Instant::now();
        let (_, why) = cause(attempt().unwrap_err());
        let took = started.elapsed();
        assert!(took < timeout + Duration::from_secs(1), "{took:?}");
        // The first call times out; the second is skipped by the backoff.
        assert!(
            matches!(
                why,
                Unavailable::TimedOut { .. } | Unavailable::BackingOff { .. }
            ),
            "{why:?}"
        );
    }
    assert_eq!(tier.stats().store.timeouts, 1);
    assert_eq!(tier.stats().store.skipped, 1);
    drop(silent);
}

#[test]
fn a_lease_server_that_never_answers_times_out_and_is_skipped() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let timeout = Duration::from_millis(400);
    let lease =
        LeaseConfig::new(&format!("redis://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
    let config = SharedConfig::new("memory://", SECRET)
        .unwrap()
        .timeout(timeout)
        .lease(lease);
    let tier = SharedTier::open(config).unwrap();
    let started = Instant::now();
    let (remote, why) = cause(tier.lease(&key("silent lease")).unwrap_err());
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
    assert_eq!(remote, Remote::Leases);
    assert!(
        matches!(
            why,
            Unavailable::TimedOut { .. } | Unavailable::Failed { .. }
        ),
        "{why:?}"
    );
    let started = Instant::now();
    let (_, why) = cause(
        tier.wait_for(&key("silent lease"), Duration::from_secs(5))
            .unwrap_err(),
    );
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
    assert!(matches!(why, Unavailable::BackingOff { .. }), "{why:?}");
    drop(silent);
}

#[test]
fn a_tier_without_a_lease_server_says_so() {
    let tier = memory()(SECRET);
    assert!(matches!(tier.lease(&key("k")), Err(SharedError::NoLeases)));
}

#[test]
fn the_blocking_calls_work_from_inside_async_code() {
    // tokio forbids blocking inside a runtime; the tier then runs the call on a thread of
    // its own instead of panicking.
    let (_dir, place) = directory();
    let tier = place(SECRET);
    let bytes = b"asked from async code".to_vec();
    let rec = record(key(&unique("async")), BlobRef::of(&bytes), 1);
    let caller = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let fetched = caller.block_on(async {
        tier.publish_bytes(&rec, &bytes).unwrap();
        let found = tier.lookup(&rec.key).unwrap();
        tier.fetch_blob_bytes(&found.records[0].blob).unwrap()
    });
    assert_eq!(fetched, bytes);
    // Opening and dropping a tier inside async code does not panic either.
    caller.block_on(async { drop(place(SECRET)) });
}

#[test]
fn a_small_hit_is_one_request_a_large_one_two() {
    each_place(hints::a_small_hit_is_one_request_a_large_one_two);
}

#[test]
fn a_bad_hint_is_refused_never_served() {
    each_place(hints::a_bad_hint_is_refused_never_served);
}

#[test]
fn version_1_records_are_still_read() {
    each_place(hints::version_1_records_are_still_read);
}

#[test]
fn every_hint_is_listed() {
    each_place(hints::every_hint_is_listed);
}

#[test]
fn every_blob_is_listed_and_orphan_marks_are_kept() {
    each_place(crate::orphans::every_blob_is_listed_and_orphan_marks_are_kept);
}
