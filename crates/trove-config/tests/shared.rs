//! `shared:` as PRODUCT.md writes it, and its mistakes reported with line and column.

use std::path::Path;
use std::time::Duration;

use trove_config::{Config, SharedSettings};

fn parse(source: &str) -> Result<Config, trove_config::ConfigError> {
    Config::parse(source, Path::new("/project/trove.ron"))
}

/// Parses `fixture` and asserts it fails at the `$0` marker with `message` and `hint`.
#[track_caller]
fn check(fixture: &str, message: &str, hint: &str) {
    let offset = fixture.find("$0").expect("no $0 marker");
    let source = fixture.replacen("$0", "", 1);
    let before = &source[..offset];
    let line = 1 + before.matches('\n').count();
    let column = 1 + before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count();
    let err = match parse(&source) {
        Ok(_) => panic!("accepted:\n{source}"),
        Err(e) => e,
    };
    assert_eq!((err.line, err.column), (line, column), "{err}");
    assert!(err.message.contains(message), "{err}");
    assert!(err.hint.as_deref().unwrap_or("").contains(hint), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("trove.ron:{line}:{column}"))
    );
}

#[test]
fn the_product_example_reads_as_written() {
    let config = parse(
        r#"(
    shared: (
        url: "s3://bucket/trove?endpoint=http://127.0.0.1:9000&region=us-east-1",
        secret_env: "TROVE_SHARED_SECRET",
        read_only: false,
        lease: (url: "redis://127.0.0.1:6379", ttl: "30s"),
        timeout: "2s",
    ),
)"#,
    )
    .unwrap();
    let shared = config.shared.unwrap();
    assert_eq!(
        shared.url,
        "s3://bucket/trove?endpoint=http://127.0.0.1:9000&region=us-east-1"
    );
    assert_eq!(shared.secret_env, "TROVE_SHARED_SECRET");
    assert!(!shared.read_only);
    assert_eq!(shared.timeout, Duration::from_secs(2));
    let lease = shared.lease.unwrap();
    assert_eq!(lease.url, "redis://127.0.0.1:6379");
    assert_eq!(lease.ttl, Duration::from_secs(30));
    assert_eq!((shared.url_at.line, shared.url_at.column), (3, 14));
}

#[test]
fn only_the_url_is_required() {
    let shared = parse(r#"(shared: (url: "file:///mnt/team/trove"))"#)
        .unwrap()
        .shared
        .unwrap();
    assert_eq!(shared.secret_env, SharedSettings::DEFAULT_SECRET_ENV);
    assert_eq!(shared.timeout, SharedSettings::DEFAULT_TIMEOUT);
    assert!(!shared.read_only && shared.lease.is_none());
    assert!(parse("()").unwrap().shared.is_none());
    for url in [
        "redis://127.0.0.1:6379/2?prefix=team",
        "webdav://127.0.0.1:8080/trove",
        "webdavs://dav.example.com/trove",
        "memory://",
    ] {
        parse(&format!("(shared: (url: {url:?}))")).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn a_bad_url_an_unknown_scheme_or_parameter_is_an_error_where_it_is_written() {
    check(
        "(shared: (url: $0\"not a url\"))",
        "invalid URL",
        "for example",
    );
    check(
        "(shared: (url: $0\"ftp://host/trove\"))",
        "unsupported scheme `ftp`",
        "s3://",
    );
    check(
        "(shared: (url: $0\"s3://b/p?endpoit=http://x\"))",
        "unknown parameter `endpoit`",
        "`endpoint`",
    );
    check(
        "(shared: (url: $0\"redis://:hunter2@127.0.0.1\"))",
        "password",
        "environment",
    );
    check(
        "(shared: (url: $0\"file://host/x\"))",
        "names a host",
        "file:///",
    );
    check(
        "(shared: (url: \"file:///t\", lease: (url: $0\"s3://b/p\")))",
        "unsupported scheme `s3`",
        "redis://",
    );
}

#[test]
fn bad_durations_unknown_keys_and_secrets_are_errors_where_they_are_written() {
    check(
        "(shared: (url: \"file:///t\", timeout: $0\"2 parsecs\"))",
        "invalid duration in `timeout`",
        "durations look like",
    );
    check(
        "(shared: (url: \"file:///t\", lease: (url: \"redis://h\", ttl: $0\"1ms\")))",
        "at least 10ms",
        "30s",
    );
    check(
        "(shared: (url: \"file:///t\", $0read_onyl: true))",
        "unknown key `read_onyl`",
        "did you mean `read_only`?",
    );
    check(
        "(shared: (url: \"file:///t\", $0secret: \"hunter2hunter2hunter2\"))",
        "a secret cannot be written",
        "secret_env",
    );
    check("(shared: $0(read_only: true))", "no `url`", "for example");
    check(
        "(shared: (url: \"file:///t\", secret_env: $0\"A=B\"))",
        "not an environment variable name",
        "secret_env",
    );
}

#[test]
fn trove_local_ron_says_whether_this_machine_writes_to_the_shared_tier() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("trove.ron");
    let local = dir.path().join(trove_config::LOCAL_FILE_NAME);
    std::fs::write(
        &main,
        r#"(shared: (url: "file:///mnt/team", read_only: false))"#,
    )
    .unwrap();
    std::fs::write(&local, "(shared: (read_only: true))").unwrap();
    assert!(Config::load(&main).unwrap().shared.unwrap().read_only);

    std::fs::write(&local, "(shared: (url: \"file:///elsewhere\"))").unwrap();
    let err = Config::load(&main).unwrap_err();
    assert!(
        err.message
            .contains("`url` cannot be set in trove.local.ron"),
        "{err}"
    );
    assert_eq!((err.line, err.column), (1, 11), "{err}");

    std::fs::write(&main, "()").unwrap();
    std::fs::write(&local, "(shared: (read_only: true))").unwrap();
    let err = Config::load(&main).unwrap_err();
    assert!(err.message.contains("configures no shared tier"), "{err}");
}
