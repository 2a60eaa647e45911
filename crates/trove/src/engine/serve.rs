//! The request path: memory tier, single flight, disk (unlocked, then under the key's
//! lock), build.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use trove_fingerprint::Digest;

use crate::engine::build::Built;
use crate::engine::verify::{Mode, Validity, Watched};
use crate::engine::{Engine, bump};
use crate::flight::Role as FlightRole;
use crate::memory::{Meta, Object};
use crate::nested::BUILDING;
use crate::reason::{Reason, Why};
use crate::trace::Trace;
use crate::words::describe_args;
use crate::{Error, Recipe, Served};

/// What a request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Serve from memory or disk while valid, build otherwise.
    Serve,
    /// Build anew and replace what is stored (the seed's `use_cache=False`).
    Refresh,
}

impl Engine {
    /// Serves a request: memory, single flight, disk, build.
    pub(crate) fn serve<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
    ) -> Result<Served<R::Output>, Error> {
        self.answer(recipe, args, Request::Serve)
    }

    pub(crate) fn answer<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
        request: Request,
    ) -> Result<Served<R::Output>, Error> {
        let key = self.key(recipe, args)?;
        let downcast = |object: Object, reason: Reason, digest: Digest, args: String| {
            object
                .downcast::<R::Output>()
                .map(|value| Served {
                    value,
                    reason,
                    key,
                    digest,
                    args,
                    dependencies: Vec::new(),
                })
                .map_err(|_| Error::TypeMismatch {
                    recipe: recipe.name().to_owned(),
                })
        };
        let mut stale = None;
        if request == Request::Serve
            && let Some((object, meta)) = self.inner.memory.lookup(&key)
        {
            match self.check_memory(recipe, &meta)? {
                None => {
                    bump(&self.inner.stats.memory_hits, 1);
                    return downcast(object, Reason::HitMemory, meta.digest, meta.args.clone());
                }
                Some(why) => stale = Some(why),
            }
        }
        // An object in memory got there through its recipe, which was registered then;
        // past this point the recipe may be needed to validate other objects.
        self.ensure_registered(recipe);
        // A build on this thread asking, directly or not, for its own key would wait for
        // itself forever: it is a cycle.
        if BUILDING.with(|b| b.borrow().contains(&key)) || crate::nested::inherited().contains(&key)
        {
            return Err(Error::Cycle {
                recipe: recipe.name().to_owned(),
            });
        }
        // A waiter takes the leader's answer only if the leader checked the inputs after
        // this request arrived: an answer checked before (a hit validated just before, a
        // build whose inputs were checked before) may predate a change this caller made
        // or saw, and serving it would be stale for this caller.
        let arrived = std::time::Instant::now();
        match self.inner.flights.join(key) {
            FlightRole::Cycle => Err(Error::Cycle {
                recipe: recipe.name().to_owned(),
            }),
            FlightRole::Waiter(flight) => {
                bump(&self.inner.stats.waits, 1);
                let ((object, reason, digest, args_json), checked) =
                    flight.wait().map_err(Error::Shared)?;
                let built = matches!(reason, Reason::Built(_) | Reason::Waited(_));
                if checked.is_none_or(|at| at < arrived) || (request == Request::Refresh && !built)
                {
                    // The leader's build read an input that changed while it ran (its
                    // object is the leader's to return, not evidence of the inputs now),
                    // or the leader checked the inputs before this request arrived. (A
                    // refresh that joined a flight which served a stored object asks
                    // again too: it wants a new build.)
                    return self.answer(recipe, args, request);
                }
                let args = args_json;
                let reason = match reason {
                    Reason::Built(why) => Reason::Waited(why),
                    other => other,
                };
                downcast(object, reason, digest, args)
            }
            FlightRole::Leader(leader) => {
                let outcome = match request {
                    Request::Serve => self.lead(recipe, args, key, stale),
                    Request::Refresh => self.lead_refresh(recipe, args, key),
                };
                match outcome {
                    Ok(((v, pending), checked)) => {
                        // A build that is not going to be stored saw an input change
                        // while it ran; a waiter may have asked after that change, so
                        // waiters ask again instead of taking this object.
                        let ask_again = matches!(v.1, Reason::Built(_)) && pending.is_none();
                        // Waiters in this process get the object now; other processes
                        // wait on the key's lock until it is stored.
                        leader.finish(Ok((v.clone(), (!ask_again).then_some(checked))));
                        if let Some(pending) = pending {
                            self.publish(recipe, key, pending);
                        }
                        downcast(v.0, v.1, v.2, v.3)
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        leader.finish(Err(e.clone()));
                        Err(Arc::try_unwrap(e).unwrap_or_else(Error::Shared))
                    }
                }
            }
        }
    }

    /// `None` when the memory-tier object may be served; otherwise why not.
    pub(crate) fn check_memory<R: Recipe>(
        &self,
        recipe: &R,
        meta: &Meta,
    ) -> Result<Option<Why>, Error> {
        let watched =
            self.inner.watching.load(Ordering::Acquire) && meta.watchable.load(Ordering::Acquire);
        // Claim freshness before validating: an event that arrives while (or after) we
        // validate clears it again, so no change can slip between the check and the flag.
        let was_fresh = watched && meta.fresh.swap(true, Ordering::AcqRel);
        let mode = if was_fresh {
            Mode::Watched
        } else {
            Mode::Serve
        };
        let trace = meta.trace();
        let subject = self.subject(recipe, meta.recipe_version, meta.created_ms);
        // Only a watched hit needs the paths the watcher does not see.
        let unwatched = (mode == Mode::Watched).then(|| {
            meta.unwatched
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        });
        let watched = unwatched.as_ref().map(|unwatched| Watched {
            cheap: meta.cheap.as_slice(),
            unwatched: unwatched.as_slice(),
        });
        let validity = self.validate_with(&subject, &trace, mode, watched);
        if !matches!(validity, Ok(Validity::Valid { .. })) {
            // Not verified (stale, or the check itself failed): the claim is withdrawn.
            meta.fresh.store(false, Ordering::Release);
        }
        match validity? {
            Validity::Valid { refreshed } => {
                if let Some(t) = refreshed {
                    self.adopt_refresh(meta.variant(), meta, t);
                }
                Ok(None)
            }
            Validity::Invalid(why) => Ok(Some(why)),
        }
    }

    pub(crate) fn adopt_refresh(&self, variant: Option<i64>, meta: &Meta, trace: Trace) {
        if let Some(id) = variant
            && let Some(store) = self.inner.store.as_ref()
            && let Err(e) = store.update_trace(id, &trace.encode())
        {
            tracing::warn!("cannot refresh stored metadata: {e}");
        }
        *meta.trace.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(trace);
    }

    /// A refresh's leader: the key's lock, then a build, whatever is stored.
    pub(crate) fn lead_refresh<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
        key: Digest,
    ) -> Result<(Built<R::Output>, Instant), Error> {
        let lock = self.lock_key(key, recipe.name())?;
        let built = self.build(recipe, args, key, describe_args(args), Why::Forced, lock)?;
        let checked = built.1.as_ref().map_or_else(Instant::now, |p| p.checked);
        Ok((built, checked))
    }

    /// The key's cross-process lock; `None` without a store (or when it cannot be taken,
    /// said once in the log): the build then relies on the in-process flight alone. A
    /// wait for a lock held elsewhere that would close a cycle of processes waiting for
    /// each other is `Error::Cycle` instead (engine/waits.rs).
    fn lock_key(&self, key: Digest, recipe: &str) -> Result<Option<trove_store::KeyLock>, Error> {
        let Some(store) = self.inner.store.as_ref() else {
            return Ok(None);
        };
        let cannot = |e: trove_store::StoreError| {
            tracing::warn!("building without the cross-process lock: {e}");
            None
        };
        match store.try_lock_key(&key.0) {
            Ok(Some(lock)) => return Ok(Some(lock)),
            Ok(None) => {}
            Err(e) => return Ok(cannot(e)),
        }
        // Held elsewhere. A request that builds nothing yet cannot close a cycle.
        let chain = crate::nested::chain();
        let _waiting = if chain.is_empty() {
            None
        } else {
            let dir = store.waits_dir();
            let waiting = crate::engine::waits::register(&dir, key, &chain).ok();
            if crate::engine::waits::closes_cycle(&dir, key, &chain) {
                return Err(Error::Cycle {
                    recipe: recipe.to_owned(),
                });
            }
            waiting
        };
        Ok(store.lock_key(&key.0).map_or_else(cannot, Some))
    }

    /// The leader's path: memory again, disk, lock, disk again, build.
    pub(crate) fn lead<R: Recipe>(
        &self,
        recipe: &R,
        args: &R::Args,
        key: Digest,
        stale: Option<Why>,
    ) -> Result<(Built<R::Output>, Instant), Error> {
        // Each answer goes with the moment its inputs were checked (read before the
        // check): the flight's waiters that arrived later ask again.
        let checked = Instant::now();
        // A flight that finished just before this one began left its object in memory.
        if let Some((object, meta)) = self.inner.memory.lookup(&key)
            && self.check_memory(recipe, &meta)?.is_none()
        {
            bump(&self.inner.stats.memory_hits, 1);
            return Ok((
                (
                    (object, Reason::HitMemory, meta.digest, meta.args.clone()),
                    None,
                ),
                checked,
            ));
        }
        let args_display = describe_args(args);
        // The newest variant the look saw: anything published after it shows up as a
        // different newest variant under the lock below.
        let mut seen = None;
        let checked = Instant::now();
        let mut why = match self.lookup_disk(recipe, key, &args_display, &mut seen)? {
            Ok(hit) => return Ok(((hit, None), checked)),
            Err(why) => stale.unwrap_or(why),
        };
        // The shared tier, unlocked like the disk tier above: a hit is copied into the
        // disk tier and served from there.
        let checked = Instant::now();
        match self.lookup_shared(recipe, key, &args_display)? {
            Ok(hit) => return Ok(((hit, None), checked)),
            Err(w) if why == Why::NoEntry => why = w,
            Err(_) => {}
        }
        let lock = loop {
            let lock = self.lock_key(key, recipe.name())?;
            // Another process may have built it while we waited for the lock. Load it
            // without holding the lock, so every process that waited loads at once
            // instead of one after another.
            let newest = self.newest_variant(key);
            if lock.is_none() || newest == seen {
                break lock;
            }
            drop(lock);
            let checked = Instant::now();
            match self.lookup_disk(recipe, key, &args_display, &mut seen)? {
                Ok(hit) => return Ok(((hit, None), checked)),
                Err(w) if why == Why::NoEntry => why = w,
                Err(_) => {}
            }
        };
        // The third lock: the key's lease across machines (when configured), then a look
        // in the shared tier, where its last holder may have published.
        let checked = Instant::now();
        let claim = match self.claim_shared(recipe, key, &args_display)? {
            Ok(hit) => return Ok(((hit, None), checked)),
            Err(claim) => claim,
        };
        let (value, pending) = self.build(recipe, args, key, args_display, why, lock)?;
        let checked = pending.as_ref().map_or_else(Instant::now, |p| p.checked);
        Ok((
            (
                value,
                pending.map(|mut p| {
                    p.claim = claim;
                    p
                }),
            ),
            checked,
        ))
    }
}
