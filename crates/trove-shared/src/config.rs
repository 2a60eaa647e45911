//! The shared tier's configuration: the store's URL, the secret, the lease server.
//!
//! Parsing is strict, like the rest of trove's configuration: an unknown scheme or query
//! parameter is an error naming it, and a URL that carries a password is refused (secrets
//! never appear in `trove.ron`, only the name of the variable holding them).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::error::ConfigError;

/// The shortest secret accepted: a MAC is only as strong as its key.
pub const MIN_SECRET_LEN: usize = 16;

/// The default bound on every remote call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the shared tier keeps its blobs and records, parsed from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1`: S3 or a
    /// compatible server. `virtual_host=true` selects virtual-hosted-style requests.
    S3 {
        /// The bucket (the URL's host).
        bucket: String,
        /// A prefix inside the bucket (the URL's path), without leading or trailing `/`.
        prefix: String,
        /// `endpoint=`; AWS's default endpoint for the region when absent.
        endpoint: Option<String>,
        /// `region=`; OpenDAL's own discovery (environment, profile) when absent.
        region: Option<String>,
        /// `virtual_host=true`: bucket in the host name rather than in the path.
        virtual_host: bool,
    },
    /// `redis://host:port/db?prefix=trove` (`rediss://` for TLS): values in Redis.
    Redis(RedisUrl),
    /// `webdav://host:port/path` (`webdavs://` for HTTPS): a WebDAV server.
    Webdav {
        /// `http://host:port` or `https://host:port`.
        endpoint: String,
        /// The collection under which trove writes, e.g. `/trove`.
        root: String,
    },
    /// `file:///path`: a shared file system (NFS, SMB) mounted on every machine.
    Fs {
        /// The absolute directory.
        root: PathBuf,
    },
    /// `memory://`: a store private to this process, for tests and embedding.
    Memory,
}

/// A Redis server and the namespace trove uses in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (6379 when the URL has none).
    pub port: u16,
    /// Database number (the URL's path, 0 when absent).
    pub db: i64,
    /// `rediss://`: connect with TLS.
    pub tls: bool,
    /// `prefix=`: every key trove writes starts with `<prefix>/` (default `trove`).
    pub prefix: String,
    /// A user name from the URL (`redis://user@host`); the password comes from
    /// [`Credentials`], never from the URL.
    pub username: Option<String>,
}

impl RedisUrl {
    /// Parses `redis://[user@]host[:port][/db][?prefix=name]` or `rediss://...`.
    pub fn parse(text: &str) -> Result<RedisUrl, ConfigError> {
        let url = parse_url(text)?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(unsupported(text, other)),
        };
        refuse_password(text, &url)?;
        let host = host_of(text, &url)?;
        let db = match url.path().trim_matches('/') {
            "" => 0,
            db => db.parse::<i64>().map_err(|_| ConfigError::InvalidUrl {
                url: text.to_owned(),
                reason: format!("the path must be a database number, not `{db}`"),
            })?,
        };
        let mut prefix = "trove".to_owned();
        for (name, value) in url.query_pairs() {
            match &*name {
                "prefix" => prefix = value.trim_matches('/').to_owned(),
                _ => return Err(unknown_parameter(text, &name)),
            }
        }
        let username = (!url.username().is_empty()).then(|| url.username().to_owned());
        Ok(RedisUrl {
            host,
            port: url.port().unwrap_or(6379),
            db,
            tls,
            prefix,
            username,
        })
    }

    /// The URL the `redis` crate connects to (password excluded).
    pub(crate) fn connection_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self
            .username
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}:{}/{}", self.host, self.port, self.db)
    }

    /// `prefix` with a trailing `/`, or empty: what every key starts with.
    pub(crate) fn key_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.connection_url())?;
        if !self.prefix.is_empty() {
            write!(f, "?prefix={}", self.prefix)?;
        }
        Ok(())
    }
}

impl StoreUrl {
    /// Parses one of the URL forms listed on [`StoreUrl`]'s variants.
    pub fn parse(text: &str) -> Result<StoreUrl, ConfigError> {
        let url = parse_url(text)?;
        match url.scheme() {
            "s3" => parse_s3(text, &url),
            "redis" | "rediss" => Ok(StoreUrl::Redis(RedisUrl::parse(text)?)),
            "webdav" | "webdavs" => {
                refuse_password(text, &url)?;
                refuse_query(text, &url)?;
                let scheme = if url.scheme() == "webdavs" {
                    "https"
                } else {
                    "http"
                };
                let host = host_of(text, &url)?;
                let endpoint = match url.port() {
                    Some(port) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                };
                let root = format!("/{}", url.path().trim_matches('/'));
                Ok(StoreUrl::Webdav { endpoint, root })
            }
            "file" => {
                refuse_query(text, &url)?;
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(ConfigError::InvalidUrl {
                        url: text.to_owned(),
                        reason: "a file URL names a local path: file:///path".to_owned(),
                    });
                }
                let root = url.to_file_path().map_err(|()| ConfigError::InvalidUrl {
                    url: text.to_owned(),
                    reason: "not an absolute path".to_owned(),
                })?;
                Ok(StoreUrl::Fs { root })
            }
            "memory" => Ok(StoreUrl::Memory),
            other => Err(unsupported(text, other)),
        }
    }

    /// The service's name as OpenDAL knows it.
    pub fn service(&self) -> &'static str {
        match self {
            StoreUrl::S3 { .. } => "s3",
            StoreUrl::Redis(_) => "redis",
            StoreUrl::Webdav { .. } => "webdav",
            StoreUrl::Fs { .. } => "fs",
            StoreUrl::Memory => "memory",
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => {
                write!(f, "s3://{bucket}/{prefix}")?;
                if let Some(endpoint) = endpoint {
                    write!(f, " at {endpoint}")?;
                }
                Ok(())
            }
            StoreUrl::Redis(redis) => write!(f, "{redis}"),
            StoreUrl::Webdav { endpoint, root } => write!(f, "webdav {endpoint}{root}"),
            StoreUrl::Fs { root } => write!(f, "file://{}", root.display()),
            StoreUrl::Memory => write!(f, "memory://"),
        }
    }
}

fn parse_s3(text: &str, url: &Url) -> Result<StoreUrl, ConfigError> {
    refuse_password(text, url)?;
    if !url.username().is_empty() {
        return Err(ConfigError::SecretInUrl {
            url: text.to_owned(),
        });
    }
    let bucket = host_of(text, url)?;
    let mut endpoint = None;
    let mut region = None;
    let mut virtual_host = false;
    for (name, value) in url.query_pairs() {
        match &*name {
            "endpoint" => {
                let parsed = parse_url(&value)?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::InvalidUrl {
                        url: text.to_owned(),
                        reason: format!("endpoint `{value}` is not an http(s) URL"),
                    });
                }
                endpoint = Some(value.trim_end_matches('/').to_owned());
            }
            "region" => region = Some(value.into_owned()),
            "virtual_host" => {
                virtual_host = match &*value {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ConfigError::InvalidUrl {
                            url: text.to_owned(),
                            reason: format!("virtual_host must be true or false, not `{other}`"),
                        });
                    }
                }
            }
            _ => return Err(unknown_parameter(text, &name)),
        }
    }
    Ok(StoreUrl::S3 {
        bucket,
        prefix: url.path().trim_matches('/').to_owned(),
        endpoint,
        region,
        virtual_host,
    })
}

fn parse_url(text: &str) -> Result<Url, ConfigError> {
    Url::parse(text).map_err(|e| ConfigError::InvalidUrl {
        url: text.to_owned(),
        reason: e.to_string(),
    })
}

fn host_of(text: &str, url: &Url) -> Result<String, ConfigError> {
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(host.to_owned()),
        _ => Err(ConfigError::InvalidUrl {
            url: text.to_owned(),
            reason: "no host".to_owned(),
        }),
    }
}

fn refuse_password(text: &str, url: &Url) -> Result<(), ConfigError> {
    if url.password().is_some() {
        return Err(ConfigError::SecretInUrl { url: redact(text) });
    }
    Ok(())
}

fn refuse_query(text: &str, url: &Url) -> Result<(), ConfigError> {
    match url.query_pairs().next() {
        Some((name, _)) => Err(unknown_parameter(text, &name)),
        None => Ok(()),
    }
}

/// The URL without anything between `://` and `@`, so an error never repeats a password.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}://***{}", &text[..start], &text[at..])
        }
        _ => text.to_owned(),
    }
}

fn unsupported(text: &str, scheme: &str) -> ConfigError {
    ConfigError::UnsupportedScheme {
        url: text.to_owned(),
        scheme: scheme.to_owned(),
    }
}

fn unknown_parameter(text: &str, name: &str) -> ConfigError {
    ConfigError::UnknownParameter {
        url: text.to_owned(),
        name: name.to_owned(),
    }
}

/// Credentials for the store's service, read by the caller from the environment or a
/// secret manager (never from `trove.ron`).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// An S3 access key. Without it, OpenDAL's usual discovery applies
    /// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, instance metadata).
    S3 {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: String,
    },
    /// HTTP basic authentication (WebDAV) or Redis `AUTH`.
    Password {
        /// The user name (ignored by Redis without ACLs).
        username: String,
        /// The password.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::S3 { access_key_id, .. } => {
                write!(
                    f,
                    "Credentials::S3 {{ access_key_id: {access_key_id:?}, .. }}"
                )
            }
            Credentials::Password { username, .. } => {
                write!(f, "Credentials::Password {{ username: {username:?}, .. }}")
            }
        }
    }
}

/// The key that signs records. Its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Accepts a secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ConfigError::WeakSecret { len: bytes.len() });
        }
        Ok(Secret(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// How long a tier that failed is skipped: `initial` after the first failure, doubling
/// with each failure in a row, at most `max`. A success resets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first interval.
    pub initial: Duration,
    /// The longest interval.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// The lease server (`lease:` in `trove.ron`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Redis server holding the leases.
    pub url: RedisUrl,
    /// How long a lease lives without renewal; the holder renews it every `ttl / 3`.
    pub ttl: Duration,
    /// How often a waiter polls the lease when no notification arrives.
    pub poll: Duration,
    /// The Redis password, if the server wants one.
    pub password: Option<String>,
}

impl LeaseConfig {
    /// Leases on the Redis server at `url` (`redis://host:port[/db][?prefix=..]`).
    pub fn new(url: &str, ttl: Duration) -> Result<LeaseConfig, ConfigError> {
        if ttl < Duration::from_millis(10) {
            return Err(ConfigError::InvalidDuration {
                what: "lease ttl",
                value: ttl,
            });
        }
        Ok(LeaseConfig {
            url: RedisUrl::parse(url)?,
            ttl,
            poll: (ttl / 10).clamp(Duration::from_millis(20), Duration::from_millis(250)),
            password: None,
        })
    }
}

/// Everything the shared tier needs, from `shared:` in `trove.ron` plus the secret the
/// caller read from the variable `secret_env` names.
///
/// ```
/// use std::time::Duration;
/// use trove_shared::{LeaseConfig, SharedConfig};
///
/// let config = SharedConfig::new(
///     "s3://bucket/trove?endpoint=http://127.0.0.1:9000&region=us-east-1",
///     b"a secret of at least sixteen bytes".to_vec(),
/// )?
/// .read_only(true)
/// .timeout(Duration::from_secs(2))
/// .lease(LeaseConfig::new("redis://127.0.0.1:6379", Duration::from_secs(30))?);
/// assert!(config.read_only);
/// # Ok::<(), trove_shared::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SharedConfig {
    /// Where blobs and records live.
    pub store: StoreUrl,
    /// Signs and verifies records.
    pub secret: Secret,
    /// Read, never write: developers read what CI publishes.
    pub read_only: bool,
    /// Bound on every remote call (each request, each chunk of a stream).
    pub timeout: Duration,
    /// Leases for exactly-once builds across machines; none without it.
    pub lease: Option<LeaseConfig>,
    /// The store's credentials, when the caller has them.
    pub credentials: Option<Credentials>,
    /// How long a failing remote is skipped.
    pub backoff: Backoff,
}

impl SharedConfig {
    /// A configuration for the store at `url`, signing with `secret`; writable, with the
    /// default timeout and backoff and no leases.
    pub fn new(url: &str, secret: impl Into<Vec<u8>>) -> Result<SharedConfig, ConfigError> {
        Ok(SharedConfig {
            store: StoreUrl::parse(url)?,
            secret: Secret::new(secret)?,
            read_only: false,
            timeout: DEFAULT_TIMEOUT,
            lease: None,
            credentials: None,
            backoff: Backoff::default(),
        })
    }

    /// Sets `read_only`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets the bound on every remote call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds leases.
    pub fn lease(mut self, lease: LeaseConfig) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Sets the store's credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets the backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StoreUrl {
        StoreUrl::parse(text).unwrap()
    }

    #[test]
    fn the_url_forms_of_the_product_parse() {
        assert_eq!(
            parse("s3://bucket/trove?endpoint=http://127.0.0.1:9000&region=us-east-1"),
            StoreUrl::S3 {
                bucket: "bucket".into(),
                prefix: "trove".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("us-east-1".into()),
                virtual_host: false,
            }
        );
        let StoreUrl::Redis(redis) = parse("redis://127.0.0.1:6380/2") else {
            panic!("not redis")
        };
        assert_eq!((redis.port, redis.db, &*redis.prefix), (6380, 2, "trove"));
        assert_eq!(redis.connection_url(), "redis://127.0.0.1:6380/2");
        assert_eq!(
            parse("webdav://127.0.0.1:8080/cache/trove"),
            StoreUrl::Webdav {
                endpoint: "http://127.0.0.1:8080".into(),
                root: "/cache/trove".into()
            }
        );
        assert_eq!(
            parse("file:///mnt/team/trove"),
            StoreUrl::Fs {
                root: "/mnt/team/trove".into()
            }
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let err = |t: &str| StoreUrl::parse(t).unwrap_err().to_string();
        assert!(err("ftp://host/x").contains("unsupported scheme `ftp`"));
        assert!(err("s3://b/p?endpoit=http://x").contains("unknown parameter `endpoit`"));
        let secret = err("redis://:hunter2@127.0.0.1:6379");
        assert!(secret.contains("password"), "{secret}");
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(err("redis://127.0.0.1/zero").contains("database number"));
        assert!(err("file://host/x").contains("file:///path"));
        assert!(err("s3://b/p?endpoint=ftp://x").contains("not an http(s) URL"));
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = SharedConfig::new("memory://", b"short".to_vec()).unwrap_err();
        assert!(matches!(err, ConfigError::WeakSecret { len: 5 }));
        assert!(format!("{:?}", Secret::new(vec![7; 32]).unwrap()).contains("32 bytes"));
    }
}
