//! The `Storage` contract (trove-shared's trait), run against both of its implementations:
//! the local store's blobs behind `trove::LocalStorage`, and trove-shared's `RemoteStore`
//! over OpenDAL's `fs` service (a directory as the team's store, by a `file://` URL). Then
//! what only the local adapter promises (content addressing, the store's invariants) and
//! the backfill from the shared tier into the local one.
//!
//! Memory is measured by a counting global allocator; the tests of this binary take one
//! lock so that no other test allocates during a measurement.

#![cfg(all(feature = "shared", unix))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use trove::{BackfillError, LocalStorage};
use trove_shared::{
    BlobRef, CreateIfAbsent, Put, RemoteStore, SharedConfig, SharedError, SharedTier, Storage,
    StorageError,
};
use trove_store::{BlobId, NewRecord, Store};

const SECRET: &[u8] = b"the team's secret, thirty-two b.";
const MIB: usize = 1 << 20;
/// The streamed object of the contract.
const STREAMED: u64 = 3 << 20;
/// Eight times as much: what is bounded does not grow with the object.
const LARGE: u64 = 8 * STREAMED;

// ------------------------------------------------------------------ memory measurement

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One test at a time: a measurement counts every thread's allocations.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `f` returns, and the most heap it held at once beyond what was held before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

// ------------------------------------------------------------------ streams

/// `len` pseudo-random bytes, produced as they are read (never held whole).
struct Generated {
    state: u64,
    left: u64,
}

impl Generated {
    fn new(seed: u64, len: u64) -> Generated {
        Generated {
            state: seed | 1,
            left: len,
        }
    }

    /// The blob these bytes make, hashed by streaming them.
    fn blob(seed: u64, len: u64) -> BlobRef {
        let mut hasher = blake3::Hasher::new();
        io::copy(&mut Generated::new(seed, len), &mut HashSink(&mut hasher)).unwrap();
        BlobRef {
            hash: *hasher.finalize().as_bytes(),
            len,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that only hashes and counts.
struct HashSink<'a>(&'a mut blake3::Hasher);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The blob stored at `path`, read by streaming it through `get_into`.
fn streamed_back(s: &dyn Storage, path: &str) -> Option<BlobRef> {
    let mut hasher = blake3::Hasher::new();
    let len = s.get_into(path, &mut HashSink(&mut hasher)).unwrap()?;
    assert_eq!(hasher.count(), len, "get_into's length is what it wrote");
    Some(BlobRef {
        hash: *hasher.finalize().as_bytes(),
        len,
    })
}

// ------------------------------------------------------------------ the subjects

/// An implementation under test and what the contract needs to know about it.
struct Subject<'a> {
    storage: &'a dyn Storage,
    /// The file an object's path is stored in (both implementations are directories).
    file_of: &'a dyn Fn(&str) -> PathBuf,
    /// Whether a put of bytes that do not hash to the path's name is refused.
    content_addressed: bool,
    /// The most heap `put_stream_if_absent` of [`STREAMED`] bytes may hold.
    stream_memory: usize,
}

fn local_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn team_config(dir: &Path) -> SharedConfig {
    SharedConfig::new(&format!("file://{}", dir.display()), SECRET.to_vec())
        .unwrap()
        .timeout(Duration::from_secs(10))
}

fn remote(dir: &Path) -> RemoteStore {
    RemoteStore::open(&team_config(dir)).unwrap()
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

fn shard_dir(path: &str) -> String {
    path[..path.rfind('/').unwrap() + 1].to_owned()
}

/// The contract every `Storage` keeps.
fn contract(subject: &Subject) {
    let s = subject.storage;
    let first = b"the first object".to_vec();
    let first_path = BlobRef::of(&first).path();
    assert!(first_path.starts_with("v1/blobs/"), "{first_path}");

    // Absent: `None`, and nothing written by `get_into`.
    assert_eq!(s.get(&first_path).unwrap(), None);
    let mut out = Vec::new();
    assert_eq!(s.get_into(&first_path, &mut out).unwrap(), None);
    assert!(out.is_empty());

    // put_if_absent, then get and get_into.
    assert_eq!(s.put_if_absent(&first_path, &first).unwrap(), Put::Created);
    assert_eq!(s.get(&first_path).unwrap().as_deref(), Some(&first[..]));
    let mut out = Vec::new();
    assert_eq!(
        s.get_into(&first_path, &mut out).unwrap(),
        Some(first.len() as u64)
    );
    assert_eq!(out, first);
    let file = (subject.file_of)(&first_path);
    assert_eq!(std::fs::read(&file).unwrap(), first, "stored at {file:?}");

    // A second put: AlreadyExists, and the first object stays, not even rewritten.
    let before = ino(&file);
    assert_eq!(
        s.put_if_absent(&first_path, &first).unwrap(),
        Put::AlreadyExists
    );
    let mut again = &first[..];
    assert_eq!(
        s.put_stream_if_absent(&first_path, &mut again, first.len() as u64)
            .unwrap(),
        Put::AlreadyExists
    );
    match s.put_if_absent(&first_path, b"other bytes at the same path") {
        Ok(Put::AlreadyExists) => {}
        Err(StorageError::Rejected { .. }) if subject.content_addressed => {}
        other => panic!("a second put at a taken path: {other:?}"),
    }
    assert_eq!(ino(&file), before, "the first object was rewritten");
    assert_eq!(s.get(&first_path).unwrap().as_deref(), Some(&first[..]));

    // put_stream_if_absent of 3 MiB, in bounded memory, and of eight times as much in
    // the same bound.
    let big = Generated::blob(7, STREAMED);
    let big_path = big.path();
    let mut written_shards = std::collections::BTreeSet::new();
    for (seed, len) in [(7, STREAMED), (8, LARGE)] {
        let blob = Generated::blob(seed, len);
        let path = blob.path();
        let (put, held) =
            peak_during(|| s.put_stream_if_absent(&path, &mut Generated::new(seed, len), len));
        assert_eq!(put.unwrap(), Put::Created);
        assert!(
            held < subject.stream_memory,
            "{}: streaming {len} bytes held {held} bytes at once (bound {})",
            s.describe(),
            subject.stream_memory
        );
        assert_eq!(streamed_back(s, &path), Some(blob));
        assert_eq!(
            std::fs::metadata((subject.file_of)(&path)).unwrap().len(),
            len
        );
        assert_eq!(
            s.put_stream_if_absent(&path, &mut Generated::new(seed, len), len)
                .unwrap(),
            Put::AlreadyExists
        );
        if len == LARGE {
            s.delete(&path).unwrap();
            written_shards.insert(shard_dir(&path));
        }
    }

    // list: the shards under v1/blobs/, the blobs of a shard with their lengths.
    let third = b"a third object".to_vec();
    let third_path = BlobRef::of(&third).path();
    assert_eq!(s.put_if_absent(&third_path, &third).unwrap(), Put::Created);
    let shards = s.list("v1/blobs/").unwrap();
    for path in [&first_path, &big_path, &third_path] {
        let shard = shard_dir(path);
        assert!(
            shards.iter().any(|e| e.path == shard && e.is_dir()),
            "{shard} not in {shards:?}"
        );
        let listed = s.list(&shard).unwrap();
        let entry = listed
            .iter()
            .find(|e| &e.path == path)
            .unwrap_or_else(|| panic!("{path} not in {listed:?}"));
        assert!(!entry.is_dir());
        let len = std::fs::metadata((subject.file_of)(path)).unwrap().len();
        assert!(
            entry.len.is_none_or(|l| l == len),
            "{path}: listed length {:?}, {len} stored",
            entry.len
        );
        assert!(
            listed.iter().all(|e| e.path.starts_with(&shard)),
            "{listed:?}"
        );
    }
    written_shards.extend([&first_path, &big_path, &third_path].map(|p| shard_dir(p)));
    assert!(
        shards.iter().all(|e| written_shards.contains(&e.path)),
        "only the shards written are listed: {shards:?}"
    );
    let empty_shard = (0..=255u8)
        .map(|b| format!("v1/blobs/{b:02x}/"))
        .find(|d| !shards.iter().any(|e| &e.path == d))
        .unwrap();
    assert_eq!(s.list(&empty_shard).unwrap(), Vec::new());

    // delete: gone from get, list and disk; idempotent; the others stay.
    s.delete(&first_path).unwrap();
    assert_eq!(s.get(&first_path).unwrap(), None);
    assert!(!(subject.file_of)(&first_path).exists());
    assert!(
        !s.list(&shard_dir(&first_path))
            .unwrap()
            .iter()
            .any(|e| e.path == first_path)
    );
    s.delete(&first_path).unwrap();
    s.delete(&BlobRef::of(b"never stored").path()).unwrap();
    assert_eq!(s.get(&third_path).unwrap().as_deref(), Some(&third[..]));
    assert_eq!(streamed_back(s, &big_path), Some(big));

    // Deleted, it can be put again.
    assert_eq!(s.put_if_absent(&first_path, &first).unwrap(), Put::Created);
    assert_eq!(s.get(&first_path).unwrap().as_deref(), Some(&first[..]));
}

#[test]
fn the_local_adapter_keeps_the_contract() {
    let _serial = serial();
    let (_dir, store) = local_store();
    let local = LocalStorage::new(&store);
    let file_of = |path: &str| store.root().join(path);
    contract(&Subject {
        storage: &local,
        file_of: &file_of,
        content_addressed: true,
        // One copy buffer and the seal's 1 MiB hashing buffer, never the object.
        stream_memory: 2 * MIB,
    });
    assert_eq!(local.create_if_absent(), CreateIfAbsent::CheckThenWrite);
    assert!(
        local
            .describe()
            .contains(&store.root().display().to_string())
    );
    assert_eq!(temp_files(&store), Vec::<PathBuf>::new());
}

#[test]
fn the_remote_store_keeps_the_contract() {
    let _serial = serial();
    let team = tempfile::tempdir().unwrap();
    let remote = remote(team.path());
    let file_of = |path: &str| team.path().join(path);
    contract(&Subject {
        storage: &remote,
        file_of: &file_of,
        content_addressed: false,
        // RemoteStore reads a stream in 4 MiB chunks (the whole of a 3 MiB object) and
        // OpenDAL's fs writer holds about one more: some 8.4 MiB at 24 MiB here.
        stream_memory: 10 * MIB,
    });
    assert_eq!(remote.create_if_absent(), CreateIfAbsent::CheckThenWrite);
}

// ------------------------------------------------------------------ the local adapter only

/// Temp files left in the store's blob directories.
fn temp_files(store: &Store) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let blobs = store.root().join("v1/blobs");
    for shard in std::fs::read_dir(blobs).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(f.path());
            }
        }
    }
    out
}

#[test]
fn the_local_adapter_refuses_bytes_that_are_not_the_paths_name() {
    let _serial = serial();
    let (_dir, store) = local_store();
    let local = LocalStorage::new(&store);
    let named = BlobRef::of(b"the bytes the name is of");
    let path = named.path();
    let wrong = b"other bytes, same length!".to_vec();

    let refused = local.put_if_absent(&path, &wrong);
    assert!(
        matches!(&refused, Err(StorageError::Rejected { reason, .. }) if reason.contains("hash")),
        "{refused:?}"
    );
    let refused = local.put_stream_if_absent(&path, &mut Generated::new(3, STREAMED), STREAMED);
    assert!(
        matches!(&refused, Err(StorageError::Rejected { .. })),
        "{refused:?}"
    );
    // A stream shorter than announced is a local error, and nothing is stored either.
    let mut short = &b"the bytes the name is of"[..10];
    assert!(matches!(
        local.put_stream_if_absent(&path, &mut short, named.len),
        Err(StorageError::Local { .. })
    ));
    assert_eq!(local.get(&path).unwrap(), None);
    assert!(!store.blob_path(&named.hash).exists());
    assert!(!store.has_blob(&BlobId {
        hash: BlobRef::of(&wrong).hash,
        len: wrong.len() as u64
    }));
    assert_eq!(temp_files(&store), Vec::<PathBuf>::new());

    // A sink whose bytes are not its name is refused at commit.
    let mut sink = local.sink(&path).unwrap();
    sink.write_all(&wrong).unwrap();
    assert!(matches!(
        sink.commit(None),
        Err(StorageError::Rejected { .. })
    ));
    assert!(!store.blob_path(&named.hash).exists());
    assert_eq!(temp_files(&store), Vec::<PathBuf>::new());
}

#[test]
fn the_local_adapter_holds_blobs_only_in_the_shared_layout() {
    let _serial = serial();
    let (_dir, store) = local_store();
    let local = LocalStorage::new(&store);
    let bytes = b"laid out as the shared tier lays it out";
    let blob = BlobRef::of(bytes);
    local.put_if_absent(&blob.path(), bytes).unwrap();
    assert_eq!(store.root().join(blob.path()), store.blob_path(&blob.hash));
    assert_eq!(
        store
            .read_blob(&BlobId {
                hash: blob.hash,
                len: blob.len
            })
            .unwrap(),
        bytes
    );

    let hex = blob.hex();
    for path in [
        format!("v1/records/{}/{hex}/{}", &hex[..2], &hex[..32]),
        format!("v1/blobs/{hex}"),
        format!("v1/blobs/ff/{hex}"),
        format!("v1/blobs/{}/{}", &hex[..2], hex.to_uppercase()),
        format!("v2/blobs/{}/{hex}", &hex[..2]),
        format!("v1/blobs/{}/../{hex}", &hex[..2]),
        "v1/index.sqlite".to_owned(),
    ] {
        let rejected = |r: Result<(), StorageError>| {
            assert!(
                matches!(&r, Err(StorageError::Rejected { .. })),
                "{path}: {r:?}"
            )
        };
        rejected(local.get(&path).map(drop));
        rejected(local.put_if_absent(&path, bytes).map(drop));
        rejected(local.delete(&path));
    }
    for dir in ["v1/records/", "v1/blobs/tmp/", "v1/locks/", "v1/blobs/zz/"] {
        assert!(
            matches!(local.list(dir), Err(StorageError::Rejected { .. })),
            "{dir}"
        );
    }
    assert_eq!(local.list("v1/").unwrap().len(), 1);
    assert_eq!(local.list("v1/").unwrap()[0].path, "v1/blobs/");
    // The store's temp directory is not a shard.
    let _pending = store.temp_blob().unwrap();
    let shards = local.list("v1/blobs/").unwrap();
    assert_eq!(shards.len(), 1, "{shards:?}");
}

fn record(blob: BlobId) -> NewRecord {
    NewRecord {
        key: [9; 32],
        recipe: "table".to_owned(),
        args: "\"2024\"".to_owned(),
        recipe_version: 1,
        created_ms: 1_700_000_000_000,
        blob,
        codec: 0,
        trace: vec![1, 0, 0],
        reason: "built: no entry".to_owned(),
    }
}

#[test]
fn the_local_adapter_never_deletes_a_blob_a_record_uses() {
    let _serial = serial();
    let (_dir, store) = local_store();
    let local = LocalStorage::new(&store);
    let bytes = b"an object a record names";
    let blob = BlobRef::of(bytes);
    local.put_if_absent(&blob.path(), bytes).unwrap();
    let id = BlobId {
        hash: blob.hash,
        len: blob.len,
    };
    let row = store.insert(&record(id)).unwrap();

    let refused = local.delete(&blob.path());
    assert!(
        matches!(&refused, Err(StorageError::Rejected { reason, .. }) if reason.contains("record")),
        "{refused:?}"
    );
    assert_eq!(store.read_blob(&id).unwrap(), bytes);

    store.remove(row).unwrap();
    local.delete(&blob.path()).unwrap();
    assert!(!store.has_blob(&id));
}

#[test]
fn the_local_adapter_refuses_a_corrupt_blob_and_the_store_quarantines_it() {
    let _serial = serial();
    let (_dir, store) = local_store();
    let local = LocalStorage::new(&store);
    let bytes = b"an object, soon flipped";
    let blob = BlobRef::of(bytes);
    local.put_if_absent(&blob.path(), bytes).unwrap();
    let mut flipped = bytes.to_vec();
    flipped[0] ^= 1;
    std::fs::write(store.blob_path(&blob.hash), &flipped).unwrap();

    let mut out = Vec::new();
    assert!(matches!(
        local.get_into(&blob.path(), &mut out),
        Err(StorageError::Rejected { .. })
    ));
    assert!(out.is_empty(), "a corrupt blob's bytes were written");
    assert_eq!(local.get(&blob.path()).unwrap(), None, "quarantined");
    assert_eq!(
        std::fs::read_dir(store.quarantine_dir()).unwrap().count(),
        1
    );
}

// ------------------------------------------------------------------ backfill

#[test]
fn a_shared_blob_is_backfilled_into_the_local_tier_by_streaming() {
    let _serial = serial();
    let team = tempfile::tempdir().unwrap();
    let tier = SharedTier::open(team_config(team.path())).unwrap();
    // Larger than one read of OpenDAL's fs reader (about 3 MiB), so bounded is visible.
    let big = Generated::blob(11, LARGE);
    tier.storage()
        .put_stream_if_absent(&big.path(), &mut Generated::new(11, LARGE), LARGE)
        .unwrap();

    let (_dir, store) = local_store();
    let local = LocalStorage::new(&store);
    let (put, held) = peak_during(|| local.backfill(&tier, &big));
    assert_eq!(put.unwrap(), Put::Created);
    assert!(
        held < 5 * MIB,
        "backfilling {LARGE} bytes held {held} bytes at once"
    );
    assert_eq!(streamed_back(&local, &big.path()), Some(big));
    assert_eq!(temp_files(&store), Vec::<PathBuf>::new());
    let fetched = tier.stats().blobs_fetched;
    assert_eq!(fetched, 1);

    // Here already: nothing is downloaded.
    assert_eq!(local.backfill(&tier, &big).unwrap(), Put::AlreadyExists);
    assert_eq!(tier.stats().blobs_fetched, fetched);
}

#[test]
fn a_corrupt_shared_blob_is_refused_while_it_streams_and_leaves_nothing_local() {
    let _serial = serial();
    let team = tempfile::tempdir().unwrap();
    let tier = SharedTier::open(team_config(team.path())).unwrap();
    let named = BlobRef::of(b"what the record says");
    // Same length, other bytes, under the good name.
    tier.storage()
        .put_if_absent(&named.path(), b"what the record SAYS")
        .unwrap();
    let absent = BlobRef::of(b"never uploaded");

    let (_dir, store) = local_store();
    let local = LocalStorage::new(&store);
    let refused = local.backfill(&tier, &named);
    assert!(
        matches!(
            &refused,
            Err(BackfillError::Remote(SharedError::BlobCorrupt { .. }))
        ),
        "{refused:?}"
    );
    assert!(matches!(
        local.backfill(&tier, &absent),
        Err(BackfillError::Remote(SharedError::BlobMissing { .. }))
    ));
    assert_eq!(local.get(&named.path()).unwrap(), None);
    assert_eq!(local.list("v1/blobs/").unwrap(), Vec::new());
    assert_eq!(temp_files(&store), Vec::<PathBuf>::new());
    // A writable tier removes the corrupt blob, so the next publish replaces it.
    assert_eq!(tier.storage().get(&named.path()).unwrap(), None);
}
