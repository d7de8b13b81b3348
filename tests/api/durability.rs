//! No token without its committed audit row: under concurrent load, when the service is
//! killed, and when Postgres goes away and comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::postgres::TestPostgres;
use crate::helpers::{TestApp, TestIssuer, wait_for};

/// How each request of a load run ended.
#[derive(Default)]
struct Tally {
    /// Request ids that got a 200 with a token.
    issued: Vec<String>,
    /// 503 answers.
    unavailable: usize,
    /// Anything else, including connection errors.
    other: usize,
}

/// `workers` concurrent clients each send requests with unique ids until `stop` is set or
/// `per_worker` requests are done.
async fn load(
    address: &str,
    issuer: &TestIssuer,
    workers: usize,
    per_worker: usize,
    stop: Arc<AtomicBool>,
) -> Tally {
    load_counting(address, issuer, workers, per_worker, stop, Arc::default()).await
}

/// [`load`], counting 200 answers in `issued` as they arrive.
async fn load_counting(
    address: &str,
    issuer: &TestIssuer,
    workers: usize,
    per_worker: usize,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
) -> Tally {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (http, stop, token, counter) = (
            http.clone(),
            stop.clone(),
            issuer.token().sign(),
            issued.clone(),
        );
        let url = format!("{address}/v1/ecr/authorization-token");
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for n in 0..per_worker {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let id = format!("load-{worker}-{n}");
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("x-request-id", &id)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => {
                        let body: Value = r.json().await.unwrap();
                        assert!(body["authorizationData"][0]["authorizationToken"].is_string());
                        tally.issued.push(id);
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) if r.status() == 503 => tally.unavailable += 1,
                    _ => tally.other += 1,
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.unwrap();
        total.issued.extend(tally.issued);
        total.unavailable += tally.unavailable;
        total.other += tally.other;
    }
    total
}

/// The callers' request ids of the committed `issued` rows, and whether the chain ids are 1..=n.
async fn issued_rows(database_url: &str) -> (HashSet<String>, bool) {
    let db = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .unwrap();
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, caller_request_id, outcome FROM audit_events ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    db.close().await;
    let contiguous = rows
        .iter()
        .enumerate()
        .all(|(i, (id, _, _))| *id == i as i64 + 1);
    let issued = rows
        .into_iter()
        .filter(|(_, _, outcome)| outcome == "issued")
        .map(|(_, id, _)| id)
        .collect();
    (issued, contiguous)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_concurrent_load_every_200_has_exactly_one_issued_row() {
    let app = TestApp::spawn().await;

    let tally = load(&app.address, &app.issuer, 24, 10, Arc::default()).await;

    assert_eq!(
        tally.issued.len(),
        240,
        "{} unavailable, {} other",
        tally.unavailable,
        tally.other
    );
    let (rows, contiguous) = issued_rows(&app.database_url).await;
    assert_eq!(rows, tally.issued.iter().cloned().collect::<HashSet<_>>());
    assert!(contiguous, "chain ids have gaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_killed_mid_load_left_no_token_without_a_row() {
    let mut service = TestApp::builder().spawn_process().await;
    let stop = Arc::new(AtomicBool::new(false));

    let running = {
        let (address, stop) = (service.address.clone(), stop.clone());
        let issuer = &service.issuer;
        let issued = Arc::new(AtomicUsize::new(0));
        let run = load_counting(&address, issuer, 16, 1000, stop, issued.clone());
        // Kill it once tokens are flowing, however slow the machine is.
        let kill = async {
            // Killed after the deadline all the same: the assertions below then say why.
            wait_for(Duration::from_secs(30), async || {
                (issued.load(Ordering::SeqCst) >= 20).then_some(())
            })
            .await;
            service.child.start_kill().expect("SIGKILL");
        };
        let (tally, ()) = tokio::join!(run, kill);
        tally
    };
    stop.store(true, Ordering::SeqCst);
    service.child.wait().await.unwrap();

    assert!(
        running.issued.len() > 10,
        "the load ran: {} issued",
        running.issued.len()
    );
    assert!(running.other > 0, "the kill interrupted requests");
    let (rows, contiguous) = issued_rows(&service.database_url).await;
    let missing: Vec<&String> = running
        .issued
        .iter()
        .filter(|id| !rows.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "tokens handed out without a committed row: {missing:?}"
    );
    assert!(contiguous, "chain ids have gaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_and_started_mid_load_means_503s_then_full_recovery() {
    let postgres = TestPostgres::start();
    let app = TestApp::builder()
        .database_server(&postgres.url)
        .spawn()
        .await;
    let stop = Arc::new(AtomicBool::new(false));

    let before = load(&app.address, &app.issuer, 8, 5, stop.clone()).await;
    postgres.stop();
    let during = load(&app.address, &app.issuer, 8, 3, stop.clone()).await;
    postgres.restart();
    // The pool reconnects on its own; the first new connections may take a moment.
    let mut after = Tally::default();
    wait_for(Duration::from_secs(30), async || {
        after = load(&app.address, &app.issuer, 8, 5, stop.clone()).await;
        (after.issued.len() == 40).then_some(())
    })
    .await;

    assert_eq!(before.issued.len(), 40);
    assert!(
        during.issued.is_empty(),
        "no token while the audit log is down"
    );
    assert_eq!(during.unavailable, 24, "every request while down is a 503");
    assert_eq!(after.issued.len(), 40, "full recovery without a restart");
    let (rows, contiguous) = issued_rows(&app.database_url).await;
    for id in before.issued.iter().chain(&after.issued) {
        assert!(rows.contains(id), "{id} was issued without a row");
    }
    assert!(contiguous, "chain ids have gaps");
}
