//! The stored deny list through the API: an admin's entry on one service is honoured by a
//! second one sharing the database within seconds, lifted again the same way, and nobody
//! else may touch it; malformed entries are refused and store nothing.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::chain::{is_permission_denied, service_login_role, url_as};
use crate::helpers::{
    DEFAULT_RULES, Service, TestApp, TestIssuer, admin_database_url, assert_problem, wait_for,
};

/// Callers whose `actor` is `secops` administer the deny list; everyone else is acme's.
pub(crate) fn rules() -> String {
    format!(
        r#"
[[rules]]
name = "deny-admins"
issuer = "test"
claims = {{ actor = "secops" }}
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]
{DEFAULT_RULES}"#
    )
}

pub(crate) const ADMIN_CONFIG: &str =
    "[admin]\nrules = [\"deny-admins\"]\ndeny_poll_interval_secs = 1\n";

/// How long a change may take to reach another replica on a loaded machine: the poll
/// interval is one second.
pub(crate) const REPLICAS_HONOUR_IT: Duration = Duration::from_secs(15);

pub(crate) fn builder() -> crate::helpers::TestAppBuilder {
    TestApp::builder()
        .rules(&rules())
        .extra_config(ADMIN_CONFIG)
}

pub(crate) fn admin_token(issuer: &TestIssuer) -> String {
    issuer
        .token()
        .claim("sub", "secops-admin")
        .claim("actor", "secops")
        .sign()
}

pub(crate) async fn status_of_issue(app: &TestApp, token: &str) -> u16 {
    app.issue(Some(token), None).await.status().as_u16()
}

async fn stored_entries(app: &TestApp) -> i64 {
    let db = app.db().await;
    let count = sqlx::query_scalar("SELECT count(*) FROM deny_entries")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_denies_a_subject_and_a_second_service_sharing_the_database_refuses_it() {
    let a = builder().spawn().await;
    let b = builder()
        .database_url(&a.database_url)
        .issuer(a.issuer.clone())
        .spawn()
        .await;
    let caller = a.token();
    let admin = admin_token(&a.issuer);
    assert_eq!(status_of_issue(&a, &caller).await, 200);
    assert_eq!(status_of_issue(&b, &caller).await, 200);
    let expires_at =
        (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);

    let added = a
        .post_deny(
            &admin,
            &json!({
                "issuer": "test",
                "subject": "repo:acme/api:*",
                "reason": "token leaked in a build log",
                "expiresAt": expires_at,
            })
            .to_string(),
        )
        .await;

    assert_eq!(added.status(), 201);
    let entry: Value = added.json().await.unwrap();
    let id = entry["id"].as_i64().expect("an id");
    assert_eq!(
        entry["addedBy"],
        json!({"issuer": "test", "subject": "secops-admin"})
    );
    assert_eq!(entry["subject"], "repo:acme/api:*");
    // The service that took the change applies it at once, the other within its poll.
    assert_eq!(status_of_issue(&a, &caller).await, 403);
    let refused = wait_for(REPLICAS_HONOUR_IT, async || {
        (status_of_issue(&b, &caller).await == 403).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the second service never honoured the entry"
    );
    let response = b.issue(Some(&caller), None).await;
    let body = assert_problem(response, 403, "forbidden").await;
    let row = b.audit_row(body["requestId"].as_str().unwrap()).await;
    assert_eq!(row["reason"], "denied_by_policy");
    assert_eq!(
        status_of_issue(&b, &admin_token(&a.issuer)).await,
        200,
        "others are served"
    );
    let listed: Value = b.get_deny(&admin).await.json().await.unwrap();
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1, "{listed}");
    let listed = &listed["entries"][0];
    assert_eq!(listed["id"], id);
    assert_eq!(listed["addedBy"]["subject"], "secops-admin");
    assert_eq!(listed["reason"], "token leaked in a build log");
    assert!(
        listed["addedAt"]
            .as_str()
            .is_some_and(|t| t.parse::<chrono::DateTime<Utc>>().is_ok())
    );
    let audit = a.audit_rows().await;
    let change = audit
        .iter()
        .find(|r| r["outcome"] == "admin")
        .expect("the change is audited");
    assert_eq!(change["reason"], format!("deny_added:{id}"));
    assert_eq!(change["subject"], "secops-admin");
    assert_eq!(change["rule"], "deny-admins");

    let removed = b.delete_deny(&admin, &id.to_string()).await;

    assert_eq!(removed.status(), 200);
    let removed: Value = removed.json().await.unwrap();
    assert_eq!(removed["removedBy"]["subject"], "secops-admin");
    let lifted = wait_for(REPLICAS_HONOUR_IT, async || {
        (status_of_issue(&a, &caller).await == 200).then_some(())
    })
    .await;
    assert!(lifted.is_some(), "the first service never lifted the entry");
    let listed: Value = a.get_deny(&admin).await.json().await.unwrap();
    assert_eq!(listed["entries"], json!([]));
    assert!(
        b.audit_rows()
            .await
            .iter()
            .any(|r| r["reason"] == format!("deny_removed:{id}")),
        "the removal is audited"
    );
    assert_problem(
        a.delete_deny(&admin, &id.to_string()).await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn a_claim_matcher_denies_whoever_carries_the_claim() {
    let app = builder().spawn().await;
    let admin = admin_token(&app.issuer);
    let web = app.issuer.token().claim("repository", "acme/web").sign();

    let added = app.post_deny(&admin,
        r#"{"issuer": "test", "claims": {"repository": ["acme/api", {"regex": "acme/(legacy|old)-.*"}]}, "reason": "compromised repository"}"#,
    )
    .await;

    assert_eq!(added.status(), 201);
    assert_eq!(status_of_issue(&app, &app.token()).await, 403);
    assert_eq!(status_of_issue(&app, &web).await, 200);
    let legacy = app
        .issuer
        .token()
        .claim("repository", "acme/legacy-ci")
        .sign();
    assert_eq!(status_of_issue(&app, &legacy).await, 403);
}

#[tokio::test]
async fn only_deny_admins_may_use_the_admin_endpoints() {
    let app = builder().spawn().await;
    let caller = app.token();
    let body = r#"{"issuer": "test", "subject": "someone", "reason": "r"}"#;

    assert_problem(app.post_deny(&caller, body).await, 403, "forbidden").await;
    assert_problem(app.get_deny(&caller).await, 403, "forbidden").await;
    assert_problem(app.delete_deny(&caller, "1").await, 403, "forbidden").await;
    let anonymous = app
        .http
        .post(app.url("/v1/admin/deny"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "invalid-token").await;
    assert_eq!(stored_entries(&app).await, 0);
}

#[tokio::test]
async fn a_denied_admin_is_no_admin() {
    let app = builder().spawn().await;
    let admin = admin_token(&app.issuer);
    let added = app.post_deny(&admin,
        r#"{"issuer": "test", "subject": "secops-admin", "reason": "the admin's token leaked"}"#,
    )
    .await;
    assert_eq!(added.status(), 201);

    assert_problem(app.get_deny(&admin).await, 403, "forbidden").await;
    assert_problem(
        app.post_deny(
            &admin,
            r#"{"issuer": "test", "subject": "x", "reason": "r"}"#,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(stored_entries(&app).await, 1);
}

#[tokio::test]
async fn malformed_entries_are_refused_and_store_nothing() {
    let app = builder().spawn().await;
    let admin = admin_token(&app.issuer);
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let cases = [
        "not json".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        r#"{"issuer": "test", "subject": "x"}"#.to_owned(),
        r#"{"issuer": "test", "subject": "x", "reason": ""}"#.to_owned(),
        r#"{"issuer": "test", "subject": "x", "reason": "   "}"#.to_owned(),
        r#"{"issuer": "test", "subject": "x", "reason": "bell\u0007"}"#.to_owned(),
        format!(
            r#"{{"issuer": "test", "subject": "x", "reason": "{}"}}"#,
            "r".repeat(501)
        ),
        r#"{"issuer": "test", "reason": "no subject, no claims"}"#.to_owned(),
        r#"{"issuer": "test", "claims": {}, "reason": "empty claims"}"#.to_owned(),
        r#"{"issuer": "test", "claims": {"repository": []}, "reason": "an empty list"}"#.to_owned(),
        r#"{"issuer": "nobody", "subject": "x", "reason": "unknown issuer"}"#.to_owned(),
        r#"{"subject": "x", "reason": "no issuer"}"#.to_owned(),
        r#"{"issuer": "test", "subject": "repo:[acme", "reason": "broken glob"}"#.to_owned(),
        r#"{"issuer": "test", "subject": {"regex": "(unclosed"}, "reason": "broken regex"}"#
            .to_owned(),
        r#"{"issuer": "test", "claims": {"/a//b": "x"}, "reason": "broken pointer"}"#.to_owned(),
        // NUL, which Postgres cannot store, anywhere in what an entry matches.
        r#"{"issuer": "test", "subject": "repo:\u0000*", "reason": "nul"}"#.to_owned(),
        r#"{"issuer": "test", "claims": {"V": [{"regex": "a\u0000"}]}, "reason": "nul"}"#
            .to_owned(),
        r#"{"issuer": "test", "claims": {"a\u0000": "x"}, "reason": "nul"}"#.to_owned(),
        r#"{"issuer": "test", "subject": "x", "rule": "nope", "reason": "unknown rule"}"#
            .to_owned(),
        r#"{"issuer": "test", "subject": 7, "reason": "not a pattern"}"#.to_owned(),
        r#"{"issuer": "test", "subject": "x", "reason": "r", "expiresAt": "tomorrow"}"#.to_owned(),
        format!(r#"{{"issuer": "test", "subject": "x", "reason": "r", "expiresAt": "{past}"}}"#),
        r#"{"issuer": "test", "subject": "x", "reason": "r", "extra": true}"#.to_owned(),
        // A line break in a claim's name, and a regex error laid out over lines.
        r#"{"issuer": "test", "claims": {"a\nb": {"regex": "[x"}}, "reason": "lines"}"#.to_owned(),
    ];

    for body in &cases {
        let response = app.post_deny(&admin, body).await;
        let problem = assert_problem(response, 400, "bad-request").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("invalid request body") && !detail.contains(['\n', '\r']),
            "{body}: {problem}"
        );
    }
    assert_problem(app.delete_deny(&admin, "abc").await, 400, "bad-request").await;
    assert_problem(app.delete_deny(&admin, "999").await, 404, "not-found").await;

    assert_eq!(stored_entries(&app).await, 0);
    assert!(
        !app.audit_rows()
            .await
            .iter()
            .any(|r| r["outcome"] == "admin"),
        "a refused change is no change"
    );
    assert_eq!(status_of_issue(&app, &app.token()).await, 200);
}

#[tokio::test]
async fn the_service_role_may_add_and_lift_entries_but_never_rewrite_or_delete_one() {
    let migrated = builder().spawn().await;
    let owner = sqlx::PgPool::connect(&admin_database_url()).await.unwrap();
    let role = service_login_role(&owner).await;
    let role_url = url_as(&migrated.database_url, &role);
    let app = builder()
        .database_url(&role_url)
        .issuer(migrated.issuer.clone())
        .spawn()
        .await;
    let admin = admin_token(&app.issuer);

    let added = app
        .post_deny(
            &admin,
            r#"{"issuer": "test", "subject": "someone", "reason": "as the service role"}"#,
        )
        .await;
    let added_status = added.status();
    let id = added.json::<Value>().await.unwrap()["id"].clone();
    let removed = app.delete_deny(&admin, &id.to_string()).await.status();
    let service_db = sqlx::PgPool::connect(&role_url).await.unwrap();
    let mut allowed = Vec::new();
    for statement in [
        "UPDATE deny_entries SET issuer = 'x'",
        "UPDATE deny_entries SET reason = 'x'",
        "UPDATE deny_entries SET added_by_subject = 'x'",
        "DELETE FROM deny_entries",
        "TRUNCATE deny_entries",
    ] {
        let result = sqlx::query(statement).execute(&service_db).await;
        if !result.as_ref().is_err_and(is_permission_denied) {
            allowed.push(statement);
        }
    }
    service_db.close().await;
    drop(app);
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&owner)
        .await
        .unwrap();

    assert_eq!(added_status, 201);
    assert_eq!(removed, 200);
    assert!(allowed.is_empty(), "the service role may: {allowed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_announced_change_reaches_a_replica_long_before_its_poll() {
    let a = builder().spawn().await;
    // Polling only every five minutes: only the announcement can bring the entry sooner.
    let b = TestApp::builder()
        .rules(&rules())
        .extra_config(
            "[admin]\nrules = [\"deny-admins\"]\ndeny_poll_interval_secs = 300\n\
             deny_max_staleness_secs = 600\n",
        )
        .database_url(&a.database_url)
        .issuer(a.issuer.clone())
        .spawn()
        .await;
    let caller = a.token();
    // The replica's listener connects at its first poll, at start; wait until it answers.
    assert_eq!(status_of_issue(&b, &caller).await, 200);

    let added = a
        .post_deny(
            &admin_token(&a.issuer),
            r#"{"issuer": "test", "subject": "repo:acme/*", "reason": "announced"}"#,
        )
        .await;

    assert_eq!(added.status(), 201);
    let refused = wait_for(REPLICAS_HONOUR_IT, async || {
        (status_of_issue(&b, &caller).await == 403).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the announcement did not wake the replica"
    );
}
