//! Helpers shared by the suites.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The probe binary of this package.
pub(crate) const PROBE: &str = env!("CARGO_BIN_EXE_trove-probe");

/// Temp files (`.tmp-…`) in the blob directories of the store under `dir`.
pub(crate) fn temp_files(dir: &Path) -> usize {
    temp_files_in(&dir.join(".trove/v1/blobs"))
}

/// Temp files (`.tmp-…`) in the shards of the blob directory `blobs`.
pub(crate) fn temp_files_in(blobs: &Path) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(blobs).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().starts_with(".tmp-") {
                n += 1;
            }
        }
    }
    n
}

/// Polls `condition` every millisecond for at most `limit`; a bound against a hang, not
/// a timing assertion.
pub(crate) fn poll(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    condition()
}

/// Waits for the child to exit, for at most `limit`; `None` if it did not.
pub(crate) fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    poll(limit, || {
        status = child.try_wait().expect("the child can be waited for");
        status.is_some()
    });
    status
}

/// The lines of `dir/builds.log`, which the probe's builds append to.
pub(crate) fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("builds.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
