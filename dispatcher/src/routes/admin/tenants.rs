//! Tenants' fair-share weights: list them, set one.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use gpuq_schemas::Tenant;
use gpuq_service::body::json_body;
use gpuq_service::ErrorBody;

use crate::auth::Admin;
use crate::routes::responses::{AdminOnly, Internal, Unavailable};
use crate::state::AppState;
use crate::tenants::{self, Weighted, MAX_WEIGHT};
use crate::validation::as_whole;
use crate::ApiError;

/// `GET /admin/tenants`.
#[derive(Serialize, ToSchema)]
pub struct TenantsAnswer {
    /// Always true.
    pub success: bool,
    /// Every tenant whose weight was set, by name; any other tenant has weight 1.
    pub tenants: Vec<TenantWeight>,
}

/// A tenant's fair-share weight.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantWeight {
    /// The tenant: a user id, or the value of the configured tenant claim.
    pub tenant: String,
    /// Its weight: it gets this many times the GPU time of a tenant of weight 1 while both
    /// have jobs waiting.
    pub weight: u32,
    /// When it was set.
    pub updated_at: DateTime<Utc>,
}

/// `PUT /admin/tenants/{tenant}` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWeight {
    /// 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: u32,
}

/// `PUT /admin/tenants/{tenant}` answer.
#[derive(Serialize, ToSchema)]
pub struct SetWeightAnswer {
    /// Always true.
    pub success: bool,
    /// The tenant as stored.
    pub tenant: TenantWeight,
}

impl From<Weighted> for TenantWeight {
    fn from(w: Weighted) -> Self {
        Self {
            tenant: w.tenant,
            weight: w.weight,
            updated_at: w.updated_at,
        }
    }
}

/// A `SetWeight` body: an object with `weight` alone, a whole number (`3.0` too: JSON
/// Schema's integers include it, serde's `u32` does not) from 1 to [`MAX_WEIGHT`].
fn weight_of(body: &Value) -> Result<SetWeight, String> {
    let fields = body.as_object().ok_or("not an object")?;
    if let Some(other) = fields.keys().find(|k| *k != "weight") {
        return Err(format!("unknown field {other:?}"));
    }
    fields
        .get("weight")
        .and_then(as_whole)
        .and_then(|w| u32::try_from(w).ok())
        .filter(|w| (1..=MAX_WEIGHT).contains(w))
        .map(|weight| SetWeight { weight })
        .ok_or_else(|| "weight must be a whole number from 1 to 1000".into())
}

/// `GET /admin/tenants`: the weights set.
#[utoipa::path(get, path = "/admin/tenants", security(("bearer" = [])),
    responses((status = 200, description = "ok", body = TenantsAnswer), AdminOnly, Unavailable, Internal))]
pub async fn list(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let tenants = tenants::list(&state.db)
        .await?
        .into_iter()
        .map(TenantWeight::from)
        .collect();
    Ok(HttpResponse::Ok().json(TenantsAnswer {
        success: true,
        tenants,
    }))
}

/// `PUT /admin/tenants/{tenant}`: sets a tenant's weight. It applies to the tenant's jobs
/// enqueued from then on (at once on this replica, within 10 s on the others).
#[utoipa::path(put, path = "/admin/tenants/{tenant}",
    params(("tenant" = String, Path, description = "user id or tenant claim value",
        pattern = "^[A-Za-z0-9._:@-]{1,128}$")),
    request_body = SetWeight, security(("bearer" = [])),
    responses((status = 200, description = "set", body = SetWeightAnswer),
        (status = 400, description = "bad tenant name (`invalid_tenant`) or weight (`invalid_weight`)", body = ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn set(
    _: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant: Tenant = path.parse().map_err(|e| ApiError::BadRequest {
        code: "invalid_tenant",
        message: format!("{e}"),
    })?;
    let app = &state.settings.application;
    let body = json_body(&req, payload, 1024, app.body_timeout()).await?;
    let bad_weight = |why: String| ApiError::BadRequest {
        code: "invalid_weight",
        message: format!("body must be {{\"weight\": 1 to {MAX_WEIGHT}}}: {why}"),
    };
    let SetWeight { weight } = weight_of(&body).map_err(bad_weight)?;
    let stored = state.weights.set(&state.db, &tenant, weight).await?;
    Ok(HttpResponse::Ok().json(SetWeightAnswer {
        success: true,
        tenant: stored.into(),
    }))
}
