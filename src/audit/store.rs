use sqlx::PgPool;
use sqlx::migrate::Migrator;

use super::AuditRecord;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Writes audit rows.
///
/// Statements are plain `sqlx::query` rather than the compile-time checked macros so the
/// crate builds without a database or committed query metadata; the integration tests run
/// every statement against real Postgres.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pool: PgPool,
}

impl AuditLog {
    /// An audit log on this pool.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Inserts the record and returns its id once the insert has committed.
    pub async fn record(&self, r: &AuditRecord) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO audit_events (
                occurred_at, request_id, outcome, reason, http_status, issuer, subject, rule,
                role_arn, session_name, regions, registry_ids, access, repositories,
                session_tags, proxy_endpoints, expires_at, token_fingerprints, fingerprint_key_id, from_cache,
                client_addr, user_agent, latency_ms
            ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                      $18, $19, $20, $21, $22, $23)
            RETURNING id",
        )
        .bind(r.occurred_at)
        .bind(&r.request_id)
        .bind(r.outcome.as_str())
        .bind(&r.reason)
        .bind(i16::try_from(r.http_status).unwrap_or(i16::MAX))
        .bind(&r.issuer)
        .bind(&r.subject)
        .bind(&r.rule)
        .bind(&r.role_arn)
        .bind(&r.session_name)
        .bind(&r.regions)
        .bind(&r.registry_ids)
        .bind(&r.access)
        .bind(&r.repositories)
        .bind(session_tags(&r.session_tags))
        .bind(&r.proxy_endpoints)
        .bind(r.expires_at)
        .bind(&r.token_fingerprints)
        .bind(&r.fingerprint_key_id)
        .bind(r.from_cache)
        .bind(r.client_addr)
        .bind(&r.user_agent)
        .bind(r.latency_ms)
        .fetch_one(&self.pool)
        .await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }
}

/// Tags as a JSON object, or NULL when there are none.
fn session_tags(tags: &[(String, String)]) -> Option<serde_json::Value> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect()
    })
}
