//! `GET /v1/credits` and `GET /v1/usage`: a caller's own account and usage.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use gpuq_schemas::Tenant;
use gpuq_service::ErrorBody;

use crate::auth::Caller;
use crate::credits::usage::{self, UsageRow, Who, MAX_DAYS};
use crate::credits::{self, Account, Entry};
use crate::routes::responses::{Internal, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::ApiError;

/// Ledger entries `GET /v1/credits` shows.
const RECENT: i64 = 50;

/// `GET /v1/credits`.
#[derive(Serialize, ToSchema)]
pub struct CreditsAnswer {
    /// Always true.
    pub success: bool,
    /// Whether this deployment holds and charges prices; when false the account does not
    /// change.
    pub enforced: bool,
    /// The tenant whose account pays for the caller's jobs.
    pub tenant: String,
    /// The account.
    pub account: Account,
    /// Its latest entries, newest first.
    pub ledger: Vec<Entry>,
}

/// `GET /v1/credits`: the balance, what unfinished jobs hold, what is available, and the
/// latest ledger entries of the caller's tenant.
#[utoipa::path(get, path = "/v1/credits", security(("bearer" = [])),
    responses((status = 200, description = "the caller's tenant's account", body = CreditsAnswer),
        (status = 403, description = "a token with no user", body = ErrorBody),
        Unauthorized, Unavailable, Internal))]
pub async fn credits(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_of(&caller)?;
    let account = credits::account(&state.db, &tenant).await?;
    let ledger = credits::entries(&state.db, &tenant, RECENT, None).await?;
    Ok(HttpResponse::Ok().json(CreditsAnswer {
        success: true,
        enforced: state.settings.credits.enabled,
        tenant: tenant.to_string(),
        account,
        ledger,
    }))
}

/// `GET /v1/usage` and `GET /admin/usage`.
#[derive(Serialize, ToSchema)]
pub struct UsageAnswer {
    /// Always true.
    pub success: bool,
    /// Days covered, ending now.
    pub days: u32,
    /// By day (UTC, oldest first), tenant and job type.
    pub usage: Vec<UsageRow>,
}

/// The `days` query parameter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaysQuery {
    days: Option<u32>,
    tenant: Option<String>,
}

/// `?days=` (1 to 366, default 30) and, for admins, `?tenant=`; anything else is a 400.
pub(crate) fn days_query(
    req: &HttpRequest,
    admin: bool,
) -> Result<(u32, Option<Tenant>), ApiError> {
    let bad = |why: String| ApiError::bad_request("invalid_query", why);
    let q = web::Query::<DaysQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("query must be days=1..{MAX_DAYS}: {e}")))?
        .into_inner();
    let days = q.days.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(bad(format!("days must be 1 to {MAX_DAYS}, not {days}")));
    }
    let tenant = match q.tenant {
        Some(_) if !admin => return Err(bad("tenant is for /admin/usage".into())),
        Some(t) => Some(t.parse().map_err(|e| bad(format!("tenant: {e}")))?),
        None => None,
    };
    Ok((days, tenant))
}

/// `GET /v1/usage`: the caller's jobs, attempts, GPU-seconds and credits charged, by day
/// and job type.
#[utoipa::path(get, path = "/v1/usage", security(("bearer" = [])),
    params(("days" = Option<u32>, Query, minimum = 1, maximum = 366, description = "days back from now; default 30")),
    responses((status = 200, description = "the caller's usage", body = UsageAnswer),
        (status = 400, description = "a bad query (`invalid_query`)", body = ErrorBody),
        (status = 403, description = "a token with no user", body = ErrorBody),
        Unauthorized, Unavailable, Internal))]
pub async fn usage(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.require_user()?;
    let (days, _) = days_query(&req, false)?;
    let usage = usage::usage(&state.db, Who::User(user.as_uuid()), days).await?;
    Ok(HttpResponse::Ok().json(UsageAnswer {
        success: true,
        days,
        usage,
    }))
}

/// The tenant whose account (and whose webhook key) a caller's jobs belong to.
pub(crate) fn tenant_of(caller: &Caller) -> Result<Tenant, ApiError> {
    let user = caller.require_user()?;
    Ok(caller.tenant.clone().unwrap_or_else(|| user.into()))
}
