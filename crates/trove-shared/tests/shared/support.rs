//! Helpers shared by the suites: records, blobs, unique names.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use trove_shared::{BlobRef, SharedRecord};

pub(crate) const SECRET: &[u8] = b"the team's secret, at least sixteen bytes";
pub(crate) const OTHER_SECRET: &[u8] = b"another team's secret, also long enough";

/// A name no other test (in this run or an earlier one) uses.
pub(crate) fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // Short: a store's prefix is part of every key, and some S3 servers (s3s-fs) limit
    // keys' length.
    format!(
        "{tag}-{:x}-{:x}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A key derived from a name.
pub(crate) fn key(name: &str) -> [u8; 32] {
    *blake3::hash(name.as_bytes()).as_bytes()
}

/// A record of `key` whose object is `blob`.
pub(crate) fn record(key: [u8; 32], blob: BlobRef, created_ms: i64) -> SharedRecord {
    SharedRecord {
        key,
        recipe: "table".into(),
        args: "\"EUR\"".into(),
        recipe_version: 3,
        created_ms,
        blob,
        codec: 0,
        trace: b"trace: data/prices.csv blake3 1f3a".to_vec(),
        reason: "built: no entry".into(),
    }
}

/// `len` bytes of deterministic noise written to a temp file in 1 MiB pieces; the file,
/// rewound, and its reference.
pub(crate) fn noise_file(len: u64, seed: u64) -> (File, BlobRef) {
    let mut file = tempfile::tempfile().unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut state = seed | 1;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        file.write_all(&buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(0)).unwrap();
    let blob = BlobRef {
        hash: *hasher.finalize().as_bytes(),
        len,
    };
    (file, blob)
}

/// The blake3 and length of a file's content.
pub(crate) fn blob_of(file: &mut File) -> BlobRef {
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&mut *file).unwrap();
    BlobRef {
        hash: *hasher.finalize().as_bytes(),
        len: hasher.count(),
    }
}
