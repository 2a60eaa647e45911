//! What `--json` prints, one typed struct per command (`trove recipes --json` prints
//! `recipes::RecipeInfo`, `trove watch --json` prints `watch::Line`): a script reads
//! these field names, so they change only on purpose.

use serde::Serialize;

use crate::failure::{Diagnostic, Failure};

/// Writes `value` as one line of JSON on stdout.
pub(crate) fn emit_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string(value)
        .map_err(|e| Failure::other(Diagnostic::error(format!("cannot encode JSON: {e}"))))?;
    Ok(crate::human::emit(&text)?)
}

/// `trove why --json`: what `run` would do.
#[derive(Serialize)]
pub(crate) struct Why<'a> {
    /// The recipe.
    pub(crate) recipe: &'a str,
    /// The command's extra words.
    pub(crate) args: &'a [String],
    /// The object's key, hex.
    pub(crate) key: String,
    /// `build` or `serve`.
    pub(crate) action: &'static str,
    /// The prediction, worded for people (`would build: ...`).
    pub(crate) reason: String,
}

/// One stored variant in `trove status --json` (an array of them).
#[derive(Serialize)]
pub(crate) struct Status<'a> {
    /// The recipe.
    pub(crate) recipe: &'a str,
    /// The arguments: the stored JSON value (a command's words), or its text.
    pub(crate) args: serde_json::Value,
    /// The object's key, hex.
    pub(crate) key: String,
    /// The variant's row id.
    pub(crate) variant: i64,
    /// `absent`, `disk`, `memory` or `stale`.
    pub(crate) residency: String,
    /// Why it is stale, when it is.
    pub(crate) stale_because: Option<String>,
    /// The blob's size in bytes.
    pub(crate) size: u64,
    /// Seconds since it was built.
    pub(crate) age_secs: u64,
    /// Times it was served.
    pub(crate) hits: u64,
    /// Why it was built.
    pub(crate) reason: &'a str,
}

/// `trove verify --json`.
#[derive(Serialize)]
pub(crate) struct Verify<'a> {
    /// Nothing corrupt was found.
    pub(crate) clean: bool,
    /// Records checked.
    pub(crate) records: u64,
    /// Blobs checked.
    pub(crate) blobs: u64,
    /// Bytes of blobs checked.
    pub(crate) bytes: u64,
    /// Records quarantined by this run.
    pub(crate) quarantined_records: u64,
    /// Blobs quarantined by this run.
    pub(crate) quarantined_blobs: u64,
    /// What was corrupt, for people.
    pub(crate) corrupt: &'a [String],
}

/// `trove gc --json`.
#[derive(Serialize)]
pub(crate) struct Gc<'a> {
    /// Nothing was removed (`--dry-run`).
    pub(crate) dry_run: bool,
    /// Bytes freed (or that would be).
    pub(crate) bytes: u64,
    /// What was removed (or would be).
    pub(crate) removals: Vec<Removal<'a>>,
    /// Variants kept.
    pub(crate) kept: usize,
}

/// One removal of `trove gc --json`.
#[derive(Serialize)]
pub(crate) struct Removal<'a> {
    /// What: a path relative to the store or the project, or a variant.
    pub(crate) what: String,
    /// Why (`dead: counter alice 1 -> 2`).
    pub(crate) reason: &'a str,
    /// Its size.
    pub(crate) bytes: u64,
}

/// `trove status --shared --json`.
#[derive(Serialize)]
pub(crate) struct SharedStatusJson<'a> {
    /// The keys the shared tier holds.
    pub(crate) entries: Vec<SharedEntryJson<'a>>,
    /// Records refused (unsigned, forged, truncated, another key), with why.
    pub(crate) refused: Vec<SharedRefusedJson<'a>>,
    /// The tier and how it answered this process.
    pub(crate) health: SharedHealthJson<'a>,
}

/// One key of `trove status --shared --json`.
#[derive(Serialize)]
pub(crate) struct SharedEntryJson<'a> {
    /// The recipe.
    pub(crate) recipe: &'a str,
    /// The arguments: the stored JSON value (a command's words), or its text.
    pub(crate) args: serde_json::Value,
    /// The key, hex.
    pub(crate) key: String,
    /// Variants (signed records) of the key.
    pub(crate) variants: usize,
    /// Bytes of their blobs.
    pub(crate) size: u64,
    /// Seconds since the newest was built.
    pub(crate) age_secs: u64,
}

/// A refused record of `trove status --shared --json`.
#[derive(Serialize)]
pub(crate) struct SharedRefusedJson<'a> {
    /// Its path in the store.
    pub(crate) path: &'a str,
    /// Why it was refused.
    pub(crate) reason: &'a str,
}

/// The shared tier's health in `trove status --shared --json`.
#[derive(Serialize)]
pub(crate) struct SharedHealthJson<'a> {
    /// The store's URL, as configured.
    pub(crate) url: &'a str,
    /// Whether this machine only reads.
    pub(crate) read_only: bool,
    /// Whether leases are configured.
    pub(crate) leases: bool,
    /// Calls made to the store.
    pub(crate) calls: u64,
    /// Calls that failed.
    pub(crate) failures: u64,
    /// Calls that timed out.
    pub(crate) timeouts: u64,
    /// Calls skipped while backing off.
    pub(crate) skipped: u64,
    /// Milliseconds until the store is tried again, when it is backing off.
    pub(crate) retry_in_ms: Option<u64>,
    /// The last failure.
    pub(crate) last_error: Option<&'a str>,
    /// Records that verified.
    pub(crate) records_verified: u64,
    /// Records refused.
    pub(crate) records_refused: u64,
    /// Blobs downloaded and verified.
    pub(crate) blobs_fetched: u64,
    /// Blobs refused as corrupt.
    pub(crate) blobs_corrupt: u64,
    /// Records published by this process.
    pub(crate) published: u64,
}

/// `trove gc --shared --json`.
#[derive(Serialize)]
pub(crate) struct SharedGc<'a> {
    /// Nothing was removed (`--dry-run`).
    pub(crate) dry_run: bool,
    /// Bytes of blobs freed (or that would be).
    pub(crate) bytes: u64,
    /// The variants removed (or that would be).
    pub(crate) removals: Vec<SharedRemovalJson<'a>>,
    /// Variants left in the shared tier.
    pub(crate) kept: usize,
    /// Blobs no record names, removed (or that would be) after their grace period.
    pub(crate) orphans: Vec<SharedOrphanJson>,
    /// Blobs no record names, still within their grace period (marked).
    pub(crate) orphans_waiting: usize,
    /// Why orphan blobs were not looked for, when they were not.
    pub(crate) orphans_skipped: Option<String>,
}

/// One orphan blob of `trove gc --shared --json`.
#[derive(Serialize)]
pub(crate) struct SharedOrphanJson {
    /// The blob's blake3, hex.
    pub(crate) blob: String,
    /// Its size, when the store's listing tells it.
    pub(crate) bytes: Option<u64>,
    /// Seconds collections have found it unnamed.
    pub(crate) unnamed_secs: u64,
}

/// One removal of `trove gc --shared --json`.
#[derive(Serialize)]
pub(crate) struct SharedRemovalJson<'a> {
    /// The recipe.
    pub(crate) recipe: &'a str,
    /// The arguments.
    pub(crate) args: serde_json::Value,
    /// The key, hex.
    pub(crate) key: String,
    /// Why (`older than 30d`, `over the size limit (100 GiB)`).
    pub(crate) reason: &'a str,
    /// The variant's blob size.
    pub(crate) bytes: u64,
    /// Seconds since it was built.
    pub(crate) age_secs: u64,
}
