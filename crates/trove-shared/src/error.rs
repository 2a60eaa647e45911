//! The crate's typed errors. Each says which remote, which operation and which path.

use std::fmt;
use std::io;
use std::time::Duration;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL does not parse, or a part of it is wrong.
    #[error("invalid shared store URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scheme trove does not serve.
    #[error(
        "unsupported scheme `{scheme}` in `{url}`: use s3://, redis://, rediss://, webdav://, webdavs://, file:// or memory://"
    )]
    UnsupportedScheme {
        /// The URL as written.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A query parameter the scheme does not take.
    #[error("unknown parameter `{name}` in `{url}`")]
    UnknownParameter {
        /// The URL as written.
        url: String,
        /// The parameter's name.
        name: String,
    },
    /// A URL that carries credentials; they belong in the environment.
    #[error("`{url}` carries a password or key: pass it as credentials from the environment")]
    SecretInUrl {
        /// The URL, with the secret part masked.
        url: String,
    },
    /// A secret too short to sign with.
    #[error("the shared secret is {len} bytes; at least {min} are needed", min = crate::config::MIN_SECRET_LEN)]
    WeakSecret {
        /// Its length.
        len: usize,
    },
    /// A duration out of range.
    #[error("{what} of {value:?} is too short")]
    InvalidDuration {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: Duration,
    },
}

/// Why a remote (the store or the lease server) could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// No answer within the configured timeout.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// The remote refused: permission denied, bad credentials, a signature mismatch.
    Refused {
        /// The remote's message.
        message: String,
    },
    /// The remote failed: connection refused or reset, a server error.
    Failed {
        /// The remote's message.
        message: String,
    },
    /// Not tried: the remote failed recently and is skipped until the backoff expires.
    BackingOff {
        /// How long until it is tried again.
        retry_in: Duration,
        /// The failure that started the backoff.
        last_error: String,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::TimedOut { after } => write!(f, "no answer within {after:?}"),
            Unavailable::Refused { message } => write!(f, "refused: {message}"),
            Unavailable::Failed { message } => write!(f, "failed: {message}"),
            Unavailable::BackingOff {
                retry_in,
                last_error,
            } => write!(
                f,
                "skipped for another {retry_in:?} after a failure ({last_error})"
            ),
        }
    }
}

/// An error of a [`Storage`](crate::Storage) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The service could not be used.
    #[error("{service}: {op} `{path}`: {cause}")]
    Unavailable {
        /// The service (`s3`, `redis`, ...).
        service: &'static str,
        /// The operation (`get`, `put`, `list`, `delete`).
        op: &'static str,
        /// The path it was about.
        path: String,
        /// Why.
        cause: Unavailable,
    },
    /// Reading or writing the local side of a transfer failed.
    #[error("{op} `{path}`: local I/O: {source}")]
    Local {
        /// The operation.
        op: &'static str,
        /// The remote path being transferred.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The storage refused the operation for what it asked, not for being unavailable:
    /// a content-addressed storage refuses bytes that do not hash to the path's name, a
    /// path outside what it stores, a corrupt object, or deleting an object still in use.
    #[error("{op} `{path}`: refused: {reason}")]
    Rejected {
        /// The operation.
        op: &'static str,
        /// The path it was about.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Which remote an [`SharedError::Unavailable`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    /// The object store (blobs and records).
    Store,
    /// The lease server.
    Leases,
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Remote::Store => "shared store",
            Remote::Leases => "lease server",
        })
    }
}

/// Why a record was refused. Each case names what is wrong, so `explain` can say it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes do not start with a record's magic.
    #[error("not a trove record")]
    NotARecord,
    /// A format version this trove does not read (a newer trove wrote it).
    #[error("unknown record format version {found} (this trove reads versions up to {known})")]
    UnknownVersion {
        /// The version found.
        found: u8,
        /// The version this trove reads.
        known: u8,
    },
    /// Shorter than its header says.
    #[error("truncated record: {len} bytes where {expected} were announced")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the header announced.
        expected: usize,
    },
    /// A complete record with no signature.
    #[error("unsigned record")]
    Unsigned,
    /// Signed with a key other than ours (another team, an old secret).
    #[error("record signed with another key (key id {found}, ours is {ours})")]
    Foreign {
        /// The signer's key id.
        found: String,
        /// Ours.
        ours: String,
    },
    /// Signed with our key id, but the signature does not match the content.
    #[error("forged record: the signature does not match the content")]
    Forged,
    /// Signed correctly but stored under another key or name (a replayed record).
    #[error("record for key {found} stored at {path}")]
    Misplaced {
        /// The key inside the record.
        found: String,
        /// Where it was found.
        path: String,
    },
    /// Bytes after the signature, or a body that does not decode.
    #[error("malformed record: {what}")]
    Malformed {
        /// What is wrong.
        what: String,
    },
}

/// What is wrong with a downloaded blob.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobProblem {
    /// It is longer or shorter than the record says.
    Length {
        /// The record's length.
        expected: u64,
        /// The length received (at least this much, if the download was cut short).
        found: u64,
    },
    /// Its blake3 is not its name.
    Hash {
        /// The blake3 of what arrived, hex.
        found: String,
    },
}

impl fmt::Display for BlobProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobProblem::Length { expected, found } => {
                write!(f, "length {found}, expected {expected}")
            }
            BlobProblem::Hash { found } => write!(f, "content hashes to {found}"),
        }
    }
}

/// An error of the shared tier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store or the lease server is slow, down, refusing, or skipped after a failure.
    #[error("{remote} unavailable: {op} `{target}`: {cause}")]
    Unavailable {
        /// Which remote.
        remote: Remote,
        /// The operation.
        op: &'static str,
        /// The path, key or lease it was about.
        target: String,
        /// Why.
        cause: Unavailable,
    },
    /// A downloaded blob is not what its name says; nothing of it may be used.
    #[error("shared blob {blob} is corrupt: {problem}")]
    BlobCorrupt {
        /// The blob's blake3, hex.
        blob: String,
        /// What is wrong.
        problem: BlobProblem,
    },
    /// A record names a blob the store does not have.
    #[error("shared blob {blob} is missing")]
    BlobMissing {
        /// The blob's blake3, hex.
        blob: String,
    },
    /// The file handed to `publish` is not the blob its record names.
    #[error("the file to publish is not the record's blob: {problem}")]
    BlobMismatch {
        /// What differs.
        problem: BlobProblem,
    },
    /// A write was asked of a read-only tier.
    #[error("the shared tier is read-only")]
    ReadOnly,
    /// A lease was asked of a tier configured without a lease server.
    #[error("no lease server is configured (shared.lease)")]
    NoLeases,
    /// The storage refused an operation (see [`StorageError::Rejected`]).
    #[error("{op} `{target}`: refused: {reason}")]
    Rejected {
        /// The operation.
        op: &'static str,
        /// The path it was about.
        target: String,
        /// Why.
        reason: String,
    },
    /// Local I/O failed (reading the file to publish, writing a download).
    #[error("{what}: {source}")]
    Local {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl SharedError {
    /// Whether this is [`SharedError::Unavailable`]: the caller builds locally and says why.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SharedError::Unavailable { .. })
    }

    pub(crate) fn from_storage(remote: Remote, error: StorageError) -> SharedError {
        match error {
            StorageError::Unavailable {
                op, path, cause, ..
            } => SharedError::Unavailable {
                remote,
                op,
                target: path,
                cause,
            },
            StorageError::Local { op, path, source } => SharedError::Local {
                what: format!("{op} `{path}`"),
                source,
            },
            StorageError::Rejected { op, path, reason } => SharedError::Rejected {
                op,
                target: path,
                reason,
            },
        }
    }
}
