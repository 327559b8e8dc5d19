//! Health, readiness, metrics and the job-type catalog.

use actix_web::{web, HttpResponse};
use serde_json::json;

use gpuq_schemas::catalog::CATALOG;

use crate::openapi::bodies::{Health, JobTypesAnswer, Readiness};
use crate::state::AppState;
use crate::ApiError;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "up", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis and PostgreSQL answer.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready", body = Readiness),
    (status = 503, description = "a dependency is down", body = Readiness)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pg = sqlx::query("SELECT 1").execute(&state.db).await.is_ok();
    let mut conn = state.redis.clone();
    let redis = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok();
    let body = json!({ "postgres": pg, "redis": redis });
    if pg && redis {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text; queue gauges are read from Redis now.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    for queue in state.queues.values() {
        match queue.stats().await {
            Ok(stats) => state.metrics.observe_queue(&stats),
            Err(e) => {
                tracing::warn!(queue = %queue.name(), error = ?e, "stats unavailable for metrics")
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}

/// `GET /v1/job-types`: the catalog.
#[utoipa::path(get, path = "/v1/job-types", responses((status = 200, description = "the ten job types with queue, model, credits and defaults", body = JobTypesAnswer)))]
pub async fn job_types() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "success": true, "jobTypes": &CATALOG[..] }))
}

/// Anything else: a JSON 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}
