//! Group commit: requests hand their record to one writer task, which appends everything
//! waiting in one transaction and wakes each request only after the commit.
//!
//! Two lanes: issued and failed requests' records wait in one queue and are never shed;
//! refusals (denied) wait in a smaller one that the writer serves second. When the refusal
//! lane is full a refusal is shed: counted, and written with the others shed in its
//! interval as one aggregate row ([`super::shed`]). So a flood of junk requests costs one
//! row per interval, and never delays or refuses the records of real callers.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::appender::{AppendBounds, ChainAppender};
use super::chain::{ChainEntry, ChainKey};
use super::shed::ShedTally;
use super::sink::Shipper;
use super::{AuditRecord, Outcome};
use crate::metrics::WriterMetrics;

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
    /// A refusal was not written on its own: the refusal lane was full. It is counted in
    /// the next aggregate row.
    #[error("the refusal was shed and counted")]
    Shed,
}

struct Job {
    record: AuditRecord,
    /// Where the commit is reported; none for an aggregate row, which nobody waits for.
    done: Option<oneshot::Sender<Result<ChainEntry, Arc<sqlx::Error>>>>,
}

/// Hands records to the writer task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
    refusals: mpsc::Sender<Job>,
    shed: Arc<ShedTally>,
    wait: Duration,
    metrics: WriterMetrics,
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterLimits {
    /// Records of issued and failed requests that may wait at once; more are refused at
    /// once.
    pub queue_capacity: usize,
    /// Refusals that may wait at once; more are shed.
    pub refusal_queue_capacity: usize,
    /// How often shed refusals are written as one aggregate row.
    pub shed_report_interval: Duration,
    /// Records per transaction at most.
    pub max_batch: usize,
    /// How long a request waits for its commit.
    pub wait: Duration,
    /// How long an append waits on the database.
    pub bounds: AppendBounds,
}

impl AuditWriter {
    /// Starts the writer task, shipping nothing. The task ends once every handle is dropped
    /// and every record queued by then is committed.
    pub fn spawn(pool: PgPool, key: ChainKey, limits: WriterLimits) -> (Self, JoinHandle<()>) {
        Self::spawn_measured(pool, key, limits, None, WriterMetrics::default())
    }

    /// Starts the writer task, which records its batches, commits and chain head in
    /// `metrics` and, after each commit, offers the committed rows to `sink`.
    pub(crate) fn spawn_measured(
        pool: PgPool,
        key: ChainKey,
        limits: WriterLimits,
        sink: Option<Shipper>,
        metrics: WriterMetrics,
    ) -> (Self, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(limits.queue_capacity);
        let (refusals, refusal_queue) = mpsc::channel(limits.refusal_queue_capacity);
        let shed = Arc::new(ShedTally::default());
        let lanes = Lanes {
            queue,
            refusal_queue,
            shed: Arc::clone(&shed),
            report: limits.shed_report_interval,
        };
        let appender = ChainAppender::new(&pool, &limits.bounds);
        let task = tokio::spawn(run(
            appender,
            key,
            lanes,
            limits.max_batch,
            sink,
            metrics.clone(),
        ));
        (
            Self {
                jobs,
                refusals,
                shed,
                wait: limits.wait,
                metrics,
            },
            task,
        )
    }

    /// Whether the writer task still takes records: it is gone once it has ended or
    /// panicked, and then no request can be recorded.
    pub(crate) fn is_running(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// Records waiting now: issued and failed requests', and refusals.
    pub(crate) fn queue_depth(&self) -> (usize, usize) {
        let waiting = |lane: &mpsc::Sender<Job>| lane.max_capacity() - lane.capacity();
        (waiting(&self.jobs), waiting(&self.refusals))
    }

    /// Counts a refusal in the next aggregate row instead of writing it: for refusals
    /// whose number the refused side decides (a caller over its rate limit), so that
    /// sending faster never writes more rows.
    pub(crate) fn tally(&self, record: &AuditRecord) {
        self.shed.add(record);
        self.metrics.shed.increment(1);
    }

    /// Queues the record and waits until it is committed; returns its row's id and hash in
    /// the chain. A denied record goes to the refusal lane, and is shed
    /// ([`AuditError::Shed`]) when that is full.
    pub async fn record(&self, record: AuditRecord) -> Result<ChainEntry, AuditError> {
        let (done, committed) = oneshot::channel();
        let refusal = record.outcome == Outcome::Denied;
        let lane = if refusal { &self.refusals } else { &self.jobs };
        let job = Job {
            record,
            done: Some(done),
        };
        lane.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) if refusal => {
                self.shed.add(&job.record);
                self.metrics.shed.increment(1);
                AuditError::Shed
            }
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

/// What the writer task reads from.
struct Lanes {
    queue: mpsc::Receiver<Job>,
    refusal_queue: mpsc::Receiver<Job>,
    shed: Arc<ShedTally>,
    report: Duration,
}

impl Lanes {
    /// Waits for work, then takes up to `max` jobs: issued and failed requests' first,
    /// refusals after them, and the aggregate of shed refusals when its time has come.
    /// Returns `None` once both lanes are closed (every handle dropped) and empty.
    async fn next_batch(
        &mut self,
        batch: &mut Vec<Job>,
        max: usize,
        report: &mut tokio::time::Interval,
    ) -> Option<()> {
        let drained = |lane: &mpsc::Receiver<Job>| lane.is_closed() && lane.is_empty();
        let (queue_done, refusals_done) = (drained(&self.queue), drained(&self.refusal_queue));
        if queue_done && refusals_done {
            return None;
        }
        let first = tokio::select! {
            // The report first: it is ready once an interval, and under a flood the lanes
            // always are.
            biased;
            _ = report.tick() => self.shed.take_report().map(|record| Job { record, done: None }),
            // A lane that closes meanwhile yields none: the caller comes back, and the lane
            // is left out from then on, rather than waiting for the next report.
            job = self.queue.recv(), if !queue_done => job,
            job = self.refusal_queue.recv(), if !refusals_done => job,
        };
        batch.extend(first);
        while batch.len() < max {
            match self.queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        while batch.len() < max {
            match self.refusal_queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        Some(())
    }
}

/// What the writer task commits to, and ships to once committed.
struct Chain {
    appender: ChainAppender,
    key: ChainKey,
    sink: Option<Shipper>,
    metrics: WriterMetrics,
}

impl Chain {
    /// Appends the batch's records, wakes each waiting request with its row's place in the
    /// chain or the error, then offers the committed rows to the sink.
    async fn commit(&mut self, batch: &mut Vec<Job>, shed: &ShedTally) {
        let records: Vec<&AuditRecord> = batch.iter().map(|job| &job.record).collect();
        let started = std::time::Instant::now();
        let result = self
            .appender
            .append(&self.key, &records)
            .await
            .map_err(Arc::new);
        self.metrics.commit_seconds.record(started.elapsed());
        self.metrics.batch_rows.record(batch.len() as f64);
        match &result {
            Ok(rows) => {
                if let Some(head) = rows.iter().map(|row| row.entry().id).max() {
                    self.metrics.chain_head.set(head as f64);
                }
            }
            Err(error) => {
                self.metrics.commit_failures.increment(1);
                tracing::warn!(error = %error, rows = batch.len(), "audit batch failed");
            }
        }
        for (i, job) in batch.drain(..).enumerate() {
            let outcome = match &result {
                Ok(rows) => Ok(rows[i].entry()),
                Err(error) => Err(Arc::clone(error)),
            };
            match job.done {
                // The request may have timed out meanwhile; its row is committed all the same.
                Some(done) => {
                    let _ = done.send(outcome);
                }
                // An aggregate that could not be written goes into the next one.
                None if outcome.is_err() => {
                    if let Some(summary) = &job.record.shed {
                        shed.restore(summary);
                    }
                }
                None => {}
            }
        }
        // After every request is woken: shipping never delays an answer.
        if let (Ok(rows), Some(sink)) = (result, &self.sink) {
            sink.ship(rows);
        }
    }
}

async fn run(
    appender: ChainAppender,
    key: ChainKey,
    mut lanes: Lanes,
    max_batch: usize,
    sink: Option<Shipper>,
    metrics: WriterMetrics,
) {
    let mut chain = Chain {
        appender,
        key,
        sink,
        metrics,
    };
    let mut batch = Vec::with_capacity(max_batch);
    let mut report = tokio::time::interval(lanes.report);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whatever arrived while the previous batch committed forms the next one.
    while let Some(()) = lanes.next_batch(&mut batch, max_batch, &mut report).await {
        // A request that stopped waiting has answered 503 without a token; a row saying it
        // was issued would be false.
        batch.retain(|job: &Job| job.done.as_ref().is_none_or(|done| !done.is_closed()));
        if batch.is_empty() {
            continue;
        }
        chain.commit(&mut batch, &lanes.shed).await;
    }
    // Shutting down: the refusals shed since the last report are written now, not lost.
    if let Some(record) = lanes.shed.take_report() {
        batch.push(Job { record, done: None });
        chain.commit(&mut batch, &lanes.shed).await;
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
            refusal_queue_capacity: 4,
            shed_report_interval: Duration::from_secs(60),
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
