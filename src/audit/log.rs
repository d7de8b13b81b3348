//! `AuditLog`, the audit log as handlers see it: appends go through the group-commit writer, reads
//! through a pool of their own so that readers never take the writer's connections. It adds no
//! logic of its own.

use sqlx::PgPool;

use super::chain::{ChainEntry, ChainedRow};
use super::query::{self, IssuanceFilter, Page, Scope};
use super::{AuditError, AuditRecord, AuditWriter, KeyedFingerprint};

/// The audit log as requests see it: append through the group-commit writer, read through
/// a pool of its own.
#[derive(Debug, Clone)]
pub(crate) struct AuditLog {
    writer: AuditWriter,
    pool: PgPool,
    read_pool: PgPool,
}

impl AuditLog {
    /// An audit log writing through `writer` (whose connections come from `pool`) and
    /// reading records from `read_pool`, so that readers never take the writer's
    /// connections.
    pub(crate) fn new(writer: AuditWriter, pool: PgPool, read_pool: PgPool) -> Self {
        Self {
            writer,
            pool,
            read_pool,
        }
    }

    /// Appends the record and returns its row's id and hash once it has committed.
    pub(crate) async fn record(&self, record: AuditRecord) -> Result<ChainEntry, AuditError> {
        self.writer.record(record).await
    }

    /// Counts a refusal in the next aggregate row instead of appending a row of its own.
    pub(crate) fn tally(&self, record: &AuditRecord) {
        self.writer.tally(record);
    }

    /// Whether the writer task is alive to commit records.
    pub(crate) fn writer_running(&self) -> bool {
        self.writer.is_running()
    }

    /// Records waiting for the writer now: issued and failed requests', and refusals.
    pub(crate) fn queue_depth(&self) -> (usize, usize) {
        self.writer.queue_depth()
    }

    /// Whether the database answers.
    pub(crate) async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// The records `scope` may see that match `filter`, newest first, one page.
    pub(crate) async fn issuances(
        &self,
        scope: &Scope,
        filter: &IssuanceFilter,
        page: Page,
    ) -> Result<Vec<ChainedRow>, sqlx::Error> {
        query::issuances(&self.read_pool, scope, filter, page).await
    }

    /// The records of issued tokens with any of these fingerprints, newest first, at most
    /// [`query::MAX_TOKEN_RECORDS`].
    pub(crate) async fn issued_with(
        &self,
        fingerprints: &[KeyedFingerprint],
    ) -> Result<Vec<ChainedRow>, sqlx::Error> {
        query::issued_with(&self.read_pool, fingerprints).await
    }
}
