//! Version counters and expiry: which counters cover a recipe, and its `max_age`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;

impl Engine {
    /// Sets a global version counter; objects covered by it become stale when it changes.
    pub fn set_counter(&self, name: &str, value: u64) {
        self.set_qualified_counter(name.to_owned(), value);
    }

    /// Sets a version counter that covers one recipe.
    pub fn set_recipe_counter(&self, recipe: &str, name: &str, value: u64) {
        self.set_qualified_counter(format!("{recipe}/{name}"), value);
    }

    pub(crate) fn set_qualified_counter(&self, name: String, value: u64) {
        let mut counters = self
            .inner
            .counters
            .write()
            .unwrap_or_else(|e| e.into_inner());
        counters.insert(name, value);
        // Cleared under the counters' write lock: `counters_for` fills the cache under
        // their read lock, so no stale map can be put back after this.
        self.inner
            .counters_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        drop(counters);
        self.inner.memory.mark_all_unfresh();
    }

    /// Every counter covering `recipe`, by qualified name (`alice`, `table/alice`).
    pub(crate) fn counters_for(&self, recipe: &str) -> Arc<BTreeMap<String, u64>> {
        let counters = self
            .inner
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = self
            .inner
            .counters_cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(recipe)
        {
            return c.clone();
        }
        let config = &self.inner.config;
        let mut out: BTreeMap<String, u64> = config.versions.clone();
        if let Some(rc) = config.recipes.get(recipe) {
            for (k, v) in &rc.versions {
                out.insert(format!("{recipe}/{k}"), *v);
            }
        }
        let prefix = format!("{recipe}/");
        for (k, v) in counters.iter() {
            if !k.contains('/') || k.starts_with(&prefix) {
                out.insert(k.clone(), *v);
            }
        }
        let out = Arc::new(out);
        self.inner
            .counters_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(recipe.to_owned(), out.clone());
        out
    }

    pub(crate) fn max_age_for(&self, recipe: &str, own: Option<Duration>) -> Option<Duration> {
        let config = &self.inner.config;
        config
            .recipes
            .get(recipe)
            .and_then(|rc| rc.max_age)
            .or(own)
            .or(config.max_age)
    }
}
