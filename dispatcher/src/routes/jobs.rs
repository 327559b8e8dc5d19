//! `GET /v1/jobs/{id}` and `POST /v1/jobs/{id}/cancel`: owner or admin only; anyone else
//! is told the job does not exist.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use gpuq_queue::CancelOutcome;
use gpuq_schemas::{JobEvent, JobId, JobStatus, UserId};

use crate::auth::Caller;
use crate::jobs_db::{self, JobRecord, OutputImage, OutputVideo};
use gpuq_service::ErrorBody;

use crate::routes::responses::{Internal, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::{events, ApiError};

/// Parses the path id; a malformed id is as unknown as a missing one.
pub fn parse_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("job not found".into()))
}

/// Loads a job the caller may see, or 404.
pub async fn visible_job(
    state: &AppState,
    caller: &Caller,
    id: JobId,
) -> Result<JobRecord, ApiError> {
    let job = jobs_db::get(&state.db, id.as_uuid()).await?;
    match job {
        Some(job) if caller.may_access(UserId::from(job.user_id)) => Ok(job),
        _ => Err(ApiError::NotFound("job not found".into())),
    }
}

/// `GET /v1/jobs/{id}`.
#[derive(Serialize, ToSchema)]
pub struct JobAnswer {
    /// Always true.
    pub success: bool,
    /// The row.
    pub job: JobRecord,
    /// One per output image, by index.
    pub images: Vec<OutputImage>,
    /// One per output video, by index.
    pub videos: Vec<OutputVideo>,
    /// While the job waits: jobs expected to start before it under the fair share.
    pub position: Option<u64>,
    /// While the job waits: seconds until it should be done (the jobs ahead share the live
    /// workers' slots at their types' measured run times, then its own run).
    #[serde(rename = "etaSeconds")]
    pub eta_seconds: Option<u64>,
}

/// `POST /v1/jobs/{id}/cancel`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelAnswer {
    /// Always true.
    pub success: bool,
    /// The job.
    pub job_id: Uuid,
    /// Always `cancelled`.
    pub status: JobStatus,
    /// A worker held it; it learns at its next heartbeat.
    pub was_running: bool,
}

/// The job, with its output rows.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = uuid::Uuid, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, description = "the job, its images and videos", body = JobAnswer),
        (status = 404, description = "no such job, or not yours", body = ErrorBody),
        Unauthorized, Unavailable, Internal))]
pub async fn get_job(
    path: web::Path<String>,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let job = visible_job(&state, &caller, id).await?;
    let (images, videos) = jobs_db::outputs(&state.db, id.as_uuid()).await?;
    let (position, eta_seconds) = match job.status {
        JobStatus::Queued => forecast(&state, &job.queue, &job.job_type, id).await,
        _ => (None, None),
    };
    Ok(HttpResponse::Ok().json(JobAnswer {
        success: true,
        job,
        images,
        videos,
        position,
        eta_seconds,
    }))
}

/// A queued job's position and ETA; none when Redis cannot tell (best effort: the row is
/// the answer, these are the forecast).
pub(crate) async fn forecast(
    state: &AppState,
    queue: &str,
    job_type: &str,
    id: JobId,
) -> (Option<u64>, Option<u64>) {
    let Ok(queue) = state.queue(queue) else {
        return (None, None);
    };
    let Ok(Some((position, work))) = queue.position(id).await else {
        return (None, None);
    };
    let Ok(job_type) = job_type.parse() else {
        return (Some(position), None);
    };
    let (per_job_ahead, own) = state.service_times.estimate(&state.db, job_type).await;
    let slots = state.live_slots(queue).await;
    let gpu_ms = state.weights.gpu_ms(&state.db, &work).await;
    let eta =
        crate::service_times::eta_from_work(gpu_ms, work.high_jobs, slots, per_job_ahead, own);
    (Some(position), Some(eta))
}

/// Cancels a queued job (it never runs) or a running one (its worker is told at the next
/// heartbeat). A finished job answers 409.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = uuid::Uuid, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, description = "cancelled", body = CancelAnswer),
        (status = 404, description = "no such job, or not yours", body = ErrorBody),
        (status = 409, description = "already finished", body = ErrorBody),
        Unauthorized, Unavailable, Internal))]
#[tracing::instrument(name = "cancel", skip_all, fields(job_id = %path.as_str()))]
pub async fn cancel_job(
    path: web::Path<String>,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let mut tx = state.db.begin().await?;
    let job = match jobs_db::get_for_update(&mut tx, id.as_uuid()).await? {
        Some(job) if caller.may_access(UserId::from(job.user_id)) => job,
        _ => return Err(ApiError::NotFound("job not found".into())),
    };
    if !job.status.can_transition(JobStatus::Cancelled) {
        return Err(ApiError::Conflict(format!("job is already {}", job.status)));
    }
    jobs_db::finish(&mut *tx, id.as_uuid(), JobStatus::Cancelled, None).await?;
    tx.commit().await?;
    // The row is the truth from here on: a late callback for this job is ignored. Tell
    // Redis so a waiting job is never delivered and a running one is stopped.
    let outcome = match state.queue(&job.queue)?.cancel(id).await {
        Ok(outcome) => Some(outcome),
        Err(e) => {
            tracing::warn!(error = ?e, "job cancelled in the database; Redis not told (its callback will be ignored)");
            None
        }
    };
    events::publish(&state, JobEvent::status(id, JobStatus::Cancelled, None)).await;
    let was_running = matches!(outcome, Some(CancelOutcome::Flagged));
    Ok(HttpResponse::Ok().json(CancelAnswer {
        success: true,
        job_id: id.as_uuid(),
        status: JobStatus::Cancelled,
        was_running,
    }))
}
