//! Timing in alternation, medians, peak RSS, and the rows of the table.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Whether a goal was met.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Met {
    Yes,
    No,
    /// No goal, or the case did not run.
    NotApplicable,
}

/// One line of the table.
pub(crate) struct Row {
    pub(crate) case: String,
    pub(crate) trove: String,
    pub(crate) baseline: String,
    pub(crate) ratio: Option<f64>,
    pub(crate) goal: String,
    pub(crate) met: Met,
    /// Sizes reduced by `--quick`, how a figure was taken, what a row means.
    pub(crate) note: String,
}

impl Row {
    /// A row comparing two times, the goal being `ratio <= max`.
    pub(crate) fn ratio_at_most(case: &str, trove: f64, base: f64, max: f64, note: &str) -> Row {
        let ratio = trove / base;
        Row {
            case: case.to_owned(),
            trove: fmt_secs(trove),
            baseline: fmt_secs(base),
            ratio: Some(ratio),
            goal: if max < 1.0 {
                format!("< {}", fmt_goal(max))
            } else {
                format!("<= {}", fmt_goal(max))
            },
            met: if (max < 1.0 && ratio < max) || (max >= 1.0 && ratio <= max) {
                Met::Yes
            } else {
                Met::No
            },
            note: note.to_owned(),
        }
    }

    /// A row comparing two times for reference, with no goal.
    pub(crate) fn reference(case: &str, trove: f64, base: f64, note: &str) -> Row {
        Row {
            case: case.to_owned(),
            trove: fmt_secs(trove),
            baseline: fmt_secs(base),
            ratio: Some(trove / base),
            goal: "-".to_owned(),
            met: Met::NotApplicable,
            note: note.to_owned(),
        }
    }

    /// A row that could not be measured.
    pub(crate) fn not_run(case: &str, goal: &str, reason: &str) -> Row {
        Row {
            case: case.to_owned(),
            trove: "not run".to_owned(),
            baseline: "-".to_owned(),
            ratio: None,
            goal: goal.to_owned(),
            met: Met::NotApplicable,
            note: format!("not run: {reason}"),
        }
    }
}

/// A goal's ratio with one decimal, or two when it has them (1.25 is not 1.2).
fn fmt_goal(max: f64) -> String {
    let one = format!("{max:.1}");
    if one.parse::<f64>().is_ok_and(|x| (x - max).abs() < 1e-9) {
        one
    } else {
        format!("{max:.2}")
    }
}

/// The median of `samples` (sorted in place).
pub(crate) fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// The `p`-quantile (0..=1) of `samples` (sorted in place), nearest rank.
pub(crate) fn quantile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return f64::NAN;
    }
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// Runs `a` and `b` alternately `reps` times each (starting with `a`, then `b` first on
/// the next repetition, so neither always runs on a warmer cache) and returns the median
/// seconds of each. Each closure returns the seconds its repetition took per operation.
pub(crate) fn alternate(
    reps: usize,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> (f64, f64) {
    let mut sa = Vec::with_capacity(reps);
    let mut sb = Vec::with_capacity(reps);
    for rep in 0..reps {
        if rep % 2 == 0 {
            sa.push(a());
            sb.push(b());
        } else {
            sb.push(b());
            sa.push(a());
        }
    }
    (median(&mut sa), median(&mut sb))
}

/// Seconds per call of `f`, called `iters` times in a tight loop.
pub(crate) fn per_op<T>(iters: u64, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed().as_secs_f64() / iters as f64
}

/// Seconds one call of `f` took.
pub(crate) fn once<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    black_box(f());
    start.elapsed().as_secs_f64()
}

/// A duration for people: ns, us, ms or s with three significant digits.
pub(crate) fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        return "-".to_owned();
    }
    let (v, unit) = if s < 1e-6 {
        (s * 1e9, "ns")
    } else if s < 1e-3 {
        (s * 1e6, "us")
    } else if s < 1.0 {
        (s * 1e3, "ms")
    } else {
        (s, "s")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// Bytes for people: B, KiB, MiB or GiB.
/// This process's peak resident set (`VmHWM` of `/proc/self/status`), in bytes.
pub(crate) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Nanoseconds since the Unix epoch: comparable across processes.
pub(crate) fn wall_ns() -> i64 {
    trove_fingerprint::now_ns()
}

/// Sleeps until `since + at_least` has passed.
pub(crate) fn wait_until(since: Instant, at_least: Duration) {
    let elapsed = since.elapsed();
    if elapsed < at_least {
        std::thread::sleep(at_least - elapsed);
    }
}
