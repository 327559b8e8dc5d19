//! [`Recorder`]: writes enqueued jobs to PostgreSQL in batches.
//!
//! Every enqueue needs its row committed before it answers 202. Committed one by one,
//! each row costs PostgreSQL a round trip, a transaction and a WAL flush, and sqlx a
//! connection checkout and release; at 64 concurrent requests that was most of the
//! dispatcher's cost. The recorder instead lets requests queue up while up to
//! [`IN_FLIGHT`] batches are being written, and writes whatever has queued (up to
//! [`MAX_BATCH`]) as the next batch, in one statement and one transaction
//! ([`jobs_db::record_batch`], through the shared [`gpuq_queue::batch`]). A lone request
//! is written at once, alone: batching adds no wait, it only collects what is already
//! waiting.
//!
//! Nothing changes for a request: it still answers only after its own row is committed,
//! and each job still gets its own limit check and idempotency claim.

use std::sync::Arc;

use gpuq_queue::batch::{BatchWrite, Batcher};
use sqlx::PgPool;

use crate::jobs_db::{self, NewJob, RecordRules, Recorded};
use crate::ApiError;

/// Batches being written at once (each holds one pooled connection). Measured with
/// `gpuq-bench http-enqueue` at 64 clients: 1 and 2 both about 3,600–4,200 req/s, 4 about
/// 3,000–3,200 (smaller batches); 2 keeps one slow batch from stalling every request.
pub const IN_FLIGHT: usize = 2;
/// Jobs per batch at most.
pub const MAX_BATCH: usize = 128;

/// Handle to the batch writer; cheap to share. The writer task ends when every handle is
/// gone.
#[derive(Clone)]
pub struct Recorder {
    batcher: Batcher<JobWriter>,
}

impl Recorder {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(db: PgPool, rules: RecordRules) -> Self {
        Self {
            batcher: Batcher::spawn(JobWriter { db, rules }, IN_FLIGHT, MAX_BATCH),
        }
    }

    /// Records `job` (with its idempotency key) once it is committed, or says why not.
    pub async fn record(&self, job: NewJob) -> Result<Recorded, ApiError> {
        self.batcher
            .submit(job)
            .await
            .ok_or_else(|| ApiError::Unavailable("the job recorder has stopped".into()))?
            .map_err(|e| ApiError::from_shared_db_error(&e))
    }
}

struct JobWriter {
    db: PgPool,
    rules: RecordRules,
}

impl BatchWrite for JobWriter {
    type Item = NewJob;
    type Answer = Result<Recorded, Arc<sqlx::Error>>;

    async fn write(&self, jobs: Vec<NewJob>) -> Vec<Self::Answer> {
        write_batch(&self.db, self.rules, &jobs).await
    }
}

/// Records `jobs` as one batch; one answer per job, in order. If PostgreSQL refuses the
/// batch itself (a constraint, not a lost connection), each job is retried alone, so one
/// bad row fails only its own request.
pub async fn write_batch(
    db: &PgPool,
    rules: RecordRules,
    jobs: &[NewJob],
) -> Vec<Result<Recorded, Arc<sqlx::Error>>> {
    let refs: Vec<&NewJob> = jobs.iter().collect();
    match jobs_db::record_batch(db, &refs, rules).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(sqlx::Error::Database(e)) if jobs.len() > 1 => {
            tracing::warn!(error = %e, jobs = jobs.len(), "batch refused; recording its jobs one by one");
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs {
                let answer = jobs_db::record_batch(db, &[job], rules)
                    .await
                    .map(|mut a| a.remove(0))
                    .map_err(Arc::new);
                answers.push(answer);
            }
            answers
        }
        Err(e) => {
            let e = Arc::new(e);
            jobs.iter().map(|_| Err(Arc::clone(&e))).collect()
        }
    }
}
