//! `GET /healthz` (the process answers) and `GET /readyz` (its dependencies answer).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::error::error_response;
use crate::startup::AppState;

/// 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "success": true, "status": "ok" }))
}

/// 200 when PostgreSQL and Redis answer, else 503 naming the one that does not.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (postgres, redis) = state.recorder.ready().await;
    if postgres && redis {
        return HttpResponse::Ok().json(serde_json::json!({
            "success": true, "status": "ready", "postgres": true, "redis": true
        }));
    }
    let up = |ok: bool| if ok { "up" } else { "down" };
    let message = format!("postgres {}, redis {}", up(postgres), up(redis));
    error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", &message)
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}
