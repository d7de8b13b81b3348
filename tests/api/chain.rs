//! The audit hash chain end to end: the real binary verifies and prunes what the service
//! wrote, and finds rows edited, deleted, forged or reordered by someone with full database
//! access; the service's own role cannot change rows at all.

use std::process::Output;
use std::time::{Duration, Instant};

use ecr_token_broker::ChainKey;
use ecr_token_broker::{
    AppendBounds, AuditRecord, AuditWriter, ChainAppender, Outcome, WriterLimits,
};
use secrecy::SecretString;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::cli::CI_ISSUER;
use crate::helpers::{CHAIN_KEY, FINGERPRINT_KEY, TestApp, admin_database_url};

const BINARY: &str = env!("CARGO_BIN_EXE_ecr-token-broker");

/// The default rule, plus session tags whose keys jsonb stores in another order than
/// their sorted one.
const RULES: &str = r#"
[[rules]]
name = "acme-main"
issuer = "test"
claims = { repository_owner = "acme", ref = "refs/heads/main" }
role_arn = "arn:aws:iam::111122223333:role/ecr-pull"
regions = ["us-east-1"]
session_tags = { repo = "{repository}", actor = "{actor}", workflow = "{/job/workflow}" }
"#;

/// A token the rule grants, with a workflow claim for its session tag.
pub fn token(app: &TestApp, workflow: &str) -> String {
    app.issuer
        .token()
        .claim("job", json!({ "workflow": workflow }))
        .sign()
}

/// A service that has written six rows: 1, 2, 4 and 5 issued tokens, 3 and 6 are denials.
pub async fn app_with_history() -> TestApp {
    let app = TestApp::builder().rules(RULES).spawn().await;
    for n in 1..=6 {
        let token = token(&app, &format!("build-{n}.yml"));
        let (token, status) = match n {
            3 => (None, 401),
            6 => (
                Some(app.issuer.token().claim("ref", "refs/heads/x").sign()),
                403,
            ),
            _ => (Some(token), 200),
        };
        let response = app.issue(token.as_deref(), None).await;
        assert_eq!(response.status(), status, "request {n}");
    }
    assert_eq!(app.audit_rows().await.len(), 6);
    app
}

/// Runs `ecr-token-broker [--config FILE] ARGS` against the database at `database_url`,
/// with a config file of its own and none of the harness's environment.
pub async fn run(database_url: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[database]
url = "{database_url}"

[audit]
fingerprint_key_id = "test-key"
fingerprint_key = "{FINGERPRINT_KEY}"
chain_key = "{CHAIN_KEY}"
{CI_ISSUER}"#
        ),
    )
    .unwrap();
    tokio::process::Command::new(BINARY)
        .arg("--config")
        .arg(&config)
        .args(args)
        .env_remove("ECR_TOKEN_BROKER_CONFIG")
        .env_remove("ECR_TOKEN_BROKER_DATABASE_URL")
        .env_remove("ECR_TOKEN_BROKER_CHAIN_KEY")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run the binary")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `audit verify ARGS`, which must succeed; returns its output.
pub async fn verifies(database_url: &str, args: &[&str]) -> String {
    let output = run(database_url, &[&["audit", "verify"], args].concat()).await;
    assert!(
        output.status.success(),
        "verify failed:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("audit chain intact"));
    stdout(&output)
}

/// `audit verify`, which must fail; returns the error it printed.
async fn breaks(database_url: &str) -> String {
    let output = run(database_url, &["audit", "verify"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("rows/s"), "{}", stdout(&output));
    stderr(&output)
}

/// A superuser session with the append-only triggers off (replica mode skips ordinary
/// triggers): what someone with full access to the database could do.
async fn owner_session(database_url: &str) -> PgConnection {
    let mut db = PgConnection::connect(database_url).await.unwrap();
    sqlx::raw_sql("SET session_replication_role = replica")
        .execute(&mut db)
        .await
        .unwrap();
    db
}

/// Runs `sql` in an [`owner_session`].
pub async fn tamper(app: &TestApp, sql: &'static str) {
    let mut db = owner_session(&app.database_url).await;
    sqlx::raw_sql(sql).execute(&mut db).await.expect(sql);
    db.close().await.unwrap();
}

async fn scalar<T>(db: &PgPool, sql: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

#[tokio::test]
async fn the_log_the_service_wrote_verifies() {
    let app = app_with_history().await;

    let rows = app.audit_rows().await;
    assert_eq!(
        rows[0]["session_tags"],
        json!({"repo": "acme/api", "actor": "octocat", "workflow": "build-1.yml"}),
        "hashed sorted by key, stored in jsonb's own order"
    );

    let whole = verifies(&app.database_url, &[]).await;
    let spot = verifies(&app.database_url, &["--from-id", "4"]).await;

    assert!(whole.contains("checked 6 rows from the genesis"), "{whole}");
    let db = app.db().await;
    let head: Vec<u8> = scalar(&db, "SELECT row_hash FROM audit_events WHERE id = 6").await;
    assert!(
        whole.contains(&format!(
            "last intact row: id 6, hash {}",
            hex::encode(head)
        )),
        "{whole}"
    );
    assert!(
        spot.contains("checked 3 rows from id 4 (its prev_hash trusted)"),
        "{spot}"
    );
    let missing = run(&app.database_url, &["audit", "verify", "--from-id", "7"]).await;
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no audit row with id 7"));
}

#[tokio::test]
async fn an_edited_row_breaks_the_chain_at_that_row_and_cannot_be_pruned() {
    let app = app_with_history().await;

    tamper(
        &app,
        r#"UPDATE audit_events SET session_tags = session_tags || '{"repo": "evil/api"}' WHERE id = 5"#,
    )
    .await;
    let at_5 = breaks(&app.database_url).await;
    tamper(
        &app,
        "UPDATE audit_events SET reason = 'no_matching_rule' WHERE id = 2",
    )
    .await;
    let at_2 = breaks(&app.database_url).await;

    assert!(
        at_5.contains("id 5: row hash does not match its content (edited?)"),
        "{at_5}"
    );
    assert!(
        at_2.contains("id 2: row hash does not match its content (edited?)"),
        "the first break is reported: {at_2}"
    );
    // The links after the last edit still hold.
    verifies(&app.database_url, &["--from-id", "6"]).await;
    let db = app.db().await;
    let next_month: String = scalar(
        &db,
        "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date::text",
    )
    .await;
    let prune = run(
        &app.database_url,
        &["audit", "prune", "--before", &next_month],
    )
    .await;
    assert!(!prune.status.success());
    assert!(
        stderr(&prune).contains("refusing to prune")
            && stderr(&prune).contains("id 2: row hash does not match"),
        "{}",
        stderr(&prune)
    );
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM audit_events").await,
        6
    );
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM audit_checkpoints").await,
        0
    );
}

/// Columns whose edit `audit verify` catches before it compares the row's MAC, and so names
/// otherwise: the row's place (an edited `id` leaves a gap) and its link to the row before
/// (an edited `prev_hash` no longer points at it). Both are hashed all the same, the id in
/// the row's content and the link as the MAC's first input. `row_hash` is the MAC itself: an
/// edited one no longer matches the content, as with any other column.
const CAUGHT_BEFORE_THE_MAC: [(&str, &str); 2] = [
    (
        "id",
        "id 2: expected id 1 (a row is missing or was inserted)",
    ),
    (
        "prev_hash",
        "id 1: prev_hash does not match the genesis hash",
    ),
];

#[tokio::test]
async fn an_edit_of_any_column_breaks_the_chain_and_restoring_it_mends_it() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    let key = ChainKey::new(&SecretString::from(CHAIN_KEY));
    let limits = WriterLimits {
        queue_capacity: 8,
        refusal_queue_capacity: 1,
        // Never within the test: the aggregate of shed refusals is written at shutdown.
        shed_report_interval: Duration::from_secs(3600),
        max_batch: 8,
        wait: Duration::from_secs(10),
        bounds: AppendBounds::default(),
    };
    let (writer, task) = AuditWriter::spawn(db.clone(), key, limits);
    // Row 1 holds a value in every column but `shed`, and row 2 or 3 another one in each,
    // for the edits below to take.
    // An error, not an issuance, so that the database's check on issued rows (fingerprints
    // and their key) lets every edit through.
    let mut full = crate::audit::record_with_every_field();
    full.decide(Outcome::Error, "aws_unavailable:GetAuthorizationToken", 502);
    full.latency_ms = 12;
    writer.record(full).await.expect("row 1");
    // Row 2 a refusal, row 3 the aggregate with a `shed` value. The writer task cannot run
    // between these hand-offs (a single-threaded runtime), so the first fills the one-place
    // refusal lane and the other two are shed.
    let refusals = (0..3).map(|n| {
        let mut record = AuditRecord::start(&format!("refused-{n}"), None, None);
        record.decide(Outcome::Denied, "missing_token", 401);
        writer.record(record)
    });
    let refused = futures::future::join_all(refusals).await;
    assert!(refused[0].is_ok(), "{refused:?}");
    assert!(refused[1..].iter().all(Result::is_err), "{refused:?}");
    drop(writer);
    task.await.unwrap();
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM audit_events").await,
        3
    );
    verifies(&app.database_url, &[]).await;
    // Every column the table has, whatever the code knows of: one stored outside the MAC
    // would survive its edit.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'audit_events' \
         ORDER BY ordinal_position",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for (column, _) in CAUGHT_BEFORE_THE_MAC {
        assert!(columns.iter().any(|c| c == column), "{column}: {columns:?}");
    }
    let mut owner = owner_session(&app.database_url).await;
    sqlx::raw_sql("CREATE TEMP TABLE original AS SELECT * FROM audit_events")
        .execute(&mut owner)
        .await
        .unwrap();

    let mut unnoticed = Vec::new();
    for column in &columns {
        // Row 1's value becomes another row's, so that it is one the service could have
        // written and reads back: only the MAC can tell. (The names are the table's own.)
        let edited = sqlx::query(&format!(
            "UPDATE audit_events e SET \"{column}\" = other.\"{column}\" \
             FROM (SELECT o.\"{column}\" FROM original o, original one \
                   WHERE one.id = 1 AND o.\"{column}\" IS DISTINCT FROM one.\"{column}\" \
                   ORDER BY o.id LIMIT 1) other \
             WHERE e.id = 1"
        ))
        .execute(&mut owner)
        .await
        .unwrap_or_else(|e| panic!("editing {column}: {e}"));
        assert_eq!(
            edited.rows_affected(),
            1,
            "no row differs from row 1 in {column}: give one a value of its own above"
        );
        let verify = run(&app.database_url, &["audit", "verify"]).await;
        let expected = CAUGHT_BEFORE_THE_MAC
            .iter()
            .find(|(caught, _)| caught == column)
            .map_or("id 1: row hash does not match its content", |(_, how)| how);
        if verify.status.code() != Some(1) || !stderr(&verify).contains(expected) {
            unnoticed.push(format!("{column}: {}{}", stdout(&verify), stderr(&verify)));
        }
        sqlx::raw_sql("DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM original")
            .execute(&mut owner)
            .await
            .unwrap();
        verifies(&app.database_url, &[]).await;
    }

    assert!(
        unnoticed.is_empty(),
        "edits not caught as they should be:\n{unnoticed:#?}"
    );
}

#[tokio::test]
async fn a_deleted_row_breaks_the_chain_at_the_next_id() {
    let app = app_with_history().await;

    tamper(&app, "DELETE FROM audit_events WHERE id = 3").await;

    let error = breaks(&app.database_url).await;
    assert!(
        error.contains("id 4: expected id 3 (a row is missing or was inserted)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_row_forged_into_the_middle_breaks_the_chain_there() {
    let app = app_with_history().await;

    // Make room at id 3, then fill it with a copy of row 1.
    tamper(
        &app,
        "UPDATE audit_events SET id = id + 1000 WHERE id >= 3;
         UPDATE audit_events SET id = id - 999 WHERE id > 1000;
         CREATE TEMP TABLE forged AS SELECT * FROM audit_events WHERE id = 1;
         UPDATE forged SET id = 3, request_id = 'forged';
         INSERT INTO audit_events SELECT * FROM forged",
    )
    .await;

    let error = breaks(&app.database_url).await;
    assert!(
        error.contains("id 3: prev_hash does not match id 2's hash (reordered or inserted?)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_row_forged_onto_the_end_breaks_the_chain_there() {
    let app = app_with_history().await;

    // A copy of row 2 as id 7, even pointing at row 6's hash.
    tamper(
        &app,
        "CREATE TEMP TABLE forged AS SELECT * FROM audit_events WHERE id = 2;
         UPDATE forged SET id = 7, prev_hash = (SELECT row_hash FROM audit_events WHERE id = 6);
         INSERT INTO audit_events SELECT * FROM forged",
    )
    .await;

    let error = breaks(&app.database_url).await;
    assert!(
        error.contains("id 7: row hash does not match its content (edited?)"),
        "{error}"
    );
}

#[tokio::test]
async fn swapped_rows_break_the_chain_at_the_first_of_them() {
    let app = app_with_history().await;

    tamper(
        &app,
        "CREATE TEMP TABLE swapped AS SELECT * FROM audit_events WHERE id IN (3, 4);
         UPDATE swapped SET id = 7 - id;
         DELETE FROM audit_events WHERE id IN (3, 4);
         INSERT INTO audit_events SELECT * FROM swapped",
    )
    .await;

    let db = app.db().await;
    let denied_at_4: String = scalar(&db, "SELECT outcome FROM audit_events WHERE id = 4").await;
    assert_eq!(denied_at_4, "denied", "the rows were swapped");
    let error = breaks(&app.database_url).await;
    assert!(
        error.contains("id 3: prev_hash does not match id 2's hash (reordered or inserted?)"),
        "{error}"
    );
}

#[tokio::test]
async fn prune_drops_the_month_leaves_a_checkpoint_and_the_chain_goes_on() {
    let app = app_with_history().await;
    let db = app.db().await;
    let (this_month, next_month): (String, String) = sqlx::query_as(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM'), \
         (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date::text",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let head: Vec<u8> = scalar(&db, "SELECT row_hash FROM audit_events WHERE id = 6").await;
    let mid_month = format!("{}15", &next_month[..8]);

    let refused = run(
        &app.database_url,
        &["audit", "prune", "--before", &mid_month],
    )
    .await;
    let output = run(
        &app.database_url,
        &["audit", "prune", "--before", &next_month],
    )
    .await;

    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not the first day of a month"),
        "{}",
        stderr(&refused)
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("verified 6 rows")
            && printed.contains(&format!("dropped audit_events_{this_month} (6 rows)"))
            && printed.contains("the chain now starts at id 7"),
        "{printed}"
    );
    let checkpoint: (i64, Vec<u8>, i64, String) = sqlx::query_as(
        "SELECT id, row_hash, pruned_rows, pruned_before::date::text FROM audit_checkpoints",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(checkpoint, (6, head, 6, next_month.clone()));
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM audit_events").await,
        0
    );
    let after = verifies(&app.database_url, &[]).await;
    assert!(
        after.contains("checked 0 rows from checkpoint 6"),
        "{after}"
    );

    let response = app.issue(Some(&token(&app, "late.yml")), None).await;
    assert_eq!(response.status(), 200);

    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], 7);
    let partition: String = scalar(
        &db,
        "SELECT tableoid::regclass::text FROM audit_events WHERE id = 7",
    )
    .await;
    assert_eq!(
        partition,
        format!("audit_events_{this_month}"),
        "not the default"
    );
    let after = verifies(&app.database_url, &[]).await;
    assert!(
        after.contains("checked 1 rows from checkpoint 6"),
        "{after}"
    );
    let again = run(
        &app.database_url,
        &["audit", "prune", "--before", &next_month],
    )
    .await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("the chain now starts at id 8"));
    verifies(&app.database_url, &[]).await;
}

#[tokio::test]
async fn migrate_keeps_partitions_ready_for_the_coming_months() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    let furthest: String = scalar(
        &db,
        "SELECT to_char(now() AT TIME ZONE 'UTC' + interval '3 months', '\"audit_events_\"YYYY_MM')",
    )
    .await;
    sqlx::query(&format!("DROP TABLE {furthest}"))
        .execute(&db)
        .await
        .unwrap();

    for _ in 0..2 {
        let output = run(&app.database_url, &["migrate"]).await;
        assert!(output.status.success(), "{}", stderr(&output));
    }

    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'audit_events'::regclass ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(partitions.len(), 5, "{partitions:?}");
    assert!(partitions.contains(&furthest), "{partitions:?}");
    assert!(partitions.contains(&"audit_events_default".to_owned()));
}

/// A login role in the service's group role, unique to the test, which drops it.
pub(crate) async fn service_login_role(admin: &PgPool) -> String {
    let name = format!("ecrtb_app_{}", uuid::Uuid::new_v4().simple());
    // The name is ours (a UUID), not input.
    sqlx::query(&format!(
        "CREATE ROLE {name} LOGIN IN ROLE ecr_token_broker_app"
    ))
    .execute(admin)
    .await
    .unwrap();
    name
}

pub(crate) fn url_as(database_url: &str, role: &str) -> String {
    let mut url = reqwest::Url::parse(database_url).unwrap();
    url.set_username(role).unwrap();
    url.to_string()
}

pub(crate) fn is_permission_denied(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.code().as_deref() == Some("42501"))
}

#[tokio::test]
async fn the_service_role_may_only_add_and_read_rows() {
    let app = app_with_history().await;
    let admin = PgPool::connect(&admin_database_url()).await.unwrap();
    let role = service_login_role(&admin).await;
    let role_url = url_as(&app.database_url, &role);
    let service_db = PgPoolOptions::new()
        .max_connections(1)
        .connect(&role_url)
        .await
        .unwrap();
    let (this_month, next_month): (String, String) = sqlx::query_as(
        "SELECT to_char(now() AT TIME ZONE 'UTC', '\"audit_events_\"YYYY_MM'), \
         (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date::text",
    )
    .fetch_one(&service_db)
    .await
    .unwrap();

    let mut record = AuditRecord::start("as-the-service-role", None, None);
    record.decide(Outcome::Denied, "missing_token", 401);
    let key = ChainKey::new(&SecretString::from(CHAIN_KEY));
    let ids = ChainAppender::new(&service_db, &AppendBounds::default())
        .append(&key, &[&record])
        .await
        .expect("INSERT")
        .iter()
        .map(|row| row.entry().id)
        .collect::<Vec<_>>();
    let count: i64 = scalar(&service_db, "SELECT count(*) FROM audit_events").await;
    let mut refused = Vec::new();
    for statement in [
        "UPDATE audit_events SET reason = 'x'".to_owned(),
        "DELETE FROM audit_events".to_owned(),
        "TRUNCATE audit_events".to_owned(),
        format!("UPDATE {this_month} SET reason = 'x'"),
        format!("DELETE FROM {this_month}"),
        "DELETE FROM audit_events_default".to_owned(),
        format!("DROP TABLE {this_month}"),
        "INSERT INTO audit_checkpoints (id, row_hash, pruned_before, pruned_rows) \
         VALUES (100, '\\x00', now(), 0)"
            .to_owned(),
        "DELETE FROM audit_checkpoints".to_owned(),
        "UPDATE audit_events_unchained SET reason = 'x'".to_owned(),
    ] {
        let error = sqlx::query(&statement)
            .execute(&service_db)
            .await
            .expect_err(&statement);
        refused.push((statement, error));
    }
    let prune = run(&role_url, &["audit", "prune", "--before", &next_month]).await;
    let verify = run(&role_url, &["audit", "verify"]).await;
    let export = run(&role_url, &["audit", "export"]).await;
    service_db.close().await;

    let as_role = TestApp::builder()
        .rules(RULES)
        .database_url(&role_url)
        .spawn()
        .await;
    let response = as_role
        .issue(
            Some(
                &as_role
                    .issuer
                    .token()
                    .claim("job", json!({"workflow": "r.yml"}))
                    .sign(),
            ),
            None,
        )
        .await;
    let status = response.status();
    drop(as_role);
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&admin)
        .await
        .unwrap();

    assert_eq!(ids, vec![7]);
    assert_eq!(count, 7);
    for (statement, error) in &refused {
        // Refused by privileges, before any trigger could run.
        assert!(is_permission_denied(error), "{statement}: {error}");
    }
    assert!(!prune.status.success());
    assert!(
        stderr(&prune).contains("permission denied"),
        "{}",
        stderr(&prune)
    );
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(stdout(&verify).contains("checked 7 rows"));
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(
        stdout(&export).lines().count(),
        7,
        "export needs only reads"
    );
    assert_eq!(status, 200, "the service runs as the role");
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[7]["outcome"], "issued");
    verifies(&app.database_url, &[]).await;
}

/// How fast `audit verify` walks a long chain. Run it by name:
/// `cargo test --release --test api verify_throughput -- --ignored --nocapture`
/// (`CHAIN_ROWS` sets the number of rows, 200000 by default).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: it writes a long chain"]
async fn verify_throughput() {
    let rows: usize = std::env::var("CHAIN_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let app = TestApp::spawn().await;
    let db = app.db().await;
    let key = ChainKey::new(&SecretString::from(CHAIN_KEY));
    let started = Instant::now();
    let mut appender = ChainAppender::new(&db, &AppendBounds::default());
    for batch in 0..rows.div_ceil(1000) {
        let records: Vec<AuditRecord> = (0..1000.min(rows - batch * 1000))
            .map(|n| {
                let mut r = AuditRecord::start(
                    &format!("fill-{batch}-{n}"),
                    Some("10.1.2.3".parse().unwrap()),
                    Some("docker/27.0"),
                );
                r.issuer = Some("test".to_owned());
                r.subject = Some("repo:acme/api:ref:refs/heads/main".to_owned());
                r.rule = Some("acme-main".to_owned());
                r.regions = vec!["us-east-1".to_owned()];
                r.registry_ids = vec!["111122223333".to_owned()];
                r.session_tags = [
                    ("repo".to_owned(), "acme/api".to_owned()),
                    ("actor".to_owned(), "octocat".to_owned()),
                ]
                .into_iter()
                .collect();
                r.token_fingerprints = vec!["ab".repeat(32)];
                r.fingerprint_key_id = Some("test-key".to_owned());
                r.decide(Outcome::Issued, "issued", 200);
                r
            })
            .collect();
        let records: Vec<&AuditRecord> = records.iter().collect();
        appender.append(&key, &records).await.unwrap();
    }
    println!("appended {rows} rows in {:.1?}", started.elapsed());

    let started = Instant::now();
    let output = verifies(&app.database_url, &[]).await;
    println!("{output}(the binary ran {:.2?})", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_writing_at_once_make_one_valid_chain() {
    let first = TestApp::spawn().await;
    let second = TestApp::builder()
        .database_url(&first.database_url)
        .spawn()
        .await;
    let issue_many = |app: &TestApp, replica: usize| {
        let requests: Vec<_> = (0..40)
            .map(|n| {
                let request = app
                    .http
                    .post(app.url("/v1/ecr/authorization-token"))
                    .bearer_auth(app.token())
                    .header("x-request-id", format!("replica-{replica}-{n}"))
                    .send();
                async move { request.await.map(|r| r.status().as_u16()) }
            })
            .collect();
        futures::future::join_all(requests)
    };

    let (a, b) = tokio::join!(issue_many(&first, 1), issue_many(&second, 2));

    assert!(
        a.iter().chain(&b).all(|s| matches!(s, Ok(200))),
        "{a:?} {b:?}"
    );
    assert_eq!(first.audit_rows().await.len(), 80);
    let report = verifies(&first.database_url, &[]).await;
    assert!(report.contains("checked 80 rows"), "{report}");
}
