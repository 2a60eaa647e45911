//! Several machines: `trove` processes run as hosts in network namespaces (`netns.rs`),
//! each with its own project checkout (another absolute path) and its own local store,
//! the shared tier (moto's S3) and the lease server (Redis) reached over the virtual
//! network. Each test starts its own servers, bound to its bridge, so it can stop them.
//! `tls.rs` runs `trove` processes against the shared nginx's HTTPS listener instead.
//!
//! Compiled with `--features servers` (`.ci/shared` runs it after `.ci/servers start`,
//! which installs the servers and names them in `target/servers.env`); needs root and the
//! `trove` binary (`TROVE_BIN`, else `target/debug/trove`: `cargo build -p trove-cli`).
#![cfg(all(feature = "servers", target_os = "linux"))]

mod netns;
mod tls;
mod world;

use std::time::{Duration, Instant};

use world::World;

/// Host B is served what host A built, from the shared tier (`hit shared`), then from its
/// own store; a read-only developer machine is served too, and publishes nothing.
#[test]
fn host_b_hits_what_host_a_built() {
    let w = World::new(3, world::Options::default());
    let (a, b, dev) = (w.host(0), w.host(1), w.host(2));
    dev.set_read_only(true);
    let ran = a.run(&["b-hits-a"]);
    ran.assert_built();
    w.wait_for_records(1);
    let hit = b.run(&["b-hits-a"]);
    assert!(hit.explain.contains("hit shared"), "{}", hit.explain);
    assert_eq!(hit.stdout, ran.stdout);
    let again = b.run(&["b-hits-a"]);
    assert!(
        !again.explain.contains("built") && !again.explain.contains("hit shared"),
        "the shared hit was not copied into B's store: {}",
        again.explain
    );
    let read = dev.run(&["b-hits-a"]);
    assert!(read.explain.contains("hit shared"), "{}", read.explain);
    assert_eq!(w.builds(), 1, "{:?}", w.build_lines());
    // A read-only machine builds what is missing and publishes nothing.
    dev.run(&["dev-only"]).assert_built();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.records().len(), 1, "a read-only host published");
}

/// Three hosts asking for one missing object at the same moment build it once: one
/// holds the lease and builds, the others wait and are served its object.
#[test]
fn three_hosts_asking_at_once_build_once() {
    let w = World::new(3, world::Options::default());
    w.set_sleep(2.0);
    let children: Vec<_> = (0..3).map(|i| w.host(i).spawn(&["at-once"])).collect();
    let runs: Vec<_> = children.into_iter().map(world::Running::finish).collect();
    assert_eq!(w.builds(), 1, "{:?}", w.build_lines());
    for run in &runs {
        assert_eq!(run.stdout, runs[0].stdout);
    }
    let built = runs.iter().filter(|r| r.explain.contains("built")).count();
    let shared = runs
        .iter()
        .filter(|r| r.explain.contains("hit shared"))
        .count();
    eprintln!(
        "figure: three hosts at once: {} build(s), {built} built, {shared} hit shared",
        w.builds()
    );
    assert_eq!(
        (built, shared),
        (1, 2),
        "{:?}",
        runs.iter().map(|r| &r.explain).collect::<Vec<_>>()
    );
}

/// Host A holds the lease and builds; its link is cut (a pulled cable): host B, waiting,
/// takes the build over within the lease's ttl plus a second, and A, off the network,
/// still answers from its own build without waiting on the shared tier beyond `timeout`.
#[test]
fn cutting_the_builders_link_hands_the_build_to_another_host() {
    hand_over(|w, _a| w.net.cut(0));
}

/// Host A is killed (SIGKILL, no release) mid-build: host B takes the build over within
/// the lease's ttl plus a second.
#[test]
fn killing_the_builder_hands_the_build_to_another_host() {
    hand_over(|_w, a| netns::kill_group(&a.child));
}

fn hand_over(fail_a: impl FnOnce(&World, &world::Running)) {
    let w = World::new(2, world::Options::default());
    let ttl = w.options.ttl;
    w.set_sleep(ttl.as_secs_f64() + 3.0);
    let mut a = w.host(0).spawn(&["hand-over"]);
    w.wait_for_builds(1, Duration::from_secs(15));
    let b = w.host(1).spawn(&["hand-over"]);
    // B looks the key up, finds the lease held and waits on it.
    std::thread::sleep(Duration::from_millis(700));
    w.set_sleep(0.5);
    let failed_at = Instant::now();
    let failed_at_wall = world::now_secs();
    fail_a(&w, &a);
    let b = b.finish();
    assert_eq!(w.builds(), 2, "{:?}", w.build_lines());
    let (who, when) = w.build_line(1);
    assert_eq!(who, "1", "{:?}", w.build_lines());
    let handed_after = when - failed_at_wall;
    assert!(
        handed_after <= ttl.as_secs_f64() + 1.0,
        "B began building {handed_after:.2} s after A failed (ttl {ttl:?})"
    );
    assert!(b.explain.contains("built"), "{}", b.explain);
    eprintln!(
        "figure: lease handed over {handed_after:.2} s after the holder failed (ttl {ttl:?}); B answered after {:?}",
        failed_at.elapsed()
    );
    // A, cut off (or dead), never corrupts what B published: B's object verifies and a
    // third look-up is served it.
    w.check_store();
    if a.child_alive() {
        let a = a.finish();
        assert_eq!(a.stdout, b.stdout);
    }
}

/// Redis killed while host A builds under its lease: A finishes and answers (its lease
/// renewals fail within `timeout`), B then answers without the lease server, and the
/// shared tier holds nothing corrupt.
#[test]
fn redis_stopped_mid_build_degrades_to_local_builds() {
    let mut w = World::new(2, world::Options::default());
    w.set_sleep(2.0);
    let a = w.host(0).spawn(&["redis-down"]);
    w.wait_for_builds(1, Duration::from_secs(15));
    w.redis.kill();
    let a = a.finish();
    assert!(a.explain.contains("built"), "{}", a.explain);
    let started = Instant::now();
    w.set_sleep(0.0);
    let b = w.host(1).run(&["redis-down"]);
    assert_eq!(b.stdout, a.stdout);
    let took = started.elapsed();
    assert!(
        took < w.options.timeout + Duration::from_secs(3),
        "B took {took:?} without Redis"
    );
    eprintln!(
        "figure: Redis killed mid-build: the builder answered, the next host answered in {took:?} ({})",
        b.explain.trim()
    );
    w.check_store();
}

/// The S3 server stopped (SIGSTOP: it accepts connections and never answers) while host
/// A uploads a 96 MiB object: A answers anyway, B answers by building locally within
/// `timeout` of its look-up, and once the server resumes it holds no partial object and
/// no record without its blob.
#[test]
fn s3_stopped_mid_upload_degrades_to_local_builds() {
    let w = World::new(
        2,
        world::Options {
            size: 96 << 20,
            ..world::Options::default()
        },
    );
    let a = w.host(0).spawn(&["s3-down"]);
    // CreateMultipartUpload logged: parts are on their way.
    w.wait_for_s3_log("?uploads", Duration::from_secs(30));
    w.s3.pause();
    assert!(
        !w.s3_logged(&["POST ", "uploadId="]),
        "the upload completed before the server was stopped: this test stopped nothing"
    );
    let a = a.finish();
    assert!(a.explain.contains("built"), "{}", a.explain);
    assert!(a.stdout.len() > 96 << 20, "{} bytes", a.stdout.len());
    let started = Instant::now();
    let b = w.host(1).run(&["s3-down"]);
    let took = started.elapsed();
    assert!(b.explain.contains("built"), "{}", b.explain);
    assert_eq!(b.stdout, a.stdout);
    assert!(
        took < w.options.timeout * 2 + Duration::from_secs(4),
        "B took {took:?} with S3 stopped"
    );
    eprintln!(
        "figure: S3 stopped mid-upload of 96 MiB: the next host built and answered in {took:?} (timeout {:?})",
        w.options.timeout
    );
    w.s3.resume();
    w.check_store();
}

/// A record forged (our key id, a MAC that does not match), a record signed with another
/// team's key (each planted as the key's hint too) and a flipped byte in a shared blob are
/// refused: host B rebuilds and serves the real object, never the planted one. The
/// objects are over 64 KiB, so their records do not carry them and B downloads the blob.
#[test]
fn forged_foreign_and_corrupt_shared_objects_are_refused_and_rebuilt() {
    let w = World::new(
        2,
        world::Options {
            size: 100 << 10,
            ..world::Options::default()
        },
    );
    let (a, b) = (w.host(0), w.host(1));
    for (n, attack) in [
        world::Attack::Forged,
        world::Attack::Foreign,
        world::Attack::FlippedBlob,
    ]
    .into_iter()
    .enumerate()
    {
        let arg = format!("attack-{n}");
        let before = w.records().len();
        let honest = a.run(&[&arg]);
        honest.assert_built();
        w.wait_for_records(before + 1);
        w.plant(attack, &arg);
        let builds = w.builds();
        let served = b.run(&[&arg]);
        assert_eq!(
            served.stdout, honest.stdout,
            "{attack:?}: B was served the planted object"
        );
        assert!(
            !served.explain.contains("hit shared"),
            "{attack:?}: {}",
            served.explain
        );
        assert_eq!(w.builds(), builds + 1, "{attack:?}: B did not rebuild");
    }
}
