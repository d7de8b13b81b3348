//! The memory of verified tokens, through the HTTP API: a token presented again is spared
//! only its signature check. A retired key, a replayed `jti` and an `exp` that passed are
//! each refused as if the token had never been seen.

use std::time::Duration;

use crate::authentication::assert_refused;
use crate::helpers::{SigningKey, TestApp, wait_for};

#[tokio::test]
async fn a_token_whose_key_was_retired_is_refused_though_it_verified_before() {
    let app = TestApp::spawn().await;
    let old = app.issuer.token().sign();
    assert_eq!(app.issue(Some(&old), None).await.status(), 200);
    assert_eq!(app.issue(Some(&old), None).await.status(), 200);

    // The issuer rotates: the primary key is retired, another one published. A token under
    // the new key makes the service refetch the set (at most once a second).
    let rotated = SigningKey::rsa_rotated();
    app.issuer.retire(&SigningKey::rsa_primary());
    app.issuer.publish(&rotated);
    let new = app.issuer.token().signed_by(rotated).sign();
    wait_for(Duration::from_secs(30), async || {
        (app.issue(Some(&new), None).await.status() == 200).then_some(())
    })
    .await
    .expect("the rotated key was never picked up");

    assert_refused(&app, Some(&old), "unknown_key").await;
    assert_eq!(app.issue(Some(&new), None).await.status(), 200);
}

#[tokio::test]
async fn a_replayed_jti_is_refused_every_time_after_its_first_use() {
    let app = TestApp::builder()
        .issuer_keys("jwks_uri = \"{jwks_uri}\"\nreject_replayed_jti = true")
        .spawn()
        .await;
    let token = app.issuer.token().claim("jti", "job-7").sign();
    assert_eq!(app.issue(Some(&token), None).await.status(), 200);
    for _ in 0..3 {
        assert_refused(&app, Some(&token), "replayed").await;
    }
    let at_once = (0..10).map(|_| app.issue(Some(&token), None));
    for response in futures::future::join_all(at_once).await {
        assert_eq!(response.status(), 401);
    }
}

#[tokio::test]
async fn a_token_remembered_while_valid_is_refused_once_it_expires() {
    // No leeway, so the token's exp is the last second it is accepted.
    let app = TestApp::builder()
        .issuer_keys("jwks_uri = \"{jwks_uri}\"\nleeway_secs = 0")
        .spawn()
        .await;
    let now = jsonwebtoken::get_current_timestamp();
    let exp = now + 3;
    let token = app
        .issuer
        .token()
        .claim("nbf", now - 1)
        .claim("exp", exp)
        .sign();
    assert_eq!(app.issue(Some(&token), None).await.status(), 200);

    wait_for(Duration::from_secs(30), async || {
        let sent = jsonwebtoken::get_current_timestamp();
        let status = app.issue(Some(&token), None).await.status();
        assert!(
            status != 200 || sent <= exp,
            "accepted at {sent}, after its exp {exp}"
        );
        (status == 401).then_some(())
    })
    .await
    .expect("an expired token was still accepted");
    assert!(jsonwebtoken::get_current_timestamp() > exp);
    assert_refused(&app, Some(&token), "expired").await;
}
