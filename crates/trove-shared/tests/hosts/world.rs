//! One test's world: a virtual network, its own Redis and S3 server bound to the bridge,
//! and hosts, each a project checkout at its own absolute path with its own local store,
//! running the `trove` binary inside its namespace.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trove_shared::{
    BlobRef, Credentials, Secret, SharedConfig, SharedTier, Signer, VerifiedRecord, newest_path,
};

use crate::netns::{self, Net};

/// The team's secret, known to every host (and to this test, which plays the attacker
/// only through what an attacker without it could do, plus a second team's key).
pub(crate) const SECRET: &str = "the team's secret for the multi-host suite";
const OTHER_SECRET: &str = "another team's secret, long enough as well";
const BUCKET: &str = "trove-test";
const PREFIX: &str = "team";
const RECIPE: &str = "report";

#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    pub(crate) ttl: Duration,
    pub(crate) timeout: Duration,
    /// Bytes of `x` the recipe appends to its object (a large object: a long upload).
    pub(crate) size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ttl: Duration::from_secs(3),
            timeout: Duration::from_secs(2),
            size: 0,
        }
    }
}

pub(crate) fn servers_env() -> HashMap<String, String> {
    let path = match std::env::var_os("TROVE_SHARED_SERVERS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/servers.env"),
    };
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the multi-host suite needs {} ({e}) for the servers' programs\nhint: `bash .ci/servers start`, or `bash .ci/shared`",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

pub(crate) fn trove_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TROVE_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug/trove");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build -p trove-cli` first, or set TROVE_BIN",
        bin.display()
    );
    bin
}

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn poll(max: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + max;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A server this test started: stopped, paused, resumed at will, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Server {
    fn start(mut cmd: Command, ip: &str, port: u16, log: PathBuf) -> Server {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child, port, log };
        let addr = format!("{ip}:{port}");
        let up = poll(Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        if !up {
            let _ = server.child.kill();
            panic!(
                "{addr} did not open: {}",
                fs::read_to_string(server.log.with_extension("err")).unwrap_or_default()
            );
        }
        server
    }

    /// SIGKILL: the server is gone.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: connections are accepted by the kernel and never answered.
    pub(crate) fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// SIGCONT.
    pub(crate) fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }

    fn log_text(&self) -> String {
        // werkzeug logs each request on stderr.
        fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a host's `trove run --explain` answered.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) stdout: Vec<u8>,
    pub(crate) explain: String,
}

impl Run {
    pub(crate) fn assert_built(&self) {
        assert!(self.explain.contains("built"), "{}", self.explain);
    }
}

/// A `trove run` under way in a host's namespace.
pub(crate) struct Running {
    pub(crate) child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    /// Waits (at most two minutes) for it to succeed.
    pub(crate) fn finish(mut self) -> Run {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                netns::kill_group(&self.child);
                panic!(
                    "trove run did not finish in 2 minutes: {}",
                    fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let explain = fs::read_to_string(&self.err).unwrap();
        assert!(status.success(), "trove run failed ({status}): {explain}");
        Run {
            stdout: fs::read(&self.out).unwrap(),
            explain,
        }
    }

    pub(crate) fn child_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// One host: a namespace and a project checkout.
pub(crate) struct Host {
    index: usize,
    ns: String,
    project: PathBuf,
    config: HostConfig,
}

#[derive(Clone)]
struct HostConfig {
    s3: String,
    redis: String,
    options: Options,
    script: String,
    access_key: String,
    secret_key: String,
}

impl Host {
    fn write_config(&self, read_only: bool) {
        let c = &self.config;
        let ron = format!(
            r#"(
    trace: false,
    shared: (
        url: "{s3}",
        secret_env: "TROVE_SHARED_SECRET",
        read_only: {read_only},
        lease: (url: "{redis}", ttl: "{ttl}ms"),
        timeout: "{timeout}ms",
    ),
    recipes: {{
        "{RECIPE}": (
            command: ["sh", "-c", {script:?}],
            inputs: ["data.txt"],
        ),
    }},
)
"#,
            s3 = c.s3,
            redis = c.redis,
            ttl = c.options.ttl.as_millis(),
            timeout = c.options.timeout.as_millis(),
            script = c.script,
        );
        fs::write(self.project.join("trove.ron"), ron).unwrap();
    }

    /// Makes this host a developer machine: reads the shared tier, never writes it.
    pub(crate) fn set_read_only(&self, read_only: bool) {
        self.write_config(read_only);
    }

    /// Starts `trove run --explain report ARGS..` in the host's namespace.
    pub(crate) fn spawn(&self, args: &[&str]) -> Running {
        let out = self
            .project
            .join(format!("../run-{}.out", now_secs() * 1e6));
        let err = out.with_extension("err");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(trove_bin())
            .args(["run", "--explain", RECIPE])
            .args(args)
            .current_dir(&self.project)
            .env("TROVE_SHARED_SECRET", SECRET)
            .env("AWS_ACCESS_KEY_ID", &self.config.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.config.secret_key)
            .env("AWS_REGION", "us-east-1")
            .env("TROVE_TEST_HOST", self.index.to_string())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        Running { child, out, err }
    }

    /// Runs it to completion, expecting success.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.spawn(args).finish()
    }
}

/// How the attacker tampers with the newest record or its blob.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Attack {
    /// The record replaced by one naming a planted blob, with our key id and a MAC that
    /// does not match (what someone without the secret can make).
    Forged,
    /// The record replaced by one naming a planted blob, signed with another team's key.
    Foreign,
    /// One byte of the record's blob flipped in the store.
    FlippedBlob,
}

pub(crate) struct World {
    pub(crate) options: Options,
    pub(crate) redis: Server,
    pub(crate) s3: Server,
    hosts: Vec<Host>,
    tier: SharedTier,
    dir: tempfile::TempDir,
    // Last: the network goes after the servers and hosts that use it.
    pub(crate) net: Net,
}

impl World {
    pub(crate) fn new(hosts: usize, options: Options) -> World {
        let env = servers_env();
        let var = |name: &str| {
            env.get(name)
                .unwrap_or_else(|| panic!("{name} is missing from servers.env"))
                .clone()
        };
        let net = Net::new(hosts);
        let dir = tempfile::Builder::new()
            .prefix("trove-hosts-")
            .tempdir()
            .unwrap();
        let ip = net.server_ip();

        let port = free_port(&ip);
        let mut redis = Command::new(var("TROVE_REDIS_SERVER"));
        redis
            .args(["--bind", &ip, "--port", &port.to_string()])
            .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        let redis = Server::start(redis, &ip, port, dir.path().join("redis.log"));

        let port = free_port(&ip);
        let (access_key, secret_key) = (var("TROVE_S3_ACCESS_KEY"), var("TROVE_S3_SECRET_KEY"));
        let mut s3 = Command::new(var("TROVE_S3_SERVER_PYTHON"));
        s3.arg(var("TROVE_S3_SERVER_SCRIPT")).args([
            &ip,
            &port.to_string(),
            BUCKET,
            &access_key,
            &secret_key,
        ]);
        let s3 = Server::start(s3, &ip, port, dir.path().join("s3.log"));

        let s3_url = format!(
            "s3://{BUCKET}/{PREFIX}?endpoint=http://{ip}:{}&region=us-east-1",
            s3.port
        );
        let redis_url = format!("redis://{ip}:{}", redis.port);
        // The test's own view of the store: an observer, not the system under test, so
        // it waits longer than the hosts do (moto on a busy 2-core machine can be slow).
        let tier = SharedTier::open(
            SharedConfig::new(&s3_url, SECRET.as_bytes().to_vec())
                .unwrap()
                .timeout(Duration::from_secs(20))
                .credentials(Credentials::S3 {
                    access_key_id: access_key.clone(),
                    secret_access_key: secret_key.clone(),
                }),
        )
        .unwrap();

        let root = dir.path();
        let script = format!(
            "printf '%s %s\\n' \"$TROVE_TEST_HOST\" \"$(date +%s.%N)\" >> {log}; \
             sleep \"$(cat {sleep})\"; echo \"object $0\"; cat data.txt; \
             head -c \"$(cat {size})\" /dev/zero | tr '\\000' x",
            log = root.join("builds.log").display(),
            sleep = root.join("sleep").display(),
            size = root.join("size").display(),
        );
        fs::write(root.join("builds.log"), "").unwrap();
        fs::write(root.join("sleep"), "0").unwrap();
        fs::write(root.join("size"), options.size.to_string()).unwrap();
        let config = HostConfig {
            s3: s3_url,
            redis: redis_url,
            options,
            script,
            access_key,
            secret_key,
        };
        let hosts = (0..hosts)
            .map(|i| {
                // Each checkout at its own absolute path, at its own depth.
                let project = root
                    .join(format!("host-{i}"))
                    .join("work/".repeat(i))
                    .join("checkout");
                fs::create_dir_all(&project).unwrap();
                fs::write(project.join("data.txt"), "prices 1f3a\n").unwrap();
                let host = Host {
                    index: i,
                    ns: net.host(i).name.clone(),
                    project,
                    config: config.clone(),
                };
                host.write_config(false);
                host
            })
            .collect();
        World {
            options,
            redis,
            s3,
            hosts,
            tier,
            dir,
            net,
        }
    }

    pub(crate) fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// How long the recipe's command sleeps, read when it starts.
    pub(crate) fn set_sleep(&self, secs: f64) {
        fs::write(self.dir.path().join("sleep"), format!("{secs:.3}")).unwrap();
    }

    /// The lines the recipe's command appended when it started: `host seconds`.
    pub(crate) fn build_lines(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("builds.log"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn builds(&self) -> usize {
        self.build_lines().len()
    }

    pub(crate) fn build_line(&self, i: usize) -> (String, f64) {
        let lines = self.build_lines();
        let (who, when) = lines[i].split_once(' ').unwrap();
        (who.to_owned(), when.parse().unwrap())
    }

    pub(crate) fn wait_for_builds(&self, n: usize, max: Duration) {
        assert!(
            poll(max, || self.builds() >= n),
            "{n} builds did not start in {max:?}: {:?}",
            self.build_lines()
        );
    }

    pub(crate) fn wait_for_s3_log(&self, pattern: &str, max: Duration) {
        assert!(
            poll(max, || self.s3.log_text().contains(pattern)),
            "the S3 server did not see {pattern:?} in {max:?}"
        );
    }

    /// Whether the S3 server's log has a request line holding every one of `parts`.
    pub(crate) fn s3_logged(&self, parts: &[&str]) -> bool {
        self.s3
            .log_text()
            .lines()
            .any(|line| parts.iter().all(|p| line.contains(p)))
    }

    /// Every record in the shared tier that verifies, newest first.
    pub(crate) fn records(&self) -> Vec<VerifiedRecord> {
        self.tier.all_records().unwrap().records
    }

    /// Waits (the upload runs in the background) until `n` records are published.
    pub(crate) fn wait_for_records(&self, n: usize) {
        assert!(
            poll(Duration::from_secs(20), || self.records().len() >= n),
            "{n} records were not published within 20 s: {:?}",
            self.records()
        );
    }

    /// Nothing in the shared tier is corrupt: every record verifies and its blob is there
    /// and verifies; every blob is named by its own blake3 (no partial object).
    pub(crate) fn check_store(&self) {
        let all = self.tier.all_records().unwrap();
        assert!(all.refused.is_empty(), "{:?}", all.refused);
        for record in &all.records {
            self.tier
                .fetch_blob_bytes(&record.blob)
                .unwrap_or_else(|e| panic!("{}: its blob: {e}", record.path()));
        }
        let store = self.tier.storage();
        let mut dirs = vec!["v1/blobs/".to_owned()];
        while let Some(dir) = dirs.pop() {
            for entry in store.list(&dir).unwrap() {
                if entry.is_dir() {
                    dirs.push(entry.path);
                    continue;
                }
                let bytes = store.get(&entry.path).unwrap().unwrap();
                assert_eq!(
                    blake3::hash(&bytes).to_hex().as_str(),
                    entry.name(),
                    "{} is not the blob its name says",
                    entry.path
                );
            }
        }
    }

    /// Tampers with the newest record (or its blob) as `attack` says.
    pub(crate) fn plant(&self, attack: Attack, arg: &str) {
        let newest = self.records().into_iter().next().expect("a record");
        let store = self.tier.storage();
        let path = newest.path().to_owned();
        let planted = format!("planted object {arg}\n").into_bytes();
        let planted_ref = BlobRef::of(&planted);
        let mut evil = newest.record().clone();
        evil.blob = planted_ref;
        match attack {
            Attack::Forged | Attack::Foreign => {
                store.put_if_absent(&planted_ref.path(), &planted).unwrap();
                let secret = match attack {
                    Attack::Forged => SECRET,
                    _ => OTHER_SECRET,
                };
                let mut bytes =
                    Signer::new(&Secret::new(secret.as_bytes().to_vec()).unwrap()).encode(&evil);
                if let Attack::Forged = attack {
                    // Our key id, a MAC only the secret could have made: without it, wrong.
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x55;
                }
                store.delete(&path).unwrap();
                store.put_if_absent(&path, &bytes).unwrap();
                // And as the key's hint, which readers look at first.
                store.put(&newest_path(&evil.key), &bytes).unwrap();
            }
            Attack::FlippedBlob => {
                let blob = newest.record().blob.path();
                let mut bytes = store.get(&blob).unwrap().unwrap();
                bytes[0] ^= 0x01;
                store.delete(&blob).unwrap();
                store.put_if_absent(&blob, &bytes).unwrap();
            }
        }
    }

    #[allow(dead_code)]
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}
