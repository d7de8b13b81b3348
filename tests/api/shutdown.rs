//! Graceful shutdown of the real binary: on SIGTERM readiness turns false while requests are
//! still served, then the listener closes, requests in flight finish, every record is
//! committed and shipped, and the process exits 0.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::chain::{stdout, verifies};
use crate::helpers::{Fault, Operation, TestApp, wait_for};
use crate::shipping::file_sink;

/// The default caller's rule without a cache, so that every request calls AWS.
const UNCACHED: &str = r#"
[[rules]]
name = "acme-main"
issuer = "test"
claims = { repository_owner = "acme" }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]
cache = "off"
"#;

/// One request of the load: whether it was sent before SIGTERM, and how it ended.
struct Sent {
    id: String,
    before_sigterm: bool,
    /// The status, or none when the connection failed.
    status: Option<u16>,
    answered_at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_answers_every_request_commits_every_row_and_exits_0() {
    let logs = tempfile::tempdir().unwrap();
    let sink = logs.path().join("audit.jsonl");
    let mut service = TestApp::builder()
        .rules(UNCACHED)
        // Requests spend time in AWS, so that many are in flight when the listener closes.
        .fault(Fault::Delay {
            operation: Operation::AssumeRole,
            delay: Duration::from_millis(300),
        })
        .server("shutdown_drain_secs = 2\nshutdown_grace_secs = 30")
        .extra_config(&file_sink(&sink))
        .spawn_process()
        .await;
    let terminated = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let mut workers = Vec::new();
    for worker in 0..12 {
        let (http, token) = (http.clone(), service.issuer.token().sign());
        let (terminated, stop, issued) = (terminated.clone(), stop.clone(), issued.clone());
        let url = format!("{}/v1/ecr/authorization-token", service.address);
        workers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let id = format!("load-{worker}-{n}");
                let before_sigterm = !terminated.load(Ordering::SeqCst);
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("x-request-id", &id)
                    .send()
                    .await;
                let status = match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Only a body read to the end is a complete answer.
                        match response.json::<serde_json::Value>().await {
                            Ok(body) if status == 200 => {
                                assert!(body["auditEntry"]["id"].is_i64(), "{body}");
                                issued.fetch_add(1, Ordering::SeqCst);
                                Some(status)
                            }
                            Ok(_) => Some(status),
                            Err(_) => None,
                        }
                    }
                    Err(_) => None,
                };
                let failed = status.is_none();
                sent.push(Sent {
                    id,
                    before_sigterm,
                    status,
                    answered_at: Instant::now(),
                });
                if failed {
                    // The listener is closed; the process is on its way out.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            sent
        }));
    }
    let readiness = {
        let (http, stop) = (http.clone(), stop.clone());
        let url = format!("{}/readyz", service.address);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(response) = http.get(&url).send().await
                    && response.status() == 503
                {
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        })
    };
    wait_for(Duration::from_secs(60), async || {
        (issued.load(Ordering::SeqCst) >= 24).then_some(())
    })
    .await
    .expect("tokens flow before SIGTERM");

    terminated.store(true, Ordering::SeqCst);
    let pid = service.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let signalled = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(90), service.child.wait())
        .await
        .expect("the service exits within its drain and grace periods")
        .unwrap();
    let took = signalled.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for worker in workers {
        sent.extend(worker.await.unwrap());
    }
    let not_ready_at = readiness.await.unwrap();

    assert_eq!(exit.code(), Some(0), "{}", service.log());
    // Well within the flush bounds (the writer's alone is 37 s here): nothing waited them out.
    assert!(
        took < Duration::from_secs(25),
        "shutting down took {took:?}"
    );
    assert!(!service.log().contains("in time"), "{}", service.log());
    let before: Vec<&Sent> = sent.iter().filter(|s| s.before_sigterm).collect();
    let unanswered: Vec<(&str, Option<u16>)> = before
        .iter()
        .filter(|s| s.status != Some(200))
        .map(|s| (s.id.as_str(), s.status))
        .collect();
    assert!(
        unanswered.is_empty(),
        "requests sent before SIGTERM without a 200: {unanswered:?}\n{}",
        service.log()
    );
    let not_ready_at = not_ready_at.expect("readiness turned false");
    let first_refused = sent
        .iter()
        .filter(|s| s.status.is_none())
        .map(|s| s.answered_at)
        .min();
    assert!(
        first_refused.is_none_or(|refused| not_ready_at < refused),
        "readiness turned false before the listener closed"
    );
    assert!(
        sent.iter()
            .any(|s| !s.before_sigterm && s.status == Some(200)),
        "requests are still served while draining"
    );
    let db = sqlx::PgPool::connect(&service.database_url).await.unwrap();
    let rows: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, caller_request_id FROM audit_events ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    db.close().await;
    let recorded: HashSet<&str> = rows.iter().filter_map(|(_, id)| id.as_deref()).collect();
    for ok in sent.iter().filter(|s| s.status == Some(200)) {
        assert!(recorded.contains(ok.id.as_str()), "{} has no row", ok.id);
    }
    assert!(
        rows.iter().zip(1..).all(|((id, _), n)| *id == n),
        "chain ids have gaps"
    );
    verifies(&service.database_url, &[]).await;
    // The sink was flushed before the process exited: every row is in the file.
    let shipped = std::fs::read_to_string(&sink).unwrap();
    let exported = crate::chain::run(&service.database_url, &["audit", "export"]).await;
    assert_eq!(shipped, stdout(&exported));
}
