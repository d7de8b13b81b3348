//! `audit export`: stored rows as the sink's JSON lines, in chain order, for back-filling a
//! log pipeline. Rows stream off the wire one at a time, so memory stays flat however many
//! the range holds.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::PgPool;

use super::store::{SELECT_RECORDED, StoredRow};

/// Writes every row recorded at or after `since` and before `until` (either open when none)
/// to `out`, one JSON line each, in chain order, from one snapshot of the database; returns
/// how many. Reads only, so the service's read-only role is enough.
pub(crate) async fn export(
    pool: &PgPool,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .context("connecting to the database")?;
    let mut rows = sqlx::query_as::<_, StoredRow>(SELECT_RECORDED)
        .bind(since)
        .bind(until)
        .fetch(&mut *tx);
    let mut exported = 0;
    while let Some(row) = rows.try_next().await.context("reading the audit log")? {
        serde_json::to_writer(&mut *out, &row).context("writing a line")?;
        out.write_all(b"\n").context("writing a line")?;
        exported += 1;
    }
    out.flush().context("writing the lines")?;
    Ok(exported)
}
