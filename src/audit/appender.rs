//! Appending batches to the chain, in one round trip to the database when nothing else has
//! appended since this appender's last batch.
//!
//! An appender keeps a session of its own, set up once: named (so that a stalled one can be
//! found), bounded (lock, statement and idle timeouts) and READ COMMITTED whatever the
//! server's default. It remembers the head its last batch left. The next batch is hashed on
//! from there and inserted by one statement that takes the writers' lock first; the database
//! refuses it if the chain no longer ends there (the `audit_events_one_chain` trigger), and
//! then the batch is appended the long way: in a transaction that takes the lock, reads the
//! head, and inserts after it.

use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use super::AuditRecord;
use super::chain::{ChainKey, ChainedRow, to_micros};
use super::columns::insert;
use super::store::{CHAIN_LOCK, ChainHead, StoredRow, chain_head};

/// How an appender's session names itself in `pg_stat_activity`, so that only appenders are
/// ever ended as stalled (never `audit prune`).
pub(super) const APPENDER: &str = "ecr-token-broker-append";

/// How long an append may wait on the database, whatever the server's defaults: for the
/// chain lock, for any statement, and idle in its transaction (its writer cut off, holding
/// the lock that every replica needs).
#[derive(Debug, Clone)]
pub struct AppendBounds {
    lock: Duration,
    statement: Duration,
    idle: Duration,
}

impl AppendBounds {
    /// Bounds of `lock`, `statement` and `idle`.
    pub(crate) fn new(lock: Duration, statement: Duration, idle: Duration) -> Self {
        Self {
            lock,
            statement,
            idle,
        }
    }

    /// The appender's session settings (each at least a millisecond: Postgres reads 0 as no
    /// limit). The backslash keeps "read committed" one value in the startup options.
    fn session_options(&self) -> [(&'static str, String); 4] {
        let ms = |d: Duration| d.as_millis().max(1).to_string();
        [
            ("lock_timeout", ms(self.lock)),
            ("statement_timeout", ms(self.statement)),
            ("idle_in_transaction_session_timeout", ms(self.idle)),
            (
                "default_transaction_isolation",
                "read\\ committed".to_owned(),
            ),
        ]
    }

    /// How long a lock holder may stay in one state (running one statement, or idle in its
    /// transaction) before an appender that waits for the lock ends its session.
    fn stalled_after(&self) -> Duration {
        self.statement.max(self.idle) + self.lock
    }
}

impl From<&super::AuditChainConfig> for AppendBounds {
    fn from(config: &super::AuditChainConfig) -> Self {
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
        Self::from(&super::AuditChainConfig::default())
    }
}

/// Appends batches to the chain over a session of its own. Several appenders (in one
/// replica or many) may append at once: the writers' lock makes each batch continue exactly
/// where the previous one ended, and the database refuses a batch that does not.
pub struct ChainAppender {
    /// Where stalled lock holders are looked for.
    pool: PgPool,
    options: PgConnectOptions,
    stalled_after: Duration,
    /// The session, once opened; dropped after any error, so none is reused in a state
    /// nobody knows.
    conn: Option<PgConnection>,
    /// Where this appender's last batch left the chain.
    head: Option<ChainHead>,
}

impl ChainAppender {
    /// An appender reaching the database as `pool` does. It connects on its first append.
    pub fn new(pool: &PgPool, bounds: &AppendBounds) -> Self {
        let options = (*pool.connect_options())
            .clone()
            .application_name(APPENDER)
            .options(bounds.session_options());
        Self {
            pool: pool.clone(),
            options,
            stalled_after: bounds.stalled_after(),
            conn: None,
            head: None,
        }
    }

    /// Appends `records` and returns their rows as committed, in chain order.
    pub async fn append(
        &mut self,
        key: &ChainKey,
        records: &[&AuditRecord],
    ) -> Result<Vec<StoredRow>, sqlx::Error> {
        let appended = self.try_append(key, records).await;
        if let Err(error) = &appended {
            self.conn = None;
            self.head = None;
            if is_lock_timeout(error) {
                end_stalled_holder(&self.pool, self.stalled_after).await;
            }
        }
        appended
    }

    async fn try_append(
        &mut self,
        key: &ChainKey,
        records: &[&AuditRecord],
    ) -> Result<Vec<StoredRow>, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.options.connect().await?),
        };
        if let Some(head) = &self.head {
            let batch = Batch::after(key, head, records);
            match insert(CHAIN_LOCK, &batch.rows).execute(&mut *conn).await {
                Ok(_) => return Ok(batch.commit(&mut self.head)),
                Err(error) if chain_moved(&error) => {}
                Err(error) => return Err(error),
            }
        }
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *tx)
            .await?;
        // READ COMMITTED: read after the lock was granted, this is the chain's real head.
        let head = chain_head(&mut tx, key).await?;
        let batch = Batch::after(key, &head, records);
        // The lock is held already; taking it again within the transaction costs nothing.
        insert(CHAIN_LOCK, &batch.rows).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(batch.commit(&mut self.head))
    }
}

/// Records chained on after a head, with their hashes.
struct Batch {
    rows: Vec<StoredRow>,
}

impl Batch {
    /// The rows continuing the chain after `head`, recorded now (by this replica's clock,
    /// never earlier than the head, so each monthly partition holds one stretch of chain).
    fn after(key: &ChainKey, head: &ChainHead, records: &[&AuditRecord]) -> Self {
        let now = Utc::now();
        let recorded_at = to_micros(head.recorded_at.map_or(now, |last| now.max(last)));
        let (mut id, mut prev) = (head.id, head.hash);
        let rows = records
            .iter()
            .map(|&record| {
                id += 1;
                let row = ChainedRow::new(id, recorded_at, record.clone());
                let hash = key.row_hash(&prev, &row);
                let prev_hash = std::mem::replace(&mut prev, hash);
                StoredRow {
                    row,
                    prev_hash,
                    row_hash: hash,
                }
            })
            .collect();
        Self { rows }
    }

    /// Once committed: moves `head` to the batch's last row and returns the batch's rows.
    fn commit(self, head: &mut Option<ChainHead>) -> Vec<StoredRow> {
        if let Some(last) = self.rows.last() {
            *head = Some(ChainHead {
                id: last.row.id,
                hash: last.row_hash,
                recorded_at: Some(last.row.recorded_at),
            });
        }
        self.rows
    }
}

fn sqlstate(error: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    match error {
        sqlx::Error::Database(e) => e.code(),
        _ => None,
    }
}

/// The database refused a batch because the chain no longer ends where this appender left
/// it: the trigger's unique_violation, or a serialization failure under a stricter
/// isolation level.
fn chain_moved(error: &sqlx::Error) -> bool {
    matches!(sqlstate(error).as_deref(), Some("23505" | "40001"))
}

/// lock_not_available: the lock was not granted within `lock_timeout`.
fn is_lock_timeout(error: &sqlx::Error) -> bool {
    sqlstate(error).as_deref() == Some("55P03")
}

/// Ends the session of an appender that has held the chain lock in one state for longer than
/// the bounds allow. Postgres's own timeouts cover a statement that runs too long and a
/// transaction left idle, but not a session whose client stopped in the middle of sending a
/// message: the server waits for the rest of it, untimed, while every replica's appends time
/// out on the lock. Its transaction rolls back, so its batch is never committed and none of
/// its callers got a token for it.
///
/// Only a holder of this database's chain lock is ever ended. Advisory locks are per
/// database, so a broker of another database on the same cluster (staging beside production)
/// holds a lock of the same key that blocks nobody here, and its appender, named alike, is
/// none of this broker's business.
async fn end_stalled_holder(pool: &PgPool, stalled_after: Duration) {
    let ended = sqlx::query_scalar::<_, i32>(
        // Materialized, so that the filter has run in full before anything is ended.
        "WITH stalled AS MATERIALIZED ( \
             SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = ($1 >> 32)::oid AND l.objid = ($1 & 4294967295)::oid \
               AND a.application_name = $2 \
               AND a.state_change < clock_timestamp() - make_interval(secs => $3)) \
         SELECT pid FROM stalled WHERE pg_terminate_backend(pid)",
    )
    .bind(CHAIN_LOCK)
    .bind(APPENDER)
    .bind(stalled_after.as_secs_f64())
    .fetch_all(pool)
    .await;
    match ended {
        Ok(pids) if pids.is_empty() => {}
        Ok(pids) => tracing::warn!(
            ?pids,
            stalled_for_more_than_ms = stalled_after.as_millis(),
            "ended the session of a stalled audit appender that held the chain lock"
        ),
        Err(error) => tracing::warn!(
            error = %error,
            "could not look for or end a stalled holder of the audit chain lock"
        ),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration as Span;
    use secrecy::SecretString;

    use super::*;
    use crate::audit::Outcome;

    fn record(n: usize) -> AuditRecord {
        let mut record = AuditRecord::start(&format!("request-{n}"), None, None);
        record.decide(Outcome::Denied, "missing_token", 401);
        record
    }

    #[test]
    fn a_batch_continues_the_chain_from_its_head_and_moves_the_head_on() {
        let key = ChainKey::new(&SecretString::from("chain-key-for-tests-0123456789abcdef"));
        let later = to_micros(Utc::now() + Span::hours(1));
        let head = ChainHead {
            id: 41,
            hash: [7; 32],
            recorded_at: Some(later),
        };
        let records = [record(1), record(2), record(3)];
        let batch = Batch::after(&key, &head, &records.iter().collect::<Vec<_>>());

        let mut prev = head.hash;
        for (row, id) in batch.rows.iter().zip(42..) {
            assert_eq!(row.row.id, id);
            assert_eq!(row.prev_hash, prev);
            assert_eq!(row.row_hash, key.row_hash(&prev, &row.row));
            // A head recorded later by a faster clock is never gone back on.
            assert_eq!(row.row.recorded_at, later);
            prev = row.row_hash;
        }
        let mut moved = Some(head);
        let ids: Vec<i64> = batch.commit(&mut moved).iter().map(|r| r.row.id).collect();
        assert_eq!(ids, [42, 43, 44]);
        assert_eq!(
            moved,
            Some(ChainHead {
                id: 44,
                hash: prev,
                recorded_at: Some(later)
            })
        );
    }

    #[test]
    fn the_session_carries_the_bounds_and_a_holder_is_stalled_past_all_of_them() {
        let ms = Duration::from_millis;
        let bounds = AppendBounds::new(ms(300), ms(5_000), ms(1_000));
        assert_eq!(bounds.stalled_after(), ms(5_300));
        let options = bounds.session_options();
        assert!(options.contains(&("lock_timeout", "300".to_owned())));
        assert!(options.contains(&("idle_in_transaction_session_timeout", "1000".to_owned())));
    }
}
