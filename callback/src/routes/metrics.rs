//! `GET /metrics`: Prometheus text.

use actix_web::{web, HttpRequest, HttpResponse};
use gpuq_service::exposition;
use gpuq_service::server::authorize_metrics;
use gpuq_service::ApiError;

use crate::startup::AppState;

/// `GET /metrics`: Prometheus text (behind the metrics token, when one is set).
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize_metrics(&req, state.metrics_token.as_ref())?;
    Ok(exposition::answer(&req, state.metrics.render()))
}
