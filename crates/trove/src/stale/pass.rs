//! One pass of the stale stream: read the stored objects, nominate candidates (those a
//! changed path reaches, or all of them), validate each as a prediction, report the ones
//! that newly fail.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use trove_fingerprint::Digest;
use trove_graph::Graph;
use trove_store::Record;

use super::{Known, StaleEvent, StaleStream, StoredArgs, WatchUpdate};
use crate::Error;
use crate::trace::Trace;

/// What the store holds now (other processes may have built since the last pass).
struct Scan {
    /// Objects and their inputs, from each key's newest variant.
    graph: Graph,
    /// Live variants by key, newest first.
    variants: HashMap<[u8; 32], Vec<Record>>,
    /// Each key's newest trace.
    traces: HashMap<[u8; 32], Trace>,
}

impl StaleStream {
    fn read_store(&self) -> Result<Scan, Error> {
        let mut records = self.engine.records()?;
        records.retain(|r| r.quarantined.is_none());
        // Oldest first, so the newest variant of a key decides its edges.
        records.sort_by_key(|r| (r.created_ms, r.id));
        let mut graph = Graph::new();
        let mut traces = HashMap::new();
        let mut variants: HashMap<[u8; 32], Vec<Record>> = HashMap::new();
        for rec in records {
            if let Some(trace) = Trace::decode(&rec.trace) {
                let (inputs, objects) = crate::engine::watch::graph_inputs(&trace);
                graph.set_object_inputs(rec.key, &rec.recipe, &rec.args, &inputs, &objects);
                traces.insert(rec.key, trace);
            }
            variants.entry(rec.key).or_default().push(rec);
        }
        for list in variants.values_mut() {
            list.reverse();
        }
        Ok(Scan {
            graph,
            variants,
            traces,
        })
    }

    /// Validates every stored object; with `report`, the ones newly stale are reported.
    /// Also recomputes which inputs lie outside the watched roots.
    pub(super) fn refresh(&mut self, report: bool) -> Result<(), Error> {
        let scan = self.read_store()?;
        let keys: Vec<[u8; 32]> = scan.variants.keys().copied().collect();
        let ordered = scan.graph.dependents(&keys);
        self.known.retain(|key, _| scan.variants.contains_key(key));
        self.judge(&scan, &ordered, report)?;
        self.unwatched = self.outside_roots(&scan);
        Ok(())
    }

    /// Validates the stored objects that read `paths` (canonical, as the watcher reports
    /// them), and their dependents.
    pub(super) fn changed(&mut self, paths: &[PathBuf]) -> Result<(), Error> {
        if paths.is_empty() {
            return Ok(());
        }
        // The store records paths as the configuration spells them; where that differs
        // from the watcher's canonical spelling (a symlinked directory), look up both.
        let mut lookup: Vec<PathBuf> = paths.to_vec();
        for path in paths {
            for (canonical, given) in &self.aliases {
                if let Ok(rest) = path.strip_prefix(canonical) {
                    lookup.push(given.join(rest));
                }
            }
        }
        let scan = self.read_store()?;
        let candidates: Vec<[u8; 32]> = scan
            .graph
            .stale_after_paths(&lookup)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        tracing::debug!(
            changed = paths.len(),
            candidates = candidates.len(),
            "validating"
        );
        self.judge(&scan, &candidates, true)
    }

    /// Validates `keys` (in dependency order) against the current inputs: an object is
    /// fresh when any of its variants validates, else stale for its newest variant's
    /// reason.
    fn judge(&mut self, scan: &Scan, keys: &[[u8; 32]], report: bool) -> Result<(), Error> {
        for key in keys {
            let Some(variants) = scan.variants.get(key) else {
                continue; // no longer stored, or only a placeholder in the graph
            };
            let mut first_why = None;
            let mut fresh = false;
            for rec in variants {
                match self.engine.stale_reason(rec)? {
                    None => {
                        fresh = true;
                        break;
                    }
                    Some(why) => {
                        first_why.get_or_insert(why);
                    }
                }
            }
            let (Some(newest), false, Some(why)) = (variants.first(), fresh, first_why) else {
                self.known.remove(key);
                continue;
            };
            let judged = Known {
                newest: (newest.id, newest.created_ms),
                why: why.to_string(),
            };
            if self
                .known
                .get(key)
                .is_some_and(|k| k.newest == judged.newest && k.why == judged.why)
            {
                continue; // reported already, for this very reason
            }
            self.known.insert(*key, judged);
            if report {
                self.pending.push_back(WatchUpdate::Stale(StaleEvent {
                    recipe: newest.recipe.clone(),
                    args: StoredArgs::new(newest.args.clone()),
                    key: Digest(*key),
                    why,
                }));
            }
        }
        Ok(())
    }

    /// The paths the stored objects read that no watched root holds.
    fn outside_roots(&self, scan: &Scan) -> Vec<PathBuf> {
        let store = &self.engine.config().store.path;
        let project = &self.engine.config().dir;
        let mut outside = BTreeSet::new();
        for trace in scan.traces.values() {
            for path in trace.paths() {
                let path = Path::new(path);
                // Files outside the project (compilers, libraries, locale files a traced
                // command read) are checked at every request; only the project's own
                // files are expected under the roots.
                if path.starts_with(project) && !self.under_a_root(path) && !path.starts_with(store)
                {
                    outside.insert(path.to_path_buf());
                }
            }
        }
        outside.into_iter().collect()
    }

    fn under_a_root(&self, path: &Path) -> bool {
        let roots = self.watcher.roots();
        roots.iter().any(|root| path.starts_with(root))
            || self
                .engine
                .config()
                .watch
                .roots
                .iter()
                .any(|root| path.starts_with(root))
    }
}
