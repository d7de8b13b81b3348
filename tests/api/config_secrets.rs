//! Config errors say where the problem is, never what a secret is: through `check-config`
//! and `serve` of the real binary.

use crate::cli::{BASE, CI_ISSUER as ISSUER, assert_mentions, run, stderr};

const CHAIN_SECRET: &str = "chain-SECRET-0123456789abcdef0123456789";
const FINGERPRINT_SECRET: &str = "fingerprint-SECRET-0123456789abcdef012345";
const PREVIOUS_SECRET: &str = "previous-SECRET-0123456789abcdef0123456789";

/// Runs `check-config` and `serve` on `text` with `env`; both must fail, and their stderr
/// must contain each of `expected` and none of the secrets.
fn assert_refused_without_secrets(text: &str, env: &[(&str, &str)], expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap();
    for args in [
        &["check-config", path][..],
        &["--config", path, "serve"][..],
    ] {
        let output = run(args, env);
        assert!(!output.status.success(), "{args:?} succeeded");
        let message = format!(
            "{}{}",
            stderr(&output),
            String::from_utf8_lossy(&output.stdout)
        );
        for secret in [CHAIN_SECRET, FINGERPRINT_SECRET, PREVIOUS_SECRET] {
            // Not even a part long enough to help guess it.
            assert!(
                !message.contains(&secret[..16]),
                "{args:?} printed a secret:\n{message}"
            );
        }
        assert_mentions(&message, expected);
    }
}

#[test]
fn a_broken_secret_line_is_located_but_not_quoted() {
    let broken_chain_key = format!(
        "[database]\nurl = \"postgres://localhost/x\"\n\n[audit]\nfingerprint_key_id = \"k1\"\n\
         fingerprint_key = \"{FINGERPRINT_SECRET}\"\nchain_key = \"{CHAIN_SECRET}\\q\"\n{ISSUER}"
    );
    assert_refused_without_secrets(&broken_chain_key, &[], &["audit.chain_key", "line 7"]);

    let unterminated = format!(
        "[database]\nurl = \"postgres://localhost/x\"\n\n[audit]\nfingerprint_key_id = \"k1\"\n\
         fingerprint_key = \"{FINGERPRINT_SECRET}\nchain_key = \"{CHAIN_SECRET}\"\n{ISSUER}"
    );
    assert_refused_without_secrets(&unterminated, &[], &["audit.fingerprint_key", "line 6"]);

    let not_a_string = format!(
        "[audit]\nfingerprint_key_id = \"k1\"\nchain_key = {}\n",
        "1234567890123456789"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &not_a_string).unwrap();
    let message = stderr(&run(&["check-config", path.to_str().unwrap()], &[]));
    assert!(
        message.contains("audit.chain_key") && !message.contains("1234567890"),
        "{message}"
    );
}

#[test]
fn a_malformed_previous_key_in_the_environment_is_not_echoed() {
    let config = format!("{BASE}{ISSUER}");
    let env_name = "ECR_TOKEN_BROKER_PREVIOUS_FINGERPRINT_KEYS";
    // A key pasted without its id, and one whose id is not an id.
    let bare = PREVIOUS_SECRET.to_owned();
    assert_refused_without_secrets(&config, &[(env_name, &bare)], &[env_name, "entry 1"]);
    let swapped = format!("old=0123456789abcdef0123456789abcdef,{PREVIOUS_SECRET}=old");
    assert_refused_without_secrets(
        &config,
        &[(env_name, &swapped)],
        &["audit.previous_fingerprint_keys (entry"],
    );
}
