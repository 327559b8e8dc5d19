//! [`Transitions`]: starts and completions written in batches (`gpuq_start_jobs`,
//! `gpuq_complete_jobs`), one transaction for the reports that arrive while earlier ones
//! are being written ([`gpuq_service::batch`]). `gpuq-bench e2e` showed each report's own
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
use gpuq_service::batch::{BatchWrite, Batcher};
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
/// (`None`: no such job).
pub(super) type Answer = Result<Option<job::Locked>, Arc<sqlx::Error>>;

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
    type Answer = Answer;

    async fn write(&self, batch: Vec<T>) -> Vec<Answer> {
        match apply(&self.pool, &batch).await {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(sqlx::Error::Database(e)) if batch.len() > 1 => {
                tracing::warn!(error = %e, reports = batch.len(), "batch refused; writing its reports one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for one in batch.chunks(1) {
                    let answer = apply(&self.pool, one).await;
                    answers.push(answer.map(|mut a| a.remove(0)).map_err(Arc::new));
                }
                answers
            }
            Err(e) => {
                let e = Arc::new(e);
                batch.iter().map(|_| Err(Arc::clone(&e))).collect()
            }
        }
    }
}

/// Reads job rows without a lock ([`job::peek`]), those asked for meanwhile in one query.
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
    let rows: Vec<Numbered> = sqlx::query_as(T::QUERY)
        .bind(sqlx::types::Json(batch))
        .fetch_all(pool)
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
