//! `check-config` and the TLS settings: a database reached without checking its certificate
//! is warned of.

use super::{BASE, CI_ISSUER, assert_mentions, run, stderr};

/// check-config's standard error for BASE and CI_ISSUER with this database URL.
fn warnings_for_database(url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("{BASE}{CI_ISSUER}")).unwrap();
    let output = run(
        &["check-config", path.to_str().unwrap()],
        &[("ECR_TOKEN_BROKER_DATABASE_URL", url)],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    stderr(&output)
}

#[test]
fn check_config_warns_of_a_remote_database_reached_without_verifying_its_certificate() {
    let remote = "postgres://broker:pw-not-shown@db.example.internal:5432/broker";
    for unverified in [
        remote.to_owned(),
        format!("{remote}?sslmode=require"),
        format!("{remote}?sslmode=prefer"),
        format!("{remote}?sslmode=disable"),
    ] {
        let warned = warnings_for_database(&unverified);
        assert_mentions(
            &warned,
            &[
                "warning: database.url",
                "db.example.internal",
                "verify-full",
            ],
        );
        assert!(!warned.contains("pw-not-shown"), "{warned}");
    }
    for verified_or_local in [
        format!("{remote}?sslmode=verify-full&sslrootcert=/etc/ssl/rds.pem"),
        format!("{remote}?sslmode=verify-ca&sslrootcert=/etc/ssl/rds.pem"),
        "postgres://broker@localhost/broker".to_owned(),
        "postgres://broker@127.0.0.1:5432/broker".to_owned(),
        "postgres://broker@[::1]:5432/broker".to_owned(),
        "postgres:///broker?host=/var/run/postgresql".to_owned(),
    ] {
        let quiet = warnings_for_database(&verified_or_local);
        assert!(
            !quiet.contains("database.url"),
            "{verified_or_local}: {quiet}"
        );
    }
}
