//! The kill switch fails closed: a replica that cannot read the stored deny list is not
//! ready and issues nothing until it has read it once, and stops issuing once the list it
//! holds is older than `[admin] deny_max_staleness_secs`; an added entry is in force on the
//! replica that answered 201, and callers' reads never hold the poll up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

use crate::audit_reads::seed;
use crate::deny::{REPLICAS_HONOUR_IT, admin_token, builder, rules, status_of_issue};
use crate::helpers::{Service, TestApp, assert_problem, request_id, wait_for};
use crate::metrics::scrape;

/// The deny list admins of [`rules`], a poll every second, a list trusted for three.
const STALENESS_CONFIG: &str = "[admin]\nrules = [\"deny-admins\"]\ndeny_poll_interval_secs = 1\n\
     deny_max_staleness_secs = 3\n";

/// Audit readers keeping the read pools busy, half on each replica.
const READERS: usize = 48;

/// How long a read may wait for the table before the database gives up on it.
const SHORT_READS: &str = "read_statement_timeout_secs = 1";

/// Holds `deny_entries` so that nothing else can read it, until the transaction ends.
async fn lock_deny_entries(db: &PgPool) -> Transaction<'static, Postgres> {
    let mut lock = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE deny_entries IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

/// Asserts that issuing to `token` is refused with 503 `deny-list-unavailable`, audited as
/// `deny_list_stale`.
async fn assert_refused_as_stale(app: &TestApp, token: &str) {
    let response = app.issue(Some(token), None).await;
    let id = request_id(&response);
    let problem = assert_problem(response, 503, "deny-list-unavailable").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("has not read the stored deny list recently enough"),
        "{problem}"
    );
    let row = wait_for(Duration::from_secs(10), async || {
        app.audit_rows()
            .await
            .into_iter()
            .find(|r| r["request_id"] == id.as_str())
    })
    .await
    .expect("the refusal is audited");
    assert_eq!(row["outcome"], "error");
    assert_eq!(row["reason"], "deny_list_stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_starts_while_the_deny_list_cannot_be_read_is_not_ready_and_issues_nothing()
{
    let a = builder().spawn().await;
    let caller = a.token();
    let added = a
        .post_deny(
            &admin_token(&a.issuer),
            r#"{"issuer": "test", "subject": "repo:acme/*", "reason": "leaked"}"#,
        )
        .await;
    assert_eq!(added.status(), 201);
    let db = a.db().await;
    let lock = lock_deny_entries(&db).await;

    let b = builder()
        .database(SHORT_READS)
        .database_url(&a.database_url)
        .issuer(a.issuer.clone())
        .spawn()
        .await;

    let problem = assert_problem(b.get("/readyz").await, 503, "not-ready").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the stored deny list has not been read yet"),
        "{problem}"
    );
    assert_refused_as_stale(&b, &caller).await;
    // Never read: as old as the process.
    let never_read = scrape(&b.url("/metrics"))
        .await
        .get("ecr_token_broker_deny_list_age_seconds", &[]);
    assert!(never_read >= 1.0, "{never_read}");
    lock.rollback().await.unwrap();
    let ready = wait_for(REPLICAS_HONOUR_IT, async || {
        (b.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the replica never read the list");
    assert_eq!(status_of_issue(&b, &caller).await, 403);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_deny_list_reads_keep_failing_stops_issuing_once_its_list_is_too_old() {
    let app = TestApp::builder()
        .rules(&rules())
        .extra_config(STALENESS_CONFIG)
        .database(SHORT_READS)
        .spawn()
        .await;
    let caller = app.token();
    assert_eq!(status_of_issue(&app, &caller).await, 200);
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["checks"]["denyList"], "ok", "{ready}");
    assert!(ready["checks"]["denyListAgeSeconds"].as_f64().unwrap() <= 3.0);
    let db = app.db().await;

    let lock = lock_deny_entries(&db).await;
    let stale = wait_for(Duration::from_secs(30), async || {
        (status_of_issue(&app, &caller).await == 503).then_some(())
    })
    .await;

    assert!(stale.is_some(), "issued on a list that could not be read");
    assert_refused_as_stale(&app, &caller).await;
    let problem = assert_problem(app.get("/readyz").await, 503, "not-ready").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the stored deny list was last read"),
        "{problem}"
    );
    let age = scrape(&app.url("/metrics"))
        .await
        .get("ecr_token_broker_deny_list_age_seconds", &[]);
    assert!(age > 3.0, "{age}");
    lock.rollback().await.unwrap();
    let issuing = wait_for(REPLICAS_HONOUR_IT, async || {
        (status_of_issue(&app, &caller).await == 200).then_some(())
    })
    .await;
    assert!(
        issuing.is_some(),
        "issuing never resumed once the list was read"
    );
    db.close().await;
}

/// The age `/readyz` gives the stored deny list, in seconds; `None` when not ready.
async fn deny_list_age(app: &TestApp) -> Option<f64> {
    let ready: serde_json::Value = app.get("/readyz").await.json().await.ok()?;
    ready["checks"]["denyListAgeSeconds"].as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_added_entry_is_in_force_when_answered_and_callers_reads_never_hold_the_poll_up() {
    // One shared read connection each, kept busy by an audit admin scanning the whole log.
    let spawn = |database_url: Option<String>, issuer| async move {
        let mut b = builder()
            .admin_rules(&["deny-admins"])
            .database("read_max_connections = 1\nread_statement_timeout_secs = 1");
        if let Some(url) = database_url {
            b = b.database_url(&url);
        }
        if let Some(issuer) = issuer {
            b = b.issuer(issuer);
        }
        Arc::new(b.spawn().await)
    };
    let a = spawn(None, None).await;
    let b = spawn(Some(a.database_url.clone()), Some(a.issuer.clone())).await;
    seed(&a, 1_000_000).await;
    let admin = admin_token(&a.issuer);
    let caller = a.token();
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let app = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (admin, stop) = (admin.clone(), stop.clone());
            let (reads, refused) = (reads.clone(), refused.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let read = app
                        .audit_issuances(&admin, &[("rule", "nobody"), ("limit", "200")])
                        .await;
                    if read.status() == 503 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_for(Duration::from_secs(30), async || {
        (refused.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await
    .expect("the reads wait for the busy pool until they are refused");

    // Polled every second, the list is never much older, however busy the read pool: a
    // poll queued behind the reads would wait up to the 2 s the harness lets it.
    let too_old = wait_for(Duration::from_secs(5), async || {
        deny_list_age(&b).await.filter(|age| *age > 2.0)
    })
    .await;
    let added = a
        .post_deny(
            &admin,
            r#"{"issuer": "test", "subject": "repo:acme/*", "reason": "leaked"}"#,
        )
        .await;
    let on_a = status_of_issue(&a, &caller).await;
    let on_b = wait_for(REPLICAS_HONOUR_IT, async || {
        (status_of_issue(&b, &caller).await == 403).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }

    eprintln!(
        "{} audit reads, {} refused with 503",
        reads.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(too_old, None, "the poll waited behind callers' reads");
    assert_eq!(added.status(), 201);
    assert_eq!(on_a, 403, "201 was answered before the entry was in force");
    assert!(on_b.is_some(), "the other replica never honoured the entry");
}
