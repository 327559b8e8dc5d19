//! `GET /metrics` and `GET /v1/job-types`: what the dispatcher and its catalog look like.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use gpuq_schemas::catalog::{JobTypeSpec, CATALOG};
use gpuq_service::server::openmetrics;

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
    openmetrics(state.metrics.render())
}

/// `GET /v1/job-types`: the catalog.
#[utoipa::path(get, path = "/v1/job-types", responses((status = 200, description = "the ten job types with queue, model, credits and defaults", body = JobTypesAnswer)))]
pub async fn job_types() -> HttpResponse {
    HttpResponse::Ok().json(JobTypesAnswer {
        success: true,
        job_types: &CATALOG,
    })
}
