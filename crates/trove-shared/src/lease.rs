//! Leases in Redis: one machine builds a key while the others wait for its object.
//!
//! - Acquire: `SET <prefix>/lease/<name> <token> NX PX <ttl>`; the random token names
//!   the holder.
//! - Renew: while the lease is held a background task extends it every `ttl / 3` by
//!   compare-and-expire (a Lua script: only if the key still holds our token).
//! - Release: compare-and-delete (Lua), which also publishes `released` on the key's
//!   channel `<prefix>/events/<name>`.
//! - Publish: the tier publishes `published` on that channel once the record is stored.
//! - Wait: subscribe to the channel first, then look at the lease; return on a message,
//!   when the lease is gone (released, or expired because its holder died or lost the
//!   network: the waiter then takes over by acquiring it), or at the deadline. The lease is
//!   polled every `poll` as well, so a lost notification or a server without pub/sub
//!   delays a waiter by at most `poll`.
//!
//! A lease that is lost (expired while its holder was cut off) costs at most a duplicate
//! build: publishing is content-addressed and first-writer-wins, never a mix.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::ConnectionManager;

use crate::config::{Backoff, LeaseConfig};
use crate::error::{ConfigError, Remote, SharedError, Unavailable};
use crate::health::{Health, RemoteStats};
use crate::redis_kv::{self, Fail, bounded};
use crate::rt::Rt;

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
";

/// Why [`Leases::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The holder published the object: look it up.
    Published,
    /// The holder released the lease without publishing (its build failed): try to
    /// acquire it.
    Released,
    /// Nobody holds the lease (it expired, or was released before the wait began): try
    /// to acquire it.
    Vacant,
    /// The deadline passed with the lease still held.
    TimedOut,
}

/// A 128-bit random token in hex, unique across processes and machines.
pub(crate) fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new_derive_key("trove shared token v1");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    // std seeds RandomState from the operating system's randomness.
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u64(0);
    h.update(&random.finish().to_le_bytes());
    crate::record::hex(&h.finalize().as_bytes()[..16])
}

struct Inner {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    ttl: Duration,
    poll: Duration,
    timeout: Duration,
    health: Health,
    rt: Arc<Rt>,
    /// The scripts, built once (building one hashes its text).
    renew: redis::Script,
    release: redis::Script,
}

/// The lease server: per-key leases in Redis. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Leases({}lease/*)", self.inner.prefix)
    }
}

impl Leases {
    /// Leases on the server `config` names, with their own runtime. Nothing is contacted
    /// yet.
    pub fn connect(
        config: &LeaseConfig,
        timeout: Duration,
        backoff: Backoff,
    ) -> Result<Leases, SharedError> {
        let rt = Arc::new(Rt::new().map_err(|source| SharedError::Local {
            what: "starting the lease runtime".to_owned(),
            source,
        })?);
        Leases::open_on(rt, config, timeout, backoff)
    }

    pub(crate) fn open_on(
        rt: Arc<Rt>,
        config: &LeaseConfig,
        timeout: Duration,
        backoff: Backoff,
    ) -> Result<Leases, SharedError> {
        let invalid = |reason: String| {
            SharedError::Config(ConfigError::InvalidUrl {
                url: config.url.to_string(),
                reason,
            })
        };
        let (client, conn) = {
            let _entered = rt.handle().enter();
            redis_kv::connect(&config.url, config.password.as_deref(), timeout)
        }
        .map_err(invalid)?;
        Ok(Leases {
            inner: Arc::new(Inner {
                conn,
                client,
                prefix: config.url.key_prefix(),
                ttl: config.ttl,
                poll: config.poll,
                timeout,
                health: Health::new(backoff),
                rt,
                renew: redis::Script::new(RENEW),
                release: redis::Script::new(RELEASE),
            }),
        })
    }

    /// The configured time to live.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The lease server's counters and backoff state.
    pub fn stats(&self) -> RemoteStats {
        self.inner.health.stats()
    }

    fn lease_key(&self, name: &str) -> String {
        format!("{}lease/{name}", self.inner.prefix)
    }

    fn channel(&self, name: &str) -> String {
        format!("{}events/{name}", self.inner.prefix)
    }

    /// Runs one lease-server call under the backoff: skipped while backing off, counted.
    async fn call<T>(
        &self,
        op: &'static str,
        name: &str,
        future: impl Future<Output = Result<T, Fail>>,
    ) -> Result<T, SharedError> {
        let unavailable = |cause| SharedError::Unavailable {
            remote: Remote::Leases,
            op,
            target: name.to_owned(),
            cause,
        };
        self.inner.health.admit().map_err(unavailable)?;
        match future.await {
            Ok(v) => {
                self.inner.health.success();
                Ok(v)
            }
            Err(fail) => {
                let cause = match fail {
                    Fail::TimedOut => Unavailable::TimedOut {
                        after: self.inner.timeout,
                    },
                    Fail::Remote(e) => Unavailable::Failed {
                        message: e.to_string(),
                    },
                    Fail::Local(e) => Unavailable::Failed {
                        message: e.to_string(),
                    },
                };
                self.inner.health.failure(&cause);
                Err(unavailable(cause))
            }
        }
    }

    /// Takes the lease `name` for `ttl` if nobody holds it: `SET NX PX`. While the
    /// returned [`Lease`] lives it is renewed in the background.
    pub fn acquire(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, SharedError> {
        let token = token();
        let key = self.lease_key(name);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.inner.conn.clone();
        let set = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .clone();
        let got: Option<String> = self.inner.rt.block_on(self.call(
            "acquire",
            name,
            bounded(self.inner.timeout, set.query_async(&mut conn)),
        ))?;
        if got.is_none() {
            return Ok(None);
        }
        let state = Arc::new(State {
            name: name.to_owned(),
            key,
            token,
            ttl,
            lost: AtomicBool::new(false),
            renewed: Mutex::new(Instant::now()),
        });
        let renewer = self.inner.rt.handle().spawn(renew_forever(
            self.inner.conn.clone(),
            self.inner.renew.clone(),
            self.inner.timeout,
            state.clone(),
        ));
        Ok(Some(Lease {
            state,
            leases: self.clone(),
            renewer: Some(renewer),
            done: false,
        }))
    }

    /// How long the lease `name` still lives, or `None` when nobody holds it.
    pub fn holder_ttl(&self, name: &str) -> Result<Option<Duration>, SharedError> {
        let key = self.lease_key(name);
        let mut conn = self.inner.conn.clone();
        let pttl: i64 = self.inner.rt.block_on(self.call(
            "inspect",
            name,
            bounded(
                self.inner.timeout,
                redis::cmd("PTTL").arg(&key).query_async(&mut conn),
            ),
        ))?;
        Ok(match pttl {
            -2 => None,
            -1 => Some(Duration::MAX),
            ms => Some(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// Tells the waiters of `name` that its object is published.
    pub fn notify_published(&self, name: &str) -> Result<(), SharedError> {
        let channel = self.channel(name);
        let mut conn = self.inner.conn.clone();
        self.inner.rt.block_on(
            self.call(
                "notify",
                name,
                bounded(
                    self.inner.timeout,
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg("published")
                        .query_async::<i64>(&mut conn),
                ),
            ),
        )?;
        Ok(())
    }

    /// Waits at most `max` for the holder of `name` to publish or give the lease up.
    pub fn wait(&self, name: &str, max: Duration) -> Result<Wake, SharedError> {
        self.inner.rt.block_on(self.wait_async(name, max))
    }

    async fn wait_async(&self, name: &str, max: Duration) -> Result<Wake, SharedError> {
        let deadline = Instant::now() + max;
        let timeout = self.inner.timeout;
        // Subscribe before looking at the lease, so a message sent in between is kept.
        let mut messages = match tokio::time::timeout(timeout, async {
            let mut pubsub = self.inner.client.get_async_pubsub().await?;
            pubsub.subscribe(self.channel(name)).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        })
        .await
        {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(%e, "no pub/sub for lease {name}; polling");
                None
            }
            Err(_) => None,
        };
        let key = self.lease_key(name);
        loop {
            let mut conn = self.inner.conn.clone();
            let pttl: i64 = self
                .call(
                    "wait",
                    name,
                    bounded(timeout, redis::cmd("PTTL").arg(&key).query_async(&mut conn)),
                )
                .await?;
            if pttl == -2 {
                return Ok(Wake::Vacant);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Wake::TimedOut);
            }
            let nap = self.inner.poll.min(deadline - now);
            match messages.as_mut() {
                Some(stream) => match tokio::time::timeout(nap, stream.next()).await {
                    Ok(Some(msg)) => match msg.get_payload_bytes() {
                        b"published" => return Ok(Wake::Published),
                        b"released" => return Ok(Wake::Released),
                        _ => {}
                    },
                    // The subscription's connection closed: poll from now on.
                    Ok(None) => messages = None,
                    Err(_) => {}
                },
                None => tokio::time::sleep(nap).await,
            }
        }
    }
}

struct State {
    name: String,
    key: String,
    token: String,
    ttl: Duration,
    lost: AtomicBool,
    renewed: Mutex<Instant>,
}

impl State {
    fn renewed(&self) -> Instant {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_renewed(&self, at: Instant) {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

async fn renew_once(
    conn: &mut ConnectionManager,
    script: &redis::Script,
    timeout: Duration,
    state: &State,
) -> Result<bool, Fail> {
    let ms = u64::try_from(state.ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut invocation = script.key(&state.key);
    invocation.arg(&state.token).arg(ms);
    let renewed: i64 = bounded(timeout, invocation.invoke_async(conn)).await?;
    Ok(renewed == 1)
}

/// Extends the lease every `ttl / 3` until it is dropped, released or lost. A lease that
/// could not be renewed for a whole `ttl` is lost: another machine may hold it now.
async fn renew_forever(
    mut conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    state: Arc<State>,
) {
    let period = (state.ttl / 3).max(Duration::from_millis(5));
    loop {
        tokio::time::sleep(period).await;
        let started = Instant::now();
        match renew_once(&mut conn, &script, timeout, &state).await {
            Ok(true) => state.mark_renewed(started),
            Ok(false) => {
                state.lost.store(true, Ordering::SeqCst);
                tracing::warn!("lease {} was taken over", state.name);
                return;
            }
            Err(fail) => {
                if state.renewed().elapsed() >= state.ttl {
                    state.lost.store(true, Ordering::SeqCst);
                    tracing::warn!("lease {} lost: cannot renew ({fail:?})", state.name);
                    return;
                }
            }
        }
    }
}

/// A held lease. Renewed in the background while it lives; [`release`](Lease::release)
/// it after publishing. Dropping it releases it too (best effort, in the background).
pub struct Lease {
    state: Arc<State>,
    leases: Leases,
    renewer: Option<tokio::task::JoinHandle<()>>,
    done: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({}, held: {})", self.state.name, self.is_held())
    }
}

impl Lease {
    /// The lease's name (the key in hex, for the tier's leases).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The token that names this holder.
    pub fn token(&self) -> &str {
        &self.state.token
    }

    /// Whether the lease is still ours: renewed within its ttl and not taken over.
    pub fn is_held(&self) -> bool {
        !self.state.lost.load(Ordering::SeqCst) && self.state.renewed().elapsed() < self.state.ttl
    }

    /// Extends the lease now; `false` when it is no longer ours.
    pub fn renew(&self) -> Result<bool, SharedError> {
        let mut conn = self.leases.inner.conn.clone();
        let timeout = self.leases.inner.timeout;
        let started = Instant::now();
        let held = self.leases.inner.rt.block_on(self.leases.call(
            "renew",
            &self.state.name,
            renew_once(&mut conn, &self.leases.inner.renew, timeout, &self.state),
        ))?;
        if held {
            self.state.mark_renewed(started);
        } else {
            self.state.lost.store(true, Ordering::SeqCst);
        }
        Ok(held)
    }

    /// Gives the lease up (compare-and-delete) and wakes the waiters; `false` when it was
    /// no longer ours.
    pub fn release(mut self) -> Result<bool, SharedError> {
        self.stop();
        let mut conn = self.leases.inner.conn.clone();
        let timeout = self.leases.inner.timeout;
        let channel = self.leases.channel(&self.state.name);
        let mut invocation = self.leases.inner.release.key(&self.state.key);
        invocation.arg(&self.state.token).arg(&channel);
        let released: i64 = self.leases.inner.rt.block_on(self.leases.call(
            "release",
            &self.state.name,
            bounded(timeout, invocation.invoke_async(&mut conn)),
        ))?;
        Ok(released == 1)
    }

    /// Stops renewing and leaves the lease to expire, as a holder that died would:
    /// waiters take over after the ttl.
    pub fn abandon(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done = true;
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.stop();
        let mut conn = self.leases.inner.conn.clone();
        let timeout = self.leases.inner.timeout;
        let channel = self.leases.channel(&self.state.name);
        let state = self.state.clone();
        let script = self.leases.inner.release.clone();
        self.leases.inner.rt.handle().spawn(async move {
            let mut invocation = script.key(&state.key);
            invocation.arg(&state.token).arg(&channel);
            let _ = bounded(timeout, invocation.invoke_async::<i64>(&mut conn)).await;
        });
    }
}
