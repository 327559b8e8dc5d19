//! Webhook endpoints (ADR 0016): register, list, change, remove; an endpoint's deliveries
//! with their log; replay.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use gpuq_service::body::json_body;
use gpuq_service::ErrorBody;

use crate::auth::Admin;
use crate::routes::responses::{AdminOnly, Internal, Unavailable};
use crate::state::AppState;
use crate::webhooks::{input, store};
use crate::ApiError;

/// Largest endpoint body.
const MAX_BODY: usize = 8 * 1024;

/// `GET /admin/webhooks`.
#[derive(Serialize, ToSchema)]
pub struct EndpointsAnswer {
    /// Always true.
    pub success: bool,
    /// Every endpoint, oldest first.
    pub endpoints: Vec<store::Endpoint>,
}

/// An endpoint, after a read or a change.
#[derive(Serialize, ToSchema)]
pub struct EndpointAnswer {
    /// Always true.
    pub success: bool,
    /// The endpoint.
    pub endpoint: store::Endpoint,
}

/// `POST /admin/webhooks` answer: the endpoint and its signing secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedAnswer {
    /// Always true.
    pub success: bool,
    /// The endpoint.
    pub endpoint: store::Endpoint,
    /// `whsec_...`: verify deliveries with it (Standard Webhooks libraries take it as is).
    pub secret: String,
}

/// A job event an endpoint may receive.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    /// Accepted, or requeued by an admin.
    Queued,
    /// A worker started it (`processing`).
    Started,
    /// A worker reported progress (at most one per job per `progress_interval_ms`).
    Progress,
    /// Finished with outputs (`data.outputs`).
    Completed,
    /// Failed for good (`data.errorCode`, `data.errorMessage`).
    Failed,
    /// Cancelled.
    Cancelled,
}

/// `POST /admin/webhooks` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "the OpenAPI schema of what input::new_endpoint reads"
)]
pub struct NewEndpointBody {
    /// An absolute http or https URL with a host, at most 2048 bytes.
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub url: String,
    /// The events it receives, each once.
    #[schema(min_items = 1, max_items = 6, value_type = Vec<WebhookEvent>)]
    pub events: Vec<String>,
    /// Only this tenant's jobs.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$", nullable)]
    pub tenant: Option<String>,
    /// What it is for, at most 200 characters.
    #[schema(max_length = 200, nullable = false)]
    pub description: Option<String>,
    /// `whsec_` + the standard base64 of 24 to 64 random bytes; generated when absent.
    #[schema(
        nullable,
        min_length = 38,
        max_length = 94,
        pattern = "^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
    )]
    pub secret: Option<String>,
}

/// `PATCH /admin/webhooks/{id}` body: what to change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "the OpenAPI schema of what input::endpoint_change reads"
)]
pub struct EndpointChangeBody {
    /// A new URL.
    #[schema(
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://",
        nullable = false
    )]
    pub url: Option<String>,
    /// The events it receives from now on, each once.
    #[schema(min_items = 1, max_items = 6, value_type = Option<Vec<WebhookEvent>>, nullable = false)]
    pub events: Option<Vec<String>>,
    /// A new description.
    #[schema(max_length = 200, nullable = false)]
    pub description: Option<String>,
    /// Enable (its waiting deliveries resume, its failure record starts afresh) or disable.
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

/// `GET /admin/webhooks/{id}/deliveries` query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "the OpenAPI parameters of what deliveries_query reads"
)]
pub struct DeliveriesQuery {
    /// Only `pending`, `delivered` or `failed` ones.
    #[param(pattern = "^(pending|delivered|failed)$")]
    pub status: Option<String>,
    /// At most this many (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// `GET /admin/webhooks/{id}/deliveries`.
#[derive(Serialize, ToSchema)]
pub struct DeliveriesAnswer {
    /// Always true.
    pub success: bool,
    /// Newest first.
    pub deliveries: Vec<store::Delivery>,
}

/// `POST /admin/webhooks/{id}/replay` body: one delivery, or (`{}`) every failed one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "the OpenAPI schema of what replay reads")]
pub struct ReplayBody {
    /// The delivery to send again (any status); absent or null: every failed delivery.
    #[schema(nullable)]
    pub delivery_id: Option<Uuid>,
}

/// `POST /admin/webhooks/{id}/replay` answer.
#[derive(Serialize, ToSchema)]
pub struct ReplayAnswer {
    /// Always true.
    pub success: bool,
    /// Deliveries queued again.
    pub replayed: u64,
}

/// `DELETE /admin/webhooks/{id}` answer.
#[derive(Serialize, ToSchema)]
pub struct DeletedAnswer {
    /// Always true.
    pub success: bool,
    /// Always true.
    pub deleted: bool,
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such webhook endpoint".into())
}

/// The endpoint id a path names; anything else names no endpoint.
fn endpoint_id(path: &str) -> Result<i64, ApiError> {
    path.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(not_found)
}

/// `GET /admin/webhooks`: every endpoint, with its waiting and given-up deliveries.
#[utoipa::path(get, path = "/admin/webhooks", security(("bearer" = [])),
    responses((status = 200, description = "ok", body = EndpointsAnswer), AdminOnly, Unavailable, Internal))]
pub async fn list(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let endpoints = store::list(&state.db).await?;
    Ok(HttpResponse::Ok().json(EndpointsAnswer {
        success: true,
        endpoints,
    }))
}

/// `POST /admin/webhooks`: registers an endpoint. Events of jobs from now on are delivered
/// to it. The answer carries its signing secret, which no other answer shows.
#[utoipa::path(post, path = "/admin/webhooks", request_body = NewEndpointBody, security(("bearer" = [])),
    responses((status = 201, description = "registered", body = CreatedAnswer),
        (status = 400, description = "a field is invalid (`invalid_webhook`)", body = ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn create(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(
        &req,
        payload,
        MAX_BODY,
        state.settings.application.body_timeout(),
    )
    .await?;
    let new = input::new_endpoint(&body)?;
    let id = store::create(&state.db, &new).await?;
    let endpoint = store::get(&state.db, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Created().json(CreatedAnswer {
        success: true,
        endpoint,
        secret: new.secret,
    }))
}

/// `GET /admin/webhooks/{id}`.
#[utoipa::path(get, path = "/admin/webhooks/{id}", params(("id" = i64, Path, minimum = 1)), security(("bearer" = [])),
    responses((status = 200, description = "ok", body = EndpointAnswer),
        (status = 404, description = "no such endpoint", body = ErrorBody), AdminOnly, Unavailable, Internal))]
pub async fn get(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = store::get(&state.db, endpoint_id(&path)?)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(EndpointAnswer {
        success: true,
        endpoint,
    }))
}

/// `PATCH /admin/webhooks/{id}`: changes its URL, events or description, or enables or
/// disables it.
#[utoipa::path(patch, path = "/admin/webhooks/{id}", params(("id" = i64, Path, minimum = 1)),
    request_body = EndpointChangeBody, security(("bearer" = [])),
    responses((status = 200, description = "changed", body = EndpointAnswer),
        (status = 400, description = "a field is invalid (`invalid_webhook`)", body = ErrorBody),
        (status = 404, description = "no such endpoint", body = ErrorBody),
        (status = 409, description = "another endpoint from the configuration has this URL (`conflict`)", body = ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn update(
    _: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&path)?;
    let body = json_body(
        &req,
        payload,
        MAX_BODY,
        state.settings.application.body_timeout(),
    )
    .await?;
    let change = input::endpoint_change(&body)?;
    match store::update(&state.db, id, &change).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        // Two endpoints from the configuration cannot share a URL.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::Conflict(
                "another endpoint from the configuration has this URL".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    if change.enabled == Some(true) {
        crate::webhooks::sender::wake(&state.db).await;
    }
    let endpoint = store::get(&state.db, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(EndpointAnswer {
        success: true,
        endpoint,
    }))
}

/// `DELETE /admin/webhooks/{id}`: removes it and its deliveries.
#[utoipa::path(delete, path = "/admin/webhooks/{id}", params(("id" = i64, Path, minimum = 1)), security(("bearer" = [])),
    responses((status = 200, description = "removed", body = DeletedAnswer),
        (status = 404, description = "no such endpoint", body = ErrorBody), AdminOnly, Unavailable, Internal))]
pub async fn delete(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !store::delete(&state.db, endpoint_id(&path)?).await? {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok().json(DeletedAnswer {
        success: true,
        deleted: true,
    }))
}

/// `GET /admin/webhooks/{id}/deliveries`: its deliveries, newest first, each with its
/// attempts (status codes, errors, latencies).
#[utoipa::path(get, path = "/admin/webhooks/{id}/deliveries", params(("id" = i64, Path, minimum = 1), DeliveriesQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "ok", body = DeliveriesAnswer),
        (status = 400, description = "bad status or limit (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "no such endpoint", body = ErrorBody), AdminOnly, Unavailable, Internal))]
pub async fn deliveries(
    _: Admin,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&path)?;
    let (status, limit) = deliveries_query(&query)?;
    store::get(&state.db, id).await?.ok_or_else(not_found)?;
    let deliveries = store::deliveries(&state.db, id, status.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(DeliveriesAnswer {
        success: true,
        deliveries,
    }))
}

/// `status` one of the three, `limit` 1 to 500 (default 50); anything else a 400.
fn deliveries_query(query: &HashMap<String, String>) -> Result<(Option<String>, u32), ApiError> {
    let bad = |message: String| ApiError::BadRequest {
        code: "invalid_query",
        message,
    };
    let status = match query.get("status").map(String::as_str) {
        None => None,
        Some(s @ ("pending" | "delivered" | "failed")) => Some(s.to_owned()),
        Some(other) => {
            return Err(bad(format!(
                "status must be pending, delivered or failed, not {other:?}"
            )))
        }
    };
    let limit = match query.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "limit must be a whole number from 1 to 500, not {l:?}"
                ))
            })?,
    };
    Ok((status, limit))
}

/// `POST /admin/webhooks/{id}/replay`: sends deliveries again from now, with a fresh
/// retry window and the same `webhook-id`: one (`deliveryId`), or every failed one.
#[utoipa::path(post, path = "/admin/webhooks/{id}/replay", params(("id" = i64, Path, minimum = 1)),
    request_body = ReplayBody, security(("bearer" = [])),
    responses((status = 200, description = "queued again", body = ReplayAnswer),
        (status = 400, description = "bad body (`invalid_webhook`)", body = ErrorBody),
        (status = 404, description = "no such endpoint", body = ErrorBody),
        (status = 422, description = "`deliveryId` names no delivery of this endpoint (`unknown_delivery`)", body = ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn replay(
    _: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&path)?;
    let body = json_body(
        &req,
        payload,
        1024,
        state.settings.application.body_timeout(),
    )
    .await?;
    let delivery = input::replay_target(&body)?;
    store::get(&state.db, id).await?.ok_or_else(not_found)?;
    let replayed = store::replay(&state.db, id, delivery).await?;
    if delivery.is_some() && replayed == 0 {
        return Err(ApiError::refused(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_delivery",
            "deliveryId names no delivery of this endpoint",
        ));
    }
    Ok(HttpResponse::Ok().json(ReplayAnswer {
        success: true,
        replayed,
    }))
}
