//! Cycles across independent processes: a wait-for graph in the store.
//!
//! A process about to wait for a key's lock while it builds other keys (its chain: the
//! keys being built on this thread and, through `TROVE_BUILDING`, by the processes that
//! started it) writes one file in the store's `locks/waits/`: the key it waits for, then
//! its chain. Each file is a set of edges "the builder of X waits for Y". Before blocking,
//! the process follows the edges from the key it waits for; reaching a key of its own
//! chain means every process on the way waits for the next one forever, and it gets
//! `Error::Cycle` instead. The file is written before the graph is read, so of the
//! processes that close a cycle the last one to register always sees it (two may both
//! see it; both then fail, and neither waits). Files of dead processes are ignored and
//! removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use trove_fingerprint::Digest;

/// This process's registration as a waiter; removed when dropped.
pub(crate) struct Waiting(PathBuf);

impl Drop for Waiting {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Registers that this process waits for `key` while building `chain`.
pub(crate) fn register(dir: &Path, key: Digest, chain: &[Digest]) -> std::io::Result<Waiting> {
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "{}-{}.wait",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let mut text = key.hex();
    for k in chain {
        text.push('\n');
        text.push_str(&k.hex());
    }
    // Written whole under a temporary name, then renamed: a reader never sees half.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(Waiting(path))
}

/// Whether waiting for `key` while building `chain` closes a cycle of waiters.
pub(crate) fn closes_cycle(dir: &Path, key: Digest, chain: &[Digest]) -> bool {
    let mut edges: HashMap<Digest, Vec<Digest>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wait") {
            continue;
        }
        let pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut lines = text.lines().filter_map(Digest::from_hex);
        let Some(waited) = lines.next() else {
            continue;
        };
        for holder in lines {
            edges.entry(holder).or_default().push(waited);
        }
    }
    let mine: HashSet<Digest> = chain.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut todo = vec![key];
    while let Some(k) = todo.pop() {
        if mine.contains(&k) {
            return true;
        }
        if seen.insert(k)
            && let Some(next) = edges.get(&k)
        {
            todo.extend(next.iter().copied());
        }
    }
    false
}

/// Whether a process with this id exists.
fn alive(pid: i32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 checks for existence and permission; it sends nothing.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}
