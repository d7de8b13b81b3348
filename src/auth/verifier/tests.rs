//! The memory of verified tokens, against a real key set read from a file: what it spares
//! and what it must never spare.

use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header, get_current_timestamp};
use serde_json::json;

use super::super::verified::{CAPACITY, TTL_SECS};
use super::*;

const ISSUER: &str = "https://issuer.example.com";

fn signing_key() -> EncodingKey {
    EncodingKey::from_ed_pem(include_bytes!("../../../tests/fixtures/keys/ed25519.pem")).unwrap()
}

/// Writes a key set to `path` publishing the test key under each of `kids`.
fn publish(path: &Path, kids: &[&str]) {
    let keys = kids
        .iter()
        .map(|kid| {
            let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::EdDSA).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            jwk
        })
        .collect();
    std::fs::write(path, serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap();
}

/// A key set file publishing the test key as `k1`, in a directory removed on drop.
fn key_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    publish(&path, &["k1"]);
    (dir, path)
}

/// A verifier of one issuer whose keys are read from `path`, with `extra` TOML settings.
async fn verifier(path: &Path, extra: &str) -> Verifier {
    let config = crate::config::issuer_from_toml(&format!(
        "name = \"ci\"\nissuer = \"{ISSUER}\"\njwks_file = {path:?}\n\
         audiences = [\"broker\"]\nalgorithms = [\"EdDSA\"]\n{extra}"
    ));
    let metrics = crate::metrics::Metrics::new(["/healthz"]);
    let verifier = Verifier::new(&[config], &reqwest::Client::new(), &metrics).unwrap();
    for issuer in verifier.issuers() {
        issuer.key_set().unwrap().refresh().await.unwrap();
    }
    verifier
}

/// A token under `kid`, expiring `exp_in` seconds from now, with `claims` added.
fn token(kid: &str, exp_in: i64, claims: serde_json::Value) -> String {
    let now = get_current_timestamp() as i64;
    let mut body = json!({"iss": ISSUER, "aud": "broker", "sub": "repo:acme/api",
        "iat": now, "nbf": now, "exp": now + exp_in});
    body.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &body, &signing_key()).unwrap()
}

fn remembered(verifier: &Verifier, token: &str) -> bool {
    verifier
        .verified
        .get(&digest(token), get_current_timestamp())
        .is_some()
}

#[tokio::test]
async fn a_verified_token_is_remembered_and_a_refused_one_never_is() {
    let (_dir, path) = key_file();
    let verifier = verifier(&path, "").await;

    let good = token("k1", 600, json!({}));
    assert_eq!(
        verifier.verify(&good).await.unwrap().subject,
        "repo:acme/api"
    );
    assert!(remembered(&verifier, &good));
    // Served from memory, the caller is the same.
    let again = verifier.verify(&good).await.unwrap();
    assert_eq!(again.subject, "repo:acme/api");
    assert_eq!(again.claims["aud"], "broker");

    let mut forged = good.clone();
    forged.push('A');
    assert_eq!(
        verifier.verify(&forged).await.unwrap_err(),
        AuthError::BadSignature
    );
    let wrong_audience = token("k1", 600, json!({"aud": "other"}));
    assert_eq!(
        verifier.verify(&wrong_audience).await.unwrap_err(),
        AuthError::WrongAudience
    );
    let expired = token("k1", -600, json!({}));
    assert_eq!(
        verifier.verify(&expired).await.unwrap_err(),
        AuthError::Expired
    );
    for refused in [&forged, &wrong_audience, &expired] {
        assert!(!remembered(&verifier, refused));
    }
    assert_eq!(verifier.verified.len(), 1);
}

#[tokio::test]
async fn a_remembered_token_dies_with_the_key_set_that_verified_it() {
    let (_dir, path) = key_file();
    let verifier = verifier(&path, "").await;
    let old = token("k1", 600, json!({}));
    verifier.verify(&old).await.unwrap();
    assert!(remembered(&verifier, &old));

    // The issuer rotates k1 out, and the set is refreshed.
    publish(&path, &["k2"]);
    let set = verifier
        .issuers()
        .next()
        .unwrap()
        .key_set()
        .unwrap()
        .clone();
    set.refresh().await.unwrap();

    assert_eq!(
        verifier.verify(&old).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert!(!remembered(&verifier, &old));
    verifier.verify(&token("k2", 600, json!({}))).await.unwrap();
}

#[tokio::test]
async fn a_remembered_token_still_passes_every_check_that_is_not_its_own() {
    let (_dir, path) = key_file();

    let replays = verifier(&path, "reject_replayed_jti = true").await;
    let once = token("k1", 600, json!({"jti": "job-1"}));
    let caller = replays.verify(&once).await.unwrap();
    assert!(remembered(&replays, &once));
    // Verifying alone uses nothing up; acting on the token as an admitted caller does.
    replays.verify(&once).await.unwrap();
    replays.take_jti(&caller).unwrap();
    assert_eq!(replays.take_jti(&caller), Err(AuthError::Replayed));
    assert_eq!(
        replays.verify(&once).await.unwrap_err(),
        AuthError::Replayed
    );

    // Past its exp (no leeway) a remembered token is verified in full, and refused.
    let strict = verifier(&path, "leeway_secs = 0").await;
    let short = token("k1", 600, json!({}));
    let caller = strict.verify(&short).await.unwrap();
    let issuer = strict.issuers().next().unwrap();
    let entry = strict
        .verified
        .get(&digest(&short), get_current_timestamp())
        .unwrap();
    let later = entry.exp + 1;
    assert!(
        issuer.recheck(&entry, later).is_none(),
        "expired at {later}"
    );
    assert!(issuer.recheck(&entry, entry.exp).is_some());
    let early = entry.nbf.unwrap() - 1;
    assert!(
        issuer.recheck(&entry, early).is_none(),
        "not valid yet at {early}"
    );
    assert_eq!(caller.subject, entry.caller.subject);
}

#[tokio::test]
async fn the_memory_is_bounded_in_time_and_size() {
    let (_dir, path) = key_file();
    let verifier = verifier(&path, "").await;
    let now = get_current_timestamp();

    // A token living ten minutes is remembered for TTL_SECS; one living less, until its exp.
    let long = token("k1", 600, json!({}));
    verifier.verify(&long).await.unwrap();
    let cache = &verifier.verified;
    assert!(cache.get(&digest(&long), now + TTL_SECS - 1).is_some());
    assert!(cache.get(&digest(&long), now + TTL_SECS + 2).is_none());
    let short = token("k1", 5, json!({}));
    verifier.verify(&short).await.unwrap();
    assert!(cache.get(&digest(&short), now + 4).is_some());
    assert!(cache.get(&digest(&short), now + 7).is_none());

    let entry = || {
        let now = get_current_timestamp();
        let issuer = verifier.issuers().next().unwrap().clone();
        crate::auth::verified::Verified {
            issuer,
            key_generation: 1,
            header: Header::new(Algorithm::EdDSA),
            caller: Caller {
                issuer: "ci".into(),
                subject: "s".to_owned(),
                claims: Map::new(),
            },
            exp: now + 600,
            nbf: None,
        }
    };
    for n in 0..CAPACITY + 10 {
        cache.insert(digest(&n.to_string()), entry(), now);
    }
    assert_eq!(cache.len(), CAPACITY);
}
