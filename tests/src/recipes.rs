//! The recipes `trove-probe` builds, shared with the suites that check what it stored (a
//! module of both the probe and `tests.rs`): a suite that reads the probe's objects back
//! uses the very recipe that made them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use trove::{BuildError, Cx, Recipe};

/// The value of a key, as every build of [`Slow`] makes it.
pub(crate) fn value_of(key: &str) -> String {
    format!("value of {key}")
}

/// The bytes of a large object, as every build of [`Large`] makes it: 4 MiB.
pub(crate) fn large_of(key: &str) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..4 << 20)
        .map(|i: u32| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// The object [`FileCopy`] makes from the input's content: it repeated to 64 KiB.
pub(crate) fn expand(content: &[u8]) -> Vec<u8> {
    if content.is_empty() {
        return Vec::new();
    }
    content.iter().copied().cycle().take(64 << 10).collect()
}

/// Appends a line to `DIR/builds.log` (O_APPEND: lines of several processes never mix).
pub(crate) fn log(dir: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("builds.log"))
        .expect("the build log opens");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("the build log is written");
}

/// A build that logs `building KEY`, sleeps, then logs `built KEY`.
#[derive(Clone)]
pub(crate) struct Slow {
    /// Where `builds.log` is.
    pub(crate) dir: PathBuf,
    /// How long a build takes.
    pub(crate) sleep: Duration,
}

impl Recipe for Slow {
    const NAME: &'static str = "slow";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = String;
    fn build(&self, _cx: &mut Cx, key: &String) -> Result<String, BuildError> {
        log(&self.dir, &format!("building {key}"));
        std::thread::sleep(self.sleep);
        log(&self.dir, &format!("built {key}"));
        Ok(value_of(key))
    }
}

/// 4 MiB objects ([`large_of`]), so a publish takes many writes.
#[derive(Clone)]
pub(crate) struct Large;

impl Recipe for Large {
    const NAME: &'static str = "large";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = Vec<u8>;
    fn build(&self, _cx: &mut Cx, key: &String) -> Result<Vec<u8>, BuildError> {
        Ok(large_of(key))
    }
}

/// Reads the file named by its argument (tracked) and repeats it to 64 KiB
/// ([`expand`]), so its blob takes several writes.
#[derive(Clone)]
pub(crate) struct FileCopy;

impl Recipe for FileCopy {
    const NAME: &'static str = "file";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = Vec<u8>;
    fn build(&self, cx: &mut Cx, name: &String) -> Result<Vec<u8>, BuildError> {
        Ok(expand(&cx.read(name)?))
    }
}
