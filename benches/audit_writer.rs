//! Audited inserts per second: the group-commit writer against one INSERT per transaction,
//! on the same database in the same run.
//!
//! `scripts/bench.sh` runs it (it needs `DATABASE_URL`, an admin URL) over both TCP and the
//! server's Unix socket in one run; every round uses a fresh database. Not a test: the numbers are reported, not asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecr_token_broker::ChainKey;
use ecr_token_broker::{
    AppendBounds, AuditRecord, AuditWriter, ChainAppender, MIGRATOR, Outcome, WriterLimits,
};
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

const CONCURRENCY: usize = 64;
const RECORDS: usize = 20_000;

fn record(n: usize) -> AuditRecord {
    let mut r = AuditRecord::start(
        &format!("bench-{n}"),
        Some("10.0.0.7".parse().unwrap()),
        Some("bench/1"),
    );
    r.issuer = Some("github-actions".to_owned());
    r.subject = Some("repo:acme/api:ref:refs/heads/main".to_owned());
    r.rule = Some("ci-main".to_owned());
    r.role_arn = Some("arn:aws:iam::123456789012:role/ecr-ci".to_owned());
    r.session_name = Some("gha-acme-api.0123456789ab".to_owned());
    r.regions = vec!["eu-west-1".to_owned()];
    r.registry_ids = vec!["123456789012".to_owned()];
    r.access = Some("pull".to_owned());
    r.repositories = Some(vec!["acme/api/*".to_owned()]);
    r.proxy_endpoints = vec!["https://123456789012.dkr.ecr.eu-west-1.amazonaws.com".to_owned()];
    r.expires_at = Some(r.occurred_at + chrono::Duration::hours(12));
    r.token_fingerprints = vec!["ab".repeat(32)];
    r.fingerprint_key_id = Some("2026-11".to_owned());
    r.decide(Outcome::Issued, "issued", 200);
    r
}

/// The two ways to reach the same server: its TCP address and its Unix socket. sqlx sets
/// `TCP_NODELAY` (or, in 0.9.0, did not), which only the TCP path shows.
#[derive(Clone, Copy, Debug)]
enum Path {
    Tcp,
    UnixSocket,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Tcp => "TCP",
            Path::UnixSocket => "Unix socket",
        }
    }
}

/// Connect options for `path` to the server behind the admin URL, a TCP URL: the server
/// names its own socket directory. `None` when the server does not listen that way.
async fn options_for(admin: &PgConnectOptions, path: Path) -> Option<PgConnectOptions> {
    match path {
        // sqlx cannot turn socket options back into TCP ones, so a socket URL measures
        // the socket alone.
        Path::Tcp => admin.get_socket().is_none().then(|| admin.clone()),
        Path::UnixSocket => {
            let mut db = admin.connect().await.expect("DATABASE_URL reachable");
            let (sockets, port): (String, String) = sqlx::query_as(
                "SELECT current_setting('unix_socket_directories'), current_setting('port')",
            )
            .fetch_one(&mut db)
            .await
            .unwrap();
            db.close().await.unwrap();
            let dir = sockets.split(',').map(str::trim).find(|d| !d.is_empty())?;
            Some(admin.clone().socket(dir).port(port.parse().unwrap()))
        }
    }
}

async fn fresh_database(admin: &PgConnectOptions, name: &str) -> PgPool {
    let admin_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin.clone())
        .await
        .expect("DATABASE_URL reachable");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin_pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin_pool)
        .await
        .unwrap();
    admin_pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(admin.clone().database(name))
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    pool
}

/// Runs `RECORDS` records through `CONCURRENCY` concurrent producers; returns rows/s.
async fn run<F, Fut>(produce: F) -> f64
where
    F: Fn(AuditRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let produce = Arc::new(produce);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|worker| {
            let produce = produce.clone();
            tokio::spawn(async move {
                for n in (worker..RECORDS).step_by(CONCURRENCY) {
                    produce(record(n)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Both ways of writing `RECORDS` rows over one path; returns (single, group) rows/s.
async fn measure(options: &PgConnectOptions, key: &ChainKey) -> (f64, f64) {
    let pool = fresh_database(options, "ecrtb_bench_single").await;
    let single = {
        // The writer's own append, one record per transaction: what group commit saves.
        let appender = Arc::new(tokio::sync::Mutex::new(ChainAppender::new(
            &pool,
            &AppendBounds::default(),
        )));
        let key = key.clone();
        run(move |r| {
            let (appender, key) = (appender.clone(), key.clone());
            async move {
                let mut appender = appender.lock().await;
                appender.append(&key, &[&r]).await.expect("insert");
            }
        })
        .await
    };
    assert_eq!(count(&pool).await, RECORDS as i64);
    pool.close().await;

    let pool = fresh_database(options, "ecrtb_bench_group").await;
    let limits = WriterLimits {
        queue_capacity: 4096,
        refusal_queue_capacity: 4096,
        shed_report_interval: Duration::from_secs(60),
        max_batch: 256,
        wait: Duration::from_secs(30),
        bounds: AppendBounds::default(),
    };
    let (writer, task) = AuditWriter::spawn(pool.clone(), key.clone(), limits);
    let group = {
        let writer = writer.clone();
        run(move |r| {
            let writer = writer.clone();
            async move {
                writer.record(r).await.expect("commit");
            }
        })
        .await
    };
    assert_eq!(count(&pool).await, RECORDS as i64);
    drop(writer);
    task.await.unwrap();
    pool.close().await;
    (single, group)
}

#[tokio::main]
async fn main() {
    let admin: PgConnectOptions = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
        .parse()
        .expect("DATABASE_URL is a Postgres URL");
    let key = ChainKey::new(&SecretString::from("benchmark-chain-key-0123456789abcdef"));
    println!(
        "{RECORDS} audited inserts, {CONCURRENCY} concurrent producers, chained rows as the service writes them"
    );
    println!(
        "{:<12} {:>28} {:>22} {:>9}",
        "path", "one INSERT per transaction", "group-commit writer", "speed-up"
    );
    for path in [Path::Tcp, Path::UnixSocket] {
        let Some(options) = options_for(&admin, path).await else {
            println!("{:<12} (the server does not listen this way)", path.label());
            continue;
        };
        let (single, group) = measure(&options, &key).await;
        println!(
            "{:<12} {:>22.0} rows/s {:>16.0} rows/s {:>8.1}x",
            path.label(),
            single,
            group,
            group / single
        );
    }
}
