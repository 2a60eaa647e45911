//! The shared tier over HTTPS: nginx's WebDAV behind TLS (`.ci/servers`), its certificate
//! signed by a CA made for the run that no system trusts. Plain `trove` processes on
//! 127.0.0.1 (no namespace): what is checked is the TLS client (reqwest's rustls and the
//! platform's verifier, which reads `SSL_CERT_FILE`), not the network.

use std::path::Path;
use std::process::{Command, Output};

use crate::world::{SECRET, servers_env, trove_bin};

/// A project whose `trove.ron` names `url` as the team's store.
fn project(root: &Path, name: &str, url: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("trove.ron"),
        format!(
            r#"(
    trace: false,
    shared: (url: {url:?}, secret_env: "TROVE_SHARED_SECRET", timeout: "10s"),
    recipes: {{ "greeting": (command: ["echo", "served over TLS"]) }},
)
"#
        ),
    )
    .unwrap();
    dir
}

/// `trove run --explain greeting` in `dir`, trusting the roots `ca` names (the system's
/// when `None`).
fn run(dir: &Path, ca: Option<&str>) -> Output {
    let mut cmd = Command::new(trove_bin());
    cmd.args(["run", "--explain", "greeting"])
        .current_dir(dir)
        .env("TROVE_SHARED_SECRET", SECRET)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "trove run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served over TLS\n");
    out
}

/// Trusting the CA (SSL_CERT_FILE, as for a company's own S3 or WebDAV server), one
/// machine publishes over HTTPS and another is served it from there (`hit shared`); with
/// only the system's roots the certificate is refused, said, and the object built locally.
#[test]
fn webdav_over_https_is_trusted_through_ssl_cert_file_and_refused_without_it() {
    let env = servers_env();
    let (base, ca) = (&env["TROVE_WEBDAVS_URL"], &env["TROVE_TLS_CA"]);
    let root = tempfile::tempdir().unwrap();
    let url = format!("{base}/tls-{}", std::process::id());
    let published = run(&project(root.path(), "a", &url), Some(ca));
    let said = String::from_utf8_lossy(&published.stderr);
    assert!(
        said.contains("built") && !said.contains("unavailable"),
        "{said}"
    );
    let served = run(&project(root.path(), "b", &url), Some(ca));
    let said = String::from_utf8_lossy(&served.stderr);
    assert!(said.contains("hit shared"), "{said}");
    let refused = run(&project(root.path(), "c", &url), None);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("UnknownIssuer")
            && said.contains("shared tier unavailable, building locally"),
        "{said}"
    );
}
