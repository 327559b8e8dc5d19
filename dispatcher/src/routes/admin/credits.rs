//! A tenant's credits for admins: read the account and ledger, grant or adjust, and usage
//! per tenant.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use gpuq_schemas::Tenant;
use gpuq_service::body::json_body;
use gpuq_service::ErrorBody;

use crate::auth::Admin;
use crate::credits::usage::{self, Who};
use crate::credits::{self, Account, Adjusted, Adjustment, Entry, MAX_ADJUSTMENT, MAX_ENTRIES};
use crate::routes::admin::tenants::tenant_named;
use crate::routes::credits::{days_query, UsageAnswer};
use crate::routes::enqueue::idempotency_key;
use crate::routes::responses::{AdminOnly, Internal, Unavailable};
use crate::state::AppState;
use crate::ApiError;

/// `GET /admin/tenants/{tenant}/credits`.
#[derive(Serialize, ToSchema)]
pub struct TenantCreditsAnswer {
    /// Always true.
    pub success: bool,
    /// The tenant.
    pub tenant: String,
    /// Its account (all 0 if it has none).
    pub account: Account,
    /// Its latest ledger entries, newest first (at most 200).
    pub ledger: Vec<Entry>,
}

/// `POST /admin/tenants/{tenant}/credits` body. The schema only: `adjustment_of` reads it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "the OpenAPI schema of what adjustment_of reads")]
pub struct CreditChange {
    /// `grant` (amount above 0) or `adjustment` (any amount but 0; negative takes credits).
    #[schema(pattern = "^(grant|adjustment)$")]
    pub kind: String,
    /// Credits, −1,000,000,000 to 1,000,000,000.
    #[schema(minimum = -1000000000, maximum = 1000000000)]
    pub amount: i64,
    /// Why, for the ledger: 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// The published schema of a [`CreditChange`]: a grant's amount is above 0, an
/// adjustment's anything but 0, and a reason has no NUL (PostgreSQL cannot store it).
pub fn change_schema() -> Value {
    let reason = serde_json::json!({
        "type": "string", "minLength": 1, "maxLength": 500, "pattern": "^[^\\u0000]*$",
        "description": "why, for the ledger"});
    let variant = |kind: &str, amount: Value| {
        serde_json::json!({
            "type": "object", "additionalProperties": false,
            "required": ["kind", "amount", "reason"],
            "properties": {"kind": {"type": "string", "enum": [kind]}, "amount": amount,
                           "reason": reason},
        })
    };
    serde_json::json!({"oneOf": [
        variant("grant", serde_json::json!(
            {"type": "integer", "minimum": 1, "maximum": MAX_ADJUSTMENT})),
        variant("adjustment", serde_json::json!(
            {"type": "integer", "minimum": -MAX_ADJUSTMENT, "maximum": MAX_ADJUSTMENT,
             "not": {"const": 0}})),
    ]})
}

/// `POST /admin/tenants/{tenant}/credits` answer.
#[derive(Serialize, ToSchema)]
pub struct CreditChangeAnswer {
    /// Always true.
    pub success: bool,
    /// False when an earlier request with the same `Idempotency-Key` made the change.
    pub applied: bool,
    /// The ledger entry.
    pub entry: Entry,
    /// The account now.
    pub account: Account,
}

/// `GET /admin/tenants/{tenant}/credits`: a tenant's account and ledger.
#[utoipa::path(get, path = "/admin/tenants/{tenant}/credits",
    params(("tenant" = String, Path, description = "user id or tenant claim value", pattern = "^[A-Za-z0-9._:@-]{1,128}$")),
    security(("bearer" = [])),
    responses((status = 200, description = "ok", body = TenantCreditsAnswer),
        (status = 400, description = "bad tenant name (`invalid_tenant`)", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn get(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_named(&path)?;
    let account = credits::account(&state.db, &tenant).await?;
    let ledger = credits::entries(&state.db, &tenant, MAX_ENTRIES, None).await?;
    Ok(HttpResponse::Ok().json(TenantCreditsAnswer {
        success: true,
        tenant: tenant.to_string(),
        account,
        ledger,
    }))
}

/// `POST /admin/tenants/{tenant}/credits`: grants or adjusts a tenant's balance, once per
/// `Idempotency-Key` (a retry answers with the first entry; the key with another change
/// is a 422).
#[utoipa::path(post, path = "/admin/tenants/{tenant}/credits",
    params(("tenant" = String, Path, description = "user id or tenant claim value", pattern = "^[A-Za-z0-9._:@-]{1,128}$"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255,
            pattern = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
            description = "required: the same key makes the change once")),
    request_body = CreditChange, security(("bearer" = [])),
    responses((status = 200, description = "applied, now or by an earlier request with the key", body = CreditChangeAnswer),
        (status = 400, description = "bad tenant (`invalid_tenant`), body (`invalid_credit_change`) or key (`invalid_idempotency_key`, `idempotency_key_required`)", body = ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = ErrorBody),
        (status = 409, description = "taking that much would leave less than the tenant's unfinished jobs hold (`would_overdraw`)", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "the key was used for another change (`idempotency_key_reused`)", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn change(
    _: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_named(&path)?;
    let key = idempotency_key(&req)?.ok_or_else(|| {
        ApiError::bad_request(
            "idempotency_key_required",
            "a credit change needs an Idempotency-Key header, so a retry cannot apply it twice",
        )
    })?;
    let body = json_body(
        &req,
        payload,
        2048,
        state.settings.application.body_timeout(),
    )
    .await?;
    let change = adjustment_of(&body, key)?;
    let (entry, applied) = match credits::adjust(&state.db, &tenant, &change).await? {
        Adjusted::Applied { entry, new } => (entry, new),
        Adjusted::KeyReused => {
            return Err(ApiError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another change of this tenant's credits",
            ))
        }
        Adjusted::WouldOverdraw(account) => {
            return Err(ApiError::refused(
                StatusCode::CONFLICT,
                "would_overdraw",
                format!(
                    "the balance is {} and unfinished jobs hold {}: at most {} can be taken",
                    account.balance, account.held, account.available
                ),
            ))
        }
    };
    if applied {
        tracing::info!(%tenant, kind = change.kind, amount = change.amount, "credits changed");
    }
    let account = credits::account(&state.db, &tenant).await?;
    Ok(HttpResponse::Ok().json(CreditChangeAnswer {
        success: true,
        applied,
        entry,
        account,
    }))
}

/// `GET /admin/usage`: every tenant's usage (or one's, with `?tenant=`).
#[utoipa::path(get, path = "/admin/usage", security(("bearer" = [])),
    params(("days" = Option<u32>, Query, minimum = 1, maximum = 366, description = "days back from now; default 30"),
        ("tenant" = Option<String>, Query, pattern = "^[A-Za-z0-9._:@-]{1,128}$", description = "only this tenant")),
    responses((status = 200, description = "usage by day, tenant and job type", body = UsageAnswer),
        (status = 400, description = "a bad query (`invalid_query`)", body = ErrorBody),
        AdminOnly, Unavailable, Internal))]
pub async fn usage(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (days, tenant) = days_query(&req, true)?;
    let who = Who::Tenant(tenant.as_ref().map(Tenant::as_str));
    let usage = usage::usage(&state.db, who, days).await?;
    Ok(HttpResponse::Ok().json(UsageAnswer {
        success: true,
        days,
        usage,
    }))
}

/// A `CreditChange` body: a known kind, a whole amount in range (above 0 for a grant, not
/// 0 for an adjustment) and a reason PostgreSQL can store; anything else is a 400.
fn adjustment_of(body: &Value, key: String) -> Result<Adjustment, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(
            "invalid_credit_change",
            format!(
                "body must be {{\"kind\": \"grant\" or \"adjustment\", \"amount\": a whole \
                 number of credits, \"reason\": 1 to 500 characters}}: {why}"
            ),
        )
    };
    let fields = body.as_object().ok_or_else(|| bad("not an object"))?;
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "kind" | "amount" | "reason"))
    {
        return Err(bad(&format!("unknown field {other:?}")));
    }
    let kind = match fields.get("kind").and_then(Value::as_str) {
        Some("grant") => "grant",
        Some("adjustment") => "adjustment",
        _ => return Err(bad("kind must be \"grant\" or \"adjustment\"")),
    };
    let amount = fields
        .get("amount")
        .and_then(whole)
        .filter(|a| (-MAX_ADJUSTMENT..=MAX_ADJUSTMENT).contains(a) && *a != 0)
        .ok_or_else(|| {
            bad("amount must be a whole number from -1000000000 to 1000000000, not 0")
        })?;
    if kind == "grant" && amount < 0 {
        return Err(bad("a grant adds credits: its amount is above 0"));
    }
    let reason = fields
        .get("reason")
        .and_then(Value::as_str)
        .filter(|r| (1..=500).contains(&r.chars().count()) && !r.contains('\0'))
        .ok_or_else(|| bad("reason must be 1 to 500 characters, without NUL"))?;
    Ok(Adjustment {
        kind,
        amount,
        reason: reason.to_owned(),
        key,
    })
}

/// A whole number (`5.0` too), as an i64.
fn whole(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_ADJUSTMENT as f64)
            .map(|f| f as i64)
    })
}
