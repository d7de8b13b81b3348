//! Audit shipping and receipts: every committed row also goes to the configured sink (a
//! file reopened on SIGHUP, syslog over a Unix datagram socket or UDP) as the JSON line that
//! `audit export` prints, in chain order, with the hashes `audit verify` checks; every
//! credential carries its row's id and hash, which `audit verify --expect` holds the chain to.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::chain::{run, stderr, stdout, tamper, verifies};
use crate::helpers::{PORTAL_ORIGIN, TestApp, wait_for};

/// `[audit_sink]` writing to the file at `path`.
pub fn file_sink(path: &Path) -> String {
    format!(
        "[audit_sink]\nkind = \"file\"\npath = {:?}\n",
        path.to_str().unwrap()
    )
}

/// `[audit_sink]` sending to syslog at `target` (a socket path or `udp://IP:PORT`).
fn syslog_sink(target: &str, facility: &str) -> String {
    format!("[audit_sink]\nkind = \"syslog\"\nsyslog = {target:?}\nfacility = {facility:?}\n")
}

/// The length of the datagram `recv` receives, which must come within seconds.
async fn arrives(recv: impl Future<Output = std::io::Result<usize>>) -> usize {
    tokio::time::timeout(Duration::from_secs(10), recv)
        .await
        .expect("a syslog message arrives")
        .unwrap()
}

/// The lines of the file at `path`, none if it does not exist.
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `audit export ARGS` against `database_url`, which must succeed; returns its lines.
async fn exported(database_url: &str, args: &[&str]) -> Vec<String> {
    let output = run(database_url, &[&["audit", "export"], args].concat()).await;
    assert!(
        output.status.success(),
        "export failed: {}",
        stderr(&output)
    );
    stdout(&output).lines().map(str::to_owned).collect()
}

/// Each stored row's id and hex row hash, in chain order.
async fn stored_hashes(database_url: &str) -> Vec<(i64, String)> {
    let db = sqlx::PgPool::connect(database_url).await.unwrap();
    let rows = sqlx::query_as("SELECT id, encode(row_hash, 'hex') FROM audit_events ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    rows
}

/// Checks that `lines` are the stored chain, row for row: ids 1..=n, each line's
/// `prev_hash` the line before's `row_hash`, and the hashes the database holds. Returns the
/// lines parsed.
async fn assert_is_the_chain(lines: &[String], database_url: &str) -> Vec<Value> {
    let parsed: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let stored = stored_hashes(database_url).await;
    let shipped: Vec<(i64, String)> = parsed
        .iter()
        .map(|v| {
            (
                v["id"].as_i64().unwrap(),
                v["row_hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(shipped, stored, "the lines are the chain, in order");
    for pair in parsed.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["row_hash"]);
    }
    parsed
}

/// Posts an issuing request to the service at `address`; returns the status and the body.
async fn issue(http: &reqwest::Client, address: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http.post(format!("{address}/v1/ecr/authorization-token"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST authorization-token");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("the service runs").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_row_reaches_the_file_in_chain_order_across_a_rotation() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("audit.jsonl");
    let rotated = logs.path().join("audit.jsonl.1");
    let service = TestApp::builder()
        .extra_config(&file_sink(&path))
        .spawn_process()
        .await;
    let http = reqwest::Client::new();
    let token = service.issuer.token().sign();
    let mut tokens = Vec::new();
    for n in 0..4 {
        let (status, body) = issue(&http, &service.address, (n != 2).then_some(&*token)).await;
        if n == 2 {
            assert_eq!(status, 401);
        } else {
            assert_eq!(status, 200, "{body}");
            tokens.push(body["authorizationData"][0]["authorizationToken"].clone());
        }
    }
    wait_for(Duration::from_secs(10), async || {
        (lines_of(&path).len() == 4).then_some(())
    })
    .await
    .expect("the four committed rows reach the file");

    std::fs::rename(&path, &rotated).unwrap();
    signal(&service.child, "HUP");
    // Rows committed before the service has reopened still go to the moved file.
    wait_for(Duration::from_secs(20), async || {
        assert_eq!(issue(&http, &service.address, Some(&token)).await.0, 200);
        path.exists().then_some(())
    })
    .await
    .expect("after SIGHUP the service writes to a new file at the path");
    for _ in 0..2 {
        assert_eq!(issue(&http, &service.address, Some(&token)).await.0, 200);
    }
    let rows = stored_hashes(&service.database_url).await.len();
    let shipped = wait_for(Duration::from_secs(10), async || {
        let lines = [lines_of(&rotated), lines_of(&path)].concat();
        (lines.len() == rows).then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("{rows} rows, not all shipped:\n{}", service.log()));

    assert!(
        service.child.id().is_some(),
        "SIGHUP did not end the service"
    );
    assert!(lines_of(&rotated).len() >= 4 && !lines_of(&path).is_empty());
    let parsed = assert_is_the_chain(&shipped, &service.database_url).await;
    assert_eq!(exported(&service.database_url, &[]).await, shipped);
    for token in &tokens {
        let token = token.as_str().unwrap();
        assert!(
            shipped.iter().all(|l| !l.contains(token)),
            "a token was shipped"
        );
    }
    assert_eq!(parsed[2]["outcome"], "denied");
    assert!(parsed[0]["token_fingerprints"][0].is_string());
    // What the sink shipped is what verify holds the chain to.
    let entries: String = parsed
        .iter()
        .map(|v| format!("{}:{}\n", v["id"], v["row_hash"].as_str().unwrap()))
        .collect();
    let file = logs.path().join("entries");
    std::fs::write(&file, entries).unwrap();
    verifies(
        &service.database_url,
        &["--expect-file", file.to_str().unwrap()],
    )
    .await;
    // A range is the rows recorded in it, as the same lines.
    let recorded = |v: &Value| {
        v["recorded_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    let (since, until) = (recorded(&parsed[1]), recorded(&parsed[rows - 1]));
    let in_range: Vec<String> = shipped
        .iter()
        .zip(&parsed)
        .filter(|(_, v)| (since..until).contains(&recorded(v)))
        .map(|(line, _)| line.clone())
        .collect();
    assert!(in_range.len() >= 2, "{in_range:?}");
    let range = exported(
        &service.database_url,
        &[
            "--since",
            &since.to_rfc3339(),
            "--until",
            &until.to_rfc3339(),
        ],
    )
    .await;
    assert_eq!(range, in_range);
}

#[tokio::test]
async fn stdout_carries_each_row_as_a_line_and_nothing_else() {
    let service = TestApp::builder()
        .extra_config("[audit_sink]\nkind = \"stdout\"\n")
        .env("RUST_LOG", "info")
        .spawn_process()
        .await;
    let (http, token) = (reqwest::Client::new(), service.issuer.token().sign());

    assert_eq!(issue(&http, &service.address, Some(&token)).await.0, 200);
    assert_eq!(issue(&http, &service.address, None).await.0, 401);

    let shipped = wait_for(Duration::from_secs(10), async || {
        let lines: Vec<String> = service.stdout().lines().map(str::to_owned).collect();
        (lines.len() == 2).then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("two lines on stdout, got:\n{}", service.stdout()));
    assert_is_the_chain(&shipped, &service.database_url).await;
    assert_eq!(exported(&service.database_url, &[]).await, shipped);
    assert!(service.log().contains("serving"), "logs go to stderr");
}

#[tokio::test]
async fn syslog_over_a_unix_socket_gets_each_row_as_an_rfc_5424_message() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log.sock");
    let receiver = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let app = TestApp::builder()
        .extra_config(&syslog_sink(socket_path.to_str().unwrap(), "authpriv"))
        .spawn()
        .await;

    assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);
    assert_eq!(app.issue(None, None).await.status(), 401);
    assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);

    let mut messages = Vec::new();
    for _ in 0..3 {
        let mut buf = vec![0; 65_536];
        let n = arrives(receiver.recv(&mut buf)).await;
        messages.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    let lines: Vec<String> = messages
        .iter()
        .map(|m| {
            // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
            let fields: Vec<&str> = m.splitn(8, ' ').collect();
            assert_eq!(fields[0], "<86>1", "authpriv.info: {m}");
            assert!(DateTime::parse_from_rfc3339(fields[1]).is_ok(), "{m}");
            assert_eq!(
                (fields[3], fields[5], fields[6]),
                ("ecr-token-broker", "audit", "-")
            );
            fields[7].to_owned()
        })
        .collect();
    assert_is_the_chain(&lines, &app.database_url).await;
    assert_eq!(exported(&app.database_url, &[]).await, lines);
}

#[tokio::test]
async fn syslog_over_udp_gets_each_row_at_the_configured_facility() {
    let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let app = TestApp::builder()
        .extra_config(&syslog_sink(
            &format!("udp://{}", receiver.local_addr().unwrap()),
            "local3",
        ))
        .spawn()
        .await;

    assert_eq!(app.issue(Some(&app.token()), None).await.status(), 200);

    let mut buf = vec![0; 65_536];
    let n = arrives(receiver.recv(&mut buf)).await;
    let message = String::from_utf8(buf[..n].to_vec()).unwrap();
    assert!(message.starts_with("<158>1 "), "local3.info: {message}");
    let line = message.splitn(8, ' ').nth(7).unwrap().to_owned();
    assert_is_the_chain(&[line], &app.database_url).await;
}

#[tokio::test]
async fn a_sink_that_cannot_write_never_fails_issuance_nor_loses_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let nobody_listens = dir.path().join("gone.sock");
    let service = TestApp::builder()
        .extra_config(&syslog_sink(nobody_listens.to_str().unwrap(), "authpriv"))
        .spawn_process()
        .await;
    let (http, token) = (reqwest::Client::new(), service.issuer.token().sign());

    for _ in 0..3 {
        assert_eq!(issue(&http, &service.address, Some(&token)).await.0, 200);
    }

    assert_eq!(stored_hashes(&service.database_url).await.len(), 3);
    verifies(&service.database_url, &[]).await;
    let dropping = "the audit sink is dropping lines";
    let logged = wait_for(Duration::from_secs(10), async || {
        let log = service.log();
        log.contains(dropping).then_some(log)
    })
    .await
    .expect("the failing sink is logged");
    assert_eq!(
        logged.matches(dropping).count(),
        1,
        "once per episode:\n{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_stops_reading_never_holds_up_issuance() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log.sock");
    // Bound and never read: once its buffer is full every send waits.
    let _stalled = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let service = TestApp::builder()
        .extra_config(&format!(
            "{}queue_capacity = 16\n",
            syslog_sink(socket_path.to_str().unwrap(), "authpriv")
        ))
        .spawn_process()
        .await;
    let http = reqwest::Client::new();

    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, address, token) = (
            http.clone(),
            service.address.clone(),
            service.issuer.token().sign(),
        );
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..50 {
                statuses.push(issue(&http, &address, Some(&token)).await.0);
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.unwrap());
    }

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(stored_hashes(&service.database_url).await.len(), 400);
    let dropping = "the audit sink is dropping lines";
    assert_eq!(
        service.log().matches(dropping).count(),
        1,
        "{}",
        service.log()
    );
}

#[tokio::test]
async fn a_receipt_verifies_until_its_row_is_tampered_with_or_deleted() {
    let app = TestApp::spawn().await;
    let mut receipts = Vec::new();
    for _ in 0..3 {
        let response = app
            .http
            .post(app.url("/v1/ecr/authorization-token"))
            .bearer_auth(app.token())
            .header("origin", PORTAL_ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let exposed = response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(exposed.contains("audit-entry"), "{exposed}");
        let header = response.headers()["audit-entry"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        let entry = &body["auditEntry"];
        assert_eq!(
            header,
            format!("{}:{}", entry["id"], entry["hash"].as_str().unwrap())
        );
        receipts.push((entry["id"].as_i64().unwrap(), header));
    }
    let stored = stored_hashes(&app.database_url).await;
    let expected: Vec<(i64, String)> = stored
        .iter()
        .map(|(id, hash)| (*id, format!("{id}:{hash}")))
        .collect();
    assert_eq!(receipts, expected, "each receipt is its committed row");
    let last = &receipts[2].1;
    let all: Vec<&str> = receipts
        .iter()
        .flat_map(|(_, r)| ["--expect", r.as_str()])
        .collect();
    verifies(&app.database_url, &all).await;

    tamper(&app, "DELETE FROM audit_events WHERE id = 3").await;
    // Deleted from the end, the chain verifies by itself; the receipt catches it.
    verifies(&app.database_url, &[]).await;
    let deleted = run(&app.database_url, &["audit", "verify", "--expect", last]).await;
    assert_eq!(deleted.status.code(), Some(1), "{}", stdout(&deleted));
    assert!(
        stderr(&deleted).contains("the chain ends at id 2, before the witnessed head id 3"),
        "{}",
        stderr(&deleted)
    );

    tamper(
        &app,
        "UPDATE audit_events SET subject = 'someone-else' WHERE id = 2",
    )
    .await;
    let edited = run(
        &app.database_url,
        &["audit", "verify", "--expect", &receipts[1].1],
    )
    .await;
    assert_eq!(edited.status.code(), Some(1));
    assert!(
        stderr(&edited).contains("id 2: row hash does not match its content"),
        "{}",
        stderr(&edited)
    );
}

#[test]
fn check_config_refuses_a_sink_without_its_target_and_a_grace_shorter_than_a_request() {
    use crate::cli::{BASE, CI_ISSUER, assert_mentions, run as run_cli};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nrequest_timeout_secs = 30\nshutdown_grace_secs = 10\n\
             [audit_sink]\nkind = \"file\"\nqueue_capacity = 0\n{BASE}{CI_ISSUER}"
        ),
    )
    .unwrap();
    let refused = run_cli(&["check-config", config.to_str().unwrap()], &[]);
    assert!(!refused.status.success());
    assert_mentions(
        &crate::cli::stderr(&refused),
        &[
            "server.shutdown_grace_secs",
            "audit_sink.path",
            "audit_sink.queue_capacity",
        ],
    );

    std::fs::write(
        &config,
        format!("[audit_sink]\nkind = \"syslog\"\nsyslog = \"udp://logs.internal:514\"\n{BASE}{CI_ISSUER}"),
    )
    .unwrap();
    let refused = run_cli(&["check-config", config.to_str().unwrap()], &[]);
    assert!(!refused.status.success());
    assert_mentions(
        &crate::cli::stderr(&refused),
        &["audit_sink.syslog", "not udp://IP:PORT"],
    );
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_drops_lines_until_it_can_and_export_back_fills_them() {
    let logs = tempfile::tempdir().unwrap();
    let not_yet = logs.path().join("mounted-later");
    let path = not_yet.join("audit.jsonl");
    let service = TestApp::builder()
        .extra_config(&file_sink(&path))
        .spawn_process()
        .await;
    let (http, token) = (reqwest::Client::new(), service.issuer.token().sign());

    assert_eq!(issue(&http, &service.address, Some(&token)).await.0, 200);
    wait_for(Duration::from_secs(10), async || {
        service
            .log()
            .contains("the audit sink is dropping lines")
            .then_some(())
    })
    .await
    .expect("the line the file could not take is dropped");
    std::fs::create_dir(&not_yet).unwrap();
    assert_eq!(issue(&http, &service.address, Some(&token)).await.0, 200);
    let shipped = wait_for(Duration::from_secs(10), async || {
        let lines = lines_of(&path);
        (!lines.is_empty()).then_some(lines)
    })
    .await
    .expect("lines flow once the file can be opened");

    let all = exported(&service.database_url, &[]).await;
    assert_eq!(all.len(), 2, "both rows are committed");
    assert_eq!(
        shipped,
        all[1..],
        "the first line was dropped, the second shipped"
    );
}
