//! Key set refetching on a paused clock: an unknown `kid` refetches at most once per interval, a
//! known one never, and a failed fetch still counts.

use std::path::Path;

use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::time::advance;

use super::*;

/// The on-demand refetch interval of these tests; the clock is paused, so its length costs
/// nothing.
const INTERVAL: Duration = Duration::from_secs(30);

/// Writes a key set to `path` holding one public key under each of `kids`.
fn publish(path: &Path, kids: &[&str]) {
    let pem = include_bytes!("../../../tests/fixtures/keys/ed25519.pem");
    let encoding = EncodingKey::from_ed_pem(pem).unwrap();
    let keys = kids
        .iter()
        .map(|kid| {
            let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            jwk
        })
        .collect();
    std::fs::write(path, serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap();
}

/// A key set read from `path`, refreshed in the background only every hour.
fn key_set(path: &Path) -> KeySet {
    KeySet::new(
        KeySource::JwksFile(path.to_owned()),
        "https://issuer.example.com",
        reqwest::Client::new(),
        INTERVAL,
        Duration::from_secs(3600),
        KeySetMetrics::default(),
    )
}

/// Whether a token signed under `kid` would find its key, refetching if the set may.
async fn knows(keys: &KeySet, kid: &str) -> bool {
    keys.find(Some(kid), Algorithm::EdDSA).await.is_some()
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let file = tempfile::NamedTempFile::new().unwrap();
    publish(file.path(), &["one"]);
    let keys = key_set(file.path());
    assert_eq!(keys.refresh().await.unwrap(), 1);
    assert!(knows(&keys, "one").await);

    // The issuer adds a key right after the load: a token naming it waits out the interval.
    publish(file.path(), &["one", "two"]);
    assert!(!knows(&keys, "two").await);
    advance(INTERVAL - Duration::from_millis(1)).await;
    assert!(!knows(&keys, "two").await, "refetched within the interval");
    advance(Duration::from_millis(1)).await;
    assert!(
        knows(&keys, "two").await,
        "no refetch once the interval passed"
    );

    // That refetch starts a new interval of its own.
    publish(file.path(), &["one", "two", "three"]);
    assert!(!knows(&keys, "three").await);
    advance(INTERVAL - Duration::from_millis(1)).await;
    assert!(
        !knows(&keys, "three").await,
        "refetched within the interval"
    );
    advance(Duration::from_millis(1)).await;
    assert!(knows(&keys, "three").await);
    assert!(
        knows(&keys, "one").await,
        "a refetch keeps the keys still published"
    );
}

#[tokio::test(start_paused = true)]
async fn a_known_kid_or_a_token_without_kid_never_refetches() {
    let file = tempfile::NamedTempFile::new().unwrap();
    publish(file.path(), &["one", "spare"]);
    let keys = key_set(file.path());
    keys.refresh().await.unwrap();
    advance(INTERVAL).await;

    assert!(knows(&keys, "one").await);
    // Two keys fit, so a token without a kid has none; looking again would not help.
    assert!(keys.find(None, Algorithm::EdDSA).await.is_none());

    // Had either of those refetched, a new interval would now keep "two" out.
    publish(file.path(), &["one", "spare", "two"]);
    assert!(knows(&keys, "two").await);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refetch_still_counts_against_the_interval() {
    let file = tempfile::NamedTempFile::new().unwrap();
    publish(file.path(), &["one"]);
    let keys = key_set(file.path());
    keys.refresh().await.unwrap();
    advance(INTERVAL).await;

    // The document is broken when a token names an unknown kid: the old keys stay in use.
    std::fs::write(file.path(), b"not json").unwrap();
    assert!(!knows(&keys, "two").await);
    assert!(knows(&keys, "one").await);

    // Fixed at once, yet not fetched again before the interval since the failed attempt.
    publish(file.path(), &["one", "two"]);
    assert!(!knows(&keys, "two").await);
    advance(INTERVAL).await;
    assert!(knows(&keys, "two").await);
}
