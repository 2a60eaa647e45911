//! Why an answer was what it was.

use std::fmt;
use std::time::Duration;

/// How a request was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Served from the memory tier.
    HitMemory,
    /// Served from the disk tier.
    HitDisk,
    /// Fetched from the team's shared tier (verified, copied into the disk tier), then
    /// served.
    HitShared,
    /// Built, because of this.
    Built(Why),
    /// Another caller built it while this one waited.
    Waited(Why),
}

/// Why an object was (or would be) built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Why {
    /// No stored object for the key.
    NoEntry,
    /// A tracked file, module or source file changed.
    Changed {
        /// What changed, for people: a path relative to the project, or an env var.
        what: String,
        /// Its state before.
        from: String,
        /// Its state now.
        to: String,
    },
    /// A dependency object changed its output.
    Dependency {
        /// The dependency's recipe and arguments.
        what: String,
        /// Why the dependency itself was rebuilt, if known.
        because: Option<Box<Why>>,
    },
    /// The recipe's version changed.
    RecipeVersion {
        /// Version that built the object.
        from: u32,
        /// Version now.
        to: u32,
    },
    /// The recipe's definition changed: its command, declared inputs, env, needs, check
    /// (command recipes), or the configuration's declared inputs and env (any recipe).
    Definition {
        /// The parts that changed, by name.
        parts: Vec<String>,
    },
    /// A version counter changed.
    Counter {
        /// The counter (recipe-level counters are `recipe/name`).
        name: String,
        /// Value when built (`None`: it did not exist).
        from: Option<u64>,
        /// Value now.
        to: Option<u64>,
    },
    /// Older than its `max_age`.
    Expired {
        /// The limit.
        max_age: Duration,
    },
    /// A volatile input's time to live ran out.
    VolatileExpired {
        /// The volatile source.
        name: String,
        /// Its time to live.
        ttl: Duration,
    },
    /// The recipe's invariant check failed on the stored object.
    CheckFailed(String),
    /// The stored blob failed verification (or did not decode).
    BlobCorrupt(String),
    /// The stored variant was quarantined (corrupt, or it failed its check).
    Quarantined(String),
    /// The stored object could not be checked (unknown format, unregistered dependency).
    Unverifiable(String),
    /// Nothing valid was stored here and the shared tier could not answer (slow, down,
    /// refusing, or skipped after a recent failure): built locally.
    SharedUnavailable(String),
    /// The shared tier's record for the key was refused (unsigned, forged, truncated,
    /// signed with another key): never used.
    SharedRefused(String),
    /// The caller asked for a new build ([`Engine::refresh`](crate::Engine::refresh),
    /// `trove run --force`).
    Forced,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::HitMemory => f.write_str("hit memory"),
            Reason::HitDisk => f.write_str("hit disk"),
            Reason::HitShared => f.write_str("hit shared"),
            Reason::Built(why) => write!(f, "built: {why}"),
            Reason::Waited(why) => write!(f, "built by another caller: {why}"),
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NoEntry => f.write_str("no entry"),
            Why::Changed { what, from, to } => {
                // `blake3 1f3a.. -> blake3 9c2e..` reads better as `blake3 1f3a.. -> 9c2e..`.
                let to = match (from.strip_prefix("blake3 "), to.strip_prefix("blake3 ")) {
                    (Some(_), Some(rest)) => rest,
                    _ => to.as_str(),
                };
                write!(f, "{what} changed ({from} -> {to})")
            }
            Why::Dependency { what, because } => match because {
                Some(b) => write!(f, "dependency {what} changed: {b}"),
                None => write!(f, "dependency {what} changed"),
            },
            Why::RecipeVersion { from, to } => write!(f, "recipe version {from} -> {to}"),
            Why::Definition { parts } => {
                write!(f, "recipe definition changed ({})", parts.join(", "))
            }
            Why::Counter { name, from, to } => {
                let v = |x: &Option<u64>| x.map_or("(none)".to_owned(), |v| v.to_string());
                write!(f, "counter {name} {} -> {}", v(from), v(to))
            }
            Why::Expired { max_age } => {
                write!(
                    f,
                    "expired (max_age {})",
                    trove_config::format_duration(*max_age)
                )
            }
            Why::VolatileExpired { name, ttl } => write!(
                f,
                "volatile {name} expired (ttl {})",
                trove_config::format_duration(*ttl)
            ),
            Why::CheckFailed(msg) => write!(f, "check failed: {msg}"),
            Why::BlobCorrupt(msg) => write!(f, "blob corrupt ({msg})"),
            Why::Quarantined(msg) => write!(f, "quarantined: {msg}"),
            Why::Unverifiable(msg) => write!(f, "cannot verify the stored object: {msg}"),
            Why::SharedUnavailable(msg) => write!(f, "no entry (shared tier unavailable: {msg})"),
            Why::SharedRefused(msg) => write!(f, "shared record refused ({msg})"),
            Why::Forced => f.write_str("forced"),
        }
    }
}

/// What a request would do, predicted without building: `would hit disk`,
/// `would build: data/prices.csv changed (blake3 1f3a.. -> 9c2e..)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prediction {
    /// The memory tier would serve it.
    HitMemory,
    /// The disk tier would serve it.
    HitDisk,
    /// The shared tier would serve it (after copying it into the disk tier).
    HitShared,
    /// It would be built, for this reason.
    Build(Why),
}

impl Prediction {
    /// Whether the request would build.
    pub fn builds(&self) -> bool {
        matches!(self, Prediction::Build(_))
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prediction::HitMemory => f.write_str("would hit memory"),
            Prediction::HitDisk => f.write_str("would hit disk"),
            Prediction::HitShared => f.write_str("would hit shared"),
            Prediction::Build(why) => write!(f, "would build: {why}"),
        }
    }
}

/// Where an object lives now, answered without building.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Residency {
    /// Nothing stored for the key.
    Absent,
    /// A valid object on disk, not in memory.
    OnDisk,
    /// A valid object in memory.
    InMemory,
    /// A valid object in the team's shared tier only.
    Shared,
    /// Stored, but a request would rebuild it, for this reason.
    Stale(Why),
}

impl fmt::Display for Residency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Residency::Absent => f.write_str("absent"),
            Residency::OnDisk => f.write_str("on disk"),
            Residency::InMemory => f.write_str("in memory"),
            Residency::Shared => f.write_str("shared"),
            Residency::Stale(why) => write!(f, "stale: {why}"),
        }
    }
}
