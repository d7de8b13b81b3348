//! Verified TLS to Postgres (`sslmode=verify-full` with `sslrootcert`) and to issuers under
//! a private CA (`[[issuers]] ca_file`), with certificates made when the test runs.

use std::process::Output;
use std::time::Duration;

use crate::cli::{BASE, CI_ISSUER, run, stderr};
use crate::helpers::postgres::TestPostgres;
use crate::helpers::tls::TestCa;
use crate::helpers::{
    ServiceProcess, TestApp, TestIssuer, audit_rows_in, empty_database_on, wait_for,
};

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

#[tokio::test]
async fn an_issuer_under_a_private_ca_is_trusted_with_its_ca_file() {
    // Arrange: discovery and the key set it names are both served under the private CA.
    let ca = TestCa::new("corp CA");
    let issuer = TestIssuer::start_https(&ca.server_cert(&["IP:127.0.0.1"])).await;

    // Act
    let app = TestApp::builder()
        .issuer(issuer.clone())
        .issuer_keys(&format!("discovery = true\nca_file = {:?}", ca.cert))
        .spawn_process()
        .await;
    let response = app.issue(&issuer.token().sign()).await;

    // Assert
    assert_eq!(response.status(), 200);
    assert!(issuer.discovery_fetches() >= 1);
    assert!(issuer.jwks_fetches() >= 1);
}

#[tokio::test]
async fn an_issuer_under_a_private_ca_is_refused_without_its_ca_file() {
    let ca = TestCa::new("corp CA");
    let stranger = TestCa::new("another CA");
    let issuer = TestIssuer::start_https(&ca.server_cert(&["IP:127.0.0.1"])).await;

    for issuer_keys in [
        r#"jwks_uri = "{jwks_uri}""#.to_owned(),
        format!("jwks_uri = \"{{jwks_uri}}\"\nca_file = {:?}", stranger.cert),
    ] {
        // Act
        let app = TestApp::builder()
            .issuer(issuer.clone())
            .issuer_keys(&issuer_keys)
            .keys_stay_unloaded("test")
            .spawn()
            .await;
        let response = app.whoami(&issuer.token().sign()).await;

        // Assert: no key set was ever served, so no certificate check let one through.
        assert_ne!(response.status(), 200, "{issuer_keys}");
        assert_eq!(issuer.jwks_fetches(), 0, "{issuer_keys}");
        let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
        assert_ne!(ready["checks"]["issuers"]["test"], "ok", "{ready}");
    }
}

/// The `config reloaded` lines the service has logged so far.
fn reloads(service: &ServiceProcess) -> Vec<String> {
    service
        .log()
        .lines()
        .filter(|line| line.contains("config reloaded"))
        .map(str::to_owned)
        .collect()
}

/// Replaces the config and waits for the `n`th reload; returns its log line.
async fn reload(service: &ServiceProcess, text: &str, n: usize) -> String {
    service.write_config(text);
    service.hangup();
    let logged = wait_for(Duration::from_secs(30), async || {
        reloads(service).get(n - 1).cloned()
    })
    .await;
    logged.unwrap_or_else(|| panic!("reload {n} never logged:\n{}", service.log()))
}

#[tokio::test]
async fn a_reload_keeps_the_issuers_client_until_its_ca_file_changes() {
    // Arrange: the CA file lives apart from the test CA, so the test can rewrite it.
    let ca = TestCa::new("corp CA");
    let issuer = TestIssuer::start_https(&ca.server_cert(&["IP:127.0.0.1"])).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("corp-ca.pem");
    std::fs::copy(&ca.cert, &ca_file).unwrap();
    let service = TestApp::builder()
        .issuer(issuer.clone())
        .issuer_keys(&format!(
            "jwks_uri = \"{{jwks_uri}}\"\nca_file = {ca_file:?}"
        ))
        .env("RUST_LOG", "info")
        .spawn_process()
        .await;
    let renamed = service
        .config_text
        .replace(r#"name = "acme-main""#, r#"name = "acme-renamed""#);

    // Act 1: a reload that leaves the issuer alone.
    let first = reload(&service, &renamed, 1).await;

    // Assert 1
    assert!(first.contains("issuers_kept=1"), "{first}");

    // Act 2: the same path, other certificates (the CA again, and another one).
    let fetches = issuer.jwks_fetches();
    let mut bundle = std::fs::read(&ca.cert).unwrap();
    bundle.extend(std::fs::read(&TestCa::new("next corp CA").cert).unwrap());
    std::fs::write(&ca_file, bundle).unwrap();
    let second = reload(&service, &service.config_text, 2).await;

    // Assert 2: rebuilt with the new file, whose certificates still vouch for the issuer.
    assert!(second.contains("issuers_kept=0"), "{second}");
    let refetched = wait_for(Duration::from_secs(30), async || {
        (issuer.jwks_fetches() > fetches).then_some(())
    })
    .await;
    assert!(
        refetched.is_some(),
        "the rebuilt issuer never fetched its keys"
    );
    assert_eq!(service.issue(&issuer.token().sign()).await.status(), 200);
}
