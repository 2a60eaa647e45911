//! The recipes the cases serve.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trove::{BuildError, Cx, Recipe};

/// Small arguments, a small object, no inputs: the memory-tier hit.
#[derive(Clone)]
pub(crate) struct Small;

/// The arguments of [`Small`]: what a typical call passes.
pub(crate) type SmallArgs = (String, u32);

impl Recipe for Small {
    const NAME: &'static str = "small";
    const VERSION: u32 = 1;
    type Args = SmallArgs;
    type Output = Vec<u64>;
    fn build(&self, _cx: &mut Cx, args: &SmallArgs) -> Result<Vec<u64>, BuildError> {
        Ok(vec![u64::from(args.1); 4])
    }
}

/// Reads every file of a list: the object with many file inputs.
#[derive(Clone)]
pub(crate) struct ManyFiles {
    pub(crate) files: Arc<Vec<PathBuf>>,
}

impl Recipe for ManyFiles {
    const NAME: &'static str = "many-files";
    const VERSION: u32 = 1;
    type Args = u32;
    type Output = u64;
    fn build(&self, cx: &mut Cx, _args: &u32) -> Result<u64, BuildError> {
        let mut total = 0u64;
        for f in self.files.iter() {
            total += cx.read(f)?.len() as u64;
        }
        Ok(total)
    }
}

/// `size` bytes made from `nonce` (different nonces give different blobs), no inputs.
#[derive(Clone)]
pub(crate) struct Bytes;

impl Bytes {
    /// The object [`Bytes`] builds, also what the baselines write and read.
    pub(crate) fn make(size: u64, nonce: u64) -> Vec<u8> {
        let mut v = vec![(nonce as u8).wrapping_add(1); size as usize];
        let n = v.len().min(8);
        v[..n].copy_from_slice(&nonce.to_le_bytes()[..n]);
        v
    }
}

impl Recipe for Bytes {
    const NAME: &'static str = "bytes";
    const VERSION: u32 = 1;
    type Args = (u64, u64);
    type Output = Vec<u8>;
    fn build(&self, _cx: &mut Cx, &(size, nonce): &(u64, u64)) -> Result<Vec<u8>, BuildError> {
        Ok(Bytes::make(size, nonce))
    }
}

/// A slow build that appends the wall-clock nanosecond it ended at to `log`, one line per
/// build, so the number of builds and their end can be read across processes.
#[derive(Clone)]
pub(crate) struct Cold {
    pub(crate) log: PathBuf,
    pub(crate) delay: Duration,
}

impl Recipe for Cold {
    const NAME: &'static str = "cold";
    const VERSION: u32 = 1;
    type Args = u64;
    type Output = Vec<u8>;
    fn build(&self, _cx: &mut Cx, nonce: &u64) -> Result<Vec<u8>, BuildError> {
        std::thread::sleep(self.delay);
        let end = crate::measure::wall_ns();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| BuildError::Failed(e.to_string()))?;
        writeln!(f, "{end}").map_err(|e| BuildError::Failed(e.to_string()))?;
        Ok(nonce.to_le_bytes().repeat(512))
    }
}
