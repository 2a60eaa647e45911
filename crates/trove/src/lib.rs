//! trove builds, caches and serves expensive immutable objects the way a build system
//! serves build outputs.
//!
//! A [`Recipe`] builds an object from arguments through a tracked context ([`Cx`]) that
//! records every input the build touched. The [`Engine`] keeps the object in memory (one
//! `Arc` per object per process) and in a content-addressed store on disk, and serves it
//! again only while every recorded input is unchanged; otherwise it rebuilds it, exactly
//! once however many threads and processes ask at the same time. Every answer carries its
//! [`Reason`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use trove::{BuildError, Cx, Engine, Recipe};
//!
//! #[derive(Clone)]
//! struct Total;
//!
//! impl Recipe for Total {
//!     const NAME: &'static str = "total";
//!     const VERSION: u32 = 1;
//!     type Args = String;
//!     type Output = f64;
//!     fn build(&self, cx: &mut Cx, path: &String) -> Result<f64, BuildError> {
//!         let text = cx.read_to_string(path)?;
//!         Ok(text.lines().filter_map(|l| l.parse::<f64>().ok()).sum())
//!     }
//! }
//!
//! let engine = Engine::open_in(".".as_ref())?;
//! let served = engine.get_explained(&Total, &"data/prices.txt".to_owned())?;
//! println!("{} ({})", served.value, served.reason); // "42 (built: no entry)"
//! # Ok::<(), trove::Error>(())
//! ```

mod absence;
mod admin;
mod blob;
mod bytes;
mod clock;
mod codec;
mod command;
mod cx;
mod depfile;
mod engine;
mod error;
mod external;
mod flight;
#[cfg(feature = "shared")]
mod local_storage;
mod memory;
mod modules;
mod nested;
mod reason;
mod recipe;
mod reuse;
mod shared_admin;
mod stale;
mod trace;
mod trace_wire;
mod words;

/// Stops every command this process's builds started (their whole process groups:
/// SIGTERM, then SIGKILL after a grace of two seconds); their builds fail with
/// [`BuildError::Interrupted`] and nothing is stored. Call it from the thread that
/// handles SIGINT and SIGTERM (it is not async-signal-safe).
pub fn interrupt() {
    trove_trace::interrupt_all();
}

/// How long [`interrupt`] waits between SIGTERM and SIGKILL.
pub const INTERRUPT_GRACE: std::time::Duration = trove_trace::INTERRUPT_GRACE;

/// What [`register!`] expands to; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::Registration;
    pub use inventory;
}

/// Entry points for the fuzz targets in `fuzz/` and the hostile-input tests; not a stable
/// API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a depfile exactly as command recipes do: the paths, or why it was refused.
    pub fn parse_depfile(bytes: &[u8]) -> Result<Vec<String>, String> {
        crate::depfile::parse(bytes).map_err(|e| e.to_string())
    }

    /// Decodes a stored trace as the disk tier does: `Some(number of inputs)` when it is
    /// accepted, `None` when the variant would be a miss. An accepted trace must encode
    /// back to a trace that decodes to the same value, and the hand-written format 3 to 6
    /// reader must give what the serde one gives (both checked here; a mismatch panics,
    /// so the fuzzer reports it).
    pub fn decode_trace(bytes: &[u8]) -> Option<usize> {
        // The hand-written format 3 to 6 reader must answer exactly as the serde one.
        if let Some((
            &(crate::trace::TRACE_FORMAT
            | crate::trace::TRACE_FORMAT_IMPLIED
            | crate::trace::TRACE_FORMAT_GROUPED
            | crate::trace::TRACE_FORMAT_INDEXED),
            rest,
        )) = bytes.split_first()
        {
            assert!(
                crate::trace_wire::decode(rest) == crate::trace_wire::decode_serde(rest),
                "the two format 3 to 6 decoders disagree"
            );
        }
        let trace = crate::trace::Trace::decode(bytes)?;
        let again = crate::trace::Trace::decode(&trace.encode());
        assert!(
            again.as_ref() == Some(&trace),
            "a decoded trace does not survive encode and decode"
        );
        Some(trace.inputs.len())
    }

    /// A stored trace written again in format 2, the format before paths were interned
    /// (what an older trove stored): for the tests that such rows are still served.
    pub fn trace_in_plain_format(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(crate::trace::Trace::decode(bytes)?.encode_plain())
    }

    /// A stored trace written again in format 3, the format before groups of absences
    /// held their members (what an older trove stored): for the same tests.
    pub fn trace_in_indexed_format(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(crate::trace::Trace::decode(bytes)?.encode_indexed())
    }

    /// A stored trace written again in format 5, the format before a group's names were
    /// one string (what the trove before this one stored): for the same tests.
    pub fn trace_in_format_5(bytes: &[u8]) -> Option<Vec<u8>> {
        let trace = crate::trace::Trace::decode(bytes)?;
        Some(crate::trace_wire::encode(
            &trace,
            crate::trace::TRACE_FORMAT_IMPLIED,
        ))
    }
}

pub use admin::{EntryStatus, GcOptions, GcReport, Removal};
pub use blob::{Blob, BlobReader, BlobWriter};
pub use bytes::{Bytes, MAP_MIN, PrivateHead};
pub use command::{CommandRecipe, Lint};
#[cfg(unix)]
pub use command::{
    NestedAnswer, NestedRequest, SOCKET_VAR as NESTED_SOCKET_VAR, ask as ask_outer_build,
};
pub use cx::{Cx, Module};
pub use engine::{Engine, Options, Secret, Served, Stats, Vouched, WatchGuard};
pub use error::{BuildError, Error};
pub use external::{DynRecipe, Fingerprinter};
#[cfg(feature = "shared")]
pub use local_storage::{BackfillError, BlobSink, LocalStorage};
pub use reason::{Prediction, Reason, Residency, Why};
pub use recipe::{Definition, Recipe, Sources};
pub use shared_admin::{
    SharedEntry, SharedGcOptions, SharedGcReport, SharedHealth, SharedOrphan, SharedRemoval,
    SharedStatus,
};
pub use stale::{StaleEvent, StaleStream, StoredArgs, WatchUpdate};
pub use words::object_label;

// Every type trove's public signatures mention, from the crates behind it, so a program
// (the command line included) depends on `trove` alone. Third-party errors (SQLite's,
// notify's) stay reachable as `std::error::Error::source` only.
pub use trove_config::{
    Config, ConfigError, FILE_NAME, LOCAL_FILE_NAME, LeaseSettings, Need, Place, RecipeConfig,
    SharedSettings, StoreConfig, WatchConfig, did_you_mean, format_duration, format_size,
    parse_duration, parse_size,
};
pub use trove_fingerprint::{Digest, EncodeError, GlobError};
pub use trove_graph::{Graph, InputKind, Node, NodeId};
pub use trove_store::{StoreError, VerifyReport};
pub use trove_watch::WatchError;
