//! The dead-letter set: list a queue's dead jobs, requeue one, or discard one for good.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use gpuq_schemas::{JobEvent, JobId, JobStatus};

use crate::auth::Admin;
use crate::jobs_db::JobRecord;
use gpuq_service::ErrorBody;

use crate::routes::jobs::parse_id;
use crate::routes::responses::{AdminOnly, Internal, Unavailable};
use crate::state::AppState;
use crate::{events, jobs_db, ApiError};

/// `GET /admin/queues/{queue}/dead`.
#[derive(Serialize, ToSchema)]
pub struct DeadJobsAnswer {
    /// Always true.
    pub success: bool,
    /// The queue asked for.
    pub queue: String,
    /// The most recent dead jobs, newest first.
    pub jobs: Vec<DeadJob>,
}

/// A dead-lettered job.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadJob {
    /// The job.
    pub job_id: Uuid,
    /// When it died, ms since the epoch.
    pub died_at_ms: u64,
    /// Its last error.
    pub error: Option<String>,
    /// The queue envelope; null when unreadable.
    #[schema(value_type = Option<Object>)]
    pub envelope: Value,
}

/// `POST /admin/jobs/{id}/requeue`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequeueAnswer {
    /// Always true.
    pub success: bool,
    /// The job.
    pub job_id: Uuid,
    /// Always `queued`.
    pub status: JobStatus,
}

/// `POST /admin/jobs/{id}/discard`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscardAnswer {
    /// Always true.
    pub success: bool,
    /// The job.
    pub job_id: Uuid,
    /// Always true.
    pub discarded: bool,
}

/// `GET /admin/queues/{queue}/dead`: the 100 most recent dead jobs.
#[utoipa::path(get, path = "/admin/queues/{queue}/dead", params(("queue" = String, Path, description = "queue name", pattern = "^(sdxl_queue|wan_queue)$")), security(("bearer" = [])),
    responses((status = 200, description = "ok", body = DeadJobsAnswer), (status = 404, description = "no such queue", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn dead_jobs(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = state
        .queues
        .get(path.as_str())
        .ok_or_else(|| ApiError::NotFound("no such queue".into()))?;
    let jobs = queue
        .dead_jobs(100)
        .await?
        .into_iter()
        .map(|d| DeadJob {
            job_id: d.id.as_uuid(),
            died_at_ms: d.died_at_ms,
            error: d.error,
            envelope: d
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Null),
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeadJobsAnswer {
        success: true,
        queue: path.into_inner(),
        jobs,
    }))
}

/// `POST /admin/jobs/{id}/requeue`: a dead job starts afresh (attempts reset).
#[utoipa::path(post, path = "/admin/jobs/{id}/requeue", params(("id" = uuid::Uuid, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, description = "requeued", body = RequeueAnswer), (status = 404, description = "no such job", body = ErrorBody),
        (status = 402, description = "credits are on and the job's tenant cannot cover its price again (insufficient_credits); nothing changed", body = ErrorBody),
        (status = 409, description = "not in the dead-letter set", body = ErrorBody), AdminOnly, Unavailable, Internal))]
pub async fn requeue(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, job) = job_named(&state, &path).await?;
    if matches!(job.status, JobStatus::Completed | JobStatus::Cancelled) {
        return Err(ApiError::Conflict(format!(
            "job is {}; only failed jobs can be requeued",
            job.status
        )));
    }
    let mut tx = state.db.begin().await?;
    if !jobs_db::reopen(&mut *tx, id.as_uuid()).await? {
        // Dead in Redis, not yet failed in PostgreSQL: the reconciler gets there first.
        return Err(ApiError::Conflict(
            "job is not failed yet; try again in a moment".into(),
        ));
    }
    // Its hold was released when it died: a fresh start costs its price again.
    crate::credits::hold_again(&mut tx, id.as_uuid(), &state.settings.credits)
        .await?
        .map_err(ApiError::InsufficientCredits)?;
    if !state.queue(&job.queue)?.requeue_dead(id).await? {
        // Rolled back on drop: the row keeps its state.
        return Err(ApiError::Conflict(
            "job is not in the dead-letter set".into(),
        ));
    }
    tx.commit().await?;
    events::publish(
        &state,
        JobEvent::status(id, JobStatus::Queued, Some("requeued by an admin".into())),
    )
    .await;
    Ok(HttpResponse::Ok().json(RequeueAnswer {
        success: true,
        job_id: id.as_uuid(),
        status: JobStatus::Queued,
    }))
}

/// `POST /admin/jobs/{id}/discard`: deletes a dead job from Redis for good (its row stays
/// `failed`).
#[utoipa::path(post, path = "/admin/jobs/{id}/discard", params(("id" = uuid::Uuid, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, description = "deleted", body = DiscardAnswer), (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "not in the dead-letter set", body = ErrorBody), AdminOnly, Unavailable, Internal))]
pub async fn discard(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, job) = job_named(&state, &path).await?;
    if !state.queue(&job.queue)?.discard_dead(id).await? {
        return Err(ApiError::Conflict(
            "job is not in the dead-letter set".into(),
        ));
    }
    jobs_db::finish(
        &state.db,
        id.as_uuid(),
        JobStatus::Failed,
        Some("discarded by an admin"),
    )
    .await?;
    Ok(HttpResponse::Ok().json(DiscardAnswer {
        success: true,
        job_id: id.as_uuid(),
        discarded: true,
    }))
}

/// The job `path` names, or 404.
async fn job_named(state: &AppState, path: &str) -> Result<(JobId, JobRecord), ApiError> {
    let id = parse_id(path)?;
    let job = jobs_db::get(&state.db, id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::NotFound("job not found".into()))?;
    Ok((id, job))
}
