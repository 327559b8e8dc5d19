//! Admin endpoints: queue depth, the dead-letter set, and requeueing a dead job.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use gpuq_schemas::{JobEvent, JobStatus};

use crate::auth::Admin;
use crate::openapi::ErrorBody;
use crate::routes::jobs::parse_id;
use crate::state::AppState;
use crate::{events, jobs_db, ApiError};

/// `GET /admin/queues`: per queue and lane: waiting, in flight, delayed, dead, live
/// workers, oldest wait.
#[utoipa::path(get, path = "/admin/queues", security(("bearer" = [])), responses((status = 200, description = "ok"), (status = 401, description = "no credentials", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
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
#[utoipa::path(get, path = "/admin/queues/{queue}/dead", params(("queue" = String, Path, description = "queue name")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = 401, description = "no credentials", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, description = "no such queue", body = ErrorBody)))]
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
#[utoipa::path(post, path = "/admin/jobs/{id}/requeue", params(("id" = String, Path, description = "job id")), security(("bearer" = [])), responses((status = 200, description = "ok"), (status = 401, description = "no credentials", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, description = "no such job", body = ErrorBody), (status = 409, description = "not dead", body = ErrorBody)))]
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
