//! trove's shared tier: a team's objects in an object store it already runs (S3 and
//! compatibles, Redis, WebDAV, a shared file system), reached through OpenDAL, and
//! exactly-once builds across machines through leases in Redis. No server of our own.
//!
//! # Design
//!
//! *Architecture invariant:* nothing this crate returns as usable was altered, forged or
//! cut short: a [`VerifiedRecord`] is signed with the team's secret and stored under its
//! own key, and [`SharedTier::fetch_blob`] returns `Ok` only for bytes whose length and
//! blake3 are the blob's name. A slow, down or refusing remote costs a caller at most the
//! configured `timeout`, and after a failure the remote is skipped (backoff) instead of
//! costing every request a timeout.
//!
//! *API boundary:* [`SharedTier`] (lookup, fetch, publish, leases, stats) and the
//! [`Storage`] trait with its OpenDAL implementation [`RemoteStore`]; the configuration
//! types; the errors. The engine stays synchronous: every call blocks, and the async work
//! runs on a two-worker tokio runtime the tier owns.
//!
//! ## Layers
//!
//! ```text
//! SharedTier   records signed and verified (Signer), blobs verified while streaming,
//!   │          first-writer-wins publishing, backoff and counters (Health), leases
//!   ├── dyn Storage ── RemoteStore: OpenDAL operator, every call under `timeout`
//!   │                    └─ Redis: RedisKv, natively (create-if-absent, listing, bounded
//!   │                       uploads and one-round-trip reads, which OpenDAL's service lacks)
//!   └── Leases: Redis SET NX PX, renewal task, compare-and-delete, pub/sub wake-ups
//! ```
//!
//! [`Storage`] is deliberately small (sccache's `Storage`): `get`, `get_into` (streaming),
//! `put_if_absent`, `put_stream_if_absent`, `put` (replace, for hints only), `list`,
//! `delete`. The local tier implements it
//! for its blobs behind an adapter in the `trove` crate (`trove::LocalStorage`, same
//! paths), so tiers stack with backfill from slow to fast: a shared blob is streamed by
//! [`SharedTier::fetch_blob`] (a `get_into`, verified as it arrives) into the local
//! adapter's writer. Records are not shared between the tiers: signed objects here,
//! SQLite rows in the local store. [`StorageError::Rejected`] is a storage refusing what
//! was asked (the local adapter: bytes that are not their path's name, a path it does not
//! hold, a blob a record still uses).
//!
//! ## Layout in the store
//!
//! ```text
//! <prefix>/v1/blobs/ab/<64 hex blake3>                content only, content-addressed
//! <prefix>/v1/records/ab/<64 hex key>/<32 hex variant> a signed record (see `record.rs`)
//! <prefix>/v1/newest/ab/<64 hex key>                  the key's hint: a signed copy of
//!                                                     the record last published under it
//! ```
//!
//! A hit reads the key's hint first ([`SharedTier::lookup_newest`], one GET): a record
//! like any other (verified the same way, and it must name the key), which carries the
//! object inline when it is at most [`INLINE_MAX`] (64 KiB). So a small hit is one
//! request and a large one two (hint, blob) on every service; when the hint is missing or
//! does not serve, [`SharedTier::lookup`] lists the key's records (LIST + a GET each).
//! Only the publisher that created the variant's record replaces the hint (a plain
//! overwrite, [`Storage::put`], whole on every service), after the blob and the record.
//!
//! The variant is a blake3 of what the object was built from (key, recipe, version, codec,
//! trace), not of what it produced: two machines that build one key from the same inputs
//! race on one name, and the first writer wins. The layout version `v1` is in every path.
//! A record's path is 111 bytes plus the prefix: s3s-fs keeps a key base64-encoded in one
//! file name and refuses keys over about 158 bytes (real S3 takes 1024).
//!
//! ## Records
//!
//! A record carries the key, recipe, arguments, recipe version, creation time, blob
//! (blake3 and length), codec, the engine's trace (with the recipe's definition) and the
//! build's reason (and, format version 2, the object inline when small; version 1 is still
//! read), in a fixed little-endian encoding with a format version, followed by the
//! signing key's id and a blake3 keyed hash. The MAC key is
//! `blake3::derive_key("trove shared record v1", secret)`; the key id is the first 8 bytes
//! of `derive_key("trove shared key id v1", secret)`. Verification refuses, each with its
//! own [`RecordError`]: not a record, an unknown version, truncated, unsigned, foreign
//! (another key id), forged (our key id, wrong MAC), misplaced (a valid record copied under
//! another key or name) and malformed. Refused records are reported by
//! [`SharedTier::lookup`] beside the good ones, never used, never deleted (a foreign record
//! may be a colleague's with a misconfigured secret).
//!
//! ## Blobs
//!
//! Downloads stream through a hashing writer into the caller's file: a 64 MiB blob is
//! never held in memory. The length is checked as bytes arrive (a blob longer than its
//! record is cut off at once) and the blake3 at the end; a corrupt blob is refused and,
//! in a writable tier, deleted so the next publish replaces it. Uploads read the file
//! twice: once to check that it hashes to the record's blob (a blob is never published
//! under a wrong name), once to send it — to S3 in 8 MiB multipart parts, to Redis in
//! 4 MiB `APPEND`s (read back in 4 MiB `GETRANGE`s), to a file system streamed; WebDAV's OpenDAL writer sends one body, so
//! there the blob is held once (as a list of chunks, never copied into one piece).
//!
//! ## First writer wins
//!
//! Blob, then record, each created only if absent ([`Storage::create_if_absent`] says how
//! strongly):
//!
//! | service | create-if-absent | how |
//! |---|---|---|
//! | S3 | as the server makes it | OpenDAL's `if_not_exists` = `If-None-Match: *` on PUT and on CompleteMultipartUpload: atomic on AWS S3 (since 2024), MinIO, R2; moto (the test suite's S3 server) and s3s-fs check, then write (their racing publishers may both be told they won) |
//! | Redis | atomic | upload to a temporary key, then a Lua script renames it into place only if absent (OpenDAL's Redis service has no conditional write) |
//! | file system | check, then rename | OpenDAL's `if_not_exists` with an atomic write directory: checks existence, writes a temp file, renames it |
//! | WebDAV | check, then write | OpenDAL's WebDAV has no conditional write: trove checks, then PUTs (nginx writes a temp file and renames it) |
//! | memory | atomic | in-process |
//!
//! An object over 64 KiB is looked for before it is uploaded even where the write is
//! conditional: a blob another machine already uploaded is not sent again only to be
//! refused. A server may answer `412` before reading the body and close the connection
//! (s3s-fs does), which the client sees as a failed send; a conditional write that fails
//! that way is followed by an existence check, and an object found there counts as
//! [`Put::AlreadyExists`] (a complete object stands at the path, whoever wrote it).
//!
//! Where the check and the write are two steps, two writers racing inside the window may
//! both write; what holds instead: every write is whole (temp file and rename), so the
//! path holds one writer's complete object, never a mix. For a blob that is harmless (the
//! same name means the same bytes); for a record the last complete one stays, and either
//! is valid (same variant, each signed, each naming a blob that was uploaded first).
//!
//! ## Timeouts and backoff
//!
//! Every remote operation — each request, each chunk of a stream, each connection attempt
//! to Redis — is bounded by `timeout` (OpenDAL's retry layer is not enabled: a retry
//! would hide a slow remote). A failure returns [`SharedError::Unavailable`] with an
//! [`Unavailable`] cause (timed out, refused, failed) and starts a backoff: the remote is
//! skipped for `backoff.initial`, doubling with each failure in a row up to `backoff.max`,
//! and a call during that interval returns `Unavailable::BackingOff` at once. The store and
//! the lease server back off separately; [`SharedStats`] counts calls, failures, timeouts
//! and skips.
//!
//! ## Leases
//!
//! See [`Leases`]: `SET NX PX` with a random token, renewed every `ttl / 3` by a task on
//! the tier's runtime (compare-and-expire), released by compare-and-delete; waiters
//! subscribe to the key's channel and are woken by `published` (sent after the record is
//! stored) or `released`, and poll the lease so an expired one is taken over within `ttl`
//! plus one poll interval.
//!
//! ## Dependencies
//!
//! - `opendal` (services s3, redis, webdav, fs; reqwest with rustls; no default layers):
//!   one API over the object stores teams already run, maintained by Apache, the layer
//!   sccache and others build on.
//! - `redis` (tokio, connection manager, scripts): leases, pub/sub, and the Redis store's
//!   operations (OpenDAL's Redis service has no conditional write and no listing, buffers
//!   a whole value to write it and takes three round trips for a ranged read); it is the
//!   client OpenDAL's Redis service itself uses.
//! - `tokio`: the runtime OpenDAL and redis need; owned by the tier, invisible to callers.
//! - `blake3`: content addresses, the record MAC (keyed mode) and key derivation, the
//!   hash the rest of trove uses.
//! - `url`: strict parsing of the configured URLs.
//! - `futures`, `bytes`: streams and buffers at OpenDAL's interface.
//! - `thiserror`: the typed errors; `tracing`: warnings about refused records.

mod config;
mod error;
mod health;
mod lease;
mod lookup;
mod orphans;
mod record;
mod redis_kv;
mod remote;
mod rt;
mod storage;
mod tier;

pub use config::{
    Backoff, Credentials, DEFAULT_TIMEOUT, LeaseConfig, MIN_SECRET_LEN, RedisUrl, Secret,
    SharedConfig, StoreUrl,
};
pub use error::{
    BlobProblem, ConfigError, RecordError, Remote, SharedError, StorageError, Unavailable,
};
pub use health::RemoteStats;
pub use lease::{Lease, Leases, Wake};
pub use orphans::{ORPHAN_GRACE, StoredBlob, orphan_marks_path};
pub use record::{
    BlobRef, INLINE_MAX, Key, LAYOUT_DIR, RECORD_VERSION, SharedRecord, Signer, VerifiedRecord,
    newest_path, newest_root, records_dir,
};
pub use remote::RemoteStore;
pub use storage::{CreateIfAbsent, Entry, Put, Storage};
pub use tier::{
    Lookup, MAX_RECORD_LEN, PublishHandle, Published, Refused, SharedStats, SharedTier,
};

#[cfg(test)]
mod tests {
    #[test]
    fn the_tier_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<super::SharedTier>();
        is::<super::RemoteStore>();
        is::<super::Leases>();
        is::<super::Lease>();
    }
}
