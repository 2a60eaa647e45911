//! The clocks a build is judged by: the wall clock (read in `trove_fingerprint`, its one
//! home) and the clock file times are stamped with.

pub(crate) use trove_fingerprint::now_ms;

/// The moment a build started, on the clocks file times are stamped with.
///
/// Linux stamps files from the coarse real-time clock, except that since 6.13 a file
/// whose times were looked at since its last change gets a fine-grained stamp, and later
/// coarse stamps never fall behind the finest one handed out ("multigrain" timestamps).
/// So the start is read twice: from the coarse clock, and as the mtime of a file created
/// now in `dir` (the store), which is what a file written now on that file system would
/// get. A file on that file system stamped at or after `stamped` may have been written
/// after the build started; on another file system, one stamped at or after the earlier
/// of the two.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BuildStart {
    coarse_ns: i64,
    stamped: Option<(u64, i64)>,
}

impl BuildStart {
    /// Reads the clocks now; `dir` is where the stamp file is made (and removed).
    pub(crate) fn now(dir: &std::path::Path) -> BuildStart {
        let coarse_ns = coarse_ns();
        let probe = dir.join(format!(
            ".trove-clock-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let stamped = std::fs::File::create(&probe)
            .and_then(|f| f.metadata())
            .ok()
            .map(|m| {
                let s = trove_fingerprint::Stat::from_metadata(&m);
                (s.dev, s.mtime_ns.min(s.ctime_ns))
            });
        let _ = std::fs::remove_file(&probe);
        BuildStart { coarse_ns, stamped }
    }

    /// Whether a file in this state may have been modified at or after the start.
    pub(crate) fn maybe_after(&self, stat: &trove_fingerprint::Stat) -> bool {
        self.at_or_after(Some(stat.dev), stat.mtime_ns.max(stat.ctime_ns))
    }

    /// Whether a listing whose latest change is `changed` may have changed at or after
    /// the start.
    pub(crate) fn listing_maybe_after(&self, changed: &trove_fingerprint::Change) -> bool {
        self.at_or_after(changed.dev, changed.newest_ns)
    }

    /// Whether a time stamped on device `dev` (`None`: on one of several) is at or after
    /// the start.
    fn at_or_after(&self, dev: Option<u64>, ns: i64) -> bool {
        let start = match self.stamped {
            Some((stamped_on, ns)) if Some(stamped_on) == dev => ns,
            Some((_, ns)) => ns.min(self.coarse_ns),
            None => self.coarse_ns,
        };
        ns >= start
    }
}

/// The coarse real-time clock (Linux), in nanoseconds since the Unix epoch; elsewhere
/// one tick of the slowest common clock before now.
fn coarse_ns() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        // time_t and c_long are i64 on 64-bit Linux, narrower elsewhere.
        #[allow(clippy::unnecessary_cast)]
        if rc == 0 {
            return (ts.tv_sec as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ts.tv_nsec as i64);
        }
    }
    trove_fingerprint::now_ns().saturating_sub(10_000_000)
}
