//! [`Transitions`]: starts and completions written in batches (`gpuq_start_jobs`,
//! `gpuq_complete_jobs`), one transaction for the reports that arrive while earlier ones
//! are being written ([`gpuq_queue::batch`]). `gpuq-bench e2e` showed each report's own
//! transaction and round trip among the largest costs of the whole path (issue #21).
//! [`Peeks`]: the unlocked reads before them, one query per batch the same way.
//!
//! Nothing changes for a report: it is answered after its own transition is committed,
//! with its own result. If PostgreSQL refuses a batch (a completion's storage path is
//! recorded for another job), each report of it is written alone, so only that one is
//! refused.

use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gpuq_queue::batch::{BatchWrite, Batcher};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use super::job;

/// Batches being written at once, per transition (each holds one pooled connection).
const IN_FLIGHT: usize = 2;
/// Reports per batch at most.
const MAX_BATCH: usize = 64;

/// A transition written in batches by the function named here.
pub(super) trait Transition: Serialize + Send + Sync + 'static {
    /// `gpuq_start_jobs` or `gpuq_complete_jobs`: takes a JSON array of these, returns
    /// the row of each (`ord`: its place, from 1).
    const QUERY: &'static str;
}

/// A `processing` report: the arguments of `gpuq_start_job`, by name.
#[derive(Debug, Serialize)]
pub(super) struct Start {
    pub id: uuid::Uuid,
    pub from: Vec<&'static str>,
    pub worker: String,
    pub attempt: i32,
    pub gpu: Option<String>,
    /// The claim's time: the attempt's start (`None`: unknown, the report's arrival).
    pub claimed_at: Option<DateTime<Utc>>,
}

impl Transition for Start {
    const QUERY: &'static str = "SELECT * FROM gpuq_start_jobs($1)";
}

/// A completion: the arguments of `gpuq_complete_job`, by name.
#[derive(Debug, Serialize)]
pub(super) struct Completion {
    pub id: uuid::Uuid,
    pub from: Vec<&'static str>,
    pub kind: &'static str,
    /// The output rows (`completed::RowJson`).
    pub outputs: Value,
    pub enhanced_prompt: Option<String>,
    pub worker: String,
    pub attempt: i32,
    pub claimed_at: Option<DateTime<Utc>>,
    pub generation_seconds: Option<f64>,
    pub gpu: Option<String>,
}

impl Transition for Completion {
    const QUERY: &'static str = "SELECT * FROM gpuq_complete_jobs($1)";
}

/// What a transition found: the job as locked and whether the transition applied
/// (`None`: no such job), or why it was not written.
pub(super) type Answer<T> = Result<Option<job::Locked>, Unwritten<T>>;

/// Why a batched transition was not written.
pub(super) enum Unwritten<T> {
    /// A lock it needs (its job's row, which a failure report holds across a Redis call,
    /// or its tenant's account) stayed held past the lock timeout, for it or for a report
    /// before it in the batch's one-by-one pass: the caller writes it alone
    /// ([`apply_alone`]) and waits for that lock itself, so that the batch's slot does
    /// not wait with it.
    Busy(T),
    /// PostgreSQL failed or refused it.
    Failed(Arc<sqlx::Error>),
}

/// Writes transitions of one kind in batches.
pub(super) struct Transitions<T> {
    pool: PgPool,
    kind: PhantomData<fn(T)>,
}

impl<T: Transition> Transitions<T> {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(pool: PgPool) -> Batcher<Self> {
        let writer = Self {
            pool,
            kind: PhantomData,
        };
        Batcher::spawn(writer, IN_FLIGHT, MAX_BATCH)
    }
}

impl<T: Transition> BatchWrite for Transitions<T> {
    type Item = T;
    type Answer = Answer<T>;

    async fn write(&self, batch: Vec<T>) -> Vec<Answer<T>> {
        // A batch of more than one gives up on a row locked past the lock timeout
        // (`gpuq_lock_batch`).
        match apply(&self.pool, &batch).await {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(sqlx::Error::Database(e)) if batch.len() > 1 => {
                tracing::warn!(error = %e, reports = batch.len(), "batch refused; writing its reports one by one");
                let mut answers = Vec::with_capacity(batch.len());
                // After one lock timeout, the rest go back to their requests at once: one
                // busy lock (a hot tenant's account) would otherwise cost each of them the
                // timeout in turn.
                let mut busy = false;
                for one in batch {
                    if busy {
                        answers.push(Err(Unwritten::Busy(one)));
                        continue;
                    }
                    answers.push(match apply_bounded(&self.pool, &one).await {
                        Ok(locked) => Ok(locked),
                        Err(e) if is_lock_timeout(&e) => {
                            busy = true;
                            Err(Unwritten::Busy(one))
                        }
                        Err(e) => Err(Unwritten::Failed(Arc::new(e))),
                    });
                }
                answers
            }
            Err(e) => {
                let e = Arc::new(e);
                batch
                    .iter()
                    .map(|_| Err(Unwritten::Failed(Arc::clone(&e))))
                    .collect()
            }
        }
    }
}

/// How long a report written in a batch (or in a refused batch's one-by-one pass) waits
/// for a row lock; the same as `gpuq_lock_batch`'s.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '250ms'";

/// Writes `one` alone, giving up on a row locked past [`LOCK_TIMEOUT`].
async fn apply_bounded<T: Transition>(
    pool: &PgPool,
    one: &T,
) -> Result<Option<job::Locked>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
    let rows = rows(&mut *tx, std::slice::from_ref(one)).await?;
    tx.commit().await?;
    Ok(rows.into_iter().next().flatten())
}

/// Writes `one` alone, waiting for its row as long as it takes: a report whose row was
/// busy in its batch.
pub(super) async fn apply_alone<T: Transition>(
    pool: &PgPool,
    one: &T,
) -> Result<Option<job::Locked>, sqlx::Error> {
    let rows = rows(pool, std::slice::from_ref(one)).await?;
    Ok(rows.into_iter().next().flatten())
}

/// PostgreSQL's `lock_not_available`: a lock timeout ran out.
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03")
}

/// Reads job rows without a lock ([`job::peek_many`]), those asked for meanwhile in one
/// query.
pub(super) struct Peeks {
    pool: PgPool,
}

impl Peeks {
    /// Starts the reader on the current tokio runtime.
    pub fn spawn(pool: PgPool) -> Batcher<Self> {
        Batcher::spawn(Self { pool }, IN_FLIGHT, MAX_BATCH)
    }
}

impl BatchWrite for Peeks {
    type Item = uuid::Uuid;
    type Answer = Result<Option<job::JobRow>, Arc<sqlx::Error>>;

    async fn write(&self, ids: Vec<uuid::Uuid>) -> Vec<Self::Answer> {
        match job::peek_many(&self.pool, &ids).await {
            // An id asked for twice (a report and its retry) gets the row twice.
            Ok(rows) => ids.iter().map(|id| Ok(rows.get(id).cloned())).collect(),
            Err(e) => {
                let e = Arc::new(e);
                ids.iter().map(|_| Err(Arc::clone(&e))).collect()
            }
        }
    }
}

/// A row of a batch function: a report's place in its batch (from 1) and its row.
#[derive(sqlx::FromRow)]
struct Numbered {
    ord: i32,
    #[sqlx(flatten)]
    locked: job::Locked,
}

/// Writes `batch` in one transaction; one answer per report, in order.
async fn apply<T: Transition>(
    pool: &PgPool,
    batch: &[T],
) -> Result<Vec<Option<job::Locked>>, sqlx::Error> {
    rows(pool, batch).await
}

/// Runs `T::QUERY` over `batch` on `db`; one answer per report, in order.
async fn rows<'e, T: Transition>(
    db: impl sqlx::PgExecutor<'e>,
    batch: &[T],
) -> Result<Vec<Option<job::Locked>>, sqlx::Error> {
    let rows: Vec<Numbered> = sqlx::query_as(T::QUERY)
        .bind(sqlx::types::Json(batch))
        .fetch_all(db)
        .await?;
    let mut answers: Vec<Option<job::Locked>> = batch.iter().map(|_| None).collect();
    for row in rows {
        let slot = usize::try_from(row.ord - 1)
            .ok()
            .and_then(|i| answers.get_mut(i));
        let Some(slot) = slot else {
            return Err(sqlx::Error::Protocol(format!(
                "{} answered for report {} of {}",
                T::QUERY,
                row.ord,
                batch.len()
            )));
        };
        *slot = Some(row.locked);
    }
    Ok(answers)
}
