//! [`RemoteStore`]: the [`Storage`] trait over OpenDAL, every call bounded by the timeout.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use opendal::{ErrorKind, Operator};

use crate::config::{Credentials, SharedConfig, StoreUrl};
use crate::error::{ConfigError, SharedError, StorageError, Unavailable};
use crate::redis_kv::{self, RedisKv};
use crate::rt::Rt;
use crate::storage::{CreateIfAbsent, Entry, Put, Storage};

/// Bytes read from the local file per write call.
const CHUNK: usize = 4 << 20;
/// S3 multipart part size: what an upload to S3 holds in memory.
const S3_PART: usize = 8 << 20;
/// Objects larger than this are looked for before they are uploaded.
const PROBE_OVER: u64 = 64 << 10;

/// The shared tier's store: an OpenDAL operator for one of the services trove enables
/// (S3, Redis, WebDAV, a file system, memory), with a blocking facade over the tier's
/// runtime. Every remote call (each request, each chunk of a stream) is bounded by the
/// configured timeout and fails with [`Unavailable`] when it runs over.
pub struct RemoteStore {
    op: Operator,
    url: StoreUrl,
    /// Redis only: every operation, natively (see `redis_kv.rs` for why).
    redis: Option<RedisKv>,
    rt: Arc<Rt>,
    timeout: Duration,
    /// The service takes OpenDAL's `if_not_exists` write option.
    conditional: bool,
    /// The service takes several writes per object (else the object is sent in one).
    multi_write: bool,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteStore({})", self.url)
    }
}

impl RemoteStore {
    /// Opens the store `config.store` names, with its own runtime. Nothing is contacted
    /// yet: a store that is down makes the first call fail, not this one.
    pub fn open(config: &SharedConfig) -> Result<RemoteStore, SharedError> {
        let rt = Arc::new(Rt::new().map_err(|source| SharedError::Local {
            what: "starting the shared tier's runtime".to_owned(),
            source,
        })?);
        RemoteStore::open_on(rt, config)
    }

    pub(crate) fn open_on(rt: Arc<Rt>, config: &SharedConfig) -> Result<RemoteStore, SharedError> {
        let url = config.store.clone();
        let invalid = |e: opendal::Error| {
            SharedError::Config(ConfigError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })
        };
        let creds = config.credentials.as_ref();
        let mut redis = None;
        let op = match &url {
            StoreUrl::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                virtual_host,
            } => {
                let mut b = opendal::services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"));
                if let Some(endpoint) = endpoint {
                    b = b.endpoint(endpoint);
                }
                if let Some(region) = region {
                    b = b.region(region);
                }
                if *virtual_host {
                    b = b.enable_virtual_host_style();
                }
                if let Some(Credentials::S3 {
                    access_key_id,
                    secret_access_key,
                }) = creds
                {
                    b = b
                        .access_key_id(access_key_id)
                        .secret_access_key(secret_access_key)
                        .disable_config_load()
                        .disable_ec2_metadata();
                }
                Operator::new(b).map_err(invalid)?
            }
            StoreUrl::Redis(r) => {
                let scheme = if r.tls { "rediss" } else { "redis" };
                let mut b = opendal::services::Redis::default()
                    .endpoint(&format!("{scheme}://{}:{}", r.host, r.port))
                    .db(r.db)
                    .root(&format!("/{}", r.prefix));
                let mut password = None;
                if let Some(Credentials::Password {
                    username,
                    password: p,
                }) = creds
                {
                    b = b.username(username).password(p);
                    password = Some(p.as_str());
                } else if let Some(user) = &r.username {
                    b = b.username(user);
                }
                let (_, conn) = {
                    let _entered = rt.handle().enter();
                    redis_kv::connect(r, password, config.timeout)
                }
                .map_err(|reason| {
                    SharedError::Config(ConfigError::InvalidUrl {
                        url: url.to_string(),
                        reason,
                    })
                })?;
                redis = Some(RedisKv::new(conn, r, config.timeout));
                Operator::new(b).map_err(invalid)?
            }
            StoreUrl::Webdav { endpoint, root } => {
                let mut b = opendal::services::Webdav::default()
                    .endpoint(endpoint)
                    .root(root);
                if let Some(Credentials::Password { username, password }) = creds {
                    b = b.username(username).password(password);
                }
                Operator::new(b).map_err(invalid)?
            }
            StoreUrl::Fs { root } => {
                let root_text = root.to_string_lossy();
                // Objects are written in a temp directory and renamed into place, so a
                // reader never sees half an object.
                let tmp = root.join(".trove-tmp");
                Operator::new(
                    opendal::services::Fs::default()
                        .root(&root_text)
                        .atomic_write_dir(&tmp.to_string_lossy()),
                )
                .map_err(invalid)?
            }
            StoreUrl::Memory => {
                Operator::new(opendal::services::Memory::default()).map_err(invalid)?
            }
        };
        // A client of this store's own: its pooled connections are tasks on this store's
        // runtime and end with it. (OpenDAL's default is one process-wide client, whose
        // connections would outlive the runtime that spawned them and fail other tiers.)
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| SharedError::Local {
                what: "building the HTTP client".to_owned(),
                source: std::io::Error::other(e),
            })?;
        let transport = opendal::HttpTransporter::new(
            opendal_http_transport_reqwest::ReqwestTransport::new(client),
        );
        let op = op
            .clone()
            .with_context(op.context().with_http_transport(transport));
        let cap = op.info().capability();
        Ok(RemoteStore {
            conditional: cap.write_with_if_not_exists,
            multi_write: cap.write_can_multi,
            op,
            url,
            redis,
            rt,
            timeout: config.timeout,
        })
    }

    /// The OpenDAL operator, for callers that compare against raw OpenDAL (benchmarks).
    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// Runs `future` on the store's runtime from a blocking caller.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.rt.block_on(future)
    }

    fn service(&self) -> &'static str {
        self.url.service()
    }

    async fn bounded<T>(
        &self,
        future: impl Future<Output = opendal::Result<T>>,
    ) -> Result<opendal::Result<T>, Unavailable> {
        tokio::time::timeout(self.timeout, future)
            .await
            .map_err(|_| Unavailable::TimedOut {
                after: self.timeout,
            })
    }

    fn unavailable(&self, op: &'static str, path: &str, cause: Unavailable) -> StorageError {
        StorageError::Unavailable {
            service: self.service(),
            op,
            path: path.to_owned(),
            cause,
        }
    }

    fn failed(&self, op: &'static str, path: &str, e: &opendal::Error) -> StorageError {
        let message = e.to_string();
        let cause = match e.kind() {
            ErrorKind::PermissionDenied | ErrorKind::ConfigInvalid => {
                Unavailable::Refused { message }
            }
            _ => Unavailable::Failed { message },
        };
        self.unavailable(op, path, cause)
    }

    fn redis_failed(&self, op: &'static str, path: &str, fail: redis_kv::Fail) -> StorageError {
        match fail {
            redis_kv::Fail::TimedOut => self.unavailable(
                op,
                path,
                Unavailable::TimedOut {
                    after: self.timeout,
                },
            ),
            redis_kv::Fail::Remote(e) => {
                let message = e.to_string();
                let cause = if e.kind() == redis::ErrorKind::AuthenticationFailed
                    || message.contains("NOAUTH")
                    || message.contains("NOPERM")
                {
                    Unavailable::Refused { message }
                } else {
                    Unavailable::Failed { message }
                };
                self.unavailable(op, path, cause)
            }
            redis_kv::Fail::Local(source) => StorageError::Local {
                op,
                path: path.to_owned(),
                source,
            },
        }
    }

    async fn get_into_async(
        &self,
        path: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<u64>, StorageError> {
        const OP: &str = "get";
        if let Some(redis) = &self.redis {
            return redis
                .get_into(path, out)
                .await
                .map_err(|f| self.redis_failed(OP, path, f));
        }
        let reader = self.bounded(self.op.reader(path)).await;
        let reader = match reader.map_err(|c| self.unavailable(OP, path, c))? {
            Ok(reader) => reader,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.failed(OP, path, &e)),
        };
        let stream = self.bounded(reader.into_stream(..)).await;
        let mut stream = match stream.map_err(|c| self.unavailable(OP, path, c))? {
            Ok(stream) => stream,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.failed(OP, path, &e)),
        };
        let mut written = 0u64;
        loop {
            let next = tokio::time::timeout(self.timeout, stream.next()).await;
            let next = next.map_err(|_| {
                self.unavailable(
                    OP,
                    path,
                    Unavailable::TimedOut {
                        after: self.timeout,
                    },
                )
            })?;
            match next {
                None => return Ok(Some(written)),
                Some(Err(e)) if e.kind() == ErrorKind::NotFound && written == 0 => {
                    return Ok(None);
                }
                Some(Err(e)) => return Err(self.failed(OP, path, &e)),
                Some(Ok(buffer)) => {
                    for bytes in buffer {
                        out.write_all(&bytes)
                            .map_err(|source| StorageError::Local {
                                op: OP,
                                path: path.to_owned(),
                                source,
                            })?;
                        written += bytes.len() as u64;
                    }
                }
            }
        }
    }

    async fn put_async(
        &self,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, StorageError> {
        const OP: &str = "put";
        if let Some(redis) = &self.redis {
            return redis
                .put_if_absent(path, from, len)
                .await
                .map_err(|f| self.redis_failed(OP, path, f));
        }
        // Without a conditional write (WebDAV) trove checks, then writes (see
        // `CreateIfAbsent::CheckThenWrite`). With one, a large object is looked for first
        // anyway: a blob another machine uploaded is not sent again only to be refused.
        if (!self.conditional || len > PROBE_OVER) && self.exists(OP, path).await? {
            return Ok(Put::AlreadyExists);
        }
        let result = self.write(path, from, len).await;
        match result {
            // A server may answer `412` before it has read the body and close the
            // connection, which the client sees as a failed send (s3s-fs does). If the
            // object is there now, a complete one stands at the path, whoever wrote it.
            Err(StorageError::Unavailable {
                cause: Unavailable::Failed { .. },
                ..
            }) if self.conditional && self.exists(OP, path).await.unwrap_or(false) => {
                Ok(Put::AlreadyExists)
            }
            other => other,
        }
    }

    async fn replace_async(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        const OP: &str = "put";
        if let Some(redis) = &self.redis {
            return redis
                .replace(path, bytes)
                .await
                .map_err(|f| self.redis_failed(OP, path, f));
        }
        // One PUT: S3 and WebDAV (nginx: a temp file, then a rename) replace whole;
        // the file system writes a temp file and renames it over the old one.
        let buffer = bytes::Bytes::copy_from_slice(bytes);
        let wrote = self.bounded(self.op.write(path, buffer)).await;
        match wrote.map_err(|c| self.unavailable(OP, path, c))? {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed(OP, path, &e)),
        }
    }

    async fn exists(&self, op: &'static str, path: &str) -> Result<bool, StorageError> {
        let exists = self.bounded(self.op.exists(path)).await;
        match exists.map_err(|c| self.unavailable(op, path, c))? {
            Ok(exists) => Ok(exists),
            Err(e) => Err(self.failed(op, path, &e)),
        }
    }

    async fn write(
        &self,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, StorageError> {
        const OP: &str = "put";
        let writer = self
            .bounded(async {
                let w = self.op.writer_with(path).if_not_exists(self.conditional);
                if matches!(self.url, StoreUrl::S3 { .. }) {
                    w.chunk(S3_PART).await
                } else {
                    w.await
                }
            })
            .await;
        let mut writer = match writer.map_err(|c| self.unavailable(OP, path, c))? {
            Ok(w) => w,
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => return Ok(Put::AlreadyExists),
            Err(e) => return Err(self.failed(OP, path, &e)),
        };
        let result = self.send(&mut writer, path, from, len).await;
        if result.is_err() {
            let _ = self.bounded(writer.abort()).await;
        }
        result
    }

    async fn send(
        &self,
        writer: &mut opendal::Writer,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, StorageError> {
        const OP: &str = "put";
        let mut sent = 0u64;
        // Services that take one write per object get the chunks as one non-contiguous
        // buffer: the object is held once, never copied into one piece.
        let mut whole: Vec<bytes::Bytes> = Vec::new();
        while sent < len {
            let want = usize::try_from((len - sent).min(CHUNK as u64)).expect("under CHUNK");
            let mut buf = vec![0u8; want];
            from.read_exact(&mut buf)
                .map_err(|source| StorageError::Local {
                    op: OP,
                    path: path.to_owned(),
                    source,
                })?;
            sent += want as u64;
            if self.multi_write {
                let wrote = self.bounded(writer.write(buf)).await;
                match wrote.map_err(|c| self.unavailable(OP, path, c))? {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
                        return Ok(Put::AlreadyExists);
                    }
                    Err(e) => return Err(self.failed(OP, path, &e)),
                }
            } else {
                whole.push(buf.into());
            }
        }
        if !self.multi_write {
            let buffer = opendal::Buffer::from(whole);
            let wrote = self.bounded(writer.write(buffer)).await;
            if let Err(e) = wrote.map_err(|c| self.unavailable(OP, path, c))? {
                return Err(self.failed(OP, path, &e));
            }
        }
        let closed = self.bounded(writer.close()).await;
        match closed.map_err(|c| self.unavailable(OP, path, c))? {
            Ok(_) => Ok(Put::Created),
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(Put::AlreadyExists),
            Err(e) => Err(self.failed(OP, path, &e)),
        }
    }

    async fn list_async(&self, dir: &str) -> Result<Vec<Entry>, StorageError> {
        const OP: &str = "list";
        if let Some(redis) = &self.redis {
            return redis
                .list(dir)
                .await
                .map_err(|f| self.redis_failed(OP, dir, f));
        }
        let listed = self.bounded(self.op.list(dir)).await;
        let entries = match listed.map_err(|c| self.unavailable(OP, dir, c))? {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(OP, dir, &e)),
        };
        let mut out: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.path() != dir && !e.name().starts_with('.'))
            .map(|e| {
                let meta = e.metadata();
                let len = meta.is_file().then(|| meta.content_length());
                Entry {
                    path: e.path().to_owned(),
                    len,
                }
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete_async(&self, path: &str) -> Result<(), StorageError> {
        const OP: &str = "delete";
        if let Some(redis) = &self.redis {
            return redis
                .delete(path)
                .await
                .map_err(|f| self.redis_failed(OP, path, f));
        }
        let deleted = self.bounded(self.op.delete(path)).await;
        match deleted.map_err(|c| self.unavailable(OP, path, c))? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.failed(OP, path, &e)),
        }
    }
}

impl Storage for RemoteStore {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let mut out = Vec::new();
        let got = self.rt.block_on(self.get_into_async(path, &mut out))?;
        Ok(got.map(|_| out))
    }

    fn get_into(
        &self,
        path: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<u64>, StorageError> {
        self.rt.block_on(self.get_into_async(path, out))
    }

    fn put_if_absent(&self, path: &str, bytes: &[u8]) -> Result<Put, StorageError> {
        let mut from = bytes;
        self.rt
            .block_on(self.put_async(path, &mut from, bytes.len() as u64))
    }

    fn put_stream_if_absent(
        &self,
        path: &str,
        from: &mut (dyn Read + Send),
        len: u64,
    ) -> Result<Put, StorageError> {
        self.rt.block_on(self.put_async(path, from, len))
    }

    fn put(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.rt.block_on(self.replace_async(path, bytes))
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>, StorageError> {
        self.rt.block_on(self.list_async(dir))
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.rt.block_on(self.delete_async(path))
    }

    fn create_if_absent(&self) -> CreateIfAbsent {
        match self.url {
            // Redis (RENAME under a Lua script) and memory decide atomically.
            StoreUrl::Redis(_) | StoreUrl::Memory => CreateIfAbsent::Atomic,
            // `If-None-Match: *`: as atomic as the S3 server makes it.
            StoreUrl::S3 { .. } => CreateIfAbsent::ServerConditional,
            // OpenDAL's fs checks existence, then renames its temp file into place;
            // WebDAV has no conditional write in OpenDAL: trove checks, then PUTs.
            StoreUrl::Fs { .. } | StoreUrl::Webdav { .. } => CreateIfAbsent::CheckThenWrite,
        }
    }

    fn describe(&self) -> String {
        self.url.to_string()
    }
}
