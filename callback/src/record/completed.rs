//! `completed`: the outputs become `images` or `videos` rows and the job finishes, in one
//! transaction; then the job leaves Redis and the change is published.

use gpuq_schemas::{JobEvent, JobKind, JobStatus};
use sqlx::PgConnection;

use super::outputs::{self, OutputRow};
use super::{ignored, job, RecordError, Recorded, Recorder, Report};

impl Recorder {
    /// Records the outputs and finishes the job. A rejected output path fails the whole
    /// callback before anything is written.
    pub(super) async fn completed(&self, report: Report) -> Result<Recorded, RecordError> {
        let cb = report.callback;
        let mut tx = self.pool.begin().await?;
        let job = job::lock(&mut tx, cb.job_id).await?;
        if !job.status.can_transition(JobStatus::Completed) {
            drop(tx);
            if job.status == JobStatus::Completed {
                // A redelivered copy finished too: make sure Redis forgot the job.
                self.ack(job.id, &job.queue).await;
            }
            return Ok(ignored(&job));
        }
        let rows = outputs::build(&job, &cb.outputs, &self.storage)?;
        insert_rows(&mut tx, &job, &rows).await?;
        let attempt = report
            .attempt
            .map_or(1, |a| i32::try_from(a).unwrap_or(i32::MAX));
        sqlx::query(
            "UPDATE jobs SET status = 'completed', completed_at = now(), updated_at = now(), \
             enhanced_prompt = COALESCE($2, enhanced_prompt), error_message = NULL, \
             worker_id = COALESCE($3, worker_id), attempts = GREATEST(attempts, $4) \
             WHERE id = $1",
        )
        .bind(job.id.as_uuid())
        .bind(&cb.enhanced_prompt)
        .bind(&cb.worker_id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(outputs = rows.len(), "job completed");
        self.ack(job.id, &job.queue).await;
        self.publish(JobEvent::status(job.id, JobStatus::Completed, None))
            .await;
        Ok(Recorded::changed(&job, JobStatus::Completed))
    }
}

const INSERT_IMAGE: &str = "INSERT INTO images (job_id, image_index, user_id, bucket, \
    storage_path, thumbnail_path, prompt, seed, width, height, metadata) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
    ON CONFLICT (job_id, image_index) DO NOTHING";

const INSERT_VIDEO: &str = "INSERT INTO videos (job_id, video_index, user_id, bucket, \
    storage_path, thumbnail_path, prompt, seed, width, height, metadata, duration_seconds) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
    ON CONFLICT (job_id, video_index) DO NOTHING";

/// Inserts one row per output. The row lock already makes a second recording impossible;
/// `ON CONFLICT` keeps it so even without the lock. A storage path recorded for another
/// job is a unique violation on `(bucket, storage_path)`: 409, nothing written.
async fn insert_rows(
    conn: &mut PgConnection,
    job: &job::Job,
    rows: &[OutputRow],
) -> Result<(), RecordError> {
    let sql = match job.kind() {
        JobKind::Image => INSERT_IMAGE,
        JobKind::Video => INSERT_VIDEO,
    };
    for row in rows {
        let mut query = sqlx::query(sql)
            .bind(job.id.as_uuid())
            .bind(row.index)
            .bind(job.user.as_uuid())
            .bind(row.path.bucket())
            .bind(row.path.key())
            .bind(&row.thumbnail)
            .bind(&job.prompt)
            .bind(row.seed)
            .bind(row.width)
            .bind(row.height)
            .bind(&row.metadata);
        if job.kind() == JobKind::Video {
            query = query.bind(row.duration_seconds);
        }
        query.execute(&mut *conn).await.map_err(|e| {
            match e.as_database_error().map(|d| d.is_unique_violation()) {
                Some(true) => RecordError::StoragePathInUse,
                _ => RecordError::Database(e),
            }
        })?;
    }
    Ok(())
}
