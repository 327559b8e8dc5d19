//! `GET /metrics`: Prometheus text.

use actix_web::{web, HttpResponse};
use gpuq_service::server::openmetrics;

use crate::startup::AppState;

/// `GET /metrics`: Prometheus text.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    openmetrics(state.metrics.render())
}
