use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{SigningKey, TestApp, assert_problem, request_id, wait_for};

/// Sends `token`, expects a 401 problem, and checks the denial was recorded with `reason`.
pub(crate) async fn assert_refused(app: &TestApp, token: Option<&str>, reason: &str) -> Value {
    let response = app.issue(token, None).await;
    let id = request_id(&response);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = assert_problem(response, 401, "invalid-token").await;
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    if token.is_some() {
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
    if let Some(token) = token {
        assert!(
            !body.to_string().contains(token),
            "a 401 must never echo the token"
        );
    }
    let row = app.audit_row(&id).await;
    assert_eq!(row["outcome"], "denied");
    assert_eq!(row["reason"], format!("invalid_token:{reason}"));
    assert_eq!(row["http_status"], 401);
    assert!(
        row["subject"].is_null(),
        "an unverified subject is never recorded"
    );
    assert!(row["token_fingerprints"].as_array().unwrap().is_empty());
    body
}

#[tokio::test]
async fn a_request_without_a_token_is_refused() {
    let app = TestApp::spawn().await;
    assert_refused(&app, None, "missing_token").await;
    let basic = app
        .http
        .post(app.url("/v1/ecr/authorization-token"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_problem(basic, 401, "invalid-token").await;
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let app = TestApp::spawn().await;
    // Signed by a key the issuer never published, under the published key's id.
    let token = app
        .issuer
        .token()
        .signed_by(SigningKey::rsa_rotated())
        .kid("rsa-primary")
        .sign();
    assert_refused(&app, Some(&token), "bad_signature").await;
    let mut tampered = app.token();
    tampered.insert_str(tampered.rfind('.').unwrap() + 1, "AAAA");
    assert_refused(&app, Some(&tampered), "bad_signature").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_leeway() {
    let app = TestApp::spawn().await;
    // exp 30 s ago is within the default 60 s leeway; 10 minutes ago is not.
    let recent = app.issuer.token().shifted(-630).sign();
    assert_eq!(app.issue(Some(&recent), None).await.status(), 200);
    let expired = app.issuer.token().shifted(-1200).sign();
    assert_refused(&app, Some(&expired), "expired").await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let app = TestApp::spawn().await;
    let future = app.issuer.token().shifted(600).sign();
    assert_refused(&app, Some(&future), "not_yet_valid").await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.issuer.token().claim("aud", "some-other-service").sign();
    assert_refused(&app, Some(&token), "wrong_audience").await;
    let none = app.issuer.token().without("aud").sign();
    assert_refused(&app, Some(&none), "missing_claim").await;
}

#[tokio::test]
async fn an_untrusted_issuer_is_refused() {
    let app = TestApp::spawn().await;
    let token = app
        .issuer
        .token()
        .claim("iss", "https://evil.example.com")
        .sign();
    assert_refused(&app, Some(&token), "unknown_issuer").await;
}

#[tokio::test]
async fn a_token_without_subject_or_expiry_is_refused() {
    let app = TestApp::spawn().await;
    assert_refused(
        &app,
        Some(&app.issuer.token().without("sub").sign()),
        "missing_claim",
    )
    .await;
    assert_refused(
        &app,
        Some(&app.issuer.token().without("exp").sign()),
        "missing_claim",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_per_interval() {
    // The test issuer's interval; src/auth/jwks.rs tests the interval itself on a paused
    // clock, so this test only waits on what it can see and bounds what it counts.
    const INTERVAL: Duration = Duration::from_secs(1);
    let app = TestApp::spawn().await;
    let rotated = SigningKey::rsa_rotated();
    let token = app.issuer.token().signed_by(rotated.clone()).sign();
    let started = Instant::now();
    let fetches = app.issuer.jwks_fetches();

    // Not published yet: refused as unknown each time, and, once the interval since the
    // start-up fetch has passed, one of these requests refetches.
    wait_for(Duration::from_secs(30), async || {
        assert_refused(&app, Some(&token), "unknown_key").await;
        (app.issuer.jwks_fetches() > fetches).then_some(())
    })
    .await
    .expect("a token naming an unknown kid never made the service refetch the keys");
    // A burst right after that refetch is refused without a fetch each.
    let burst = (0..10).map(|_| app.issue(Some(&token), None));
    for response in futures::future::join_all(burst).await {
        assert_problem(response, 401, "invalid-token").await;
    }

    // The issuer rotates; the new key is picked up on demand.
    app.issuer.publish(&rotated);
    wait_for(Duration::from_secs(30), async || {
        (app.issue(Some(&token), None).await.status() == 200).then_some(())
    })
    .await
    .expect("the rotated key was never picked up");

    // Fetches on demand are at least an interval apart, so however many requests asked,
    // the time that passed bounds how many there were.
    let refetches = app.issuer.jwks_fetches() - fetches;
    let most = started.elapsed().as_millis() / INTERVAL.as_millis() + 1;
    assert!(
        (2..=most).contains(&(refetches as u128)),
        "{refetches} refetches in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.issuer.token().unsigned();
    assert_refused(&app, Some(&token), "malformed_token").await;
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let app = TestApp::spawn().await;
    let public_pem = include_bytes!("../fixtures/keys/rsa-primary.pub.pem");
    let token = app
        .issuer
        .token()
        .sign_hs256(public_pem, Some("rsa-primary"));
    assert_refused(&app, Some(&token), "algorithm_not_allowed").await;
}

#[tokio::test]
async fn an_algorithm_outside_the_issuers_allowlist_is_refused() {
    let app = TestApp::spawn().await;
    // PS256 with the published RSA key would verify, but the issuer allows RS256 only for RSA.
    let token = app
        .issuer
        .token()
        .signed_by(SigningKey::rsa_primary().with_alg(jsonwebtoken::Algorithm::PS256))
        .sign();
    assert_refused(&app, Some(&token), "algorithm_not_allowed").await;
}

#[tokio::test]
async fn ec_and_eddsa_tokens_are_accepted() {
    let app = TestApp::spawn().await;
    for key in [SigningKey::ec_p256(), SigningKey::ed25519()] {
        let token = app.issuer.token().signed_by(key).sign();
        assert_eq!(app.issue(Some(&token), None).await.status(), 200);
    }
}

#[tokio::test]
async fn garbage_and_oversized_tokens_are_refused() {
    let app = TestApp::spawn().await;
    assert_refused(&app, Some("not-a-jwt"), "malformed_token").await;
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(3000),
        "b".repeat(3000),
        "c".repeat(3000)
    );
    assert_refused(&app, Some(&huge), "malformed_token").await;
}

#[tokio::test]
async fn keys_can_come_from_a_file_or_a_shared_secret() {
    let jwks_dir = tempfile::tempdir().unwrap();
    let jwks_file = jwks_dir.path().join("jwks.json");
    let set = serde_json::json!({"keys": [SigningKey::ec_p256().jwk()]});
    std::fs::write(&jwks_file, set.to_string()).unwrap();
    let secret = "a-shared-secret-of-at-least-32-bytes!!";
    let app = TestApp::builder()
        .extra_issuers(&format!(
            r#"
[[issuers]]
name = "from-file"
issuer = "https://file-issuer.example.com"
jwks_file = "{file}"
audiences = ["ecr-token-broker"]
algorithms = ["ES256"]

[[issuers]]
name = "hmac"
issuer = "https://hmac-issuer.example.com"
shared_secret_env = "TEST_HMAC_SECRET"
audiences = ["ecr-token-broker"]
algorithms = ["HS256"]
"#,
            file = jwks_file.display()
        ))
        .env("TEST_HMAC_SECRET", secret)
        .rules(
            r#"
[[rules]]
name = "anyone"
issuer = "from-file"
claims = { sub = "*" }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]

[[rules]]
name = "hmac-anyone"
issuer = "hmac"
claims = { sub = "*" }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]
"#,
        )
        .spawn()
        .await;

    let from_file = app
        .issuer
        .token()
        .claim("iss", "https://file-issuer.example.com")
        .signed_by(SigningKey::ec_p256())
        .sign();
    assert_eq!(app.issue(Some(&from_file), None).await.status(), 200);

    let hmac = app
        .issuer
        .token()
        .claim("iss", "https://hmac-issuer.example.com")
        .sign_hs256(secret.as_bytes(), None);
    assert_eq!(app.issue(Some(&hmac), None).await.status(), 200);
    let wrong_secret = app
        .issuer
        .token()
        .claim("iss", "https://hmac-issuer.example.com")
        .sign_hs256(b"another-secret-of-at-least-32-bytes!!!", None);
    assert_refused(&app, Some(&wrong_secret), "bad_signature").await;
}

#[tokio::test]
async fn keys_found_through_oidc_discovery_verify_tokens() {
    let app = TestApp::builder()
        .issuer_keys("discovery = true")
        .spawn()
        .await;

    let response = app.issue(Some(&app.token()), None).await;

    assert_eq!(response.status(), 200);
    assert!(app.issuer.jwks_fetches() >= 1);
}
