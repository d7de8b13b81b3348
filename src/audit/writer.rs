//! Group commit: requests hand their record to one writer task, which appends everything
//! waiting in one transaction and wakes each request only after the commit.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::AuditRecord;
use super::chain::ChainKey;
use super::store::{self, AppendBounds};

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
#[derive(Debug, Clone)]
pub struct WriterLimits {
    /// Records that may wait at once; more are refused at once.
    pub queue_capacity: usize,
    /// Records per transaction at most.
    pub max_batch: usize,
    /// How long a request waits for its commit.
    pub wait: Duration,
    /// How long an append waits on the database.
    pub bounds: AppendBounds,
}

impl AuditWriter {
    /// Starts the writer task.
    pub fn spawn(pool: PgPool, key: ChainKey, limits: WriterLimits) -> (Self, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(limits.queue_capacity);
        let wait = limits.wait;
        let task = tokio::spawn(run(pool, key, queue, limits));
        (Self { jobs, wait }, task)
    }

    /// Whether the writer task still takes records: it is gone once it has ended or
    /// panicked, and then no request can be recorded.
    pub fn is_running(&self) -> bool {
        !self.jobs.is_closed()
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

async fn run(pool: PgPool, key: ChainKey, mut queue: mpsc::Receiver<Job>, limits: WriterLimits) {
    let max_batch = limits.max_batch;
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
        let result = store::append(&pool, &key, &limits.bounds, &records)
            .await
            .map_err(Arc::new);
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

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use sqlx::postgres::PgPoolOptions;

    use super::*;

    #[tokio::test]
    async fn a_writer_whose_task_is_gone_says_so_and_refuses_records() {
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let key = ChainKey::new(&SecretString::from("chain-key-for-tests-0123456789abcdef"));
        let limits = WriterLimits {
            queue_capacity: 4,
            max_batch: 4,
            wait: Duration::from_secs(1),
            bounds: AppendBounds::default(),
        };
        let (writer, task) = AuditWriter::spawn(pool, key, limits);
        assert!(writer.is_running());

        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());

        assert!(!writer.is_running());
        let record = AuditRecord::start("r-1", None, None);
        assert!(matches!(
            writer.record(record).await,
            Err(AuditError::Stopped)
        ));
    }
}
