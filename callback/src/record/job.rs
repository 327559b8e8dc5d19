//! The `jobs` row as the recorder sees it, loaded under a row lock.

use std::collections::HashMap;

use gpuq_schemas::{JobId, JobKind, JobStatus, JobType, UserId};
use sqlx::{PgConnection, PgPool};

use super::RecordError;

/// The columns a transition needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub job_type: String,
    pub queue: String,
    pub status: JobStatus,
    pub worker_id: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The images the job asked for (from its envelope; absent from the transition
    /// functions' answers, which need no outputs).
    #[sqlx(default)]
    pub num_images: Option<i32>,
}

/// A [`JobRow`] whose text columns have been parsed.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: JobId,
    pub user: UserId,
    pub job_type: JobType,
    pub queue: String,
    pub status: JobStatus,
    pub worker_id: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub num_images: Option<u32>,
}

impl Job {
    /// Images or video, from the catalog.
    pub fn kind(&self) -> JobKind {
        self.job_type.spec().kind
    }

    /// The most image or video rows a completion may record: the images the job asked
    /// for (the type's largest batch when the row predates stored envelopes), or one video.
    pub fn max_outputs(&self) -> usize {
        let spec = self.job_type.spec();
        match spec.kind {
            JobKind::Video => 1,
            JobKind::Image => self
                .num_images
                .or_else(|| spec.allowed_num_images.iter().copied().max())
                .unwrap_or(1)
                .max(1) as usize,
        }
    }
}

impl TryFrom<JobRow> for Job {
    type Error = RecordError;

    fn try_from(row: JobRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| RecordError::Corrupt(format!("job {}: {what}", row.id));
        Ok(Self {
            id: row.id.into(),
            user: row.user_id.into(),
            job_type: row
                .job_type
                .parse()
                .map_err(|_| corrupt("unknown job_type"))?,
            status: row.status,
            queue: row.queue,
            worker_id: row.worker_id,
            created_at: row.created_at,
            started_at: row.started_at,
            num_images: row.num_images.and_then(|n| u32::try_from(n).ok()),
        })
    }
}

const COLUMNS: &str = "id, user_id, job_type, queue, status, worker_id, created_at, started_at, \
     (envelope #>> '{config,num_images}')::int AS num_images";

/// Loads and locks the job inside the caller's transaction: concurrent callbacks for one
/// job wait here for each other, so each sees the previous one's result.
pub(crate) async fn lock(conn: &mut PgConnection, id: JobId) -> Result<Job, RecordError> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE");
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await?
        .ok_or(RecordError::JobNotFound)?
        .try_into()
}

/// What a transition function (`gpuq_start_job`, `gpuq_complete_job`) returns: the job as
/// it was when locked, and whether the transition was applied.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Locked {
    #[sqlx(flatten)]
    row: JobRow,
    applied: bool,
    /// The attempt's GPU-seconds, when the transition ended it (`gpuq_complete_job`).
    #[sqlx(default)]
    pub gpu_seconds: Option<f64>,
}

impl Locked {
    /// The job as locked and whether the transition applied; `JobNotFound` for no row.
    pub fn into_job(locked: Option<Self>) -> Result<(Job, bool), RecordError> {
        let locked = locked.ok_or(RecordError::JobNotFound)?;
        Ok((locked.row.try_into()?, locked.applied))
    }
}

/// The statuses a job may move to `to` from: the `p_from` of the transition functions.
pub(crate) fn sources(to: JobStatus) -> Vec<&'static str> {
    JobStatus::ALL
        .into_iter()
        .filter(|s| s.can_transition(to))
        .map(JobStatus::as_str)
        .collect()
}

/// The rows of `ids` that exist, read without a lock (progress reports change no row; a
/// transition builds its arguments from columns that never change, and the transition
/// function checks the status again under its lock). [`super::Recorder::peek`] gathers
/// the reads of concurrent reports into one call.
pub(crate) async fn peek_many(
    pool: &PgPool,
    ids: &[uuid::Uuid],
) -> Result<HashMap<uuid::Uuid, JobRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ANY($1)");
    let rows = sqlx::query_as::<_, JobRow>(&sql)
        .bind(ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}
