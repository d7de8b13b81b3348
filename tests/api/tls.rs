//! Verified TLS to Postgres (`sslmode=verify-full` with `sslrootcert`), with certificates
//! made when the test runs.

use std::process::Output;

use crate::cli::{BASE, CI_ISSUER, run, stderr};
use crate::helpers::postgres::TestPostgres;
use crate::helpers::tls::TestCa;
use crate::helpers::{TestApp, audit_rows_in, empty_database_on};

/// A password in every database URL here: the server trusts any, and no output may show it.
const PASSWORD: &str = "pw-never-shown-4242";

/// A Postgres that accepts TCP connections over TLS only, under a certificate for
/// `localhost` signed by the returned CA.
fn tls_postgres() -> (TestCa, TestPostgres, u16) {
    let ca = TestCa::new("test database CA");
    let pg = TestPostgres::start_tls(&ca.server_cert(&["DNS:localhost"]));
    let port = reqwest::Url::parse(&pg.url).unwrap().port().unwrap();
    (ca, pg, port)
}

/// A URL of database `postgres` at `host:port`, verifying its certificate against `ca`.
fn verified_url(host: &str, port: u16, ca: &TestCa) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.cert.display()
    )
}

/// Runs the binary with a config whose database URL is `url` (given in the environment, as
/// production gives a URL with a password).
fn run_with_database(url: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("{BASE}{CI_ISSUER}")).unwrap();
    let mut full = vec!["--config", config.to_str().unwrap()];
    full.extend_from_slice(args);
    run(&full, &[("ECR_TOKEN_BROKER_DATABASE_URL", url)])
}

/// Asserts that every command that connects is refused, with `reason` in its error and
/// without the password.
fn assert_refused(url: &str, reason: &str) {
    for args in [
        &["migrate"][..],
        &["audit", "verify"],
        &["audit", "export"],
        &["audit", "prune", "--before", "2020-01-01"],
    ] {
        let output = run_with_database(url, args);
        let error = stderr(&output);
        assert!(!output.status.success(), "{args:?} connected: {error}");
        assert!(error.contains(reason), "{args:?} says why: {error}");
        assert!(
            error.contains("invalid peer certificate"),
            "{args:?} names the certificate: {error}"
        );
        assert!(!error.contains(PASSWORD), "{args:?} shows the password");
    }
}

#[tokio::test]
async fn verify_full_reaches_the_database_for_the_service_migrate_and_audit() {
    // Arrange
    let (ca, pg, port) = tls_postgres();
    let database = empty_database_on(&verified_url("localhost", port, &ca)).await;

    // Act: migrate, then every audit command, then the service.
    for args in [
        &["migrate"][..],
        &["audit", "verify"],
        &["audit", "export"],
        &["audit", "prune", "--before", "2020-01-01"],
    ] {
        let output = run_with_database(&database, args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    let app = TestApp::builder()
        .database_url(&database)
        .spawn_process()
        .await;
    let response = app.issue(&app.issuer.token().sign()).await;

    // Assert: the server takes TCP connections over TLS only, so all of this went over it.
    assert_eq!(response.status(), 200);
    let rows = audit_rows_in(&database).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "issued");
    assert!(!app.log().contains(PASSWORD));
    drop(pg);
}

#[tokio::test]
async fn a_database_certificate_from_another_ca_is_refused() {
    let (_ca, _pg, port) = tls_postgres();
    let stranger = TestCa::new("another CA");

    assert_refused(&verified_url("localhost", port, &stranger), "UnknownIssuer");
}

#[tokio::test]
async fn a_database_certificate_for_another_host_name_is_refused() {
    // The certificate names localhost, not 127.0.0.1.
    let (ca, _pg, port) = tls_postgres();

    assert_refused(
        &verified_url("127.0.0.1", port, &ca),
        r#"certificate not valid for name "127.0.0.1""#,
    );
}
