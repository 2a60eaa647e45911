//! `shared: (url: .., secret_env: .., read_only: .., lease: (url: .., ttl: ..), timeout: ..)`:
//! the team's shared tier. The URLs are checked here (syntax, scheme, parameters, no
//! password), so a mistake is reported with its line and column; the secret itself is
//! never in the file, only the name of the variable that holds it.

use std::time::Duration;

use url::Url;

use super::Reader;
use crate::config::{LeaseSettings, Place, SharedSettings};
use crate::error::ConfigError;
use crate::syntax::Node;

pub(super) const SHARED_KEYS: &[&str] = &["url", "secret_env", "read_only", "lease", "timeout"];
const LEASE_KEYS: &[&str] = &["url", "ttl"];
const EXAMPLE: &str = "shared: (url: \"s3://bucket/trove?endpoint=http://127.0.0.1:9000&region=us-east-1\", secret_env: \"TROVE_SHARED_SECRET\")";
const LEASE_EXAMPLE: &str = "lease: (url: \"redis://127.0.0.1:6379\", ttl: \"30s\")";
const STORE_SCHEMES: &[&str] = &[
    "s3", "redis", "rediss", "webdav", "webdavs", "file", "memory",
];
const LEASE_SCHEMES: &[&str] = &["redis", "rediss"];
/// The shortest lease the shared tier accepts.
const MIN_TTL: Duration = Duration::from_millis(10);

impl Reader<'_> {
    fn place(&self, offset: usize) -> Place {
        let (line, column) = crate::error::line_column(self.src, offset);
        Place { line, column }
    }

    pub(super) fn shared(&self, node: &Node) -> Result<SharedSettings, ConfigError> {
        let mut url = None;
        let mut shared = SharedSettings {
            url: String::new(),
            secret_env: SharedSettings::DEFAULT_SECRET_ENV.to_owned(),
            read_only: false,
            lease: None,
            timeout: SharedSettings::DEFAULT_TIMEOUT,
            at: self.place(node.start),
            url_at: self.place(node.start),
            secret_env_at: self.place(node.start),
        };
        for f in self.fields_or_secret(node, "`shared`", SHARED_KEYS, EXAMPLE)? {
            let Some(v) = f.value.unwrap_option() else {
                continue;
            };
            match f.key.as_str() {
                "url" => {
                    let text = self.string(v, "`url`", EXAMPLE)?;
                    self.check_url(v, text, STORE_SCHEMES)?;
                    shared.url_at = self.place(v.start);
                    url = Some(text.to_owned());
                }
                "secret_env" => {
                    let name =
                        self.string(v, "`secret_env`", "secret_env: \"TROVE_SHARED_SECRET\"")?;
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return Err(self.error(
                            v.start,
                            format!("{name:?} is not an environment variable name"),
                            "name the variable that holds the secret, for example: \
                             secret_env: \"TROVE_SHARED_SECRET\""
                                .to_owned(),
                        ));
                    }
                    shared.secret_env = name.to_owned();
                    shared.secret_env_at = self.place(v.start);
                }
                "read_only" => {
                    shared.read_only = self.boolean(v, "`read_only`", "read_only: true")?;
                }
                "timeout" => {
                    shared.timeout = self.duration(v, "timeout")?;
                    if shared.timeout.is_zero() {
                        return Err(self.error(
                            v.start,
                            "`timeout` must be longer than zero".to_owned(),
                            "for example: timeout: \"2s\"".to_owned(),
                        ));
                    }
                }
                _ => shared.lease = Some(self.lease(v)?),
            }
        }
        match url {
            Some(url) => shared.url = url,
            None => {
                return Err(self.error(
                    node.start,
                    "`shared` has no `url`".to_owned(),
                    format!("for example: {EXAMPLE}"),
                ));
            }
        }
        Ok(shared)
    }

    fn lease(&self, node: &Node) -> Result<LeaseSettings, ConfigError> {
        let mut url = None;
        let mut lease = LeaseSettings {
            url: String::new(),
            ttl: LeaseSettings::DEFAULT_TTL,
            url_at: self.place(node.start),
        };
        for f in self.fields(node, "`lease`", LEASE_KEYS, None, LEASE_EXAMPLE)? {
            let Some(v) = f.value.unwrap_option() else {
                continue;
            };
            if f.key == "url" {
                let text = self.string(v, "`url`", LEASE_EXAMPLE)?;
                self.check_url(v, text, LEASE_SCHEMES)?;
                lease.url_at = self.place(v.start);
                url = Some(text.to_owned());
            } else {
                lease.ttl = self.duration(v, "ttl")?;
                if lease.ttl < MIN_TTL {
                    return Err(self.error(
                        v.start,
                        "`ttl` must be at least 10ms".to_owned(),
                        "a lease lives this long without renewal; for example: ttl: \"30s\""
                            .to_owned(),
                    ));
                }
            }
        }
        lease.url = url.ok_or_else(|| {
            self.error(
                node.start,
                "`lease` has no `url`".to_owned(),
                format!("for example: {LEASE_EXAMPLE}"),
            )
        })?;
        Ok(lease)
    }

    /// `fields`, with a hint of its own for a `secret` key: secrets never go in the file.
    fn fields_or_secret<'n>(
        &self,
        node: &'n Node,
        context: &str,
        known: &[&str],
        example: &str,
    ) -> Result<&'n [crate::syntax::Field], ConfigError> {
        if let crate::syntax::Kind::Struct(fields) = &node.kind
            && let Some(f) = fields.iter().find(|f| f.key == "secret")
        {
            return Err(self.error(
                f.key_start,
                "a secret cannot be written in the configuration".to_owned(),
                "put it in an environment variable and name that: \
                 secret_env: \"TROVE_SHARED_SECRET\""
                    .to_owned(),
            ));
        }
        self.fields(node, context, known, None, example)
    }

    /// The URL's syntax, scheme and parameters, and no password in it.
    fn check_url(&self, node: &Node, text: &str, schemes: &[&str]) -> Result<(), ConfigError> {
        let fail = |message: String, hint: String| self.error(node.start, message, hint);
        let url = Url::parse(text).map_err(|e| {
            fail(
                format!("invalid URL {text:?}: {e}"),
                format!("for example: {EXAMPLE}"),
            )
        })?;
        let scheme = url.scheme();
        if !schemes.contains(&scheme) {
            return Err(fail(
                format!("unsupported scheme `{scheme}` in {text:?}"),
                format!(
                    "use one of {}",
                    schemes
                        .iter()
                        .map(|s| format!("{s}://"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if url.password().is_some() {
            return Err(fail(
                "the URL carries a password".to_owned(),
                "secrets never go in trove.ron: pass credentials through the environment \
                 (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3)"
                    .to_owned(),
            ));
        }
        let known: &[&str] = match scheme {
            "s3" => &["endpoint", "region", "virtual_host"],
            "redis" | "rediss" => &["prefix"],
            _ => &[],
        };
        for (name, _) in url.query_pairs() {
            if !known.contains(&&*name) {
                let hint = match known {
                    [] => format!("{scheme}:// URLs take no parameters"),
                    _ => format!("{scheme}:// URLs take {}", super::list(known)),
                };
                return Err(fail(
                    format!("unknown parameter `{name}` in {text:?}"),
                    hint,
                ));
            }
        }
        let needs_host = !matches!(scheme, "file" | "memory");
        if needs_host && url.host_str().is_none_or(str::is_empty) {
            return Err(fail(
                format!("{text:?} names no host"),
                format!("for example: {EXAMPLE}"),
            ));
        }
        if scheme == "file" && url.host_str().is_some_and(|h| !h.is_empty()) {
            return Err(fail(
                format!("{text:?} names a host"),
                "a file URL names a directory every machine mounts: file:///mnt/team/trove"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}
