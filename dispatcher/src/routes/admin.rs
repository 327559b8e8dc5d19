//! Admin endpoints: queue depth, the dead-letter set, and requeueing a dead job.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use gpuq_schemas::{JobEvent, JobStatus};

use crate::auth::Admin;
use crate::openapi::bodies::{
    DeadJobsAnswer, DiscardAnswer, FailuresAnswer, QueuesAnswer, RequeueAnswer, WorkersAnswer,
};
use crate::openapi::{AdminOnly, ErrorBody, Internal, Unavailable};
use crate::routes::jobs::parse_id;
use crate::state::AppState;
use crate::{events, jobs_db, ApiError};

/// `GET /admin/queues`: per queue and lane: waiting, in flight, delayed, dead, live
/// workers, oldest wait.
#[utoipa::path(get, path = "/admin/queues", security(("bearer" = [])),
    responses((status = 200, description = "ok", body = QueuesAnswer), AdminOnly, Unavailable, Internal))]
pub async fn queues(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    for queue in state.queues.values() {
        let s = queue.stats().await?;
        state.metrics.observe_queue(&s);
        out.push(json!({
            "queue": s.queue,
            "waiting": { "high": s.waiting_high, "normal": s.waiting_normal, "total": s.waiting() },
            "inFlight": s.in_flight,
            "delayed": s.delayed,
            "dead": s.dead,
            "liveWorkers": s.live_consumers,
            "oldestWaitMs": { "high": s.oldest_wait_high_ms, "normal": s.oldest_wait_normal_ms },
        }));
    }
    Ok(HttpResponse::Ok().json(json!({ "success": true, "queues": out })))
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
    let dead = queue.dead_jobs(100).await?;
    let jobs: Vec<Value> = dead
        .into_iter()
        .map(|d| {
            let envelope: Value = d.payload.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
            json!({ "jobId": d.id, "diedAtMs": d.died_at_ms, "error": d.error, "envelope": envelope })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "success": true, "queue": path.as_str(), "jobs": jobs })))
}

/// `POST /admin/jobs/{id}/requeue`: a dead job starts afresh (attempts reset).
#[utoipa::path(post, path = "/admin/jobs/{id}/requeue", params(("id" = uuid::Uuid, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, description = "requeued", body = RequeueAnswer), (status = 404, description = "no such job", body = ErrorBody),
        (status = 409, description = "not in the dead-letter set", body = ErrorBody), AdminOnly, Unavailable, Internal))]
pub async fn requeue(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let job = jobs_db::get(&state.db, id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::NotFound("job not found".into()))?;
    if job.status == "completed" || job.status == "cancelled" {
        return Err(ApiError::Conflict(format!(
            "job is {}; only failed jobs can be requeued",
            job.status
        )));
    }
    let mut tx = state.db.begin().await?;
    jobs_db::reopen(&mut *tx, id.as_uuid()).await?;
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
    Ok(HttpResponse::Ok().json(json!({ "success": true, "jobId": id, "status": "queued" })))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `GET /admin/workers`: live workers per queue, with the jobs each holds and for how long.
#[utoipa::path(get, path = "/admin/workers", security(("bearer" = [])),
    responses((status = 200, description = "workers and their jobs", body = WorkersAnswer), AdminOnly, Unavailable, Internal))]
pub async fn workers(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let mut out = Vec::new();
    for queue in state.queues.values() {
        let held = queue.in_flight(1000).await?;
        for c in queue.live_consumers().await? {
            let jobs: Vec<Value> = held
                .iter()
                .filter(|j| j.consumer == c.name)
                .map(|j| {
                    json!({
                        "jobId": j.id,
                        "attempt": j.attempt,
                        "heldForMs": now.saturating_sub(j.since_ms),
                        "leaseExpiresInMs": j.lease_until_ms.saturating_sub(now),
                    })
                })
                .collect();
            out.push(json!({
                "queue": queue.name().as_str(),
                "consumer": c.name,
                "lastSeenMsAgo": now.saturating_sub(c.last_seen_ms),
                "jobs": jobs,
            }));
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "success": true, "workers": out })))
}

/// id, job type, queue, error, attempts, finished at.
type FailureRow = (
    uuid::Uuid,
    String,
    String,
    Option<String>,
    i32,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// `GET /admin/failures`: the 50 most recent failed jobs with their errors.
#[utoipa::path(get, path = "/admin/failures", security(("bearer" = [])),
    responses((status = 200, description = "recent failures", body = FailuresAnswer), AdminOnly, Unavailable, Internal))]
pub async fn failures(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows: Vec<FailureRow> = sqlx::query_as(
        "SELECT id, job_type, queue, error_message, attempts, completed_at FROM jobs \
         WHERE status = 'failed' ORDER BY completed_at DESC NULLS LAST LIMIT 50",
    )
    .fetch_all(&state.db)
    .await?;
    let jobs: Vec<Value> = rows
        .into_iter()
        .map(|(id, job_type, queue, error, attempts, at)| {
            json!({ "jobId": id, "jobType": job_type, "queue": queue, "errorMessage": error, "attempts": attempts, "completedAt": at })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "success": true, "jobs": jobs })))
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
    let id = parse_id(&path)?;
    let job = jobs_db::get(&state.db, id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::NotFound("job not found".into()))?;
    if !state.queue(&job.queue)?.discard_dead(id).await? {
        return Err(ApiError::Conflict(
            "job is not in the dead-letter set".into(),
        ));
    }
    jobs_db::finish(
        &state.db,
        id.as_uuid(),
        "failed",
        Some("discarded by an admin"),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "success": true, "jobId": id, "discarded": true })))
}
