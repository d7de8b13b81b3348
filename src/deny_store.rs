//! The stored deny list: entries that deny list admins add through `POST /v1/admin/deny`,
//! kept in Postgres (`deny_entries`) so that every replica sharing the database honours
//! them. Each replica reads the entries in force every `[admin] deny_poll_interval_secs`
//! into its snapshot, and as soon as a change is announced (LISTEN/NOTIFY); polling is the
//! guarantee, the announcement a wake-up. A change made on this replica is put in force
//! here without reading the table back, so that it is in force before it is answered.
//!
//! The poll reads through a pool of its own, so that no caller-driven read (audit queries,
//! the listing) can hold it up; a list not read for `[admin] deny_max_staleness_secs` is
//! not trusted (see [`crate::app::Snapshot::denial`]).
//!
//! Entries are bound to their issuer's `iss`, and resolved against the running config
//! each time it or the entries change ([`resolve`]).
//!
//! Plain `query`/`query_as` with the column list spelled once here, as the audit store
//! does: every statement is run by the API tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::config::{ClaimPatterns, DenyEntryConfig};
use crate::policy::DenySource;

mod resolve;

pub(crate) use resolve::StoredDeny;

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

/// An entry to add: a validated matcher with its issuer and reason, and who adds it.
pub(crate) struct NewEntry<'a> {
    /// What it matches; `issuer` and `reason` are set.
    pub matcher: &'a DenyEntryConfig,
    /// The `iss` of the issuer it names.
    pub iss: &'a str,
    /// When it stops denying, if ever.
    pub expires_at: Option<DateTime<Utc>>,
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
    /// Held from reading the entries (or taking a change of this replica) to installing
    /// them, so that a slower, older read never replaces a newer list.
    refresh: tokio::sync::Mutex<()>,
}

impl DenyStore {
    /// The store in the database behind these pools.
    pub(crate) fn new(pool: PgPool, poll_pool: PgPool, read_pool: PgPool) -> Self {
        Self {
            pool,
            poll_pool,
            read_pool,
            refresh: tokio::sync::Mutex::new(()),
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
        let m = entry.matcher;
        let row = sqlx::query_as::<_, StoredEntry>(&format!(
            "INSERT INTO deny_entries (issuer, iss, subject, rule, claims, reason, expires_at, \
             added_by_issuer, added_by_subject, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
        ))
        .bind(m.issuer.as_deref().unwrap_or_default())
        .bind(entry.iss)
        .bind(m.subject.as_ref().map(Json))
        .bind(m.rule.as_deref())
        .bind(Json(&m.claims))
        .bind(m.reason.as_deref().unwrap_or_default())
        .bind(entry.expires_at)
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

/// Reads the entries in force and installs them in the snapshot, with the time of the
/// read; then drops the cached credentials they deny, if they changed.
pub(crate) async fn refresh(state: &AppState) -> Result<(), sqlx::Error> {
    let store = &state.deny_store;
    let _one_at_a_time = store.refresh.lock().await;
    let rows = store.in_force().await?;
    install(state, &rows, Some(Instant::now()));
    Ok(())
}

/// Installs `rows` (read at `read_at`, if they are a read), logging a change.
fn install(state: &AppState, rows: &[StoredEntry], read_at: Option<Instant>) {
    if let Some(dropped) = state.install_stored_deny(rows, read_at) {
        tracing::info!(
            entries = rows.len(),
            dropped_credentials = dropped,
            "stored deny list changed"
        );
    }
}

/// Puts an entry added here in force here at once, without reading the table back: a read
/// can fail or wait, and the entry must deny before its 201 is sent. Whether it is in force:
/// it might not compile.
pub(crate) async fn apply_added(state: &AppState, row: StoredEntry) -> bool {
    let id = row.id;
    change_here(state, |rows| {
        rows.retain(|r| r.id != id);
        rows.push(row);
    })
    .await;
    state
        .current()
        .stored_deny
        .list
        .sources()
        .any(|s| s == DenySource::Stored(id))
}

/// Lifts an entry removed here at once, as [`apply_added`] puts one in force.
pub(crate) async fn apply_removed(state: &AppState, id: i64) {
    change_here(state, |rows| rows.retain(|r| r.id != id)).await;
}

async fn change_here(state: &AppState, change: impl FnOnce(&mut Vec<StoredEntry>)) {
    let _one_at_a_time = state.deny_store.refresh.lock().await;
    let mut rows = state.current().stored_deny.rows().to_vec();
    change(&mut rows);
    install(state, &rows, None);
}

/// Refreshes every `every`, and when another replica announces a change, until aborted.
/// The poll is the guarantee: an announcement lost with its connection is caught up by
/// the next poll, and the listener is connected again. A failing read keeps the entries
/// read last in force until they are too old to trust, and is logged when it starts
/// failing, not at every attempt.
pub(crate) fn spawn_poller(state: AppState, every: Duration) -> JoinHandle<()> {
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
                        listener = state.deny_store.listen().await;
                    }
                }
                heard = announced => {
                    if !heard {
                        listener = None;
                    }
                }
            }
            match refresh(&state).await {
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
