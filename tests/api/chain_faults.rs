//! The audit chain under faulty databases and writers: it cannot fork whatever the server's
//! defaults, a duplicate or out-of-place chain id is refused by the database itself, and a
//! session stuck holding the writers' lock costs bounded 503s, not an outage.

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::chain::verifies;
use crate::helpers::{TestApp, assert_problem, wait_for};

/// The writers' advisory lock key (`CHAIN_LOCK` in src/audit/store.rs).
const CHAIN_LOCK: i64 = 0x6563_725f_6175_6469;

/// Sends `n` issuing requests to `app` at once; returns their statuses.
async fn issue_many(app: &TestApp, n: usize) -> Vec<u16> {
    let requests = (0..n).map(|_| async {
        app.http
            .post(app.url("/v1/ecr/authorization-token"))
            .bearer_auth(app.token())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    });
    futures::future::join_all(requests).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_make_one_chain_even_when_the_database_defaults_to_repeatable_read() {
    let setup = TestApp::spawn().await;
    let db = setup.db().await;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db)
        .await
        .unwrap();
    // The name is the harness's own (ecrtb_test_<uuid>), not input.
    sqlx::query(AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
    )))
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    // New sessions, such as every connection of these two services, take the new default.
    let first = TestApp::builder()
        .database_url(&setup.database_url)
        .spawn()
        .await;
    let second = TestApp::builder()
        .database_url(&setup.database_url)
        .spawn()
        .await;
    let mut session = PgConnection::connect(&first.database_url).await.unwrap();
    let isolation: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(isolation, "repeatable read");

    let (a, b) = tokio::join!(issue_many(&first, 200), issue_many(&second, 200));

    assert!(a.iter().chain(&b).all(|s| *s == 200), "{a:?} {b:?}");
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id) FROM audit_events")
            .fetch_one(&mut session)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (400, 400));
    let report = verifies(&first.database_url, &[]).await;
    assert!(report.contains("checked 400 rows"), "{report}");
}

#[tokio::test]
async fn the_database_refuses_chain_ids_that_do_not_continue_the_chain() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);
    }
    // As the owner, with every trigger on: copies of row 3 under other ids.
    let mut db = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TEMP TABLE copy AS SELECT * FROM audit_events WHERE id = 3; \
         CREATE TEMP TABLE audit_chain_head (only_row boolean, id bigint); \
         INSERT INTO audit_chain_head VALUES (true, 2)",
    )
    .execute(&mut db)
    .await
    .unwrap();

    let mut refused = Vec::new();
    for (ids, copies) in [
        ("3", 1),    // the head again: a fork
        ("2", 1),    // an earlier id
        ("5", 1),    // a gap
        ("4, 4", 2), // one id twice
        ("4, 6", 2), // not consecutive
    ] {
        let ids: Vec<i64> = ids.split(", ").map(|i| i.parse().unwrap()).collect();
        assert_eq!(ids.len(), copies);
        let error = sqlx::query(
            "INSERT INTO audit_events \
             SELECT (jsonb_populate_record(c, jsonb_build_object('id', i, \
                     'recorded_at', c.recorded_at + interval '1 hour' + n * interval '1 microsecond'))).* \
             FROM copy c, unnest($1::bigint[]) WITH ORDINALITY AS u(i, n)",
        )
        .bind(&ids)
        .execute(&mut db)
        .await
        .expect_err(&format!("{ids:?}"));
        refused.push(error.to_string());
    }
    let next = sqlx::query(
        "INSERT INTO audit_events \
         SELECT (jsonb_populate_record(c, jsonb_build_object('id', 4))).* FROM copy c",
    )
    .execute(&mut db)
    .await;

    for error in &refused {
        assert!(
            error.contains("does not continue the chain's head")
                || error.contains("are not 2 consecutive ids"),
            "{error}"
        );
    }
    next.expect("the next id continues the chain (its hash is another matter)");
}

#[tokio::test]
async fn a_session_stuck_holding_the_writers_lock_costs_bounded_503s_until_it_is_gone() {
    let app = TestApp::builder()
        .extra_config("[audit_chain]\nlock_timeout_ms = 300\n")
        .spawn()
        .await;
    let mut stuck = PgConnection::connect(&app.database_url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut stuck)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut stuck)
        .await
        .unwrap();

    let started = Instant::now();
    let during = app.issue(Some(&app.token()), None).await;
    let waited = started.elapsed();

    assert_problem(during, 503, "audit-unavailable").await;
    assert!(
        waited < Duration::from_secs(3),
        "waited {waited:?} for a lock bounded at 300 ms"
    );

    let mut admin = PgConnection::connect(&app.database_url).await.unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);
    let recovered = wait_for(Duration::from_secs(10), async || {
        let status = app.issue(Some(&app.token()), None).await.status();
        (status == 200).then_some(())
    })
    .await;

    assert!(recovered.is_some(), "the service never recovered");
    verifies(&app.database_url, &[]).await;
}
