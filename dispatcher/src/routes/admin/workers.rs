//! What the fleet is doing: live workers with the jobs they hold, quarantined workers
//! (and their release), and recent failures.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use gpuq_queue::ConsumerName;
use gpuq_service::ErrorBody;

use crate::auth::Admin;
use crate::quarantine::Quarantine;
use crate::routes::responses::{AdminOnly, Internal, Unavailable};
use crate::state::AppState;
use crate::ApiError;

/// `GET /admin/workers`.
#[derive(Serialize, ToSchema)]
pub struct WorkersAnswer {
    /// Always true.
    pub success: bool,
    /// Live workers, per queue.
    pub workers: Vec<Worker>,
    /// Workers that may not claim until released, live or not, newest first (ADR 0019).
    pub quarantined: Vec<Quarantine>,
}

/// `POST /admin/workers/{consumer}/release`.
#[derive(Serialize, ToSchema)]
pub struct ReleaseAnswer {
    /// Always true.
    pub success: bool,
    /// The worker released.
    pub consumer: String,
    /// The queue it may claim from again.
    pub queue: String,
}

/// A live consumer and the jobs it holds.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    /// Its queue.
    pub queue: String,
    /// Its unique consumer name.
    pub consumer: String,
    /// Since its last heartbeat.
    pub last_seen_ms_ago: u64,
    /// Why it may not claim, when it is quarantined (the evidence is in `quarantined`).
    pub quarantined: Option<String>,
    /// What it holds.
    pub jobs: Vec<HeldJob>,
    /// What it advertises about itself (ADR 0020); absent for a worker that does not (an
    /// older SDK, or one written against `docs/protocol.md` without it).
    pub profile: Option<Profile>,
}

/// A worker's GPU and models, as it advertises them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Its GPU, e.g. `NVIDIA L40S`.
    pub gpu: Option<String>,
    /// The GPU memory it offers jobs, GiB.
    pub vram_gb: Option<u32>,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Checkpoints and LoRAs loaded now, most recently loaded first.
    pub loaded: Vec<String>,
    /// The models it can run; absent: any.
    pub runnable: Option<Vec<String>>,
    /// Model and LoRA loads since it started.
    pub model_loads: u64,
}

impl From<gpuq_queue::WorkerProfile> for Profile {
    fn from(p: gpuq_queue::WorkerProfile) -> Self {
        Self {
            gpu: p.gpu,
            vram_gb: p.vram_gb,
            slots: p.slots,
            loaded: p.loaded,
            runnable: p.runnable,
            model_loads: p.loads,
        }
    }
}

/// A job a worker holds.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldJob {
    /// The job.
    pub job_id: Uuid,
    /// This delivery's attempt.
    pub attempt: u32,
    /// Since the claim.
    pub held_for_ms: u64,
    /// Until the lease runs out unless renewed.
    pub lease_expires_in_ms: u64,
}

/// `GET /admin/failures`.
#[derive(Serialize, ToSchema)]
pub struct FailuresAnswer {
    /// Always true.
    pub success: bool,
    /// The most recent failed jobs.
    pub jobs: Vec<Failure>,
}

/// A failed job.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The job.
    pub job_id: Uuid,
    /// Its type.
    pub job_type: String,
    /// Its queue.
    pub queue: String,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Attempts started.
    pub attempts: i32,
    /// When.
    pub completed_at: Option<DateTime<Utc>>,
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
    let quarantined = crate::quarantine::active(&state.db).await?;
    let mut workers = Vec::new();
    for queue in state.queues.values() {
        let held = queue.in_flight(1000).await?;
        let live = queue.live_consumers().await?;
        let names: Vec<&str> = live.iter().map(|c| c.name.as_str()).collect();
        let profiles = queue.profiles(&names).await?;
        for (c, profile) in live.into_iter().zip(profiles) {
            let jobs = held
                .iter()
                .filter(|j| j.consumer == c.name)
                .map(|j| HeldJob {
                    job_id: j.id.as_uuid(),
                    attempt: j.attempt,
                    held_for_ms: now.saturating_sub(j.since_ms),
                    lease_expires_in_ms: j.lease_until_ms.saturating_sub(now),
                })
                .collect();
            let sick = quarantined.iter().find(|q| q.consumer == c.name);
            workers.push(Worker {
                queue: queue.name().to_string(),
                quarantined: sick.map(|q| q.reason.clone()),
                consumer: c.name,
                last_seen_ms_ago: now.saturating_sub(c.last_seen_ms),
                jobs,
                profile: profile.map(Profile::from),
            });
        }
    }
    Ok(HttpResponse::Ok().json(WorkersAnswer {
        success: true,
        workers,
        quarantined,
    }))
}

/// `POST /admin/workers/{consumer}/release`: a quarantined worker may claim again. Its
/// failures so far no longer count against it.
#[utoipa::path(post, path = "/admin/workers/{consumer}/release",
    params(("consumer" = String, Path, description = "the worker's consumer name", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    security(("bearer" = [])),
    responses((status = 200, description = "released", body = ReleaseAnswer),
        (status = 400, description = "not a consumer name (invalid_consumer)", body = ErrorBody),
        (status = 404, description = "not quarantined", body = ErrorBody), AdminOnly, Unavailable, Internal))]
pub async fn release(
    admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let consumer = ConsumerName::parse(&path).map_err(|e| ApiError::BadRequest {
        code: "invalid_consumer",
        message: e.to_string(),
    })?;
    let by = admin
        .0
        .user
        .map_or_else(|| "admin token".to_owned(), |u| u.to_string());
    let queue = crate::quarantine::release(&state.db, &state.queues, &consumer, &by)
        .await?
        .ok_or_else(|| ApiError::NotFound("this worker is not quarantined".into()))?;
    tracing::info!(%consumer, queue, by, "worker released from quarantine");
    Ok(HttpResponse::Ok().json(ReleaseAnswer {
        success: true,
        consumer: consumer.to_string(),
        queue,
    }))
}

/// `GET /admin/failures`: the 50 most recent failed jobs with their errors.
#[utoipa::path(get, path = "/admin/failures", security(("bearer" = [])),
    responses((status = 200, description = "recent failures", body = FailuresAnswer), AdminOnly, Unavailable, Internal))]
pub async fn failures(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let jobs = sqlx::query_as(
        "SELECT id AS job_id, job_type, queue, error_message, attempts, completed_at FROM jobs \
         WHERE status = 'failed' ORDER BY completed_at DESC NULLS LAST LIMIT 50",
    )
    .fetch_all(&state.db)
    .await?;
    Ok(HttpResponse::Ok().json(FailuresAnswer {
        success: true,
        jobs,
    }))
}
