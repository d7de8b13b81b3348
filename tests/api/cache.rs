//! The credential cache through the real API, with the proxy in front of moto counting the
//! AWS calls and giving tokens the lifetimes a test needs.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{Fault, Operation, TestApp, assert_problem, request_id};

/// The one caller's rule with a cache mode and the session's source identity.
fn rule(cache: &str, source_identity: &str) -> String {
    format!(
        r#"
[[rules]]
name = "acme"
issuer = "test"
claims = {{ repository_owner = "acme" }}
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]
session_duration_secs = 1800
source_identity = "{source_identity}"
cache = "{cache}"
"#
    )
}

/// What a test keeps of one 200 answer.
struct Answer {
    sent_at: DateTime<Utc>,
    request_id: String,
    token: String,
    expires_at: DateTime<Utc>,
}

async fn issue_ok(app: &TestApp, token: &str, body: Option<Value>) -> Answer {
    let sent_at = Utc::now();
    let response = app.issue(Some(token), body).await;
    assert_eq!(response.status(), 200);
    let request_id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    let data = &body["authorizationData"][0];
    Answer {
        sent_at,
        request_id,
        token: data["authorizationToken"].as_str().unwrap().to_owned(),
        expires_at: data["expiresAt"].as_str().unwrap().parse().unwrap(),
    }
}

fn calls(app: &TestApp) -> (usize, usize) {
    (
        app.proxy().calls(Operation::AssumeRole),
        app.proxy().calls(Operation::GetAuthorizationToken),
    )
}

/// Fails the test once `limit` has passed since it was made. The cache renews on access,
/// so tests wait for it by asking, one request at a time, until what they wait for holds.
struct Deadline(Instant, Duration);

impl Deadline {
    fn after(limit: Duration) -> Self {
        Self(Instant::now(), limit)
    }

    async fn next_attempt(&self, waiting_for: &str) {
        assert!(
            self.0.elapsed() < self.1,
            "{waiting_for}: not within {:?}",
            self.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn concurrent_first_requests_for_one_key_make_one_call_of_each_kind() {
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;
    let token = app.token();

    let answers = futures::future::join_all((0..500).map(|_| issue_ok(&app, &token, None))).await;

    assert_eq!(calls(&app), (1, 1));
    assert!(answers.iter().all(|a| a.token == answers[0].token));
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 500);
    assert!(rows.iter().all(|r| r["outcome"] == "issued"));
    assert_eq!(
        rows.iter().filter(|r| r["from_cache"] == false).count(),
        1,
        "only the request whose calls produced the token is not from the cache"
    );
    assert!(
        rows.iter()
            .all(|r| r["session_name"] == rows[0]["session_name"])
    );
}

#[tokio::test]
async fn a_repeated_request_is_served_from_the_cache_with_its_own_audit_row() {
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;
    let token = app.token();

    let first = issue_ok(&app, &token, None).await;
    let second = issue_ok(&app, &token, None).await;

    assert_eq!(calls(&app), (1, 1));
    assert_eq!(second.expires_at, first.expires_at);
    assert_served_again(&app, &first, &second).await;
    let listed: Value = app.audit_issuances(&token, &[]).await.json().await.unwrap();
    let listed_second = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["requestId"] == second.request_id.as_str())
        .expect("the cached answer is listed");
    assert_eq!(listed_second["fromCache"], true);
}

#[tokio::test]
async fn expires_at_is_the_sessions_expiry_when_it_comes_first() {
    // ECR says 12 hours; a 900-second session makes the token useless after 15 minutes.
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;

    let answer = issue_ok(&app, &app.token(), Some(json!({"durationSeconds": 900}))).await;

    let lives = (answer.expires_at - answer.sent_at).num_seconds();
    assert!((895..=901).contains(&lives), "lives {lives} s");
    let row = app.audit_row(&answer.request_id).await;
    let stored: DateTime<Utc> = row["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(stored, answer.expires_at);
}

#[tokio::test]
async fn an_entry_is_renewed_before_it_expires() {
    // Tokens live 8 s; with 1 s kept in reserve an entry is served for about 7 s and
    // renewed after about half of that.
    let app = TestApp::builder()
        .rules(&rule("per-caller", "{sub}"))
        .cache("min_remaining_secs = 1\nrefresh_fraction = 0.5")
        .fault(Fault::ExpiresIn(Duration::from_secs(8)))
        .spawn()
        .await;
    let token = app.token();
    let first = issue_ok(&app, &token, None).await;

    let deadline = Deadline::after(Duration::from_secs(20));
    let renewed = loop {
        let answer = issue_ok(&app, &token, None).await;
        if answer.expires_at > first.expires_at {
            break answer;
        }
        assert_eq!(answer.token, first.token);
        deadline.next_attempt("a renewed entry").await;
    };

    assert!(
        renewed.sent_at < first.expires_at - chrono::Duration::seconds(1),
        "renewed at {}, the first token expires at {}",
        renewed.sent_at,
        first.expires_at
    );
    assert_eq!(calls(&app), (2, 2));
    assert_eq!(app.audit_row(&renewed.request_id).await["from_cache"], true);
}

#[tokio::test]
async fn throttling_is_hidden_while_an_entry_lives_and_an_entry_past_its_life_is_never_served() {
    let app = TestApp::builder()
        .rules(&rule("per-caller", "{sub}"))
        .cache("min_remaining_secs = 2\nrefresh_fraction = 0.3")
        .fault(Fault::ExpiresIn(Duration::from_secs(8)))
        .spawn()
        .await;
    let token = app.token();
    let first = issue_ok(&app, &token, None).await;
    app.proxy().set_faults(vec![
        Fault::ExpiresIn(Duration::from_secs(8)),
        Fault::throttling(Operation::AssumeRole),
    ]);

    // Renewing is attempted and throttled; the cached entry is served all the same.
    let deadline = Deadline::after(Duration::from_secs(20));
    while calls(&app).0 < 2 {
        issue_ok(&app, &token, None).await;
        deadline.next_attempt("a throttled refresh").await;
    }
    // Once the refresh has failed, answers say which failure the cached entry hid.
    let (hidden, hidden_row) = loop {
        let answer = issue_ok(&app, &token, None).await;
        let row = app.audit_row(&answer.request_id).await;
        if row["upstream_error"] != Value::Null {
            break (answer, row);
        }
        deadline
            .next_attempt("an answer that hid the throttling")
            .await;
    };
    assert_eq!(hidden.token, first.token);
    assert_eq!(hidden.expires_at, first.expires_at);
    assert_eq!(hidden_row["from_cache"], true);
    assert_eq!(hidden_row["upstream_error"], "aws_throttled:AssumeRole");
    assert_eq!(
        app.audit_row(&first.request_id).await["upstream_error"],
        Value::Null
    );

    // Every answer until the entry's minimum life is reached is the cached one; after it,
    // the caller gets the throttling, never the old token.
    let reserve = chrono::Duration::seconds(2);
    let refused = loop {
        let sent_at = Utc::now();
        let response = app.issue(Some(&token), None).await;
        if response.status() != 200 {
            break response;
        }
        assert!(sent_at < first.expires_at - reserve, "served past its life");
        deadline.next_attempt("the end of the entry's life").await;
    };
    assert_eq!(refused.headers()["retry-after"], "5");
    let id = request_id(&refused);
    assert_problem(refused, 503, "aws-throttled").await;
    assert_eq!(
        app.audit_row(&id).await["reason"],
        "aws_throttled:AssumeRole"
    );
}

/// An app whose one rule caches as `cache`, with tokens of two callers (acme/api and
/// acme/web) whose grants, tags and source identity come out identical.
async fn two_callers(cache: &str) -> (TestApp, String, String) {
    let app = TestApp::builder()
        .rules(&rule(cache, "{repository_owner}"))
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;
    let api = app.token();
    let web = app
        .issuer
        .token()
        .claim("sub", "repo:acme/web:ref:refs/heads/main")
        .sign();
    (app, api, web)
}

/// Asserts that `again` was the credential of `first`'s session, served from the cache, and
/// returns both audit rows.
async fn assert_served_again(app: &TestApp, first: &Answer, again: &Answer) -> (Value, Value) {
    assert_eq!(again.token, first.token);
    let (first_row, again_row) = (
        app.audit_row(&first.request_id).await,
        app.audit_row(&again.request_id).await,
    );
    assert_eq!(first_row["from_cache"], false);
    assert_eq!(again_row["from_cache"], true);
    assert_eq!(again_row["session_name"], first_row["session_name"]);
    assert_eq!(
        again_row["token_fingerprints"],
        first_row["token_fingerprints"]
    );
    (first_row, again_row)
}

#[tokio::test]
async fn shared_entries_serve_callers_with_identical_grants_and_name_each_caller() {
    let (app, api, web) = two_callers("shared").await;

    let first = issue_ok(&app, &api, None).await;
    let second = issue_ok(&app, &web, None).await;

    assert_eq!(calls(&app), (1, 1));
    let (first_row, second_row) = assert_served_again(&app, &first, &second).await;
    assert_eq!(first_row["subject"], "repo:acme/api:ref:refs/heads/main");
    assert_eq!(second_row["subject"], "repo:acme/web:ref:refs/heads/main");
}

#[tokio::test]
async fn per_caller_entries_belong_to_one_caller() {
    let (app, api, web) = two_callers("per-caller").await;

    let api_first = issue_ok(&app, &api, None).await;
    let web_first = issue_ok(&app, &web, None).await;
    let api_again = issue_ok(&app, &api, None).await;
    let web_again = issue_ok(&app, &web, None).await;

    assert_eq!(calls(&app), (2, 2));
    let (api_row, _) = assert_served_again(&app, &api_first, &api_again).await;
    let (web_row, _) = assert_served_again(&app, &web_first, &web_again).await;
    assert_ne!(api_row["session_name"], web_row["session_name"]);
}

#[tokio::test]
async fn a_different_grant_is_a_different_entry() {
    let app = TestApp::builder()
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;
    let token = app.token();

    issue_ok(&app, &token, None).await;
    issue_ok(&app, &token, Some(json!({"durationSeconds": 900}))).await;
    issue_ok(&app, &token, Some(json!({"region": "eu-west-1"}))).await;
    issue_ok(&app, &token, Some(json!({"repositories": ["team-a/api"]}))).await;
    issue_ok(&app, &token, Some(json!({"durationSeconds": 900}))).await;

    assert_eq!(calls(&app), (4, 4));
}

#[tokio::test]
async fn with_the_cache_off_every_request_calls_aws() {
    let app = TestApp::builder()
        .rules(&rule("off", "{sub}"))
        .fault(Fault::RealisticExpiry)
        .spawn()
        .await;
    let token = app.token();

    let mut sessions = Vec::new();
    for _ in 0..3 {
        let answer = issue_ok(&app, &token, None).await;
        let row = app.audit_row(&answer.request_id).await;
        assert_eq!(row["from_cache"], false);
        sessions.push(row["session_name"].clone());
    }

    assert_eq!(calls(&app), (3, 3));
    sessions.dedup();
    assert_eq!(sessions.len(), 3, "each request has its own session");
}
