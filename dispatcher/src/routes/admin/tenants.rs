//! Tenants' fair-share weights and concurrency caps: list them, set a tenant's.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use gpuq_schemas::Tenant;
use gpuq_service::body::json_body;
use gpuq_service::ErrorBody;

use crate::auth::Admin;
use crate::routes::responses::{AdminOnly, Internal, Unavailable};
use crate::state::AppState;
use gpuq_queue::MAX_CAP;

use crate::tenants::{self, Change, Weighted, MAX_WEIGHT};
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
    /// Its own concurrency cap: at most this many of its jobs in flight at once in a queue;
    /// null: the configured default (`enqueue.max_in_flight_per_tenant`, possibly none).
    pub max_in_flight: Option<u32>,
    /// When it was set.
    pub updated_at: DateTime<Utc>,
}

/// `PUT /admin/tenants/{tenant}` body: a setting left out is kept as it is (`{}` keeps both,
/// and lists the tenant with them). The schema only: `change_of` reads the body, telling a
/// null cap from an absent one.
#[derive(ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "the OpenAPI schema of what change_of reads")]
pub struct SetWeight {
    /// 1 to 1000.
    #[schema(minimum = 1, maximum = 1000, nullable = false)]
    pub weight: Option<u32>,
    /// 1 to 100000; null: back to the configured default.
    #[schema(minimum = 1, maximum = 100000, nullable)]
    pub max_in_flight: Option<u32>,
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
            max_in_flight: w.max_in_flight,
            updated_at: w.updated_at,
        }
    }
}

/// A `SetWeight` body as a change: `weight` and `maxInFlight` whole numbers (`3.0` too: JSON
/// Schema's integers include it, serde's `u32` does not) in range, `maxInFlight` null to
/// clear; anything else is a 400 naming the field.
fn change_of(body: &Value) -> Result<Change, ApiError> {
    let bad = |code: &'static str, why: String| {
        ApiError::BadRequest {
        code,
        message: format!(
            "body must be {{\"weight\": 1 to {MAX_WEIGHT}, \"maxInFlight\": 1 to {MAX_CAP} or null}}, \
             either or both: {why}"
        ),
    }
    };
    let fields = body
        .as_object()
        .ok_or_else(|| bad("invalid_weight", "not an object".into()))?;
    if let Some(other) = fields
        .keys()
        .find(|k| *k != "weight" && *k != "maxInFlight")
    {
        return Err(bad("invalid_weight", format!("unknown field {other:?}")));
    }
    let whole_in = |v: &Value, max: u32| {
        as_whole(v)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=max).contains(n))
    };
    let weight = match fields.get("weight") {
        None => None,
        Some(v) => Some(whole_in(v, MAX_WEIGHT).ok_or_else(|| {
            bad(
                "invalid_weight",
                "weight must be a whole number from 1 to 1000".into(),
            )
        })?),
    };
    let max_in_flight = match fields.get("maxInFlight") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(whole_in(v, MAX_CAP).ok_or_else(|| {
            bad(
                "invalid_max_in_flight",
                format!("maxInFlight must be a whole number from 1 to {MAX_CAP}, or null"),
            )
        })?)),
    };
    Ok(Change {
        weight,
        max_in_flight,
    })
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

/// `PUT /admin/tenants/{tenant}`: sets a tenant's weight, its concurrency cap, or both. A
/// weight applies to the tenant's jobs enqueued from then on (at once on this replica,
/// within 10 s on the others); a cap to its next claims, on every replica at once.
#[utoipa::path(put, path = "/admin/tenants/{tenant}",
    params(("tenant" = String, Path, description = "user id or tenant claim value",
        pattern = "^[A-Za-z0-9._:@-]{1,128}$")),
    request_body = SetWeight, security(("bearer" = [])),
    responses((status = 200, description = "set", body = SetWeightAnswer),
        (status = 400, description = "bad tenant name (`invalid_tenant`), weight or body (`invalid_weight`) or cap (`invalid_max_in_flight`)", body = ErrorBody),
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
    let tenant = tenant_named(&path)?;
    let app = &state.settings.application;
    let body = json_body(&req, payload, 1024, app.body_timeout()).await?;
    let change = change_of(&body)?;
    let stored = state.weights.set(&state.db, &tenant, change).await?;
    if change.max_in_flight.is_some() {
        // The reconcile period copies the caps again should this fail.
        crate::maintenance::sync_caps(&state).await;
    }
    Ok(HttpResponse::Ok().json(SetWeightAnswer {
        success: true,
        tenant: stored.into(),
    }))
}

/// The tenant a path names, or 400 `invalid_tenant` (every `/admin/tenants/{tenant}` route).
pub(crate) fn tenant_named(path: &str) -> Result<Tenant, ApiError> {
    path.parse().map_err(|e| ApiError::BadRequest {
        code: "invalid_tenant",
        message: format!("{e}"),
    })
}
