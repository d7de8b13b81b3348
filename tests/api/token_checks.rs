//! What an issuer may ask beyond a valid signature: no unknown critical header, its `typ`,
//! a sane `iat`, a maximum age and single use; and keys fetched only where configured.

use std::time::Duration;

use serde_json::json;

use crate::authentication::assert_refused;
use crate::helpers::{TestApp, assert_problem, request_id, wait_for};

#[tokio::test]
async fn a_critical_header_extension_is_refused() {
    let app = TestApp::spawn().await;
    // RFC 7797's unencoded payload, which this service does not implement.
    let b64 = app
        .issuer
        .token()
        .header("b64", false)
        .header("crit", json!(["b64"]))
        .sign();
    assert_refused(&app, Some(&b64), "unsupported_crit").await;
    let empty = app.issuer.token().header("crit", json!([])).sign();
    assert_refused(&app, Some(&empty), "unsupported_crit").await;
    // The same extension, not marked critical, may be ignored.
    let ignorable = app.issuer.token().header("b64", false).sign();
    assert_eq!(app.issue(Some(&ignorable), None).await.status(), 200);
}

#[tokio::test]
async fn an_issuer_may_require_a_typ() {
    let app = TestApp::builder()
        .issuer_keys("jwks_uri = \"{jwks_uri}\"\nrequired_typ = \"JWT\"")
        .spawn()
        .await;
    for accepted in ["JWT", "jwt", "application/JWT"] {
        let token = app.issuer.token().header("typ", accepted).sign();
        assert_eq!(
            app.issue(Some(&token), None).await.status(),
            200,
            "{accepted}"
        );
    }
    let access_token = app.issuer.token().header("typ", "at+jwt").sign();
    assert_refused(&app, Some(&access_token), "wrong_typ").await;
    let untyped = app.issuer.token().header("typ", json!(null)).sign();
    assert_refused(&app, Some(&untyped), "wrong_typ").await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let app = TestApp::spawn().await;
    let now = jsonwebtoken::get_current_timestamp();
    // Within the 60 s leeway: a clock a little ahead.
    let skewed = app.issuer.token().claim("iat", now + 30).sign();
    assert_eq!(app.issue(Some(&skewed), None).await.status(), 200);
    let future = app.issuer.token().claim("iat", now + 600).sign();
    assert_refused(&app, Some(&future), "issued_in_future").await;
    let not_a_date = app.issuer.token().claim("iat", "yesterday").sign();
    assert_refused(&app, Some(&not_a_date), "missing_claim").await;
}

#[tokio::test]
async fn an_issuer_may_bound_the_age_of_tokens() {
    let app = TestApp::builder()
        .issuer_keys("jwks_uri = \"{jwks_uri}\"\nmax_token_age_secs = 300")
        .spawn()
        .await;
    let now = jsonwebtoken::get_current_timestamp();
    let young = app.issuer.token().claim("iat", now - 200).sign();
    assert_eq!(app.issue(Some(&young), None).await.status(), 200);
    // Still unexpired, but issued 20 minutes ago: older than 300 s plus leeway.
    let old = app.issuer.token().claim("iat", now - 1200).sign();
    assert_refused(&app, Some(&old), "too_old").await;
    let ageless = app.issuer.token().without("iat").sign();
    assert_refused(&app, Some(&ageless), "missing_claim").await;
}

#[tokio::test]
async fn tokens_are_reusable_unless_the_issuer_refuses_replays() {
    let app = TestApp::spawn().await;
    let token = app.issuer.token().claim("jti", "job-1").sign();
    for _ in 0..2 {
        assert_eq!(app.issue(Some(&token), None).await.status(), 200);
    }

    let app = TestApp::builder()
        .issuer_keys("jwks_uri = \"{jwks_uri}\"\nreject_replayed_jti = true")
        .spawn()
        .await;
    let token = app.issuer.token().claim("jti", "job-1").sign();
    assert_eq!(app.issue(Some(&token), None).await.status(), 200);
    assert_refused(&app, Some(&token), "replayed").await;
    // Another token with the same jti is the same token as far as replay goes.
    let again = app.issuer.token().claim("jti", "job-1").shifted(1).sign();
    assert_refused(&app, Some(&again), "replayed").await;
    let next = app.issuer.token().claim("jti", "job-2").sign();
    assert_eq!(app.issue(Some(&next), None).await.status(), 200);
    let anonymous = app.issuer.token().sign();
    assert_refused(&app, Some(&anonymous), "missing_claim").await;
}

/// An app whose issuer refuses replayed `jti`s and remembers at most `capacity` of them.
async fn counting_jtis(capacity: usize) -> TestApp {
    TestApp::builder()
        .issuer_keys(&format!(
            "jwks_uri = \"{{jwks_uri}}\"\nreject_replayed_jti = true\njti_cache_capacity = {capacity}"
        ))
        .spawn()
        .await
}

/// A 401 for a verified token refused by the replay cache: the caller is named, since its
/// token verified.
async fn assert_replay_refusal(app: &TestApp, token: &str, reason: &str) {
    let response = app.issue(Some(token), None).await;
    let id = request_id(&response);
    assert_problem(response, 401, "invalid-token").await;
    let row = app.audit_row(&id).await;
    assert_eq!(row["reason"], format!("invalid_token:{reason}"));
    assert!(row["token_fingerprints"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_replay_cache_is_bounded_and_refuses_only_whoever_fills_it() {
    let app = counting_jtis(2).await;
    let mallory = |jti: &str| {
        app.issuer
            .token()
            .claim("sub", "repo:acme/api:mallory")
            .claim("jti", jti)
            .sign()
    };
    for jti in ["a", "b"] {
        assert_eq!(app.issue(Some(&mallory(jti)), None).await.status(), 200);
    }
    // Both remembered tokens are still valid and mallory holds every slot: a third of its
    // tokens cannot be remembered, so it is refused rather than accepted unprotected.
    assert_replay_refusal(&app, &mallory("c"), "replay_cache_full").await;

    // Anyone else still gets in: mallory's slots make room, and mallory's tokens, any of
    // which could now be replayed unnoticed, are refused until they expire.
    let alice = app.issuer.token().claim("jti", "alice-1").sign();
    assert_eq!(app.issue(Some(&alice), None).await.status(), 200);
    assert_replay_refusal(&app, &mallory("a"), "replay_cache_full").await;
    assert_replay_refusal(&app, &mallory("d"), "replay_cache_full").await;
    assert_refused(&app, Some(&alice), "replayed").await;
}

#[tokio::test]
async fn strangers_cannot_fill_the_replay_cache() {
    let app = counting_jtis(4).await;
    // Validly signed tokens that no rule admits, each with a fresh `jti`: free to mint on
    // a public issuer. Asking who they are, issuing, or reading their own records takes
    // no slot.
    for i in 0..12 {
        let stranger = app
            .issuer
            .token()
            .claim("sub", format!("repo:evil/x{i}:ref:refs/heads/main"))
            .claim("repository_owner", "evil")
            .claim("jti", format!("stranger-{i}"))
            .sign();
        let whoami = app.whoami(&stranger).await;
        assert_eq!(whoami.status(), 200);
        assert_eq!(app.issue(Some(&stranger), None).await.status(), 403);
        assert_eq!(app.audit_issuances(&stranger, &[]).await.status(), 200);
    }
    let jtis = async || {
        crate::metrics::scrape(&app.url("/metrics"))
            .await
            .get("ecr_token_broker_jti_cache_entries", &[("issuer", "test")])
    };
    assert_eq!(jtis().await, 0.0, "strangers took no slot");
    // An admitted caller's token may be looked at first, then used once.
    let real = app.issuer.token().claim("jti", "real-1").sign();
    assert_eq!(app.whoami(&real).await.status(), 200);
    assert_eq!(app.issue(Some(&real), None).await.status(), 200);
    assert_refused(&app, Some(&real), "replayed").await;
    for i in 2..=4 {
        let next = app.issuer.token().claim("jti", format!("real-{i}")).sign();
        assert_eq!(app.issue(Some(&next), None).await.status(), 200);
    }
    assert_eq!(jtis().await, 4.0);
}

#[tokio::test]
async fn a_key_set_behind_a_redirect_is_not_followed() {
    let app = TestApp::builder()
        .issuer_keys(r#"jwks_uri = "{issuer}/moved/jwks.json""#)
        .keys_stay_unloaded("test")
        .spawn()
        .await;
    // A second attempt comes only after the first has finished, and only if it failed.
    wait_for(Duration::from_secs(30), async || {
        (app.issuer.redirects() > 1).then_some(())
    })
    .await
    .expect("the service stopped asking for its keys: the first attempt loaded them");

    assert_refused(&app, Some(&app.token()), "unknown_key").await;
    assert_eq!(app.issuer.jwks_fetches(), 0, "the redirect was followed");
}

#[tokio::test]
async fn discovery_may_not_name_a_plain_http_key_set() {
    // 0.0.0.0 reaches this machine's loopback listener, but is no loopback name: a key set
    // there must come over https like a configured one.
    let app = TestApp::builder()
        .issuer_keys("discovery = true")
        .prepare_issuer(|issuer| {
            let elsewhere = issuer.jwks_uri().replace("127.0.0.1", "0.0.0.0");
            issuer.discover_jwks_at(&elsewhere);
        })
        .keys_stay_unloaded("test")
        .spawn()
        .await;
    // A second discovery comes only after the first has finished, and only if it failed.
    wait_for(Duration::from_secs(30), async || {
        (app.issuer.discovery_fetches() > 1).then_some(())
    })
    .await
    .expect("the service stopped running discovery: the first one loaded keys");

    assert_refused(&app, Some(&app.token()), "unknown_key").await;
    assert_eq!(app.issuer.jwks_fetches(), 0, "the http key set was fetched");
}
