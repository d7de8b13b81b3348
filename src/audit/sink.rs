//! Audit shipping: after each commit, the writer hands the committed rows to a sink task,
//! which writes each as one JSON line (the [`StoredRow`] shape `audit export` prints too) to
//! stdout, a file, or syslog, in chain order.
//!
//! The sink is at most once and never in the way: the writer only ever offers rows to a
//! bounded queue, so a slow or broken sink (disk full, socket gone) can neither delay nor
//! fail a commit. What cannot be queued or written is dropped, counted, and logged once per
//! episode; Postgres stays the source of truth and `audit export` back-fills a gap.

mod settings;
mod syslog;

pub(crate) use settings::{AuditSinkConfig, Facility, SinkKind, SyslogTarget};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::store::StoredRow;

/// Lines written in one go at most, so one slow write holds few of them.
const MAX_WRITE: usize = 256;

/// The writer's end of the sink: offers committed rows, never waits. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Shipper {
    rows: mpsc::Sender<StoredRow>,
    capacity: usize,
    health: Arc<Health>,
}

/// How many lines were dropped, and whether each of the two ways of dropping them is in an
/// episode (logged when it starts and when it ends, never per line).
#[derive(Debug, Default)]
struct Health {
    dropped: AtomicU64,
    queue_full: AtomicBool,
    write_failing: AtomicBool,
}

impl Health {
    fn drop_lines(&self, lines: usize, episode: &AtomicBool, why: &dyn std::fmt::Display) {
        let total = self.dropped.fetch_add(lines as u64, Ordering::Relaxed) + lines as u64;
        if !episode.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %why,
                dropped_total = total,
                "the audit sink is dropping lines (the records are committed; `audit export` back-fills them)"
            );
        }
    }

    fn recovered(&self, episode: &AtomicBool, what: &str) {
        if episode.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                dropped_total = self.dropped.load(Ordering::Relaxed),
                "the audit sink {what} again"
            );
        }
    }
}

impl Shipper {
    /// Offers committed rows, in chain order. Rows the queue has no room for are dropped.
    pub(crate) fn ship(&self, rows: Vec<StoredRow>) {
        let offered = rows.len();
        for (sent, row) in rows.into_iter().enumerate() {
            if let Err(error) = self.rows.try_send(row) {
                let why = match error {
                    mpsc::error::TrySendError::Full(_) => "the sink's queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the sink has stopped",
                };
                // Later rows of the batch are dropped too: lines never go out of order.
                self.health
                    .drop_lines(offered - sent, &self.health.queue_full, &why);
                return;
            }
        }
        // Only once the queue has drained well, so that a queue hovering at full makes one
        // episode rather than one per batch.
        if self.rows.capacity() > self.capacity / 2 {
            self.health
                .recovered(&self.health.queue_full, "queue has room");
        }
    }
}

/// Starts the sink task that `config` asks for, or none; it ends once every [`Shipper`] is
/// dropped and every queued line is written.
pub(crate) fn spawn(config: &AuditSinkConfig) -> anyhow::Result<Option<(Shipper, JoinHandle<()>)>> {
    let output = match config.kind {
        SinkKind::None => return Ok(None),
        SinkKind::Stdout => Output::Stdout,
        SinkKind::File => {
            let path = config
                .path
                .clone()
                .context("[audit_sink] kind = \"file\" needs a path")?;
            // A file that cannot be opened yet (its volume not mounted, its directory not
            // made) must not keep the service from issuing: it is tried again at each write.
            let file = open_or_warn(&path);
            // Registered here, before the service reports ready, so that a SIGHUP sent once
            // it is never finds the default action (which ends the process).
            let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP")?;
            Output::File {
                path,
                file,
                hangups,
            }
        }
        SinkKind::Syslog => Output::Syslog(syslog::Syslog::new(&config.syslog, config.facility)?),
    };
    let (rows, queue) = mpsc::channel(config.queue_capacity);
    let health = Arc::new(Health::default());
    let shipper = Shipper {
        rows,
        capacity: config.queue_capacity,
        health: Arc::clone(&health),
    };
    Ok(Some((shipper, tokio::spawn(run(output, queue, health)))))
}

/// Opens the file for appending, creating it readable by its owner and group only.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// [`open`], or none with a warning.
fn open_or_warn(path: &Path) -> Option<std::fs::File> {
    open(path)
        .inspect_err(|error| {
            tracing::warn!(
                %error,
                path = %path.display(),
                "could not open the audit sink file; trying again at the next line"
            );
        })
        .ok()
}

enum Output {
    Stdout,
    File {
        path: PathBuf,
        /// None after a failed open, tried again at the next write.
        file: Option<std::fs::File>,
        hangups: tokio::signal::unix::Signal,
    },
    Syslog(syslog::Syslog),
}

impl Output {
    /// Waits for a SIGHUP if this output reopens on one; never resolves otherwise.
    async fn hangup(&mut self) {
        match self {
            Self::File { hangups, .. } => {
                hangups.recv().await;
            }
            _ => std::future::pending().await,
        }
    }

    /// Closes the file and opens its path anew: after log rotation moved it away, lines go
    /// to a new file there.
    fn reopen(&mut self) {
        if let Self::File { path, file, .. } = self {
            *file = open_or_warn(path);
            if file.is_some() {
                tracing::info!(path = %path.display(), "audit sink file reopened");
            }
        }
    }

    /// Writes `lines` (each ending in a newline), whole or not at all as far as it can tell.
    async fn write(&mut self, lines: Vec<String>) -> std::io::Result<()> {
        match self {
            Self::Stdout => blocking(move || {
                let mut out = std::io::stdout().lock();
                out.write_all(lines.concat().as_bytes())?;
                out.flush()
            })
            .await
            .and_then(|written| written),
            Self::File { path, file, .. } => {
                let mut handle = match file.take() {
                    Some(handle) => handle,
                    None => open(path)?,
                };
                let (handle, written) = blocking(move || {
                    let written = handle.write_all(lines.concat().as_bytes());
                    (handle, written)
                })
                .await?;
                // After a failed write (disk full, file system gone) the next one opens the
                // path again, which also recovers from a file deleted meanwhile.
                if written.is_ok() {
                    *file = Some(handle);
                }
                written
            }
            Self::Syslog(syslog) => {
                for line in &lines {
                    syslog.send(line.trim_end()).await?;
                }
                Ok(())
            }
        }
    }
}

/// Runs blocking I/O off the runtime's workers: a stalled disk or pipe holds up only the
/// sink.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
}

async fn run(mut output: Output, mut queue: mpsc::Receiver<StoredRow>, health: Arc<Health>) {
    let mut rows = Vec::with_capacity(MAX_WRITE);
    loop {
        tokio::select! {
            // A hangup first: lines written after it go to the new file.
            biased;
            () = output.hangup() => {
                output.reopen();
                continue;
            }
            received = queue.recv_many(&mut rows, MAX_WRITE) => if received == 0 {
                break;
            },
        }
        let lines: Vec<String> = rows.drain(..).filter_map(|row| line(&row)).collect();
        let count = lines.len();
        match output.write(lines).await {
            Ok(()) => health.recovered(&health.write_failing, "writes"),
            Err(error) => health.drop_lines(count, &health.write_failing, &error),
        }
    }
}

/// The row as its JSON line, newline included.
fn line(row: &StoredRow) -> Option<String> {
    match serde_json::to_string(row) {
        Ok(mut line) => {
            line.push('\n');
            Some(line)
        }
        // Cannot happen for these types; counted nowhere, so said here.
        Err(error) => {
            tracing::error!(%error, id = row.entry().id, "an audit row could not be serialized");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::audit::AuditRecord;
    use crate::audit::chain::ChainedRow;

    fn row(id: i64) -> StoredRow {
        StoredRow {
            row: ChainedRow::new(id, Utc::now(), AuditRecord::start("r", None, None)),
            prev_hash: [0; 32],
            row_hash: [1; 32],
        }
    }

    #[test]
    fn rows_beyond_the_queue_are_dropped_in_order_counted_and_one_episode() {
        let (rows, mut queue) = mpsc::channel(4);
        let shipper = Shipper {
            rows,
            capacity: 4,
            health: Arc::default(),
        };
        let health = &shipper.health;

        shipper.ship((1..=5).map(row).collect());
        shipper.ship(vec![row(6)]);

        assert_eq!(health.dropped.load(Ordering::Relaxed), 2);
        assert!(health.queue_full.load(Ordering::Relaxed));
        let queued: Vec<i64> = std::iter::from_fn(|| queue.try_recv().ok())
            .map(|r| r.entry().id)
            .collect();
        assert_eq!(queued, [1, 2, 3, 4], "what is queued stays in chain order");

        shipper.ship(vec![row(7)]);

        assert!(
            !health.queue_full.load(Ordering::Relaxed),
            "room again ends it"
        );
        assert_eq!(health.dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_line_is_the_stored_row_with_its_hashes_in_hex() {
        let line = line(&row(7)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();

        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        assert_eq!(value["id"], 7);
        assert_eq!(value["request_id"], "r");
        assert_eq!(value["prev_hash"], "00".repeat(32));
        assert_eq!(value["row_hash"], "01".repeat(32));
    }
}
