use serde_json::{Value, json};

use crate::helpers::{PORTAL_ORIGIN, TestApp, UNREACHABLE_ISSUER, assert_problem, request_id};

#[tokio::test]
async fn healthz_and_readyz_answer_when_all_is_well() {
    let app = TestApp::spawn().await;

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    request_id(&health);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let mut ready: Value = ready.json().await.unwrap();
    let age = ready["checks"]
        .as_object_mut()
        .unwrap()
        .remove("denyListAgeSeconds")
        .and_then(|age| age.as_f64());
    assert!(age.is_some_and(|age| age >= 0.0), "{ready}");
    assert_eq!(
        ready,
        json!({
            "status": "ready",
            "checks": {
                "database": "ok",
                "auditWriter": "ok",
                "denyList": "ok",
                "issuers": {"test": "ok"}
            }
        })
    );
}

#[tokio::test]
async fn one_issuers_key_outage_is_reported_but_leaves_the_service_ready() {
    let app = TestApp::builder()
        .extra_issuers(UNREACHABLE_ISSUER)
        .keys_stay_unloaded("down")
        .spawn()
        .await;

    let ready = app.get("/readyz").await;

    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap()["checks"]["issuers"],
        json!({"down": "keys not loaded", "test": "ok"})
    );
    assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);
}

#[tokio::test]
async fn readyz_is_503_while_the_database_is_unreachable() {
    let app = TestApp::builder()
        .database_url("postgres://postgres@127.0.0.1:1/unreachable")
        .spawn()
        .await;

    let ready = app.get("/readyz").await;

    let body = assert_problem(ready, 503, "not-ready").await;
    assert!(
        body["detail"].as_str().unwrap().contains("database"),
        "{body}"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness does not depend on the database"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    assert_problem(app.get("/v1/nothing-here").await, 404, "not-found").await;
    assert_problem(
        app.get("/v1/ecr/authorization-token").await,
        405,
        "method-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn cors_lets_the_portal_in_and_no_one_else() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                app.url("/v1/ecr/authorization-token"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };

    let allowed = preflight(PORTAL_ORIGIN).await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        PORTAL_ORIGIN
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    // An admin in the portal lifts a deny entry with DELETE.
    let allowed_methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_uppercase();
    for method in ["GET", "POST", "DELETE"] {
        assert!(allowed_methods.contains(method), "{allowed_methods}");
    }

    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Errors carry CORS headers too, so the portal can read why it was refused.
    let refused = app
        .http
        .post(app.url("/v1/ecr/authorization-token"))
        .header("origin", PORTAL_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        PORTAL_ORIGIN
    );
    let exposed = refused.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    assert_problem(refused, 401, "invalid-token").await;
}
