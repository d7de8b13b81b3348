use std::time::Duration;

use ecr_token_broker::{AppendBounds, AuditRecord, ChainAppender, ChainKey, Outcome};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::Connection;

use crate::helpers::{Fault, Operation, TestApp, assert_problem, wait_for};

#[tokio::test]
async fn no_token_leaves_when_the_audit_log_cannot_be_written() {
    // The service starts on a working database (it reads its deny list before it issues
    // anything), then another session holds the chain writers' lock: the audit append
    // fails after AWS has answered.
    let app = TestApp::builder()
        .extra_config("[audit_chain]\nlock_timeout_ms = 300\n")
        .spawn()
        .await;
    let mut holder = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(crate::chain_faults::CHAIN_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    app.moto.start_recording().await;

    let response = app.issue(Some(&app.token()), None).await;

    assert_eq!(response.headers()["retry-after"], "5");
    let body = assert_problem(response, 503, "audit-unavailable").await;
    // The credentials really were fetched, and are withheld.
    assert_eq!(app.moto.recorded_actions("AssumeRole").await.len(), 1);
    let text = body.to_string();
    assert!(
        !text.contains("authorizationToken") && !text.contains("auth-token"),
        "{text}"
    );
}

#[tokio::test]
async fn the_audit_table_refuses_updates_deletes_and_truncation() {
    let app = TestApp::spawn().await;
    assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);
    let db = app.db().await;

    for statement in [
        "UPDATE audit_events SET outcome = 'denied'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let error = sqlx::query(statement)
            .execute(&db)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    let rows: Vec<Value> = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "issued");
}

#[tokio::test]
async fn a_caller_that_hangs_up_mid_request_still_leaves_a_record() {
    let app = TestApp::builder()
        .fault(Fault::Delay {
            operation: Operation::GetAuthorizationToken,
            delay: Duration::from_millis(1500),
        })
        .spawn()
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let gave_up = impatient
        .post(app.url("/v1/ecr/authorization-token"))
        .bearer_auth(app.token())
        .header("x-request-id", "hung-up-1")
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));

    // The issuing path finishes without the caller and records what it did.
    let row = wait_for(Duration::from_secs(30), async || {
        let rows = app.audit_rows().await;
        rows.into_iter()
            .find(|r| r["caller_request_id"] == "hung-up-1")
    })
    .await
    .expect("no audit row for a request whose caller hung up");
    assert_eq!(row["outcome"], "issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_in_a_claim_is_stored_escaped_and_never_sinks_its_neighbours() {
    let app = TestApp::spawn().await;
    let odd = app
        .issuer
        .token()
        .claim("sub", "repo:acme/api\u{0}:ref:refs/heads/main")
        .sign();
    let send = |token: String, id: String| {
        app.http
            .post(app.url("/v1/ecr/authorization-token"))
            .bearer_auth(token)
            .header("x-request-id", id)
            .send()
    };

    // Sent together, so that the odd one shares a group commit with its neighbours.
    let neighbours = (0..20).map(|n| send(app.token(), format!("neighbour-{n}")));
    let (odd_response, neighbours) = tokio::join!(
        send(odd, "odd".to_owned()),
        futures::future::join_all(neighbours)
    );

    for response in neighbours {
        assert_eq!(response.unwrap().status(), 200);
    }
    let odd_status = odd_response.unwrap().status().as_u16();
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 21);
    let row = rows
        .iter()
        .find(|r| r["caller_request_id"] == "odd")
        .expect("the odd request's row");
    assert_eq!(row["subject"], "repo:acme/api\u{2400}:ref:refs/heads/main");
    assert_eq!(row["http_status"], odd_status);
    crate::chain::verifies(&app.database_url, &[]).await;
}

/// Text that Postgres's array syntax gives a meaning to.
fn awkward_text() -> Vec<String> {
    [
        "",
        "NULL",
        "a,b",
        "{x}",
        "q\"uote",
        "back\\slash",
        " sp ",
        "é✓",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// An issued record with every field set (but `shed`, which only the writer's aggregate of
/// shed refusals has), awkward text in every list.
pub(crate) fn record_with_every_field() -> AuditRecord {
    let awkward = awkward_text();
    let mut record = AuditRecord::start(
        "all-columns",
        Some("::1".parse().unwrap()),
        Some("ua \"x\""),
    );
    record.issuer = Some("ci".to_owned());
    record.subject = Some("sub \\ \"".to_owned());
    record.rule = Some("r".to_owned());
    record.role_arn = Some("arn:aws:iam::123456789012:role/ecr".to_owned());
    record.session_name = Some("s".to_owned());
    record.regions = awkward.clone();
    record.registry_ids = awkward.clone();
    record.access = Some("push".to_owned());
    record.repositories = Some(awkward.clone());
    record.session_tags = [("k\"".to_owned(), "v\\".to_owned())].into_iter().collect();
    record.proxy_endpoints = awkward.clone();
    record.expires_at = Some(record.occurred_at + chrono::Duration::hours(1));
    record.token_fingerprints = awkward;
    record.fingerprint_key_id = Some("k1".to_owned());
    record.from_cache = true;
    record.upstream_error = Some("aws_throttled:AssumeRole".to_owned());
    record.caller_request_id = Some("caller-1".to_owned());
    record.decide(Outcome::Issued, "issued", 200);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_is_stored_as_appended_whatever_its_text_holds() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    let awkward = awkward_text();
    let record = record_with_every_field();
    let mut empty = AuditRecord::start("no-optional-columns", None, None);
    empty.decide(Outcome::Denied, "missing_token", 401);
    empty.repositories = Some(Vec::new());

    let key = ChainKey::new(&SecretString::from(crate::helpers::CHAIN_KEY));
    let mut appender = ChainAppender::new(&db, &AppendBounds::default());
    // The first batch takes the long way (the head is read), the second one round trip.
    let first = appender.append(&key, &[&record, &empty]).await.unwrap();
    let second = appender.append(&key, &[&empty, &record]).await.unwrap();
    assert_eq!(first.len() + second.len(), 4);
    db.close().await;

    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 4);
    for row in [&rows[0], &rows[3]] {
        assert_eq!(row["request_id"], "all-columns");
        for list in ["regions", "registry_ids", "repositories", "proxy_endpoints"] {
            assert_eq!(row[list], serde_json::json!(awkward), "{list}");
        }
        assert_eq!(row["token_fingerprints"], serde_json::json!(awkward));
        assert_eq!(row["session_tags"], serde_json::json!({"k\"": "v\\"}));
        assert_eq!(row["subject"], "sub \\ \"");
        assert_eq!(row["user_agent"], "ua \"x\"");
        assert_eq!(row["client_addr"], "::1");
        assert_eq!(row["http_status"], 200);
        assert_eq!(row["from_cache"], true);
        assert_eq!(row["upstream_error"], "aws_throttled:AssumeRole");
        assert_eq!(row["caller_request_id"], "caller-1");
        assert!(row["expires_at"].is_string());
    }
    for row in [&rows[1], &rows[2]] {
        assert_eq!(row["request_id"], "no-optional-columns");
        assert_eq!(row["regions"], serde_json::json!([]));
        assert_eq!(row["repositories"], serde_json::json!([]));
        for absent in [
            "issuer",
            "session_tags",
            "expires_at",
            "client_addr",
            "shed",
        ] {
            assert!(row[absent].is_null(), "{absent}");
        }
    }
    crate::chain::verifies(&app.database_url, &[]).await;
}
