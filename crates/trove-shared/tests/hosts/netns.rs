//! Several machines on one: network namespaces joined by veth pairs to a bridge.
//!
//! ```text
//!   root namespace                              host namespaces
//!   bridge tvb<id>  10.A.B.1/24  ── servers     trove-hosts-<pid>-<n>-0   eth0 10.A.B.10
//!     ├── tvh<id>0 ══════ veth ════════════════ trove-hosts-<pid>-<n>-1   eth0 10.A.B.11
//!     ├── tvh<id>1 ══════ veth ════════════════ ...
//! ```
//!
//! The servers (Redis, the S3 server) run in the root namespace bound to the bridge's
//! address, as children of the test, so a test stops, pauses and resumes them; the hosts
//! reach them over their veth only, so `cut` (the root end of a host's veth down) takes a
//! host off the network without touching the others. Every name carries the test
//! process's pid: a run that crashed leaves namespaces and links that the next run
//! removes (`sweep`) once it sees their pid is gone. Needs root (CI runs as root) and
//! `ip` (iproute2, which `.ci/servers install` installs).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

const NETNS_PREFIX: &str = "trove-hosts-";

/// One virtual network: a bridge in the root namespace and one namespace per host.
pub(crate) struct Net {
    bridge: String,
    subnet: String,
    hosts: Vec<HostNs>,
}

/// A host's namespace and the root end of its link.
pub(crate) struct HostNs {
    /// The namespace (`ip netns exec <name>`).
    pub(crate) name: String,
    /// The root namespace's end of the host's veth pair.
    pub(crate) link: String,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e} (is iproute2 installed?)", args.join(" ")))
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn base36(mut n: u64, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills every process in a namespace, then deletes it.
fn remove_netns(name: &str) {
    let pids = ip(&["netns", "pids", name]);
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    let _ = ip(&["netns", "del", name]);
}

/// Removes what runs that died left behind: namespaces and links whose pid is gone.
fn sweep() {
    let list = ip(&["netns", "list"]);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let pid: u32 = rest.split('-').next().unwrap_or("").parse().unwrap_or(0);
        if pid != 0 && !alive(pid) {
            remove_netns(name);
        }
    }
    let links = ip(&["-o", "link", "show"]);
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        // "7: tvbxxxxxxx: <...>" or "8: tvh...@if2: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if (name.starts_with("tvb") || name.starts_with("tvh")) && name.len() >= 10 {
            let pid = u32::from_str_radix(&name[3..8], 36).unwrap_or(0);
            if pid != 0 && !alive(pid) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

impl Net {
    /// A bridge and `hosts` namespaces, each linked to it, loopback up.
    pub(crate) fn new(hosts: usize) -> Net {
        assert!(hosts <= 10, "at most 10 hosts");
        // SAFETY-free check for root: `ip netns add` needs it, and says so badly.
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            })
            .unwrap_or_default();
        assert_eq!(
            uid, "0",
            "the multi-host suite creates network namespaces and needs root (CI runs as root)"
        );
        static SWEPT: Once = Once::new();
        SWEPT.call_once(sweep);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{}{}", base36(u64::from(pid), 5), base36(u64::from(n), 2));
        let k = (pid.wrapping_mul(31).wrapping_add(n)) % 11_000;
        let subnet = format!("10.{}.{}", 200 + k / 256, k % 256);
        let bridge = format!("tvb{id}");
        let mut net = Net {
            bridge: bridge.clone(),
            subnet: subnet.clone(),
            hosts: Vec::new(),
        };
        ip_ok(&["link", "add", &bridge, "type", "bridge"]);
        ip_ok(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge]);
        ip_ok(&["link", "set", &bridge, "up"]);
        for i in 0..hosts {
            let name = format!("{NETNS_PREFIX}{pid}-{n}-{i}");
            let link = format!("tvh{id}{i}");
            let host_ip = format!("{subnet}.{}", 10 + i);
            ip_ok(&["netns", "add", &name]);
            net.hosts.push(HostNs {
                name: name.clone(),
                link: link.clone(),
            });
            ip_ok(&[
                "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ]);
            ip_ok(&["link", "set", &link, "master", &bridge]);
            ip_ok(&["link", "set", &link, "up"]);
            ip_ok(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{host_ip}/24"),
                "dev",
                "eth0",
            ]);
            ip_ok(&["-n", &name, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", &name, "link", "set", "lo", "up"]);
        }
        net
    }

    /// The address servers bind to: the bridge's, in the root namespace.
    pub(crate) fn server_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// Host `i`'s namespace.
    pub(crate) fn host(&self, i: usize) -> &HostNs {
        &self.hosts[i]
    }

    /// Takes host `i` off the network (its link goes down, as a pulled cable).
    pub(crate) fn cut(&self, i: usize) {
        ip_ok(&["link", "set", &self.hosts[i].link, "down"]);
    }

    /// Puts host `i` back on the network, forgetting the neighbours it failed to reach
    /// meanwhile (else it says "no route to host" until they time out).
    pub(crate) fn mend(&self, i: usize) {
        ip_ok(&["link", "set", &self.hosts[i].link, "up"]);
        ip_ok(&["-n", &self.hosts[i].name, "neigh", "flush", "all"]);
    }

    /// `program` run inside host `i`'s namespace (`ip netns exec` execs it: the child's
    /// pid is the program's).
    pub(crate) fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].name])
            .arg(program);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for host in &self.hosts {
            remove_netns(&host.name);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A child in a process group of its own, killed whole (the command trove runs too).
pub(crate) fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

#[test]
fn a_host_reaches_the_bridge_and_a_cut_host_does_not() {
    let net = Net::new(2);
    let listener = std::net::TcpListener::bind((net.server_ip().as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = |i: usize| {
        // bash's /dev/tcp, bounded by `timeout`: connects or not.
        net.command(i, "timeout")
            .args(["3", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{}/{port}", net.server_ip()))
            .status()
            .unwrap()
            .success()
    };
    assert!(probe(0) && probe(1));
    net.cut(0);
    assert!(!probe(0), "a cut host still reaches the servers");
    assert!(probe(1), "cutting one host cut another");
    net.mend(0);
    assert!(probe(0));
    let names: Vec<String> = net.hosts.iter().map(|h| h.name.clone()).collect();
    let bridge = net.bridge.clone();
    drop(net);
    let list = String::from_utf8(ip(&["netns", "list"]).stdout).unwrap();
    for name in names {
        assert!(!list.contains(&name), "{name} outlived its Net");
    }
    assert!(!ip(&["link", "show", &bridge]).status.success());
}

#[test]
fn names_carry_the_pid_that_sweep_reads_back() {
    let id = format!("{}{}", base36(4_194_304, 5), base36(7, 2));
    assert_eq!(id.len(), 7);
    let link = format!("tvh{id}3");
    assert!(link.len() <= 15, "{link}");
    assert_eq!(u32::from_str_radix(&link[3..8], 36).unwrap(), 4_194_304);
}
