//! `GET /metrics` and `GET /v1/job-types`: what the dispatcher and its catalog look like.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use gpuq_schemas::catalog::{JobTypeSpec, CATALOG};
use gpuq_service::exposition;
use gpuq_service::server::authorize_metrics;
use gpuq_service::ApiError;

use crate::state::AppState;

/// `GET /v1/job-types`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTypesAnswer {
    /// Always true.
    pub success: bool,
    /// The catalog, one entry per job type.
    pub job_types: &'static [JobTypeSpec],
}

/// `GET /metrics`: Prometheus text; queue gauges are read from Redis now. Behind the
/// metrics token, when one is set.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics when the Accept header prefers it", content((String = "text/plain"), (String = "application/openmetrics-text"))),
    (status = 401, description = "a metrics token is set and the request does not carry it", body = gpuq_service::ErrorBody)))]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_metrics(&req, state.settings.application.metrics_token.as_ref())?;
    for queue in state.queues.values() {
        match queue.stats().await {
            Ok(stats) => {
                let per_job = state
                    .service_times
                    .queue_seconds(&state.db, queue.name().as_str())
                    .await;
                state.metrics.observe_queue(&stats, per_job)
            }
            Err(e) => {
                tracing::warn!(queue = %queue.name(), error = ?e, "stats unavailable for metrics")
            }
        }
        match queue.routed_claims().await {
            Ok(claims) => state.metrics.observe_routing(queue.name().as_str(), claims),
            Err(e) => {
                tracing::warn!(queue = %queue.name(), error = ?e, "routing counts unavailable for metrics")
            }
        }
    }
    Ok(exposition::answer(&req, state.metrics.render()))
}

/// `GET /v1/job-types`: the catalog.
#[utoipa::path(get, path = "/v1/job-types", responses((status = 200, description = "the ten job types with queue, model, credits and defaults", body = JobTypesAnswer)))]
pub async fn job_types() -> HttpResponse {
    HttpResponse::Ok().json(JobTypesAnswer {
        success: true,
        job_types: &CATALOG,
    })
}
