//! `audit prune`: drops whole monthly partitions of the audit log and records where the
//! dropped stretch of the chain ended, so that the rest still verifies.
//!
//! `recorded_at` never decreases along the chain, so the rows recorded before the first of
//! a month are a prefix of it: the partitions ending on or before that day hold exactly the
//! rows from the previous checkpoint (or the genesis) to some id K. Prune verifies them,
//! records K and its hash in `audit_checkpoints`, and drops them, in one transaction.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use sqlx::{PgPool, Row};

use super::chain::{ChainKey, Checkpoint, Hash};
use super::store::{CHAIN_LOCK, hash};
use super::verify::{Break, Predecessor, Walk, chain_start};

/// The first day of a month: the only dates prune accepts, so that what it drops is obvious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthStart(NaiveDate);

impl MonthStart {
    /// The month's first instant, in UTC (partitions are cut at UTC midnight).
    fn instant(self) -> DateTime<Utc> {
        self.0.and_time(chrono::NaiveTime::MIN).and_utc()
    }
}

impl FromStr for MonthStart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|e| format!("{s:?} is not a date as YYYY-MM-DD: {e}"))?;
        if date.day() != 1 {
            return Err(format!(
                "{date} is not the first day of a month; whole months are pruned, so say {}",
                date.with_day(1).expect("every month has a first day")
            ));
        }
        Ok(Self(date))
    }
}

impl fmt::Display for MonthStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What `audit prune` did.
#[derive(Debug)]
pub(crate) struct Pruned {
    /// The cut-off date.
    pub before: MonthStart,
    /// The verification of the rows that were dropped.
    pub verified: Walk,
    /// Why those rows did not verify, when `--force` pruned them all the same.
    pub forced: Option<String>,
    /// The partitions dropped, oldest first.
    pub dropped: Vec<String>,
    /// Rows dropped with them.
    pub rows: i64,
    /// The new checkpoint (the last dropped row's id and hash), if any rows were dropped
    /// beyond the previous one.
    pub checkpoint: Option<(i64, Hash)>,
    /// Whether the current month's partition, dropped, was created again (empty) so that
    /// new rows stay out of the default partition.
    pub recreated: bool,
}

impl fmt::Display for Pruned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let before = self.before;
        if self.dropped.is_empty() {
            return write!(
                f,
                "nothing to prune: no partition ends on or before {before}"
            );
        }
        let from = match self.verified.start {
            Predecessor::Checkpoint(id) => format!("checkpoint {id}"),
            _ => "the genesis".to_owned(),
        };
        let mut lines = vec![match &self.forced {
            None => format!(
                "verified {} rows recorded before {before} from {from}: intact",
                self.verified.checked
            ),
            Some(problem) => format!(
                "the rows recorded before {before} do not verify, pruned anyway (--force): \
                 {problem}"
            ),
        }];
        lines.push(format!(
            "dropped {} ({} rows)",
            self.dropped.join(", "),
            self.rows
        ));
        if let Some((id, hash)) = self.checkpoint {
            lines.push(format!(
                "checkpoint: id {id}, hash {}; the chain now starts at id {}",
                hex::encode(hash),
                id + 1
            ));
        }
        if self.recreated {
            lines.push("created this month's partition again, empty, for new rows".to_owned());
        }
        f.write_str(&lines.join("\n"))
    }
}

/// How long prune waits for any lock: once it holds the chain lock, appends wait for it.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '10s'";

/// Finds the partitions ending on or before `$1` (the default partition has no end).
const PARTITIONS_ENDING_BY: &str = r#"
SELECT name FROM (
    SELECT c.oid::regclass::text AS name,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$TO \('([^']+)'\)$re$)::timestamptz AS upper
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_events'::regclass
) p
WHERE upper <= $1
ORDER BY upper"#;

/// Verifies, checkpoints and drops the monthly partitions of the audit log that end on or
/// before `before`. Refuses if those rows do not verify, unless `force`.
pub(crate) async fn prune(
    pool: &PgPool,
    key: &ChainKey,
    before: MonthStart,
    force: bool,
) -> anyhow::Result<Pruned> {
    let mut tx = pool.begin().await.context("connecting to the database")?;
    let this_month: NaiveDate =
        sqlx::query_scalar("SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date")
            .fetch_one(&mut *tx)
            .await?;
    let next_month = this_month + Months::new(1);
    if before.0 > next_month {
        bail!("--before {before} is in a month that has not begun; the latest is {next_month}");
    }
    let cutoff = before.instant();

    // Verify first without the chain lock, which would stop every append meanwhile: rows
    // recorded before the cut-off are old and no longer written, unless it is next month.
    let (start, start_hash) = chain_start(&mut tx, key).await?;
    let mut verified = Walk::new(key.clone(), start, start_hash);
    verified
        .run(&mut tx, Some(cutoff))
        .await
        .context("verifying the rows to prune")?;

    sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut *tx)
        .await
        .context("waiting for the audit writers' lock")?;
    if chain_start(&mut tx, key).await? != (start, start_hash) {
        bail!("another prune ran meanwhile; run this one again");
    }
    // Rows appended before the lock was taken (when pruning the current month).
    verified
        .run(&mut tx, Some(cutoff))
        .await
        .context("verifying the rows to prune")?;

    let dropped: Vec<String> = sqlx::query_scalar(PARTITIONS_ENDING_BY)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await
        .context("listing the audit partitions")?;
    if dropped.is_empty() {
        return Ok(Pruned {
            before,
            verified,
            forced: None,
            dropped,
            rows: 0,
            checkpoint: None,
            recreated: false,
        });
    }
    let stray: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events \
         WHERE recorded_at < $1 AND tableoid::regclass::text <> ALL($2)",
    )
    .bind(cutoff)
    .bind(&dropped)
    .fetch_one(&mut *tx)
    .await?;
    if stray > 0 {
        bail!(
            "{stray} rows recorded before {before} are in the default partition, which prune \
             never drops (were partitions missing when they were written? run `migrate` monthly)"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE recorded_at < $1")
        .bind(cutoff)
        .fetch_one(&mut *tx)
        .await?;
    let last = sqlx::query(
        "SELECT id, row_hash FROM audit_events WHERE recorded_at < $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(cutoff)
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, hash(r.try_get("row_hash")?)?)))
    .transpose()?
    .filter(|(id, _)| *id > start.id());

    let mut problem = verified.broken.as_ref().map(Break::to_string);
    if let (None, Some((last_id, _))) = (&problem, last) {
        let later: Option<i64> =
            sqlx::query_scalar("SELECT min(id) FROM audit_events WHERE recorded_at >= $1")
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(later) = later.filter(|id| *id <= last_id) {
            problem = Some(format!(
                "id {later} is recorded on or after {before}, before id {last_id} which is \
                 recorded earlier (recorded_at went backwards: inserted?)"
            ));
        }
    }
    if let Some(problem) = &problem
        && !force
    {
        bail!(
            "refusing to prune: the rows recorded before {before} do not verify: {problem}; \
             see `audit verify`, or pass --force to prune them anyway"
        );
    }

    if let Some((id, row_hash)) = last {
        let mac = key.checkpoint_mac(&Checkpoint {
            id,
            row_hash,
            pruned_before: cutoff,
            pruned_rows: rows,
        });
        sqlx::query(
            "INSERT INTO audit_checkpoints (id, row_hash, pruned_before, pruned_rows, hmac) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(row_hash.as_slice())
        .bind(cutoff)
        .bind(rows)
        .bind(mac.as_slice())
        .execute(&mut *tx)
        .await
        .context("recording the checkpoint (prune needs the role that owns the audit tables)")?;
    }
    for name in &dropped {
        // The name comes from `regclass` output, which quotes it where needed.
        sqlx::query(&format!("DROP TABLE {name}"))
            .execute(&mut *tx)
            .await
            .with_context(|| {
                format!(
                    "dropping {name} (prune needs the role that owns the audit tables, and \
                     waits at most 10s for readers of the table)"
                )
            })?;
    }
    let recreated = before.0 > this_month;
    if recreated {
        sqlx::query("SELECT audit_ensure_partitions(0)")
            .execute(&mut *tx)
            .await
            .context("creating this month's partition again")?;
    }
    tx.commit().await.context("committing the prune")?;
    Ok(Pruned {
        before,
        verified,
        forced: problem,
        dropped,
        rows,
        checkpoint: last,
        recreated,
    })
}

#[cfg(test)]
mod tests {
    use super::MonthStart;

    #[test]
    fn only_the_first_of_a_month_is_a_cut_off() {
        let start: MonthStart = "2026-12-01".parse().unwrap();
        assert_eq!(start.to_string(), "2026-12-01");
        assert_eq!(
            start.instant().to_rfc3339(),
            "2026-12-01T00:00:00+00:00",
            "partitions are cut at UTC midnight"
        );

        let mid_month = "2026-12-15".parse::<MonthStart>().unwrap_err();
        assert!(mid_month.contains("say 2026-12-01"), "{mid_month}");
        for bad in ["2026-13-01", "01.12.2026", "2026-12"] {
            assert!(bad.parse::<MonthStart>().is_err(), "{bad}");
        }
    }
}
