//! The audit table's storage: embedded migrations and monthly partitions, the chain-lock id
//! (`CHAIN_LOCK`, the advisory lock every appender and `audit prune` take), the chain's head and
//! checkpoints, and `StoredRow`, a row as read back and as shipped in JSON lines.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Row};

use serde::Serialize;

use super::chain::{ChainEntry, ChainKey, ChainedRow, Checkpoint, GENESIS, Hash};

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Serialises chain appends across every writer of every replica, and `audit prune` against
/// them; taken per transaction.
pub(super) const CHAIN_LOCK: i64 = 0x6563_725f_6175_6469; // "ecr_audi"

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

/// Where the chain ends: the id and hash a new row continues from, and when the last row was
/// recorded (none after a checkpoint or at the genesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChainHead {
    pub(super) id: i64,
    pub(super) hash: Hash,
    pub(super) recorded_at: Option<DateTime<Utc>>,
}

/// The last row's id, hash and time; or the newest checkpoint's; or the genesis.
pub(super) async fn chain_head(
    conn: &mut sqlx::PgConnection,
    key: &ChainKey,
) -> Result<ChainHead, sqlx::Error> {
    let last =
        sqlx::query("SELECT id, row_hash, recorded_at FROM audit_events ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(row) = last {
        return Ok(ChainHead {
            id: row.try_get("id")?,
            hash: hash(row.try_get("row_hash")?)?,
            recorded_at: Some(row.try_get("recorded_at")?),
        });
    }
    let (id, hash) = match latest_checkpoint(conn, key).await? {
        Some(checkpoint) => (checkpoint.id, checkpoint.row_hash),
        None => (0, GENESIS),
    };
    Ok(ChainHead {
        id,
        hash,
        recorded_at: None,
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

/// The rows recorded at or after `$1` and before `$2`, either unless null, in chain order:
/// what `audit export` prints. The writer never records a row earlier than the chain's head,
/// so the range is one stretch of the chain.
pub(super) const SELECT_RECORDED: &str = "SELECT * FROM audit_events \
     WHERE ($1::timestamptz IS NULL OR recorded_at >= $1) \
       AND ($2::timestamptz IS NULL OR recorded_at < $2) ORDER BY id";

/// One stored row: its content as it was hashed, and the two hashes stored beside it.
///
/// Serialized, it is the audit log's one JSON line: every column under its name, the hashes
/// as hex. The sink writes it after each commit and `audit export` prints it for stored rows,
/// so that the two are the same lines.
#[derive(Debug, Serialize)]
pub struct StoredRow {
    #[serde(flatten)]
    pub(super) row: ChainedRow,
    #[serde(serialize_with = "hex_hash")]
    pub(super) prev_hash: Hash,
    #[serde(serialize_with = "hex_hash")]
    pub(super) row_hash: Hash,
}

impl StoredRow {
    /// Where the row stands in the chain.
    pub fn entry(&self) -> ChainEntry {
        ChainEntry {
            id: self.row.id,
            hash: self.row_hash,
        }
    }
}

fn hex_hash<S: serde::Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(hash))
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
