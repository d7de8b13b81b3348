//! Audit reads cannot starve the writer: they have a small pool of their own with a
//! statement timeout, so however many heavy reads arrive, issuing keeps its connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ecr_token_broker::READER_APPLICATION_NAME;
use serde_json::json;

use crate::audit_api;
use crate::helpers::TestApp;

/// Rows already in the log, so that a read filtering on an unindexed column scans them all.
const SEEDED_ROWS: i64 = 200_000;

/// Fills the log with `rows` denied rows (not a valid chain: only reads look at them).
pub(crate) async fn seed(app: &TestApp, rows: i64) {
    let db = app.db().await;
    sqlx::query(
        "INSERT INTO audit_events (id, recorded_at, occurred_at, request_id, outcome, reason, \
         http_status, issuer, subject, regions, registry_ids, proxy_endpoints, \
         token_fingerprints, from_cache, latency_ms, prev_hash, row_hash) \
         SELECT g, now(), now(), 'seed-' || g, 'denied', 'no_matching_rule', 403, 'test', \
         'repo:other/' || g, '{}', '{}', '{}', '{}', false, 1, \
         decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex') \
         FROM generate_series(1, $1) g",
    )
    .bind(rows)
    .execute(&db)
    .await
    .expect("seed audit rows");
    db.close().await;
}

#[tokio::test]
async fn fifty_heavy_audit_reads_at_once_leave_issuing_its_connections() {
    // Arrange
    let app = audit_api::builder()
        .database("read_max_connections = 4\nread_statement_timeout_secs = 1")
        .spawn()
        .await;
    seed(&app, SEEDED_ROWS).await;
    let auditor = audit_api::auditor(&app);
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let (reads_ok, reads_refused, reads_other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );

    // Act: 50 admins each scan the whole log for a rule nobody has, again and again, while
    // 20 callers ask for tokens.
    let readers: Vec<_> = (0..50)
        .map(|i| {
            let (app, token, stop) = (app.clone(), auditor.clone(), stop.clone());
            let (ok, refused, other) =
                (reads_ok.clone(), reads_refused.clone(), reads_other.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = if i % 5 == 0 {
                        app.audit_lookup(&token, &json!({"authorizationToken": "QVdTOm5vcGU="}))
                            .await
                    } else {
                        app.audit_issuances(&token, &[("rule", "nobody"), ("limit", "200")])
                            .await
                    };
                    match response.status().as_u16() {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        503 => refused.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let watcher = tokio::spawn({
        let (app, stop) = (app.clone(), stop.clone());
        async move {
            let db = app.db().await;
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                let readers: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = $1",
                )
                .bind(READER_APPLICATION_NAME)
                .fetch_one(&db)
                .await
                .unwrap();
                most = most.max(readers);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            most
        }
    });
    // The readers get going first, so that every issue below meets them.
    crate::helpers::wait_for(Duration::from_secs(30), async || {
        (reads_ok.load(Ordering::Relaxed) + reads_refused.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await
    .expect("the audit reads answer");
    let mut issued = Vec::new();
    for _ in 0..20 {
        let (app, token) = (app.clone(), app.token());
        issued.push(tokio::spawn(async move {
            app.issue(Some(&token), None).await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for issue in issued {
        statuses.push(issue.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let most_read_connections = watcher.await.unwrap();

    // Assert
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every caller is issued a token: {statuses:?}"
    );
    assert_eq!(
        reads_other.load(Ordering::Relaxed),
        0,
        "reads answer 200 or 503"
    );
    assert!(
        reads_ok.load(Ordering::Relaxed) > 0,
        "some reads are served"
    );
    assert!(
        (1..=4).contains(&most_read_connections),
        "reads hold at most read_max_connections: {most_read_connections}"
    );
    eprintln!(
        "reads: {} answered, {} refused with 503",
        reads_ok.load(Ordering::Relaxed),
        reads_refused.load(Ordering::Relaxed)
    );
}
