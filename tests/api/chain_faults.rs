//! The audit chain under faulty databases and writers: it cannot fork whatever the server's
//! defaults, a duplicate or out-of-place chain id is refused by the database itself, and a
//! session stuck holding the writers' lock, or an appender stalled in the middle of a message,
//! costs bounded 503s, not an outage; and the clean-up never ends another database's appender.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::chain::{app_with_history, run, stderr, stdout, tamper, token, verifies};
use crate::helpers::{TestApp, admin_database_url, assert_problem, empty_database, wait_for};

/// The writers' advisory lock key (`CHAIN_LOCK` in src/audit/store.rs).
pub(crate) const CHAIN_LOCK: i64 = 0x6563_725f_6175_6469;

/// Bounds short enough that a stalled lock holder is ended within seconds.
const SHORT_CHAIN_BOUNDS: &str = "[audit_chain]\nlock_timeout_ms = 300\n\
    statement_timeout_ms = 1000\nidle_in_transaction_timeout_ms = 1000\n";

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
    sqlx::query(&format!(
        "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
    ))
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    // New sessions, such as every connection of these two services, take the new default.
    // A generous lock wait: on a loaded machine the two writers may queue long for each
    // other, and a 503 here must mean a refused fork, not a slow test machine.
    let spawn = || {
        TestApp::builder()
            .database_url(&setup.database_url)
            .extra_config("[audit_chain]\nlock_timeout_ms = 6000\n")
            .spawn()
    };
    let (first, second) = (spawn().await, spawn().await);
    let mut session = PgConnection::connect(&first.database_url).await.unwrap();
    let isolation: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(isolation, "repeatable read");

    let (a, b) = tokio::join!(issue_many(&first, 200), issue_many(&second, 200));

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for status in a.iter().chain(&b) {
        *statuses.entry(*status).or_default() += 1;
    }
    assert_eq!(statuses, [(200, 400)].into(), "statuses and their counts");
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

/// The last intact row `audit verify` printed, as `ID:HASH`.
fn printed_head(report: &str) -> String {
    let line = report
        .lines()
        .find_map(|l| l.strip_prefix("last intact row: id "))
        .expect("a last intact row");
    line.replacen(", hash ", ":", 1)
}

#[tokio::test]
async fn rows_deleted_from_the_end_are_caught_by_a_witnessed_head() {
    let app = app_with_history().await;
    let url = &app.database_url;
    let six = printed_head(&verifies(url, &[]).await);
    assert!(six.starts_with("6:"), "{six}");
    let db = app.db().await;
    let hash: Vec<u8> = sqlx::query_scalar("SELECT row_hash FROM audit_events WHERE id = 4")
        .fetch_one(&db)
        .await
        .unwrap();
    let four_witnessed = format!("4:{}", hex::encode(hash));

    tamper(&app, "DELETE FROM audit_events WHERE id >= 5").await;

    let unwitnessed = verifies(url, &[]).await;
    assert!(unwitnessed.contains("checked 4 rows"), "{unwitnessed}");
    let caught = run(url, &["audit", "verify", "--expect-head", &six]).await;
    assert_eq!(caught.status.code(), Some(1), "{}", stdout(&caught));
    assert!(
        stderr(&caught).contains(
            "the chain ends at id 4, before the witnessed head id 6 (rows deleted from the \
             end, or lost in a failover?)"
        ),
        "{}",
        stderr(&caught)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heads");
    std::fs::write(
        &file,
        format!("# from the service's log\n{four_witnessed}\n\n{six}\n"),
    )
    .unwrap();
    let from_file = run(
        url,
        &["audit", "verify", "--expect-heads", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(from_file.status.code(), Some(1));
    assert!(stderr(&from_file).contains("before the witnessed head id 6"));
    verifies(url, &["--expect-head", &four_witnessed]).await;
    let wrong = format!("4:{}", "00".repeat(32));
    let rewritten = run(url, &["audit", "verify", "--expect-head", &wrong]).await;
    assert!(
        stderr(&rewritten).contains("id 4: its hash is not the one witnessed for id 4"),
        "{}",
        stderr(&rewritten)
    );
}

#[tokio::test]
async fn the_service_logs_its_chain_head_for_the_log_pipeline_to_witness() {
    let service = TestApp::builder()
        .extra_config("[audit_chain]\nhead_log_interval_secs = 1\n")
        .env("RUST_LOG", "info")
        .spawn_process()
        .await;
    let http = reqwest::Client::new();
    let issued = http
        .post(format!("{}/v1/ecr/authorization-token", service.address))
        .bearer_auth(service.issuer.token().sign())
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);

    let logged = wait_for(Duration::from_secs(10), async || {
        let log = service.log();
        let at = log.rfind("head=1:")?;
        let head: String = log[at + "head=".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
            .collect();
        Some(head)
    })
    .await
    .expect("the service never logged its chain head");

    assert_eq!(logged.len(), "1:".len() + 64, "{logged}");
    verifies(&service.database_url, &["--expect-head", &logged]).await;
}

#[tokio::test]
async fn a_forged_checkpoint_is_caught_by_verify_and_refused_by_a_starting_writer() {
    let app = app_with_history().await;
    let url = &app.database_url;
    let db = app.db().await;
    let next_month: String = sqlx::query_scalar(
        "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date::text",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let pruned = run(url, &["audit", "prune", "--before", &next_month]).await;
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let keyed = verifies(url, &[]).await;
    assert!(
        keyed.contains("checked 0 rows from checkpoint 6"),
        "{keyed}"
    );

    // Someone with the database but not the chain key moves the chain's start on, as if
    // rows 7 to 9 had been pruned too, reusing the real checkpoint's MAC.
    tamper(
        &app,
        "INSERT INTO audit_checkpoints (id, row_hash, pruned_before, pruned_rows, hmac) \
         SELECT id + 3, row_hash, pruned_before, pruned_rows + 3, hmac FROM audit_checkpoints",
    )
    .await;

    let caught = run(url, &["audit", "verify"]).await;
    assert_eq!(caught.status.code(), Some(1));
    assert!(
        stderr(&caught).contains("checkpoint 9 does not carry the chain key's MAC"),
        "{}",
        stderr(&caught)
    );
    // A service that starts now finds no rows, so it would continue from the checkpoint.
    let starting = TestApp::builder().database_url(url).spawn().await;
    let response = starting
        .issue(Some(&token(&starting, "after.yml")), None)
        .await;
    assert_problem(response, 503, "audit-unavailable").await;
    assert!(
        app.audit_rows().await.is_empty(),
        "nothing continued the forged chain"
    );
}

/// A TCP relay to Postgres that can stop passing bytes, in both directions, at once: a
/// replica whose network is cut off.
struct CutOffRelay {
    port: u16,
    cut: Arc<AtomicBool>,
    /// The relay's own ports towards Postgres: how the server sees the relayed sessions.
    server_side_ports: Arc<Mutex<Vec<i32>>>,
}

impl CutOffRelay {
    async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let server_side_ports = Arc::new(Mutex::new(Vec::new()));
        let (target, relay_cut, ports) =
            (target.to_owned(), cut.clone(), server_side_ports.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                ports
                    .lock()
                    .unwrap()
                    .push(i32::from(server.local_addr().unwrap().port()));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pass(client_read, server_write, relay_cut.clone()));
                tokio::spawn(pass(server_read, client_write, relay_cut.clone()));
            }
        });
        Self {
            port,
            cut,
            server_side_ports,
        }
    }
}

/// Copies bytes from `from` to `to` while the relay is not cut.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Once cut, nothing read is ever passed on: the session hangs as a cut-off one does.
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_mid_append_is_ended_and_the_others_recover() {
    let healthy = TestApp::builder()
        .extra_config(SHORT_CHAIN_BOUNDS)
        .spawn()
        .await;
    let mut url = reqwest::Url::parse(&healthy.database_url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let relay = CutOffRelay::start(&target).await;
    url.set_port(Some(relay.port)).unwrap();
    let doomed = TestApp::builder()
        .database_url(url.as_str())
        .extra_config("[audit_chain]\nidle_in_transaction_timeout_ms = 1000\n")
        .spawn()
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (http, url, token, stop) = (
            doomed.http.clone(),
            doomed.url("/v1/ecr/authorization-token"),
            doomed.token(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::SeqCst) {
                if inflight.len() < 16 {
                    let request = http.post(&url).bearer_auth(&token).send();
                    inflight.spawn(async move { drop(request.await) });
                } else {
                    inflight.join_next().await;
                }
            }
        })
    };
    let mut admin = PgConnection::connect(&healthy.database_url).await.unwrap();

    // Cut the replica off at a moment when it holds the writers' lock.
    let mut holder = None;
    for _ in 0..500 {
        relay.cut.store(true, Ordering::SeqCst);
        let ports = relay.server_side_ports.lock().unwrap().clone();
        holder = sqlx::query_scalar::<_, i32>(
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted AND a.client_port = ANY($1)",
        )
        .bind(&ports)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
        if holder.is_some() {
            break;
        }
        relay.cut.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    load.abort();
    let holder = holder.expect("never caught the replica holding the lock");

    // Cut off idle in its transaction, Postgres ends the session; cut off in the middle of
    // a message, the healthy replica's next append does.
    let recovered = wait_for(Duration::from_secs(15), async || {
        let status = healthy.issue(Some(&healthy.token()), None).await.status();
        (status == 200).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "the healthy replica never recovered");
    let alive: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
        .bind(holder)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(alive, 0, "the cut-off session is still there");
    verifies(&healthy.database_url, &[]).await;
}

/// A Postgres session spoken by hand, so that it can stop in the middle of a message as a
/// client does when its network or process stalls mid-write. Needs trust authentication, as
/// the test clusters have.
struct RawSession {
    stream: TcpStream,
    pid: i32,
}

impl RawSession {
    async fn connect(database_url: &str) -> Self {
        let url = reqwest::Url::parse(database_url).unwrap();
        let stream = TcpStream::connect((url.host_str().unwrap(), url.port().unwrap_or(5432)))
            .await
            .unwrap();
        let mut startup = 196_608_i32.to_be_bytes().to_vec(); // protocol 3.0
        for (name, value) in [
            ("user", url.username()),
            ("database", url.path().trim_start_matches('/')),
        ] {
            startup.extend([name.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat());
        }
        startup.push(0);
        let mut session = Self { stream, pid: 0 };
        session.send(None, &startup).await;
        session.until_ready().await;
        session
    }

    /// Writes one message: its type byte (none for the startup message), length and body.
    async fn send(&mut self, kind: Option<u8>, body: &[u8]) {
        let length = i32::try_from(body.len() + 4).unwrap().to_be_bytes();
        let message = [kind.as_slice(), &length, body].concat();
        self.stream.write_all(&message).await.unwrap();
    }

    /// Runs `sql` as a simple query.
    async fn query(&mut self, sql: &str) {
        self.send(Some(b'Q'), &[sql.as_bytes(), b"\0"].concat())
            .await;
        self.until_ready().await;
    }

    /// Reads messages up to ReadyForQuery, keeping the backend's pid.
    async fn until_ready(&mut self) {
        loop {
            let kind = self.stream.read_u8().await.unwrap();
            let length = usize::try_from(self.stream.read_i32().await.unwrap()).unwrap();
            let mut body = vec![0; length - 4];
            self.stream.read_exact(&mut body).await.unwrap();
            match kind {
                b'R' => assert_eq!(body[..4], [0; 4], "the server asks for a password"),
                b'K' => self.pid = i32::from_be_bytes(body[..4].try_into().unwrap()),
                b'E' => panic!("{}", String::from_utf8_lossy(&body)),
                b'Z' => return,
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn an_appender_stalled_in_the_middle_of_a_message_is_ended_by_the_next_one() {
    let service = TestApp::builder()
        .extra_config(SHORT_CHAIN_BOUNDS)
        .spawn_process()
        .await;
    let mut stalled = RawSession::connect(&service.database_url).await;
    // Holding the chain lock as an appender does, bounded as the service bounds its own.
    stalled
        .query(&format!(
            "BEGIN; SET LOCAL application_name = 'ecr-token-broker-append'; \
             SET LOCAL statement_timeout = 500; \
             SET LOCAL idle_in_transaction_session_timeout = 500; \
             SELECT pg_advisory_xact_lock({CHAIN_LOCK})"
        ))
        .await;
    // A whole Parse, then the first bytes of a Bind that never ends. Reading a whole message
    // disarms Postgres's idle timeout, and nothing times the wait for the rest of the next.
    stalled.send(Some(b'P'), b"\0SELECT 1\0\0\0").await;
    stalled.stream.write_all(b"B\0\0\0\x40\0").await.unwrap();

    let http = reqwest::Client::new();
    let issue = || {
        http.post(format!("{}/v1/ecr/authorization-token", service.address))
            .bearer_auth(service.issuer.token().sign())
            .send()
    };
    let during = issue().await.unwrap();
    assert_problem(during, 503, "audit-unavailable").await;
    let recovered = wait_for(Duration::from_secs(15), async || {
        (issue().await.unwrap().status() == 200).then_some(())
    })
    .await;

    assert!(recovered.is_some(), "the service never recovered");
    let log = service.log();
    let line = log
        .lines()
        .find(|line| line.contains("ended the session of a stalled audit appender"))
        .unwrap_or_else(|| panic!("no stalled appender was ended:\n{log}"));
    assert!(line.contains(&format!("[{}]", stalled.pid)), "{line}");
    verifies(&service.database_url, &[]).await;
}

#[tokio::test]
async fn a_stalled_appender_is_ended_only_in_its_own_database() {
    let service = TestApp::builder()
        .extra_config(SHORT_CHAIN_BOUNDS)
        .spawn_process()
        .await;
    // Another broker's database on the same cluster (staging beside production, or another
    // test's), its appender holding that database's chain lock under the same name, idle in
    // its transaction for as long as it likes: no concern of this broker's.
    let mut elsewhere = RawSession::connect(&empty_database().await).await;
    // And one in the service's own database, which the service must still end.
    let mut here = RawSession::connect(&service.database_url).await;
    for holder in [&mut elsewhere, &mut here] {
        holder
            .query(&format!(
                "BEGIN; SET LOCAL application_name = 'ecr-token-broker-append'; \
                 SELECT pg_advisory_xact_lock({CHAIN_LOCK})"
            ))
            .await;
    }
    let pids = vec![elsewhere.pid, here.pid];
    let mut admin = PgConnection::connect(&admin_database_url()).await.unwrap();
    // Both held for longer than the service's bounds allow (1.3 s: the longer of the
    // statement and idle timeouts, plus the lock timeout), so that only the database can
    // tell them apart.
    let stalled = wait_for(Duration::from_secs(15), async || {
        let stalled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) \
             AND state_change < clock_timestamp() - interval '1.5 seconds'",
        )
        .bind(&pids)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        (stalled == 2).then_some(())
    })
    .await;
    assert!(stalled.is_some(), "the lock holders never looked stalled");

    let token = service.issuer.token().sign();
    assert_problem(service.issue(&token).await, 503, "audit-unavailable").await;
    let recovered = wait_for(Duration::from_secs(15), async || {
        (service.issue(&token).await.status() == 200).then_some(())
    })
    .await;

    assert!(recovered.is_some(), "the service never recovered");
    let alive: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE pid = ANY($1) ORDER BY pid")
            .bind(&pids)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert_eq!(
        alive,
        [elsewhere.pid],
        "only the other database's holder is left"
    );
    let log = service.log();
    let ended: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("ended the session of a stalled audit appender"))
        .collect();
    assert_eq!(ended.len(), 1, "{log}");
    assert!(
        ended[0].contains(&format!("[{}]", here.pid)),
        "{}",
        ended[0]
    );
    verifies(&service.database_url, &[]).await;
}
