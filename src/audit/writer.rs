//! Group commit: requests hand their record to one writer task, which appends everything
//! waiting in one transaction and wakes each request only after the commit.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::AuditRecord;
use super::chain::ChainKey;
use super::store;

/// Why a record was not committed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Too many records are already waiting: the database is slow or down.
    #[error("the audit queue is full")]
    QueueFull,
    /// The database refused or could not be reached. Shared by every record of the batch.
    #[error("writing the audit log failed")]
    Database(#[source] Arc<sqlx::Error>),
    /// No commit came back in time.
    #[error("the audit log did not answer in time")]
    Timeout,
    /// The writer task is gone (shutting down).
    #[error("the audit writer has stopped")]
    Stopped,
}

struct Job {
    record: AuditRecord,
    done: oneshot::Sender<Result<i64, Arc<sqlx::Error>>>,
}

/// Hands records to the writer task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
    wait: Duration,
}

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Records that may wait at once; more are refused at once.
    pub queue_capacity: usize,
    /// Records per transaction at most.
    pub max_batch: usize,
    /// How long a request waits for its commit.
    pub wait: Duration,
}

impl AuditWriter {
    /// Starts the writer task.
    pub fn spawn(pool: PgPool, key: ChainKey, limits: WriterLimits) -> (Self, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(limits.queue_capacity);
        let task = tokio::spawn(run(pool, key, queue, limits.max_batch));
        (
            Self {
                jobs,
                wait: limits.wait,
            },
            task,
        )
    }

    /// Queues the record and waits until it is committed; returns its chain id.
    pub async fn record(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .try_send(Job { record, done })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AuditError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => AuditError::Stopped,
            })?;
        match tokio::time::timeout(self.wait, committed).await {
            Err(_) => Err(AuditError::Timeout),
            Ok(Err(_)) => Err(AuditError::Stopped),
            Ok(Ok(result)) => result.map_err(AuditError::Database),
        }
    }
}

async fn run(pool: PgPool, key: ChainKey, mut queue: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    // Whatever arrived while the previous batch committed forms the next one.
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        // A request that stopped waiting has answered 503 without a token; a row saying it
        // was issued would be false.
        batch.retain(|job: &Job| !job.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        let records: Vec<AuditRecord> = batch.iter().map(|j| j.record.clone()).collect();
        let result = store::append(&pool, &key, &records).await.map_err(Arc::new);
        if let Err(error) = &result {
            tracing::warn!(error = %error, rows = records.len(), "audit batch failed");
        }
        for (i, job) in batch.drain(..).enumerate() {
            let outcome = match &result {
                Ok(ids) => Ok(ids[i]),
                Err(error) => Err(Arc::clone(error)),
            };
            // The request may have timed out meanwhile; its row is committed all the same.
            let _ = job.done.send(outcome);
        }
    }
}
