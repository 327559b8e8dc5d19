//! [`Recorder`]: applies one authenticated, parsed callback to PostgreSQL and Redis.
//!
//! A report counts only when it is about the job's current claim in Redis ([`claim`]: the
//! fence); anything else is `ignored` with a reason and changes nothing. Every transition
//! locks the job row (`SELECT ... FOR UPDATE`) in a transaction, so callbacks for one job
//! are applied one after the other and each sees the result of the previous one: the first
//! terminal callback wins, later ones are `ignored`. Redis is told after the commit (ack)
//! or, for failures, inside the transaction (the retry decision is Redis's), and the change
//! is then published on the job's event stream. See `docs/adr/0003-callback-recording.md`.
//!
//! One file per transition: [`processing`], [`completed`], [`failed`], [`progress`];
//! [`batches`] writes starts and completions in batches (and reads the rows before them);
//! [`replay`] recognises a signed request seen before.

mod batches;
mod claim;
mod completed;
mod failed;
mod health;
mod job;
mod outputs;
mod processing;
mod progress;
mod replay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gpuq_queue::batch::Batcher;
use gpuq_queue::{Acker, Queue, QueueConfig, RedisConn, RedisTarget};
use gpuq_schemas::{CallbackStatus, JobEvent, JobId, JobStatus, ParsedCallback, QueueName};
use sqlx::PgPool;

use crate::storage_path::StorageRules;
use batches::{Completion, Peeks, Start, Transitions, Unwritten};
pub use claim::Stale;
pub use failed::POISON_JOB;
pub use health::HealthSettings;
pub use outputs::OutputError;
pub use replay::Sight;

/// How long one Redis operation may take before the callback gives up on it.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// The answer to a recorded callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The job.
    pub job_id: JobId,
    /// Its status after the callback.
    pub status: JobStatus,
    /// Why nothing changed, when nothing did: the job had finished, or the report is not
    /// about its current claim.
    pub ignored: Option<Stale>,
    /// The job's type, for metrics.
    pub job_type: gpuq_schemas::JobType,
    /// The job's queue, for metrics: a provider's queue is how its latency and errors show
    /// (ADR 0017).
    pub queue: String,
    /// Seconds from acceptance to the first start this report recorded (its claim's time):
    /// a `processing`, or an end (a completion, a final failure) whose worker reported none.
    pub wait_seconds: Option<f64>,
    /// Seconds from first start to this terminal report.
    pub run_seconds: Option<f64>,
    /// The attempt this report ended: its GPU-seconds and outcome (`completed`, `failed`,
    /// `retried`, `cancelled`).
    pub attempt: Option<(f64, &'static str)>,
    /// The failure made the job poison (dead-lettered at once, ADR 0019).
    pub poison: bool,
    /// The failure quarantined its worker.
    pub quarantined: bool,
    /// A failed attempt's code (`execution_timeout`, `poison_job`, ...; `none` when the
    /// worker gave none), for metrics.
    pub failure_code: Option<&'static str>,
}

impl Recorded {
    /// A change to `status` of `job`, with the timings that change implies.
    pub(crate) fn changed(job: &job::Job, status: JobStatus) -> Self {
        let since = |t: chrono::DateTime<chrono::Utc>| {
            (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
        };
        Self {
            job_id: job.id,
            status,
            ignored: None,
            job_type: job.job_type,
            queue: job.queue.clone(),
            wait_seconds: None,
            run_seconds: if status.is_terminal() {
                job.started_at.map(since)
            } else {
                None
            },
            attempt: None,
            poison: false,
            failure_code: None,
            quarantined: false,
        }
    }

    /// The same answer, with the wait from acceptance to the start this report recorded,
    /// if it recorded the job's first (`job` as it was before, `started`: the claim's time,
    /// or unknown, then now): a `processing`, or an end whose worker reported none.
    pub(crate) fn first_start(
        self,
        job: &job::Job,
        started: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        if job.started_at.is_some() {
            return self;
        }
        let seconds = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
            (to - from).num_milliseconds().max(0) as f64 / 1000.0
        };
        let (started, now) = (started.unwrap_or_else(chrono::Utc::now), chrono::Utc::now());
        Self {
            wait_seconds: Some(seconds(job.created_at, started)),
            // A job that ended without a recorded start ran from its claim.
            run_seconds: self
                .run_seconds
                .or_else(|| self.status.is_terminal().then(|| seconds(started, now))),
            ..self
        }
    }

    /// The same answer, with the GPU-seconds of the attempt it ended (None: a replayed
    /// report ended nothing).
    pub(crate) fn metered(self, gpu_seconds: Option<f64>, outcome: &'static str) -> Self {
        Self {
            attempt: gpu_seconds.map(|s| (s, outcome)),
            ..self
        }
    }
}

/// Why a callback was not recorded. Nothing was changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No job with this id.
    #[error("no job with this id")]
    JobNotFound,
    /// A `progress` callback without progress.
    #[error("a progress callback must carry `progress`")]
    MissingProgress,
    /// The outputs cannot be recorded.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// An output's storage path is already recorded for another job.
    #[error("an output's storage path is already recorded for another job")]
    StoragePathInUse,
    /// Redis was needed (a failure's retry decision) and did not answer.
    #[error("redis unavailable")]
    Redis(#[source] anyhow::Error),
    /// PostgreSQL failed (one error, shared by the reports of a batch it failed).
    #[error("database error")]
    Database(#[source] Arc<sqlx::Error>),
    /// A row holds a value the service cannot interpret.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for RecordError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(Arc::new(e))
    }
}

/// Records callbacks. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    pool: PgPool,
    redis: RedisTarget,
    conn: RedisConn,
    namespace: String,
    queue_config: QueueConfig,
    storage: StorageRules,
    /// At most one `progress` webhook per job and endpoint per this.
    progress_webhooks_every: Duration,
    /// When a failure makes a job poison or its worker sick.
    health: HealthSettings,
    /// Reads job rows in batches.
    peeks: Batcher<Peeks>,
    /// Writes `processing` reports in batches.
    starts: Batcher<Transitions<Start>>,
    /// Writes completions in batches.
    completions: Batcher<Transitions<Completion>>,
    /// Acks per queue, sent in batches: made on a queue's first ack, on the runtime
    /// [`Self::new`] ran on (as the batch writers). Bounded: one per queue a job row names.
    acks: Arc<Mutex<HashMap<QueueName, Acker>>>,
    runtime: tokio::runtime::Handle,
}

impl Recorder {
    /// A recorder over `pool` and the Redis behind `redis`/`conn` (see
    /// [`gpuq_queue::connect`]), with queue keys under `namespace`. Starts its batch
    /// writers on the current tokio runtime.
    pub fn new(
        pool: PgPool,
        redis: RedisTarget,
        conn: RedisConn,
        namespace: String,
        queue_config: QueueConfig,
        storage: StorageRules,
    ) -> Self {
        Self {
            peeks: Peeks::spawn(pool.clone()),
            starts: Transitions::spawn(pool.clone()),
            completions: Transitions::spawn(pool.clone()),
            acks: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            pool,
            redis,
            conn,
            namespace,
            queue_config,
            storage,
            progress_webhooks_every: Duration::from_secs(2),
            health: HealthSettings::default(),
        }
    }

    /// Judges jobs and workers by `health` (ADR 0019).
    pub fn with_health(mut self, health: HealthSettings) -> Self {
        self.health = health;
        self
    }

    /// Throttles `progress` webhooks to one per job and endpoint per `every`.
    pub fn with_progress_webhooks(mut self, every: Duration) -> Self {
        self.progress_webhooks_every = every;
        self
    }

    /// Applies `callback`.
    pub async fn record(&self, callback: ParsedCallback) -> Result<Recorded, RecordError> {
        match callback.status {
            CallbackStatus::Progress => self.progress(callback).await,
            CallbackStatus::Processing => self.processing(callback).await,
            CallbackStatus::Completed => self.completed(callback).await,
            CallbackStatus::Failed => self.failed(callback).await,
        }
    }

    /// Writes `transition` with the others of its kind that arrived meanwhile: the job as
    /// locked and whether it applied. A storage path recorded for another job is a 409
    /// (`StoragePathInUse`), and nothing was written.
    async fn transition<T: batches::Transition>(
        &self,
        writer: &Batcher<Transitions<T>>,
        transition: T,
    ) -> Result<Option<job::Locked>, RecordError> {
        // The writers stop only with the service: the report is retried elsewhere.
        let answer = writer
            .submit(transition)
            .await
            .ok_or_else(|| RecordError::from(sqlx::Error::PoolClosed))?;
        let error = match answer {
            Ok(locked) => return Ok(locked),
            Err(Unwritten::Busy(alone)) => match batches::apply_alone(&self.pool, &alone).await {
                Ok(locked) => return Ok(locked),
                Err(e) => Arc::new(e),
            },
            Err(Unwritten::Failed(e)) => e,
        };
        Err(
            match error.as_database_error().map(|d| d.is_unique_violation()) {
                Some(true) => RecordError::StoragePathInUse,
                _ => RecordError::Database(error),
            },
        )
    }

    /// Loads the job without a lock, with the reads of concurrent reports.
    async fn peek(&self, id: JobId) -> Result<job::Job, RecordError> {
        // The reader stops only with the service: the report is retried elsewhere.
        let row = self
            .peeks
            .submit(id.as_uuid())
            .await
            .ok_or_else(|| RecordError::from(sqlx::Error::PoolClosed))?
            .map_err(RecordError::Database)?;
        row.ok_or(RecordError::JobNotFound)?.try_into()
    }

    /// The queue named in a job row.
    fn queue(&self, name: &str) -> Result<Queue, RecordError> {
        let name = QueueName::parse(name)
            .map_err(|e| RecordError::Corrupt(format!("queue name {name:?}: {e}")))?;
        Ok(Queue::new(
            self.redis.clone(),
            self.conn.clone(),
            &self.namespace,
            name,
            self.queue_config.clone(),
        ))
    }

    /// The acker of `queue`.
    fn acker(&self, queue: &Queue) -> Acker {
        let mut acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        let acker = acks.entry(queue.name().clone()).or_insert_with(|| {
            let _on = self.runtime.enter();
            queue.acker()
        });
        acker.clone()
    }

    /// Publishes `event` on the job's stream. Best effort: the change is already recorded,
    /// and a reader that missed it still sees the row through `GET /v1/jobs/{id}`.
    async fn publish(&self, event: JobEvent) {
        let mut conn = self.conn.clone();
        let publish = gpuq_queue::publish_event(&mut conn, &self.namespace, &event);
        match tokio::time::timeout(REDIS_TIMEOUT, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = ?e, "publishing the job event failed"),
            Err(_) => tracing::warn!("publishing the job event timed out"),
        }
    }

    /// Removes a finished job from Redis, with the acks of other reports committed
    /// meanwhile. Best effort: the worker SDK acks too, and a job left behind is
    /// redelivered and its report `ignored`, which acks again.
    async fn ack(&self, job: JobId, queue: &str) {
        let acks = match self.queue(queue) {
            Ok(q) => self.acker(&q),
            Err(e) => return tracing::error!(error = %e, "cannot ack"),
        };
        match tokio::time::timeout(REDIS_TIMEOUT, acks.ack(job, None)).await {
            Ok(Ok(outcome)) => tracing::debug!(?outcome, "acked in redis"),
            Ok(Err(e)) => tracing::warn!(error = ?e, "ack failed; the job stays in redis"),
            Err(_) => tracing::warn!("ack timed out; the job stays in redis"),
        }
    }
}

/// A report that changes nothing: the job finished, or the report is stale.
fn ignored(job: &job::Job, why: Stale) -> Recorded {
    tracing::info!(status = %job.status, reason = why.reason(), "callback ignored");
    Recorded {
        ignored: Some(why),
        wait_seconds: None,
        run_seconds: None,
        ..Recorded::changed(job, job.status)
    }
}

/// `Redis` error for a timed-out or failed queue call.
fn redis_error<T, E>(
    result: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Result<T, RecordError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RecordError::Redis(e.into())),
        Err(e) => Err(RecordError::Redis(e.into())),
    }
}
