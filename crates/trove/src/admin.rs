//! Looking after a store: status, verify, graph and gc.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use trove_fingerprint::Digest;
use trove_store::{GcItem, Record};

use crate::Error;
use crate::clock::now_ms;
use crate::engine::Engine;
use crate::reason::Residency;
use crate::trace::{Input, Trace};

/// How old an orphan blob must be before gc removes it: a build in another process
/// publishes its blob before it inserts the record that points at it.
const ORPHAN_GRACE: Duration = Duration::from_secs(10 * 60);

/// One stored variant, for `trove status`.
#[derive(Clone, Debug)]
pub struct EntryStatus {
    /// The recipe.
    pub recipe: String,
    /// Its arguments, for people.
    pub args: String,
    /// The key.
    pub key: Digest,
    /// The variant's id in the index.
    pub variant: i64,
    /// Where the object lives and whether a request would serve it.
    pub residency: Residency,
    /// Stored size in bytes.
    pub size: u64,
    /// Time since it was built.
    pub age: Duration,
    /// Times it was served from disk.
    pub hits: u64,
    /// Why it was built.
    pub reason: String,
}

/// What `gc` should do. Without options it removes only what can never be served again
/// (see [`Engine::gc`]).
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// List what would be removed, remove nothing.
    pub dry_run: bool,
    /// Trim the store to this many bytes, least recently used first (default: the
    /// configuration's `store.max_size`).
    pub max_size: Option<u64>,
    /// Also remove the variants that would not be served now because an input differs
    /// from today's (what `status` shows as stale), although a branch switch could bring
    /// them back. Variants that cannot be checked in this process (an unknown trace
    /// format, a dependency whose recipe is not registered) are kept.
    pub stale: bool,
}

/// One thing gc removed (or would remove).
#[derive(Clone, Debug)]
pub struct Removal {
    /// What: a variant (`variant recipe args`), a blob, a temp file.
    pub what: String,
    /// Bytes freed.
    pub bytes: u64,
    /// Why: `dead: ...` (it can never be served again), `stale: ...` (with
    /// [`GcOptions::stale`]), `over the size limit ...`, `quarantined: ...`, `orphan
    /// blob: ...`, `temp file left by a dead writer`...
    pub reason: String,
}

/// What gc did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Each removal with its reason.
    pub removals: Vec<Removal>,
    /// Total bytes freed.
    pub bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Live variants left in the store (or that would be, on a dry run).
    pub kept: usize,
}

impl Engine {
    /// Every stored variant with its residency (validated now, nothing is built).
    pub fn status(&self) -> Result<Vec<EntryStatus>, Error> {
        let now = now_ms();
        let mut out = Vec::new();
        for rec in self.records()? {
            let key = Digest(rec.key);
            let residency = match &rec.quarantined {
                Some(reason) => Residency::Stale(crate::Why::Quarantined(reason.clone())),
                None => match self.stale_reason(&rec)? {
                    Some(why) => Residency::Stale(why),
                    None if self.in_memory(&key) => Residency::InMemory,
                    None => Residency::OnDisk,
                },
            };
            out.push(EntryStatus {
                recipe: rec.recipe.clone(),
                args: rec.args.clone(),
                key,
                variant: rec.id,
                residency,
                size: rec.blob.len,
                age: Duration::from_millis(now.saturating_sub(rec.created_ms).max(0) as u64),
                hits: rec.hits,
                reason: rec.reason.clone(),
            });
        }
        Ok(out)
    }

    /// Checks every blob's blake3 and every record; quarantines what is corrupt.
    pub fn verify(&self) -> Result<trove_store::VerifyReport, Error> {
        Ok(self.store()?.verify()?)
    }

    /// The dependency graph of every stored live object and its inputs, with absolute
    /// paths: the names a watcher's events are looked up by (`Graph::stale_after_paths`).
    pub fn graph(&self) -> Result<trove_graph::Graph, Error> {
        self.graph_named(None)
    }

    /// [`Engine::graph`] for people (`trove graph`): a path under the project directory is
    /// named relative to it (`data/prices.csv`, a glob over the project as `data/*.csv`);
    /// paths outside the project stay absolute.
    pub fn graph_for_display(&self) -> Result<trove_graph::Graph, Error> {
        self.graph_named(Some(&ProjectPaths::new(self.root())))
    }

    fn graph_named(&self, project: Option<&ProjectPaths>) -> Result<trove_graph::Graph, Error> {
        let mut graph = trove_graph::Graph::new();
        let mut records = self.records()?;
        records.retain(|r| r.quarantined.is_none());
        // Oldest first, so the newest variant of a key decides its edges.
        records.sort_by_key(|r| (r.created_ms, r.id));
        for rec in &records {
            if let Some(mut trace) = Trace::decode(&rec.trace) {
                if let Some(project) = project {
                    project.relativize(&mut trace);
                }
                let (inputs, objects) = crate::engine::watch::graph_inputs(&trace);
                graph.set_object_inputs(rec.key, &rec.recipe, &rec.args, &inputs, &objects);
            }
        }
        Ok(graph)
    }

    /// Removes what can never be served again, saying why for each, and keeps what can
    /// come back.
    ///
    /// Removed: *dead* variants (built by another recipe version or definition, under a
    /// version counter older than the current one, expired by `max_age` or a volatile
    /// input's time to live), quarantined ones, blobs no remaining variant uses, temp
    /// files of dead writers. A variant whose files, listings, globs or environment
    /// values merely differ from today's is kept — switching back to a branch serves it
    /// again — and goes only when the store is over its size limit (`max_size`, else the
    /// configuration's `store.max_size`; least recently used first) or with
    /// [`GcOptions::stale`].
    ///
    /// ```no_run
    /// # let engine = trove::Engine::open_in(".".as_ref())?;
    /// let report = engine.gc(trove::GcOptions { dry_run: true, ..Default::default() })?;
    /// for removal in &report.removals {
    ///     println!("would remove {} ({})", removal.what, removal.reason);
    /// }
    /// # Ok::<(), trove::Error>(())
    /// ```
    pub fn gc(&self, options: GcOptions) -> Result<GcReport, Error> {
        let records = self.records()?;
        let mut remove: Vec<(&Record, String)> = Vec::new();
        let mut keep: Vec<&Record> = Vec::new();
        for rec in &records {
            if rec.quarantined.is_some() {
                continue; // listed by the store's own plan
            }
            if let Some(why) = self.dead_reason(rec)? {
                remove.push((rec, format!("dead: {why}")));
                continue;
            }
            if options.stale {
                match self.stale_reason(rec)? {
                    None | Some(crate::Why::Unverifiable(_)) => {}
                    Some(why) => {
                        remove.push((rec, format!("stale: {why}")));
                        continue;
                    }
                }
            }
            keep.push(rec);
        }
        let limit = options.max_size.or(self.config().store.max_size);
        if let Some(limit) = limit {
            keep.sort_by_key(|r| (r.last_used_ms.max(r.created_ms), r.id));
            let mut sizes: HashMap<[u8; 32], u64> = HashMap::new();
            for r in &keep {
                sizes.insert(r.blob.hash, r.blob.len);
            }
            let mut total: u64 = sizes.values().sum();
            let mut refs: HashMap<[u8; 32], usize> = HashMap::new();
            for r in &keep {
                *refs.entry(r.blob.hash).or_default() += 1;
            }
            let mut trimmed = Vec::new();
            for r in &keep {
                if total <= limit {
                    break;
                }
                let n = refs.get_mut(&r.blob.hash).expect("counted above");
                *n -= 1;
                if *n == 0 {
                    total -= r.blob.len;
                }
                trimmed.push(r.id);
                remove.push((
                    r,
                    format!("over the size limit of {limit} bytes (least recently used)"),
                ));
            }
            keep.retain(|r| !trimmed.contains(&r.id));
        }
        let mut report = GcReport {
            dry_run: options.dry_run,
            kept: keep.len(),
            ..GcReport::default()
        };
        // Orphans younger than the grace period may belong to a build in another process
        // that has published its blob and not yet inserted its record.
        let plan = self.store()?.gc_plan_older_than(ORPHAN_GRACE)?;
        let planned_blobs: HashSet<&std::path::Path> = plan
            .iter()
            .filter_map(|item| match item {
                GcItem::Blob { path, .. } => Some(path.as_path()),
                _ => None,
            })
            .collect();
        // Blobs that only removed variants point at become orphans.
        let kept_blobs: HashSet<[u8; 32]> = keep.iter().map(|r| r.blob.hash).collect();
        let mut orphaned: Vec<GcItem> = Vec::new();
        let mut seen: HashSet<[u8; 32]> = HashSet::new();
        for (rec, _) in &remove {
            let path = self.store()?.blob_path(&rec.blob.hash);
            if kept_blobs.contains(&rec.blob.hash)
                || planned_blobs.contains(path.as_path())
                || !seen.insert(rec.blob.hash)
            {
                continue;
            }
            orphaned.push(GcItem::Blob {
                path,
                bytes: rec.blob.len,
                reason: "only removed variants used it".into(),
            });
        }
        for (rec, reason) in &remove {
            report.removals.push(Removal {
                what: format!(
                    "variant {}",
                    crate::words::object_label(&rec.recipe, &rec.args)
                ),
                bytes: 0,
                reason: reason.clone(),
            });
        }
        for item in orphaned.iter().chain(&plan) {
            let what = match item {
                GcItem::Record { recipe, .. } => format!("variant {recipe}"),
                GcItem::Blob { path, .. } => {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    format!("blob {}", name.get(..8).unwrap_or(&name))
                }
                GcItem::TempFile { path, .. } | GcItem::Quarantined { path, .. } => {
                    self.display_path(path)
                }
            };
            report.removals.push(Removal {
                what,
                bytes: item.bytes(),
                reason: item.reason(),
            });
        }
        report.bytes = report.removals.iter().map(|r| r.bytes).sum();
        if options.dry_run {
            return Ok(report);
        }
        for (rec, _) in &remove {
            self.store()?.remove(rec.id)?;
            self.forget_variant(&Digest(rec.key), rec.id);
        }
        self.store()?.gc_apply(&plan)?;
        // The store deletes a blob only if no row references it at that moment.
        self.store()?.gc_apply(&orphaned)?;
        Ok(report)
    }
}

/// The project directory, as configured and as the file system spells it (traced paths
/// may come resolved through symbolic links).
struct ProjectPaths {
    roots: Vec<std::path::PathBuf>,
}

impl ProjectPaths {
    fn new(root: &std::path::Path) -> ProjectPaths {
        let mut roots = vec![root.to_path_buf()];
        if let Ok(real) = std::fs::canonicalize(root)
            && real != root
        {
            roots.push(real);
        }
        ProjectPaths { roots }
    }

    /// `path` relative to the project (empty for the project itself), or as it is.
    fn relative(&self, path: &str) -> Option<String> {
        let p = std::path::Path::new(path);
        self.roots
            .iter()
            .find_map(|root| p.strip_prefix(root).ok())
            .map(|rel| rel.to_string_lossy().into_owned())
    }

    /// Rewrites the trace's paths under the project relative to it, for display.
    fn relativize(&self, trace: &mut Trace) {
        for input in &mut trace.inputs {
            match input {
                Input::File { path, .. }
                | Input::Dir { path, .. }
                | Input::Absences { dir: path, .. } => {
                    if let Some(rel) = self.relative(path) {
                        *path = if rel.is_empty() { ".".to_owned() } else { rel };
                    }
                }
                // A glob over the project itself is shown as its bare pattern.
                Input::Glob { root, .. } => {
                    if let Some(rel) = self.relative(root) {
                        *root = rel;
                    }
                }
                _ => {}
            }
        }
    }
}
