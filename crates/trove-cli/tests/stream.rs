//! `trove run` streams objects: a command's stdout goes to a file in the store, and a
//! stored object goes to stdout from its verified file, in memory bounded whatever the
//! object's size. Real processes, real files; peak memory measured by the kernel.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// The generator's period: `yes` prints this line forever.
const LINE: &[u8] = b"0123456789abcdef\n";

/// A recipe whose object is the first `len` bytes of `yes 0123456789abcdef`.
fn config(len: u64) -> String {
    format!(
        r#"(recipes: {{ "big": (command: ["sh", "-c", "yes 0123456789abcdef | head -c {len}"]) }})"#
    )
}

/// blake3 and length of the generator's first `len` bytes, computed in 1 MiB pieces.
fn expected(len: u64) -> (blake3::Hash, u64) {
    // A whole number of lines, so consecutive pieces keep the period.
    let piece: Vec<u8> = LINE
        .iter()
        .copied()
        .cycle()
        .take(LINE.len() * 61_681)
        .collect();
    let mut h = blake3::Hasher::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(piece.len() as u64) as usize;
        h.update(&piece[..n]);
        left -= n as u64;
    }
    (h.finalize(), len)
}

struct Measured {
    code: i32,
    stdout_hash: blake3::Hash,
    stdout_len: u64,
    stderr: String,
    /// Peak resident set of the process (and the children it waited for), in bytes.
    max_rss: u64,
}

/// Runs `trove ARGS` in `dir`, hashing stdout as it arrives (never holding it), and
/// reaps it with `wait4` to read its peak resident set from the kernel.
fn run_measured(dir: &Path, args: &[&str]) -> Measured {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trove"))
        .args(args)
        .current_dir(dir)
        .env_remove("TROVE_CONFIG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trove");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let hashing = std::thread::spawn(move || {
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = stdout.read(&mut buf).expect("read stdout");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            len += n as u64;
        }
        (h.finalize(), len)
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).expect("read stderr");
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data the kernel fills in; the pid is our own child,
    // which nothing else waits for (the `Child` is dropped without a wait).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let (stdout_hash, stdout_len) = hashing.join().expect("hashing thread");
    Measured {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stdout_hash,
        stdout_len,
        stderr: errors.join().expect("stderr thread"),
        // Linux reports kilobytes.
        max_rss: usage.ru_maxrss as u64 * 1024,
    }
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[test]
fn a_one_gib_object_is_built_and_served_in_bounded_memory_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("trove.ron"), config(GIB)).expect("write config");
    let (hash, len) = expected(GIB);
    // Far below the object's size: what the process needs whatever the object's size.
    let bound = 100 * MIB;
    for (round, reason) in [("build", "built: no entry"), ("serve", "hit disk")] {
        let m = run_measured(dir.path(), &["run", "--explain", "big"]);
        eprintln!(
            "{round}: peak RSS {:.1} MiB for a {} MiB object",
            m.max_rss as f64 / MIB as f64,
            len / MIB
        );
        assert_eq!(m.code, 0, "{round}: {}", m.stderr);
        assert_eq!(m.stderr.trim(), reason, "{round}");
        assert_eq!(m.stdout_len, len, "{round}: every byte on stdout");
        assert_eq!(m.stdout_hash, hash, "{round}: the generator's bytes");
        assert!(
            m.max_rss < bound,
            "{round}: peak RSS {} bytes is not below {bound}",
            m.max_rss
        );
    }
}

/// A project whose object spans several hash chunks, built once.
fn built(len: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("trove.ron"), config(len)).expect("write config");
    let m = run_measured(dir.path(), &["run", "big"]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    dir
}

fn the_blob(dir: &Path) -> std::path::PathBuf {
    let mut blobs = Vec::new();
    for shard in std::fs::read_dir(dir.join(".trove/v1/blobs")).expect("blobs") {
        for f in std::fs::read_dir(shard.expect("shard").path()).expect("shard") {
            let path = f.expect("entry").path();
            if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                blobs.push(path);
            }
        }
    }
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    blobs.pop().unwrap()
}

fn flip_a_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .expect("open blob");
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).expect("read");
    f.write_all_at(&[!b[0]], at).expect("write");
}

#[test]
fn a_flipped_byte_in_a_stored_object_is_quarantined_and_rebuilt_by_run_and_by_verify() {
    let len = 3 * MIB + 5;
    let dir = built(len);
    let (hash, _) = expected(len);
    let quarantined =
        || std::fs::read_dir(dir.path().join(".trove/v1/quarantine")).map_or(0, |d| d.count());

    flip_a_byte(&the_blob(dir.path()), 2 * MIB + 1);
    let m = run_measured(dir.path(), &["run", "--explain", "big"]);
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert!(
        m.stderr.contains("built: blob corrupt"),
        "detected before serving: {}",
        m.stderr
    );
    assert_eq!(
        (m.stdout_hash, m.stdout_len),
        (hash, len),
        "never the corrupt bytes"
    );
    assert_eq!(quarantined(), 1);
    let m = run_measured(dir.path(), &["run", "--explain", "big"]);
    assert_eq!(m.stderr.trim(), "hit disk");

    flip_a_byte(&the_blob(dir.path()), 7);
    let m = run_measured(dir.path(), &["verify"]);
    assert_eq!(m.code, 1, "verify finds it: {}", m.stderr);
    assert_eq!(quarantined(), 2);
    let m = run_measured(dir.path(), &["run", "--explain", "big"]);
    assert_eq!(m.stderr.trim(), "built: no entry");
    assert_eq!((m.stdout_hash, m.stdout_len), (hash, len));
}

#[test]
fn run_appends_to_a_file_opened_for_appending() {
    let len = MIB + 3;
    let dir = built(len);
    let out = dir.path().join("out.bin");
    std::fs::write(&out, b"head:").expect("write");
    for _ in 0..2 {
        let file = std::fs::File::options()
            .append(true)
            .open(&out)
            .expect("open");
        let status = Command::new(env!("CARGO_BIN_EXE_trove"))
            .args(["run", "big"])
            .current_dir(dir.path())
            .env_remove("TROVE_CONFIG")
            .stdin(Stdio::null())
            .stdout(file)
            .status()
            .expect("run trove");
        assert!(status.success());
    }
    let written = std::fs::read(&out).expect("read");
    assert_eq!(&written[..5], b"head:");
    let (hash, _) = expected(len);
    let body = &written[5..];
    assert_eq!(body.len() as u64, 2 * len);
    let half = len as usize;
    assert_eq!(blake3::hash(&body[..half]), hash);
    assert_eq!(blake3::hash(&body[half..]), hash);
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let dir = built(4 * MIB);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trove"))
        .args(["run", "big"])
        .current_dir(dir.path())
        .env_remove("TROVE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trove");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 17];
    stdout.read_exact(&mut first).expect("read");
    assert_eq!(&first, LINE);
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
