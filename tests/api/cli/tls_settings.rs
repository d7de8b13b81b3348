//! `check-config` and the TLS settings: a database reached without checking its certificate
//! is warned of, and an issuer's `ca_file` must be a readable file of PEM certificates.

use super::{BASE, CI_ISSUER, assert_mentions, refused_config, run, stderr};
use crate::helpers::tls::TestCa;

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

#[test]
fn check_config_refuses_an_issuer_ca_file_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "this is no certificate\n").unwrap();
    let issuer = |ca_file: &std::path::Path, keys: &str| {
        format!(
            "\n[[issuers]]\nname = \"corp\"\nissuer = \"https://sso.corp.example\"\n{keys}\n\
             ca_file = {:?}\naudiences = [\"ecr-token-broker\"]\nalgorithms = [\"RS256\"]\n",
            ca_file.display().to_string()
        )
    };
    let jwks_uri = r#"jwks_uri = "https://sso.corp.example/jwks""#;

    let message = refused_config(&format!("{BASE}{CI_ISSUER}{}", issuer(&missing, jwks_uri)));
    assert_mentions(&message, &["issuers[1].ca_file", "missing.pem"]);

    let message = refused_config(&format!("{BASE}{CI_ISSUER}{}", issuer(&not_pem, jwks_uri)));
    assert_mentions(
        &message,
        &[
            "issuers[1].ca_file",
            "not-a-certificate.pem",
            "no PEM certificate",
        ],
    );

    // A CA file for keys read from disk would be trusted for nothing.
    let ca = TestCa::new("corp CA");
    let message = refused_config(&format!(
        "{BASE}{CI_ISSUER}{}",
        issuer(&ca.cert, r#"jwks_file = "/etc/jwks.json""#)
    ));
    assert_mentions(&message, &["issuers[1].ca_file", "https"]);
}

#[test]
fn check_config_accepts_an_issuer_ca_file_of_pem_certificates() {
    let ca = TestCa::new("corp CA");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "{BASE}{CI_ISSUER}\n[[issuers]]\nname = \"corp\"\nissuer = \"https://sso.corp.example\"\n\
             discovery = true\nca_file = {:?}\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]\n",
            ca.cert.display().to_string()
        ),
    )
    .unwrap();

    let output = run(&["check-config", path.to_str().unwrap()], &[]);

    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn check_config_names_each_bad_server_tls_file_by_its_setting() {
    let ca = TestCa::new("listener CA");
    let pair = ca.server_cert(&["DNS:localhost"]);
    let other = ca.server_cert(&["DNS:localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let tls = |cert: &std::path::Path, key: &std::path::Path, client_ca: &std::path::Path| {
        format!(
            "{BASE}{CI_ISSUER}\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
            cert.display(),
            key.display(),
            client_ca.display()
        )
    };

    let unreadable = refused_config(&tls(&missing, &pair.key, &not_pem));
    let mismatched = refused_config(&tls(&pair.cert, &other.key, &ca.cert));
    let no_key = refused_config(&tls(&pair.cert, &pair.cert, &ca.cert));

    assert_mentions(
        &unreadable,
        &[
            &format!("server.tls.cert_file: cannot read {}", missing.display()),
            &format!(
                "server.tls.client_ca_file: {} holds no PEM",
                not_pem.display()
            ),
        ],
    );
    assert_mentions(
        &mismatched,
        &["server.tls.key_file:", "is not the private key of"],
    );
    assert_mentions(
        &no_key,
        &["server.tls.key_file:", "holds no PEM private key"],
    );
    let key = std::fs::read_to_string(&other.key).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    for message in [&unreadable, &mismatched, &no_key] {
        assert!(!message.contains(key_body), "{message}");
    }
}
