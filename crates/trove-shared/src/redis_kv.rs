//! The Redis store, done with the `redis` crate on the keys OpenDAL's Redis service uses:
//! create-if-absent, listing and uploads in bounded memory, which that service lacks, and
//! reads in fewer round trips.
//!
//! OpenDAL's Redis writer buffers the whole value and copies it again into one `SET`
//! (three copies of a 64 MiB blob), offers no conditional write and no listing. Here an
//! upload goes to a temporary key in 4 MiB `APPEND`s (with an hour's expiry, so an
//! abandoned upload vanishes), then one Lua script renames it into place only if the
//! final key is absent, removes the expiry and records the name in its directory's
//! index set: the object appears whole, at once, and of racing writers exactly one wins.
//! Reads are native too: OpenDAL's Redis reader costs `EXISTS`, `STRLEN` and `GETRANGE`
//! (three round trips) for a ranged read and holds the whole value for a plain one; here a
//! value under 4 MiB is one `GETRANGE`, and a larger one streams in 4 MiB `GETRANGE`s.
//! The keys are the ones OpenDAL's Redis service uses for the same paths
//! (`<prefix>/<path>`), so the operator that
//! [`RemoteStore::operator`](crate::RemoteStore::operator) returns reads the same objects.

use std::io::{Read, Write};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::config::RedisUrl;
use crate::storage::{Entry, Put};

/// Upload chunk: bounds the memory an upload takes.
const CHUNK: usize = 4 << 20;
/// A temporary upload key lives this long if its writer dies.
const TMP_TTL_MS: u64 = 3_600_000;

const COMMIT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[i - 2])
end
return 1
";

const REPLACE: &str = r"
redis.call('SET', KEYS[1], ARGV[1])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[i])
end
return 1
";

const REMOVE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
";

/// Why a Redis call failed, before it becomes a [`StorageError`](crate::StorageError).
#[derive(Debug)]
pub(crate) enum Fail {
    TimedOut,
    Remote(redis::RedisError),
    Local(std::io::Error),
}

/// The client, and a connection manager that reconnects after a failure, with every
/// connection attempt and response bounded by `timeout`. Must be called inside the
/// tier's runtime.
pub(crate) fn connect(
    url: &RedisUrl,
    password: Option<&str>,
    timeout: Duration,
) -> Result<(redis::Client, ConnectionManager), String> {
    let mut text = url.connection_url();
    if let Some(password) = password {
        let mut parsed = url::Url::parse(&text).map_err(|e| e.to_string())?;
        parsed
            .set_password(Some(password))
            .map_err(|()| "cannot set a password on this URL".to_owned())?;
        text = parsed.into();
    }
    let client = redis::Client::open(text).map_err(|e| e.to_string())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(0);
    let manager = client
        .get_connection_manager_lazy(config)
        .map_err(|e| e.to_string())?;
    Ok((client, manager))
}

/// Runs `future` bounded by `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Fail> {
    match tokio::time::timeout(timeout, future).await {
        Err(_) => Err(Fail::TimedOut),
        Ok(result) => result.map_err(Fail::Remote),
    }
}

/// The scripts, built once (building one hashes its text).
struct Scripts {
    commit: redis::Script,
    replace: redis::Script,
    remove: redis::Script,
}

#[derive(Clone)]
pub(crate) struct RedisKv {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    scripts: std::sync::Arc<Scripts>,
}

impl RedisKv {
    pub(crate) fn new(conn: ConnectionManager, url: &RedisUrl, timeout: Duration) -> RedisKv {
        RedisKv {
            conn,
            prefix: url.key_prefix(),
            timeout,
            scripts: std::sync::Arc::new(Scripts {
                commit: redis::Script::new(COMMIT),
                replace: redis::Script::new(REPLACE),
                remove: redis::Script::new(REMOVE),
            }),
        }
    }

    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The set listing the names directly under `dir` (`""` or ending with `/`).
    fn index(&self, dir: &str) -> String {
        format!("{}.dir/{dir}", self.prefix)
    }

    pub(crate) async fn put_if_absent(
        &self,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, Fail> {
        let tmp = self.key(&format!(".tmp/{}", crate::lease::token()));
        let result = self.upload_and_commit(&tmp, path, from, len).await;
        if result.is_err() {
            // Best effort: the temporary key expires anyway.
            let mut conn = self.conn.clone();
            let _ = bounded(self.timeout, conn.del::<_, ()>(&tmp)).await;
        }
        result
    }

    async fn upload_and_commit(
        &self,
        tmp: &str,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, Fail> {
        let mut conn = self.conn.clone();
        let mut sent = 0u64;
        let mut first = true;
        loop {
            let want = usize::try_from((len - sent).min(CHUNK as u64)).expect("under CHUNK");
            let mut buf = vec![0u8; want];
            from.read_exact(&mut buf).map_err(Fail::Local)?;
            if first {
                let set = redis::cmd("SET")
                    .arg(tmp)
                    .arg(&buf)
                    .arg("PX")
                    .arg(TMP_TTL_MS)
                    .clone();
                bounded(self.timeout, set.query_async::<()>(&mut conn)).await?;
                first = false;
            } else {
                bounded(self.timeout, conn.append::<_, _, ()>(tmp, &buf)).await?;
            }
            sent += want as u64;
            if sent == len {
                break;
            }
        }
        let mut invocation = self.scripts.commit.key(tmp);
        invocation.key(self.key(path));
        for (dir, name) in parents(path) {
            invocation.key(self.index(&dir));
            invocation.arg(name);
        }
        let created: i64 = bounded(self.timeout, invocation.invoke_async(&mut conn)).await?;
        Ok(if created == 1 {
            Put::Created
        } else {
            Put::AlreadyExists
        })
    }

    /// Sets `path` to `bytes` (a small value: one `SET`), replacing it, and indexes it in
    /// its directories, in one script: a reader sees the old value or the new one.
    pub(crate) async fn replace(&self, path: &str, bytes: &[u8]) -> Result<(), Fail> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.replace.key(self.key(path));
        invocation.arg(bytes);
        for (dir, name) in parents(path) {
            invocation.key(self.index(&dir));
            invocation.arg(name);
        }
        bounded(self.timeout, invocation.invoke_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    /// Streams the value at `path` into `out` in `CHUNK`-sized `GETRANGE`s: one round
    /// trip for a value under 4 MiB, never the whole value in memory.
    pub(crate) async fn get_into(
        &self,
        path: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<u64>, Fail> {
        let mut conn = self.conn.clone();
        let key = self.key(path);
        let mut offset = 0u64;
        loop {
            let last = offset + CHUNK as u64 - 1;
            let getrange = redis::cmd("GETRANGE")
                .arg(&key)
                .arg(offset)
                .arg(last)
                .clone();
            let chunk: Vec<u8> = bounded(self.timeout, getrange.query_async(&mut conn)).await?;
            if chunk.is_empty() && offset == 0 {
                // GETRANGE cannot tell an empty value from a missing key.
                let exists: bool = bounded(self.timeout, conn.exists(&key)).await?;
                return Ok(exists.then_some(0));
            }
            out.write_all(&chunk).map_err(Fail::Local)?;
            offset += chunk.len() as u64;
            if chunk.len() < CHUNK {
                return Ok(Some(offset));
            }
        }
    }

    /// The names in `dir`'s index set. Lengths are not asked for (one more round trip);
    /// the records say how long their blobs are.
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<Entry>, Fail> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = bounded(self.timeout, conn.smembers(self.index(dir))).await?;
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| Entry {
                path: format!("{dir}{name}"),
                len: None,
            })
            .collect())
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<(), Fail> {
        let mut conn = self.conn.clone();
        let (dir, name) = parents(path).pop().expect("a path has a last component");
        let mut invocation = self.scripts.remove.key(self.key(path));
        invocation.key(self.index(&dir)).arg(name);
        bounded(self.timeout, invocation.invoke_async::<i64>(&mut conn)).await?;
        Ok(())
    }
}

/// Each directory of `path` with the name under it: `a/b/c` gives `("", "a/")`,
/// `("a/", "b/")`, `("a/b/", "c")`.
fn parents(path: &str) -> Vec<(String, String)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut out = Vec::with_capacity(parts.len());
    let mut dir = String::new();
    for (i, part) in parts.iter().enumerate() {
        let name = if i + 1 == parts.len() {
            (*part).to_owned()
        } else {
            format!("{part}/")
        };
        out.push((dir.clone(), name.clone()));
        dir.push_str(&name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parents;

    #[test]
    fn every_directory_of_a_path_indexes_the_name_under_it() {
        let got = parents("v1/blobs/ab/abcd");
        let want = [
            ("", "v1/"),
            ("v1/", "blobs/"),
            ("v1/blobs/", "ab/"),
            ("v1/blobs/ab/", "abcd"),
        ];
        assert_eq!(got.len(), want.len());
        for ((dir, name), (wd, wn)) in got.iter().zip(want) {
            assert_eq!((dir.as_str(), name.as_str()), (wd, wn));
        }
    }
}
