//! The watcher attached to an engine: events clear the freshness of exactly the objects
//! that read a changed path (and their dependents), so every other memory-tier object is
//! served with no system call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use trove_fingerprint::{Digest, GlobMode};
use trove_graph::InputKind;
use trove_watch::{WatchEvent, WatchOptions, Watcher};

use crate::Error;
use crate::engine::Engine;
use crate::memory::Meta;
use crate::trace::{Input, Role, Trace};

pub(crate) struct Active {
    watcher: Watcher,
}

/// Keeps the engine's watcher running; dropping it stops the watch, after which every
/// object is validated with `stat` again.
pub struct WatchGuard {
    engine: Engine,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let inner = &self.engine.inner;
        inner.watching.store(false, Ordering::Release);
        inner.memory.mark_all_unfresh();
        *inner.watch.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The graph inputs of a trace: `(kind, name)` pairs and the keys of object inputs.
pub(crate) fn graph_inputs(trace: &Trace) -> (Vec<(InputKind, String)>, Vec<[u8; 32]>) {
    let mut inputs = Vec::new();
    let mut objects = Vec::new();
    for input in &trace.inputs {
        match input {
            Input::File { role, path, .. } => inputs.push((kind_of(*role), path.clone())),
            // Each member is an input of the object (a file created there rebuilds it).
            Input::Absences {
                role, dir, names, ..
            } => inputs.extend(
                crate::absence::members(names)
                    .map(|name| (kind_of(*role), crate::absence::member_path(dir, name))),
            ),
            Input::Dir { path, .. } | Input::Tree { path, .. } => {
                inputs.push((InputKind::Dir, path.clone()))
            }
            Input::Glob { root, pattern, .. } => inputs.push((
                InputKind::Glob,
                trove_graph::glob_input_name(Path::new(root), pattern),
            )),
            Input::Env { name, .. } => inputs.push((InputKind::Env, name.clone())),
            Input::Volatile { name, .. } => inputs.push((InputKind::Volatile, name.clone())),
            Input::Code { digest } => {
                inputs.push((InputKind::Source, format!("embedded:{}", digest.short())))
            }
            Input::Object { key, .. } => objects.push(key.0),
            Input::External { kind, name, .. } => {
                inputs.push((InputKind::Module, format!("{kind}:{name}")))
            }
            // Upgraded when an older format is decoded (`absence::upgrade`); in a format
            // 4 row (which no trove writes) it names nothing and vouches for nothing.
            Input::AbsentGroup { .. } => {}
        }
    }
    for name in trace.counters.keys() {
        inputs.push((InputKind::Counter, name.clone()));
    }
    (inputs, objects)
}

/// How the graph names a file input in `role`.
fn kind_of(role: Role) -> InputKind {
    match role {
        Role::Data => InputKind::File,
        Role::Module => InputKind::Module,
        Role::Source => InputKind::Source,
    }
}

/// Called whenever an object enters the memory tier.
pub(crate) fn on_remember(engine: &Engine, key: Digest, meta: &Meta, trace: &Trace) {
    // The graph only serves the watcher; without one, remembering costs nothing more.
    // `watch()` puts every object already in memory in the graph when it starts.
    let watch = engine.inner.watch.lock().unwrap_or_else(|e| e.into_inner());
    let Some(active) = watch.as_ref() else {
        return;
    };
    let (inputs, objects) = graph_inputs(trace);
    engine
        .inner
        .graph
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_object_inputs(key.0, &meta.recipe, &meta.args, &inputs, &objects);
    *meta.unwatched.write().unwrap_or_else(|e| e.into_inner()) =
        Arc::new(unwatched(&active.watcher, trace));
    meta.watchable
        .store(dependencies_watched(engine, trace), Ordering::Release);
}

/// The file, listing and glob inputs of a trace the watcher cannot vouch for: paths
/// outside its roots (or ignored by it), and literal globs and trees (the watcher does
/// not see what .gitignore hides, and they cover it).
fn unwatched(watcher: &Watcher, trace: &Trace) -> Vec<u32> {
    trace
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, input)| match input {
            Input::Glob {
                mode: GlobMode::Literal,
                ..
            }
            | Input::Tree { .. } => true,
            Input::File { path, .. } | Input::Dir { path, .. } => !watcher.covers(Path::new(path)),
            Input::Absences { dir, names, .. } => crate::absence::members(names)
                .any(|name| !watcher.covers(Path::new(&crate::absence::member_path(dir, name)))),
            Input::Glob { root, .. } => !watcher.covers(Path::new(root)),
            _ => false,
        })
        .map(|(i, _)| i as u32)
        .collect()
}

/// Whether every object a trace depends on is itself watched in this process.
fn dependencies_watched(engine: &Engine, trace: &Trace) -> bool {
    trace.inputs.iter().all(|i| match i {
        Input::Object { key, .. } => engine
            .inner
            .memory
            .meta(key)
            .is_some_and(|m| m.watchable.load(Ordering::Acquire)),
        _ => true,
    })
}

impl Engine {
    /// Starts watching the configuration's `watch.roots`. While the returned guard lives,
    /// a memory-tier object none of whose inputs changed since it was last verified is
    /// served without a single system call. Lost or overflowed events fall back to
    /// validating with `stat`, never to serving stale.
    pub fn watch(&self) -> Result<WatchGuard, Error> {
        let config = self.config();
        let options = WatchOptions {
            roots: config.watch.roots.clone(),
            // The engine invalidates on the first event; debouncing is for people.
            debounce: std::time::Duration::ZERO,
            ignore_dirs: vec![self.store_root().to_path_buf()],
            files: Vec::new(),
        };
        let weak = std::sync::Arc::downgrade(&self.inner);
        let watcher = Watcher::start(options, move |event| {
            let Some(inner) = weak.upgrade() else { return };
            let engine = Engine { inner };
            engine.on_watch_event(event);
        })?;
        let mut slot = self.inner.watch.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(Active { watcher });
        self.inner.watching.store(true, Ordering::Release);
        // Objects already in memory join the graph and become eligible for the watched
        // path once they are verified again. Objects whose dependencies are judged later
        // in this pass stay on the stat path until they are remembered again: slower,
        // never stale.
        let present = self.inner.memory.metas();
        {
            let mut graph = self.inner.graph.lock().unwrap_or_else(|e| e.into_inner());
            for (key, meta) in &present {
                meta.fresh.store(false, Ordering::Release);
                let (inputs, objects) = graph_inputs(&meta.trace());
                graph.set_object_inputs(key.0, &meta.recipe, &meta.args, &inputs, &objects);
            }
        }
        if let Some(active) = slot.as_ref() {
            for (_, meta) in &present {
                let trace = meta.trace();
                *meta.unwatched.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(unwatched(&active.watcher, &trace));
                meta.watchable
                    .store(dependencies_watched(self, &trace), Ordering::Release);
            }
        }
        drop(slot);
        Ok(WatchGuard {
            engine: self.clone(),
        })
    }

    fn on_watch_event(&self, event: WatchEvent) {
        match event {
            WatchEvent::Changed(paths) => {
                let stale = self.stale_after(&paths);
                let keys: Vec<[u8; 32]> = stale.iter().map(|(k, _)| *k).collect();
                self.inner.memory.mark_unfresh(&keys);
            }
            WatchEvent::Rescan { reason } => {
                tracing::info!("watcher asked for a rescan ({reason}): validating everything");
                self.inner.memory.mark_all_unfresh();
            }
        }
    }

    /// The objects in this process's graph made stale by changes to `paths`.
    pub(crate) fn stale_after(&self, paths: &[PathBuf]) -> Vec<([u8; 32], PathBuf)> {
        self.inner
            .graph
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stale_after_paths(paths)
    }
}
