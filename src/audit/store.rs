use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Executor, FromRow, PgPool, Row};

use super::AuditRecord;
use super::chain::{ChainKey, ChainedRow, Checkpoint, GENESIS, Hash, to_micros};
use crate::config::AuditChainConfig;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Serialises chain appends across every writer of every replica, and `audit prune` against
/// them; taken per transaction.
pub(super) const CHAIN_LOCK: i64 = 0x6563_725f_6175_6469; // "ecr_audi"

/// How an appending session names itself in `pg_stat_activity` while it is in its
/// transaction, so that only appenders are ever ended as stalled (never `audit prune`).
const APPENDER: &str = "ecr-token-broker-append";

/// How many months of partitions `migrate` keeps ready beyond the current one.
const PARTITION_MONTHS_AHEAD: i32 = 3;

/// Applies pending migrations, then creates the audit partitions for the coming months, so
/// that running `migrate` monthly keeps rows out of the default partition. Idempotent.
pub(crate) async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")?;
    sqlx::query("SELECT audit_ensure_partitions($1)")
        .bind(PARTITION_MONTHS_AHEAD)
        .execute(pool)
        .await
        .context("creating the audit partitions ahead")?;
    Ok(())
}

/// How long an append may wait on the database, whatever the server's defaults: for the
/// chain lock, for any statement, and idle in its transaction (its writer cut off, holding
/// the lock that every replica needs).
#[derive(Debug, Clone)]
pub struct AppendBounds {
    /// The transaction's settings and its lock, sent as one round trip.
    setup: String,
    /// How long a lock holder may stay in one state (running one statement, or idle in its
    /// transaction) before the writer that waits for the lock ends its session.
    stalled_after: Duration,
}

impl AppendBounds {
    /// Bounds of `lock`, `statement` and `idle` (each at least a millisecond: Postgres reads
    /// 0 as no limit).
    pub(crate) fn new(lock: Duration, statement: Duration, idle: Duration) -> Self {
        let ms = |d: Duration| d.as_millis().max(1);
        Self {
            setup: format!(
                "SET LOCAL application_name = '{APPENDER}'; \
                 SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; \
                 SET LOCAL idle_in_transaction_session_timeout = {}; \
                 SELECT pg_advisory_xact_lock({CHAIN_LOCK})",
                ms(lock),
                ms(statement),
                ms(idle)
            ),
            stalled_after: statement.max(idle) + lock,
        }
    }
}

impl From<&AuditChainConfig> for AppendBounds {
    fn from(config: &AuditChainConfig) -> Self {
        let ms = |v: std::num::NonZeroU64| Duration::from_millis(v.get());
        Self::new(
            ms(config.lock_timeout_ms),
            ms(config.statement_timeout_ms),
            ms(config.idle_in_transaction_timeout_ms),
        )
    }
}

impl Default for AppendBounds {
    /// The defaults of `[audit_chain]`.
    fn default() -> Self {
        Self::from(&AuditChainConfig::default())
    }
}

/// Statements are plain `sqlx::query` rather than the compile-time checked macros so the
/// crate builds without a database or committed query metadata; the integration tests run
/// every statement against real Postgres.
///
/// Appends `records` to the chain in one transaction and returns their ids once it has
/// committed. Several replicas may call this at once: the advisory lock makes each batch
/// continue exactly where the previous one ended, and the database refuses a batch that
/// does not (see the `audit_events_one_chain` trigger).
pub async fn append(
    pool: &PgPool,
    key: &ChainKey,
    bounds: &AppendBounds,
    records: &[&AuditRecord],
) -> Result<Vec<i64>, sqlx::Error> {
    // READ COMMITTED whatever the server's default: each statement sees what committed
    // before it, so the head is read after the lock is granted. Under REPEATABLE READ the
    // snapshot would be taken before the lock, and two writers would continue the same head.
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    // The bounds are numbers and the lock key a constant: no input reaches this text.
    if let Err(error) = tx.execute(bounds.setup.as_str()).await {
        if is_lock_timeout(&error) {
            drop(tx);
            end_stalled_holder(pool, bounds).await;
        }
        return Err(error);
    }
    let (mut id, mut prev, last_recorded_at) = chain_head(&mut tx, key).await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    // Never earlier than the row before, so each monthly partition holds one stretch of chain.
    let recorded_at = to_micros(last_recorded_at.map_or(now, |last| now.max(last)));

    let mut rows = Vec::with_capacity(records.len());
    for &record in records {
        id += 1;
        let row = ChainedRow::new(id, recorded_at, record.clone());
        let hash = key.row_hash(&prev, &row);
        rows.push(InsertRow {
            row,
            prev_hash: ByteaHex(prev),
            row_hash: ByteaHex(hash),
        });
        prev = hash;
    }
    // One parameter and one statement text whatever the batch size, so Postgres plans it
    // once: a multi-row VALUES list would be a new statement, parsed and planned, per size.
    sqlx::query(
        "INSERT INTO audit_events SELECT * FROM jsonb_populate_recordset(NULL::audit_events, $1)",
    )
    .bind(Json(&rows))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| r.row.id).collect())
}

fn is_lock_timeout(error: &sqlx::Error) -> bool {
    // lock_not_available
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("55P03"))
}

/// Ends the session of an appender that has held the chain lock in one state for longer than
/// the bounds allow. Postgres's own timeouts cover a statement that runs too long and a
/// transaction left idle, but not a session whose client stopped in the middle of sending a
/// message: the server waits for the rest of it, untimed, while every replica's appends time
/// out on the lock. Its transaction rolls back, so its batch is never committed and none of
/// its callers got a token for it.
async fn end_stalled_holder(pool: &PgPool, bounds: &AppendBounds) {
    let ended = sqlx::query_scalar::<_, i32>(
        // Materialized, so that the filter has run in full before anything is ended.
        "WITH stalled AS MATERIALIZED ( \
             SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.classid = ($1 >> 32)::oid AND l.objid = ($1 & 4294967295)::oid \
               AND a.application_name = $2 \
               AND a.state_change < clock_timestamp() - make_interval(secs => $3)) \
         SELECT pid FROM stalled WHERE pg_terminate_backend(pid)",
    )
    .bind(CHAIN_LOCK)
    .bind(APPENDER)
    .bind(bounds.stalled_after.as_secs_f64())
    .fetch_all(pool)
    .await;
    match ended {
        Ok(pids) if pids.is_empty() => {}
        Ok(pids) => tracing::warn!(
            ?pids,
            stalled_for_more_than_ms = bounds.stalled_after.as_millis(),
            "ended the session of a stalled audit appender that held the chain lock"
        ),
        Err(error) => tracing::warn!(
            error = %error,
            "could not look for or end a stalled holder of the audit chain lock"
        ),
    }
}

/// A row as `jsonb_populate_recordset` reads it: the record's fields under their column
/// names, and the two hashes.
#[derive(Serialize)]
struct InsertRow {
    #[serde(flatten)]
    row: ChainedRow,
    prev_hash: ByteaHex,
    row_hash: ByteaHex,
}

/// A hash in the text form of `bytea`.
struct ByteaHex(Hash);

impl Serialize for ByteaHex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("\\x{}", hex::encode(self.0)))
    }
}

/// The last row's id, hash and time; or the newest checkpoint's; or the genesis.
pub(super) async fn chain_head(
    conn: &mut sqlx::PgConnection,
    key: &ChainKey,
) -> Result<(i64, Hash, Option<DateTime<Utc>>), sqlx::Error> {
    let last =
        sqlx::query("SELECT id, row_hash, recorded_at FROM audit_events ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(row) = last {
        return Ok((
            row.try_get("id")?,
            hash(row.try_get("row_hash")?)?,
            Some(row.try_get("recorded_at")?),
        ));
    }
    Ok(match latest_checkpoint(conn, key).await? {
        Some(checkpoint) => (checkpoint.id, checkpoint.row_hash, None),
        None => (0, GENESIS, None),
    })
}

/// The newest checkpoint: where the chain continues after `audit prune`. One whose MAC is
/// not the chain key's (forged, or written before checkpoints were keyed) is an error, so
/// that nobody continues or verifies the chain from it.
pub(super) async fn latest_checkpoint(
    conn: &mut sqlx::PgConnection,
    key: &ChainKey,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT id, row_hash, pruned_before, pruned_rows, hmac \
         FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let checkpoint = Checkpoint {
        id: row.try_get("id")?,
        row_hash: hash(row.try_get("row_hash")?)?,
        pruned_before: row.try_get("pruned_before")?,
        pruned_rows: row.try_get("pruned_rows")?,
    };
    let stored: Option<Vec<u8>> = row.try_get("hmac")?;
    if stored.is_none_or(|mac| !key.checkpoint_mac_is(&checkpoint, &mac)) {
        return Err(sqlx::Error::Decode(
            format!(
                "checkpoint {} does not carry the chain key's MAC (forged, or written before \
                 checkpoints were keyed)",
                checkpoint.id
            )
            .into(),
        ));
    }
    Ok(Some(checkpoint))
}

/// A stored hash, checked for length.
pub(super) fn hash(bytes: Vec<u8>) -> Result<Hash, sqlx::Error> {
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode("a stored hash is not 32 bytes".into()))
}

/// The rows after id `$1`, and recorded before `$2` unless it is null, in chain order; read
/// them as [`StoredRow`]s.
pub(super) const SELECT_CHAIN: &str = "SELECT * FROM audit_events \
     WHERE id > $1 AND ($2::timestamptz IS NULL OR recorded_at < $2) ORDER BY id";

/// One stored row: its content as it was hashed, and the two hashes stored beside it.
#[derive(Debug)]
pub(super) struct StoredRow {
    pub(super) row: ChainedRow,
    pub(super) prev_hash: Hash,
    pub(super) row_hash: Hash,
}

impl<'r> FromRow<'r, PgRow> for StoredRow {
    fn from_row(r: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            row: ChainedRow::from_row(r)?,
            prev_hash: hash(r.try_get("prev_hash")?)?,
            row_hash: hash(r.try_get("row_hash")?)?,
        })
    }
}
