//! Digests of a recipe's own source files.
//!
//! A recipe names the globs its code lives in. During development the files are on disk
//! and the engine fingerprints them like data files; a binary shipped without its sources
//! carries the same digest, computed by its build script with [`emit_source_digest`].

use std::io;
use std::path::Path;

use crate::{Digest, glob};

/// blake3 over the sorted `(relative path, blake3 of content)` pairs of every file under
/// `root` matched by `globs`. The same function runs in build scripts and at run time, so
/// the two agree whenever the sources do.
pub fn source_digest(root: &Path, globs: &[&str]) -> io::Result<Digest> {
    let mut files = Vec::new();
    for pattern in globs {
        let (names, _) = glob(root, pattern, &[]).map_err(io::Error::other)?;
        files.extend(names);
    }
    files.sort();
    files.dedup();
    let mut h = blake3::Hasher::new_derive_key("trove sources v1");
    for rel in &files {
        let bytes = std::fs::read(root.join(rel))?;
        h.update(&(rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update(blake3::hash(&bytes).as_bytes());
    }
    Ok(Digest(*h.finalize().as_bytes()))
}

/// For build scripts: computes [`source_digest`] of `globs` under the crate's manifest
/// directory, exports it to the compiler as the environment variable `env_name` (read it
/// with `option_env!`), and asks cargo to re-run the script when any matched file changes.
///
/// ```no_run
/// // build.rs
/// trove_fingerprint::emit_source_digest("TROVE_SOURCES_TABLE", &["src/table/**/*.rs"]).unwrap();
/// ```
pub fn emit_source_digest(env_name: &str, globs: &[&str]) -> io::Result<()> {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| io::Error::other("CARGO_MANIFEST_DIR is not set: run from build.rs"))?;
    let digest = source_digest(&root, globs)?;
    for pattern in globs {
        let base = root.join(crate::glob_base(pattern));
        println!("cargo:rerun-if-changed={}", base.display());
    }
    println!("cargo:rustc-env={env_name}={}", digest.hex());
    Ok(())
}
