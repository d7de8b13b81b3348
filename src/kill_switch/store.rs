//! The stored deny list: entries that deny list admins add through `POST /v1/admin/deny`,
//! kept in Postgres (`deny_entries`) so that every replica sharing the database honours
//! them. Each replica reads the entries in force every `[admin] deny_poll_interval_secs`
//! into its snapshot, and as soon as a change is announced (LISTEN/NOTIFY); polling is the
//! guarantee, the announcement a wake-up. A change made on this replica is put in force
//! here without reading the table back, so that it is in force before it is answered.
//!
//! The poll reads through a pool of its own, so that no caller-driven read (audit queries,
//! the listing) can hold it up; a list not read for `[admin] deny_max_staleness_secs` is
//! not trusted (see [`super::DenyLists::denial`]). What it reads it hands to an install
//! function its caller gives it, which puts the entries in the running snapshot; the store
//! knows nothing of that snapshot.
//!
//! Entries are bound to their issuer's `iss`, and resolved against the running config
//! each time it or the entries change ([`resolve`]).
//!
//! Plain `query`/`query_as` with the column list spelled once here, as the audit store
//! does: every statement is run by the API tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use tokio::task::JoinHandle;

use super::CheckedEntry;
use crate::policy::ClaimPatterns;

/// The channel a change is announced on, so that replicas need not wait for their poll.
const CHANNEL: &str = "ecr_token_broker_deny_entries";

/// Every column of `deny_entries`, in [`StoredEntry`]'s order.
const COLUMNS: &str = "id, issuer, iss, subject, rule, claims, reason, expires_at, added_at, \
     added_by_issuer, added_by_subject, request_id, removed_at, removed_by_issuer, removed_by_subject";

/// One row of `deny_entries`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct StoredEntry {
    /// Its id.
    pub id: i64,
    /// The issuer's configured name when the entry was added.
    pub issuer: String,
    /// The issuer's `iss`, which the entry is bound to; `None` for entries stored before it
    /// was recorded, which are resolved by `issuer`.
    pub iss: Option<String>,
    /// The subject's patterns.
    pub subject: Option<Json<ClaimPatterns>>,
    /// The caller's first matching rule.
    pub rule: Option<String>,
    /// Claim matchers.
    pub claims: Json<BTreeMap<String, ClaimPatterns>>,
    /// Why it was added.
    pub reason: String,
    /// When it stops denying, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was added.
    pub added_at: DateTime<Utc>,
    /// The issuer of the admin who added it.
    pub added_by_issuer: String,
    /// The subject of the admin who added it.
    pub added_by_subject: String,
    /// The request that added it.
    pub request_id: String,
    /// When it was removed, if it was.
    pub removed_at: Option<DateTime<Utc>>,
    /// The issuer of the admin who removed it.
    pub removed_by_issuer: Option<String>,
    /// The subject of the admin who removed it.
    pub removed_by_subject: Option<String>,
}

/// An entry to add: a checked entry, and who adds it.
pub(crate) struct NewEntry<'a> {
    /// What it matches, bound to its issuer's `iss`, and until when.
    pub entry: &'a CheckedEntry,
    /// The admin's issuer.
    pub by_issuer: &'a str,
    /// The admin's subject.
    pub by_subject: &'a str,
    /// The request adding it.
    pub request_id: &'a str,
}

/// The admin who removes an entry.
pub(crate) struct Remover<'a> {
    /// The admin's issuer.
    pub issuer: &'a str,
    /// The admin's subject.
    pub subject: &'a str,
}

/// The `deny_entries` table: changes through the writers' pool, the poll's reads through a
/// pool of its own, the listing through the read-only pool callers share.
#[derive(Debug)]
pub(crate) struct DenyStore {
    pool: PgPool,
    poll_pool: PgPool,
    read_pool: PgPool,
    /// The entries installed last. Held from reading the entries (or taking a change of
    /// this replica) to installing them, so that a slower, older read never replaces a
    /// newer list.
    installed: tokio::sync::Mutex<Vec<StoredEntry>>,
}

impl DenyStore {
    /// The store in the database behind these pools.
    pub(crate) fn new(pool: PgPool, poll_pool: PgPool, read_pool: PgPool) -> Self {
        Self {
            pool,
            poll_pool,
            read_pool,
            installed: tokio::sync::Mutex::default(),
        }
    }

    /// Starts adding `entry`: the row is inserted in the returned transaction, which the
    /// caller commits once the change is in the audit log, so that no change goes
    /// unrecorded.
    pub(crate) async fn add(
        &self,
        entry: &NewEntry<'_>,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, StoredEntry), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let m = &entry.entry.spec;
        let row = sqlx::query_as::<_, StoredEntry>(&format!(
            "INSERT INTO deny_entries (issuer, iss, subject, rule, claims, reason, expires_at, \
             added_by_issuer, added_by_subject, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
        ))
        .bind(m.issuer.as_deref().unwrap_or_default())
        .bind(&entry.entry.iss)
        .bind(m.subject.as_ref().map(Json))
        .bind(m.rule.as_deref())
        .bind(Json(&m.claims))
        .bind(m.reason.as_deref().unwrap_or_default())
        .bind(entry.entry.expires_at)
        .bind(entry.by_issuer)
        .bind(entry.by_subject)
        .bind(entry.request_id)
        .fetch_one(&mut *tx)
        .await?;
        announce(&mut tx).await?;
        Ok((tx, row))
    }

    /// Starts removing entry `id`, in the returned transaction as [`DenyStore::add`] does;
    /// `None` when no entry in force has that id.
    pub(crate) async fn remove(
        &self,
        id: i64,
        by: &Remover<'_>,
    ) -> Result<Option<(sqlx::Transaction<'static, sqlx::Postgres>, StoredEntry)>, sqlx::Error>
    {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as::<_, StoredEntry>(&format!(
            "UPDATE deny_entries SET removed_at = now(), removed_by_issuer = $2, \
             removed_by_subject = $3 WHERE id = $1 AND removed_at IS NULL RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(by.issuer)
        .bind(by.subject)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            announce(&mut tx).await?;
        }
        Ok(row.map(|row| (tx, row)))
    }

    /// A connection listening for announced changes, when the database can be reached.
    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(CHANNEL).await.ok()?;
        Some(listener)
    }

    /// Every entry not removed (expired ones included, so that the list can show them),
    /// oldest first.
    pub(crate) async fn not_removed(&self) -> Result<Vec<StoredEntry>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM deny_entries WHERE removed_at IS NULL ORDER BY id"
        ))
        .fetch_all(&self.read_pool)
        .await
    }

    async fn in_force(&self) -> Result<Vec<StoredEntry>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM deny_entries WHERE removed_at IS NULL \
             AND (expires_at IS NULL OR expires_at > now()) ORDER BY id"
        ))
        .fetch_all(&self.poll_pool)
        .await
    }
}

/// Announces a change to every replica's listener; Postgres delivers it when (and only if)
/// the transaction commits.
async fn announce(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// How a store's entries are put in force: `install(rows, read_at)` puts `rows` (read whole
/// at `read_at`, if they are a read) in the running snapshot, and drops the cached
/// credentials they reach if they changed: how many, or `None` when they did not change.
pub(crate) trait Install: Fn(&[StoredEntry], Option<Instant>) -> Option<usize> {}

impl<F: Fn(&[StoredEntry], Option<Instant>) -> Option<usize>> Install for F {}

impl DenyStore {
    /// Reads the entries in force and installs them, with the time of the read.
    pub(crate) async fn refresh(&self, install: impl Install) -> Result<(), sqlx::Error> {
        let mut installed = self.installed.lock().await;
        let rows = self.in_force().await?;
        put_in_force(&mut installed, rows, Some(Instant::now()), install);
        Ok(())
    }

    /// Puts an entry added here in force here at once, without reading the table back: a
    /// read can fail or wait, and the entry must deny before its 201 is sent.
    pub(crate) async fn apply_added(&self, row: StoredEntry, install: impl Install) {
        let mut installed = self.installed.lock().await;
        let mut rows = installed.clone();
        rows.retain(|r| r.id != row.id);
        rows.push(row);
        put_in_force(&mut installed, rows, None, install);
    }

    /// Lifts an entry removed here at once, as [`DenyStore::apply_added`] puts one in force.
    pub(crate) async fn apply_removed(&self, id: i64, install: impl Install) {
        let mut installed = self.installed.lock().await;
        let mut rows = installed.clone();
        rows.retain(|r| r.id != id);
        put_in_force(&mut installed, rows, None, install);
    }
}

/// Installs `rows` (read at `read_at`, if they are a read), logging a change.
fn put_in_force(
    installed: &mut Vec<StoredEntry>,
    rows: Vec<StoredEntry>,
    read_at: Option<Instant>,
    install: impl Install,
) {
    if let Some(dropped) = install(&rows, read_at) {
        tracing::info!(
            entries = rows.len(),
            dropped_credentials = dropped,
            "stored deny list changed"
        );
    }
    *installed = rows;
}

/// Refreshes `store` every `every`, and when another replica announces a change, until
/// aborted, installing what it reads with `install`.
/// The poll is the guarantee: an announcement lost with its connection is caught up by
/// the next poll, and the listener is connected again. A failing read keeps the entries
/// read last in force until they are too old to trust, and is logged when it starts
/// failing, not at every attempt.
pub(crate) fn spawn_poller(
    store: Arc<DenyStore>,
    install: impl Install + Send + Sync + 'static,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut listener: Option<PgListener> = None;
        loop {
            let announced = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticks.tick() => {
                    if listener.is_none() {
                        listener = store.listen().await;
                    }
                }
                heard = announced => {
                    if !heard {
                        listener = None;
                    }
                }
            }
            match store.refresh(&install).await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "reading the stored deny list failed; the entries read last stay in force until [admin] deny_max_staleness_secs, then nothing is issued");
                }
                Err(_) => {}
            }
        }
    })
}
