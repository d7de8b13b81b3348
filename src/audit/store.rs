use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use super::AuditRecord;
use super::chain::{ChainKey, ChainedRow, GENESIS, Hash, to_micros};

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Serialises chain appends across every writer of every replica, and `audit prune` against
/// them; taken per transaction.
pub(super) const CHAIN_LOCK: i64 = 0x6563_725f_6175_6469; // "ecr_audi"

/// How many months of partitions `migrate` keeps ready beyond the current one.
const PARTITION_MONTHS_AHEAD: i32 = 3;

/// Applies pending migrations, then creates the audit partitions for the coming months, so
/// that running `migrate` monthly keeps rows out of the default partition. Idempotent.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")?;
    sqlx::query("SELECT audit_ensure_partitions($1)")
        .bind(PARTITION_MONTHS_AHEAD)
        .execute(pool)
        .await
        .context("creating the audit partitions ahead")?;
    Ok(())
}

/// Statements are plain `sqlx::query` rather than the compile-time checked macros so the
/// crate builds without a database or committed query metadata; the integration tests run
/// every statement against real Postgres.
///
/// Appends `records` to the chain in one transaction and returns their ids once it has
/// committed. Several replicas may call this at once: the advisory lock makes each batch
/// continue exactly where the previous one ended.
pub async fn append(
    pool: &PgPool,
    key: &ChainKey,
    records: &[AuditRecord],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut *tx)
        .await?;
    let (mut id, mut prev, last_recorded_at) = chain_head(&mut tx).await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    // Never earlier than the row before, so each monthly partition holds one stretch of chain.
    let recorded_at = to_micros(last_recorded_at.map_or(now, |last| now.max(last)));

    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        id += 1;
        let row = ChainedRow::from_record(record, id, recorded_at);
        let hash = key.row_hash(&prev, &row);
        rows.push((row, prev, hash));
        prev = hash;
    }
    // One parameter and one statement text whatever the batch size, so Postgres plans it
    // once: a multi-row VALUES list would be a new statement, parsed and planned, per size.
    let batch: Vec<serde_json::Value> = rows
        .iter()
        .map(|(row, prev, hash)| row_json(row, prev, hash))
        .collect();
    sqlx::query(
        "INSERT INTO audit_events SELECT * FROM jsonb_populate_recordset(NULL::audit_events, $1)",
    )
    .bind(serde_json::Value::Array(batch))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.iter().map(|(row, _, _)| row.id).collect())
}

/// A row as `jsonb_populate_recordset` reads it: column names as keys, timestamps with
/// microseconds, hashes as bytea hex.
fn row_json(row: &ChainedRow, prev: &Hash, hash: &Hash) -> serde_json::Value {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    serde_json::json!({
        "id": row.id,
        "recorded_at": time(row.recorded_at),
        "occurred_at": time(row.occurred_at),
        "request_id": row.request_id,
        "outcome": row.outcome,
        "reason": row.reason,
        "http_status": row.http_status,
        "issuer": row.issuer,
        "subject": row.subject,
        "rule": row.rule,
        "role_arn": row.role_arn,
        "session_name": row.session_name,
        "regions": row.regions,
        "registry_ids": row.registry_ids,
        "access": row.access,
        "repositories": row.repositories,
        "session_tags": row.session_tags.as_deref().map(tags_json),
        "proxy_endpoints": row.proxy_endpoints,
        "expires_at": row.expires_at.map(time),
        "token_fingerprints": row.token_fingerprints,
        "fingerprint_key_id": row.fingerprint_key_id,
        "from_cache": row.from_cache,
        "client_addr": row.client_addr.map(|a| a.to_string()),
        "user_agent": row.user_agent,
        "latency_ms": row.latency_ms,
        "prev_hash": format!("\\x{}", hex::encode(prev)),
        "row_hash": format!("\\x{}", hex::encode(hash)),
    })
}

/// The last row's id, hash and time; or the newest checkpoint's; or the genesis.
async fn chain_head(
    tx: &mut sqlx::PgConnection,
) -> Result<(i64, Hash, Option<DateTime<Utc>>), sqlx::Error> {
    let last =
        sqlx::query("SELECT id, row_hash, recorded_at FROM audit_events ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(row) = last {
        return Ok((
            row.try_get("id")?,
            hash(row.try_get("row_hash")?)?,
            Some(row.try_get("recorded_at")?),
        ));
    }
    let checkpoint =
        sqlx::query("SELECT id, row_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    match checkpoint {
        Some(row) => Ok((row.try_get("id")?, hash(row.try_get("row_hash")?)?, None)),
        None => Ok((0, GENESIS, None)),
    }
}

/// A stored hash, checked for length.
pub(super) fn hash(bytes: Vec<u8>) -> Result<Hash, sqlx::Error> {
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode("a stored hash is not 32 bytes".into()))
}

/// Session tags as stored: a JSON object.
pub(super) fn tags_json(tags: &[(String, String)]) -> serde_json::Value {
    tags.iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect()
}

/// The rows after id `$1`, and recorded before `$2` unless it is null, in chain order; read
/// them with [`StoredRow::decode`].
pub(super) const SELECT_CHAIN: &str = "SELECT id, recorded_at, occurred_at, request_id, outcome, \
     reason, http_status, issuer, subject, rule, role_arn, session_name, regions, registry_ids, \
     access, repositories, session_tags, proxy_endpoints, expires_at, token_fingerprints, \
     fingerprint_key_id, from_cache, client_addr, user_agent, latency_ms, prev_hash, row_hash \
     FROM audit_events WHERE id > $1 AND ($2::timestamptz IS NULL OR recorded_at < $2) \
     ORDER BY id";

/// One stored row: its content as it was hashed, and the two hashes stored beside it.
#[derive(Debug)]
pub(super) struct StoredRow {
    pub(super) row: ChainedRow,
    pub(super) prev_hash: Hash,
    pub(super) row_hash: Hash,
}

impl StoredRow {
    /// Reads a row of [`SELECT_CHAIN`] back into exactly the form [`append`] hashed.
    /// Columns are taken by position, in the query's order: by name costs a lookup per
    /// column and row, a good part of `audit verify`'s time.
    pub(super) fn decode(r: &PgRow) -> Result<Self, sqlx::Error> {
        // A JSON object has unique keys and a BTreeMap iterates them in byte order: the
        // same list as `from_record`'s sorted tags. `append` never stores an empty object.
        let tags: Option<Json<BTreeMap<String, String>>> = r.try_get(16)?;
        let row = ChainedRow {
            id: r.try_get(0)?,
            recorded_at: r.try_get(1)?,
            occurred_at: r.try_get(2)?,
            request_id: r.try_get(3)?,
            outcome: r.try_get(4)?,
            reason: r.try_get(5)?,
            http_status: r.try_get(6)?,
            issuer: r.try_get(7)?,
            subject: r.try_get(8)?,
            rule: r.try_get(9)?,
            role_arn: r.try_get(10)?,
            session_name: r.try_get(11)?,
            regions: r.try_get(12)?,
            registry_ids: r.try_get(13)?,
            access: r.try_get(14)?,
            repositories: r.try_get(15)?,
            session_tags: tags.map(|Json(tags)| tags.into_iter().collect()),
            proxy_endpoints: r.try_get(17)?,
            expires_at: r.try_get(18)?,
            token_fingerprints: r.try_get(19)?,
            fingerprint_key_id: r.try_get(20)?,
            from_cache: r.try_get(21)?,
            client_addr: r.try_get(22)?,
            user_agent: r.try_get(23)?,
            latency_ms: r.try_get(24)?,
        };
        Ok(Self {
            row,
            prev_hash: hash(r.try_get(25)?)?,
            row_hash: hash(r.try_get(26)?)?,
        })
    }
}

impl ChainedRow {
    /// The row a record becomes at chain position `id`.
    pub fn from_record(r: &AuditRecord, id: i64, recorded_at: DateTime<Utc>) -> Self {
        let mut tags = r.session_tags.clone();
        tags.sort();
        Self {
            id,
            recorded_at,
            occurred_at: to_micros(r.occurred_at),
            request_id: r.request_id.clone(),
            outcome: r.outcome.as_str().to_owned(),
            reason: r.reason.clone(),
            http_status: i16::try_from(r.http_status).unwrap_or(i16::MAX),
            issuer: r.issuer.clone(),
            subject: r.subject.clone(),
            rule: r.rule.clone(),
            role_arn: r.role_arn.clone(),
            session_name: r.session_name.clone(),
            regions: r.regions.clone(),
            registry_ids: r.registry_ids.clone(),
            access: r.access.clone(),
            repositories: r.repositories.clone(),
            session_tags: (!tags.is_empty()).then_some(tags),
            proxy_endpoints: r.proxy_endpoints.clone(),
            expires_at: r.expires_at.map(to_micros),
            token_fingerprints: r.token_fingerprints.clone(),
            fingerprint_key_id: r.fingerprint_key_id.clone(),
            from_cache: r.from_cache,
            client_addr: r.client_addr,
            user_agent: r.user_agent.clone(),
            latency_ms: r.latency_ms,
        }
    }
}
