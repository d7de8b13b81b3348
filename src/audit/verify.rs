//! `audit verify`: walks the hash chain in id order and finds the first row that does not
//! continue it, streaming the rows so that memory stays flat however long the log is.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use sqlx::{FromRow, PgConnection, PgPool, Row};

use super::chain::{ChainEntry, ChainKey, GENESIS, Hash};
use super::store::{SELECT_CHAIN, StoredRow, hash, latest_checkpoint};

/// What a row's `prev_hash` has to equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Predecessor {
    /// The first row's: [`GENESIS`].
    Genesis,
    /// The last pruned row's, kept in `audit_checkpoints`.
    Checkpoint(i64),
    /// A spot check's starting row's own `prev_hash`, taken on trust.
    Trusted(i64),
    /// The row before.
    Row(i64),
}

impl Predecessor {
    /// The id of the row it stands for.
    pub(super) fn id(self) -> i64 {
        match self {
            Self::Genesis => 0,
            Self::Checkpoint(id) | Self::Row(id) => id,
            Self::Trusted(start) => start - 1,
        }
    }
}

impl fmt::Display for Predecessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Genesis => f.write_str("the genesis hash"),
            Self::Checkpoint(id) => write!(f, "checkpoint {id}'s hash"),
            Self::Trusted(id) => write!(f, "the prev_hash trusted for id {id}"),
            Self::Row(id) => write!(f, "id {id}'s hash"),
        }
    }
}

/// The first link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Break {
    /// The row cannot be read back into the form that was hashed.
    Unreadable {
        /// The row.
        id: i64,
        /// Why.
        error: String,
    },
    /// Ids are not consecutive.
    Gap {
        /// The row found.
        id: i64,
        /// The id that should have come.
        expected: i64,
    },
    /// The row does not point at the row before it.
    PrevHash {
        /// The row.
        id: i64,
        /// What it should point at.
        predecessor: Predecessor,
    },
    /// The row's content is not what was hashed.
    RowHash {
        /// The row.
        id: i64,
    },
    /// The row is intact in the chain, but its hash is not the one witnessed for its id.
    WitnessedHash {
        /// The row.
        id: i64,
    },
    /// The chain ends before a witnessed head.
    Truncated {
        /// The witnessed head's id.
        id: i64,
        /// The id of the chain's last row (or of where it starts, if it has none).
        end: i64,
    },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { id, error } => {
                write!(
                    f,
                    "id {id}: the row cannot be read back ({error}) (edited?)"
                )
            }
            Self::Gap { id, expected } => write!(
                f,
                "id {id}: expected id {expected} (a row is missing or was inserted)"
            ),
            Self::PrevHash { id, predecessor } => write!(
                f,
                "id {id}: prev_hash does not match {predecessor} (reordered or inserted?)"
            ),
            Self::RowHash { id } => {
                write!(f, "id {id}: row hash does not match its content (edited?)")
            }
            Self::WitnessedHash { id } => write!(
                f,
                "id {id}: its hash is not the one witnessed for id {id} (the chain was \
                 rewritten from there?)"
            ),
            Self::Truncated { id, end } => write!(
                f,
                "the chain ends at id {end}, before the witnessed head id {id} (rows deleted \
                 from the end, or lost in a failover?)"
            ),
        }
    }
}

/// A walk along the chain: where it started, how far it got, and the first break.
#[derive(Debug)]
pub(crate) struct Walk {
    key: ChainKey,
    /// Where the walk started.
    pub start: Predecessor,
    next: Predecessor,
    next_hash: Hash,
    /// Rows checked, the breaking one included.
    pub checked: u64,
    /// The last intact row's id and hash.
    pub last: Option<(i64, Hash)>,
    /// The first break; the walk stops there.
    pub broken: Option<Break>,
    /// Hashes witnessed for some ids, which the rows there must have.
    witnessed: BTreeMap<i64, Hash>,
}

impl Walk {
    /// A walk whose first row must continue `start`, whose hash is `start_hash`.
    pub(super) fn new(key: ChainKey, start: Predecessor, start_hash: Hash) -> Self {
        Self {
            key,
            start,
            next: start,
            next_hash: start_hash,
            checked: 0,
            last: None,
            broken: None,
            witnessed: BTreeMap::new(),
        }
    }

    /// Checks the rows after the last one checked (recorded before `before`, if given),
    /// up to the first break. Calling it again continues where it ended.
    pub(super) async fn run(
        &mut self,
        conn: &mut PgConnection,
        before: Option<DateTime<Utc>>,
    ) -> Result<(), sqlx::Error> {
        if self.broken.is_some() {
            return Ok(());
        }
        // One row at a time off the wire: memory stays flat however long the chain is.
        // Hashing chunks on several cores was measured no faster where the database shares
        // the machine; decoding, not hashing, takes most of the time.
        let rows = sqlx::query(SELECT_CHAIN)
            .bind(self.next.id())
            .bind(before)
            .fetch(&mut *conn)
            .map_ok(|row| {
                let id = row.try_get("id");
                (id, StoredRow::from_row(&row))
            });
        self.follow(rows).await
    }

    /// Checks rows as they come, each as its id and its decoded form, up to the first break.
    async fn follow(
        &mut self,
        rows: impl Stream<
            Item = Result<(Result<i64, sqlx::Error>, Result<StoredRow, sqlx::Error>), sqlx::Error>,
        >,
    ) -> Result<(), sqlx::Error> {
        let mut rows = std::pin::pin!(rows);
        while let Some((id, stored)) = rows.try_next().await? {
            self.checked += 1;
            if let Some(broken) = self.check(id?, stored) {
                self.broken = Some(broken);
                break;
            }
        }
        Ok(())
    }

    fn check(&mut self, id: i64, stored: Result<StoredRow, sqlx::Error>) -> Option<Break> {
        let expected = self.next.id() + 1;
        if id != expected {
            return Some(Break::Gap { id, expected });
        }
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                return Some(Break::Unreadable {
                    id,
                    error: error.to_string(),
                });
            }
        };
        if stored.prev_hash != self.next_hash {
            return Some(Break::PrevHash {
                id,
                predecessor: self.next,
            });
        }
        if self.key.row_hash(&stored.prev_hash, &stored.row) != stored.row_hash {
            return Some(Break::RowHash { id });
        }
        if self
            .witnessed
            .get(&id)
            .is_some_and(|hash| *hash != stored.row_hash)
        {
            return Some(Break::WitnessedHash { id });
        }
        self.next = Predecessor::Row(id);
        self.next_hash = stored.row_hash;
        self.last = Some((id, stored.row_hash));
        None
    }
}

/// Where the chain starts now: the newest checkpoint, or the genesis.
pub(super) async fn chain_start(
    conn: &mut PgConnection,
    key: &ChainKey,
) -> Result<(Predecessor, Hash), sqlx::Error> {
    Ok(match latest_checkpoint(conn, key).await? {
        Some(checkpoint) => (Predecessor::Checkpoint(checkpoint.id), checkpoint.row_hash),
        None => (Predecessor::Genesis, GENESIS),
    })
}

/// The outcome of `audit verify`.
#[derive(Debug)]
pub(crate) struct Verification {
    /// The walk along the chain.
    pub walk: Walk,
    /// How long it took.
    pub elapsed: Duration,
}

impl Verification {
    /// Rows checked per second.
    pub(crate) fn rows_per_sec(&self) -> f64 {
        self.walk.checked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let walk = &self.walk;
        let from = match walk.start {
            Predecessor::Genesis => "the genesis".to_owned(),
            Predecessor::Checkpoint(id) => format!("checkpoint {id}"),
            Predecessor::Trusted(id) => format!("id {id} (its prev_hash trusted)"),
            Predecessor::Row(id) => format!("id {id}"),
        };
        write!(
            f,
            "checked {} rows from {from} in {:.2}s ({:.0} rows/s)",
            walk.checked,
            self.elapsed.as_secs_f64(),
            self.rows_per_sec()
        )?;
        if let Some((id, hash)) = walk.last {
            write!(f, "\nlast intact row: id {id}, hash {}", hex::encode(hash))?;
        }
        Ok(())
    }
}

/// Walks the chain from the newest checkpoint (or the genesis), or from row `from_id`
/// trusting its `prev_hash`, to the end, in one snapshot of the database. The chain must
/// reach every `expected` head with its hash, unless it was pruned (then only a checkpoint
/// at that very id can be compared).
pub(crate) async fn verify(
    pool: &PgPool,
    key: &ChainKey,
    from_id: Option<i64>,
    expected: &[ChainEntry],
) -> anyhow::Result<Verification> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .context("connecting to the database")?;
    let (start, start_hash) = chain_start(&mut tx, key)
        .await
        .context("reading audit_checkpoints")?;
    let (start, start_hash) = match from_id {
        None => (start, start_hash),
        Some(id) => {
            anyhow::ensure!(
                id > start.id(),
                "id {id} was pruned: the chain now starts at id {}",
                start.id() + 1
            );
            let prev: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT prev_hash FROM audit_events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .context("reading the starting row")?;
            let prev = prev.with_context(|| format!("there is no audit row with id {id}"))?;
            (Predecessor::Trusted(id), hash(prev)?)
        }
    };
    let mut walk = Walk::new(key.clone(), start, start_hash);
    walk.witnessed = expected.iter().map(|e| (e.id, e.hash)).collect();
    let started = Instant::now();
    walk.run(&mut tx, None)
        .await
        .context("reading the audit log")?;
    if walk.broken.is_none() {
        walk.broken = unreached(&walk, start_hash, expected);
    }
    Ok(Verification {
        walk,
        elapsed: started.elapsed(),
    })
}

/// The first expected head that an intact walk did not reach with its hash: beyond the
/// chain's end, or, at the checkpoint it started from, with another hash.
fn unreached(walk: &Walk, start_hash: Hash, expected: &[ChainEntry]) -> Option<Break> {
    let end = walk.last.map_or(walk.start.id(), |(id, _)| id);
    let mut heads: Vec<&ChainEntry> = expected.iter().collect();
    heads.sort_by_key(|e| e.id);
    heads.into_iter().find_map(|head| {
        if head.id > end {
            Some(Break::Truncated { id: head.id, end })
        } else if matches!(walk.start, Predecessor::Checkpoint(id) if id == head.id)
            && head.hash != start_hash
        {
            Some(Break::WitnessedHash { id: head.id })
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use secrecy::SecretString;

    use super::*;
    use crate::audit::chain::ChainedRow;
    use crate::audit::{AuditRecord, Outcome};

    fn key() -> ChainKey {
        ChainKey::new(&SecretString::from("chain-key-for-tests-0123456789abcdef"))
    }

    /// Rows 1..=n, correctly chained from the genesis.
    fn chain(n: i64) -> Vec<StoredRow> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|id| {
                let at = DateTime::from_timestamp_micros(1_795_431_244_000_000 + id).unwrap();
                let mut record = AuditRecord::start(&format!("r-{id}"), None, None);
                record.occurred_at = at;
                record.decide(Outcome::Denied, "missing_token", 401);
                record.session_tags = [("a".to_owned(), "b".to_owned())].into_iter().collect();
                let row = ChainedRow::new(id, at, record);
                let row_hash = key().row_hash(&prev, &row);
                let stored = StoredRow {
                    row,
                    prev_hash: prev,
                    row_hash,
                };
                prev = row_hash;
                stored
            })
            .collect()
    }

    /// Walks `rows` from the genesis, through the same loop that reads them from the database.
    async fn walk(rows: Vec<StoredRow>) -> Walk {
        let mut walk = Walk::new(key(), Predecessor::Genesis, GENESIS);
        let rows = futures::stream::iter(rows.into_iter().map(|s| Ok((Ok(s.row.id), Ok(s)))));
        walk.follow(rows).await.unwrap();
        walk
    }

    #[tokio::test]
    async fn an_intact_chain_ends_at_its_last_row() {
        let rows = chain(5);
        let last = rows[4].row_hash;

        let walk = walk(rows).await;

        assert_eq!(walk.broken, None);
        assert_eq!((walk.checked, walk.last), (5, Some((5, last))));
    }

    #[tokio::test]
    async fn each_kind_of_tampering_is_reported_at_its_row() {
        let mut edited = chain(5);
        edited[2].row.record.reason = "issued".to_owned();
        let mut missing = chain(5);
        missing.remove(2);
        let mut swapped = chain(5);
        swapped.swap(2, 3);
        (swapped[2].row.id, swapped[3].row.id) = (3, 4);
        let mut first = chain(2);
        first[0].prev_hash = [1; 32];

        assert_eq!(walk(edited).await.broken, Some(Break::RowHash { id: 3 }));
        assert_eq!(
            walk(missing).await.broken,
            Some(Break::Gap { id: 4, expected: 3 })
        );
        assert_eq!(
            walk(swapped).await.broken,
            Some(Break::PrevHash {
                id: 3,
                predecessor: Predecessor::Row(2)
            })
        );
        assert_eq!(
            walk(first).await.broken,
            Some(Break::PrevHash {
                id: 1,
                predecessor: Predecessor::Genesis
            })
        );
    }

    #[tokio::test]
    async fn a_row_that_cannot_be_read_back_stops_the_walk_there() {
        let rows = chain(3);
        let mut walk = Walk::new(key(), Predecessor::Genesis, GENESIS);
        let stream = futures::stream::iter(rows.into_iter().map(|s| {
            let id = s.row.id;
            let stored = if id == 2 {
                Err(sqlx::Error::Decode("a stored hash is not 32 bytes".into()))
            } else {
                Ok(s)
            };
            Ok((Ok(id), stored))
        }));

        walk.follow(stream).await.unwrap();

        assert_eq!(
            walk.broken,
            Some(Break::Unreadable {
                id: 2,
                error: "error occurred while decoding: a stored hash is not 32 bytes".to_owned()
            })
        );
        assert_eq!(walk.checked, 2);
    }

    #[tokio::test]
    async fn a_row_with_another_hash_than_witnessed_breaks_there() {
        let rows = chain(5);
        let mut walk_ = Walk::new(key(), Predecessor::Genesis, GENESIS);
        walk_.witnessed = [(3, [9; 32])].into_iter().collect();
        let stream = futures::stream::iter(rows.into_iter().map(|s| Ok((Ok(s.row.id), Ok(s)))));

        walk_.follow(stream).await.unwrap();

        assert_eq!(walk_.broken, Some(Break::WitnessedHash { id: 3 }));
    }

    #[tokio::test]
    async fn a_witnessed_head_beyond_the_end_is_a_truncation() {
        let rows = chain(5);
        let (four, five) = (rows[3].row_hash, rows[4].row_hash);
        let walk = walk(rows).await;
        let head = |id, hash| ChainEntry { id, hash };

        assert_eq!(
            unreached(&walk, GENESIS, &[head(4, four), head(5, five)]),
            None
        );
        assert_eq!(
            unreached(&walk, GENESIS, &[head(7, five), head(6, five)]),
            Some(Break::Truncated { id: 6, end: 5 })
        );
        let checkpoint = Walk::new(key(), Predecessor::Checkpoint(5), five);
        assert_eq!(unreached(&checkpoint, five, &[head(5, five)]), None);
        assert_eq!(
            unreached(&checkpoint, five, &[head(5, four)]),
            Some(Break::WitnessedHash { id: 5 })
        );
    }

    #[test]
    fn breaks_read_as_what_went_wrong() {
        let cases = [
            (
                Break::RowHash { id: 42 },
                "id 42: row hash does not match its content (edited?)",
            ),
            (
                Break::Gap {
                    id: 43,
                    expected: 42,
                },
                "id 43: expected id 42 (a row is missing or was inserted)",
            ),
            (
                Break::PrevHash {
                    id: 44,
                    predecessor: Predecessor::Row(43),
                },
                "id 44: prev_hash does not match id 43's hash (reordered or inserted?)",
            ),
            (
                Break::PrevHash {
                    id: 8,
                    predecessor: Predecessor::Checkpoint(7),
                },
                "id 8: prev_hash does not match checkpoint 7's hash (reordered or inserted?)",
            ),
        ];
        for (broken, text) in cases {
            assert_eq!(broken.to_string(), text);
        }
    }
}
