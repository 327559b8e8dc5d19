//! `GET /v1/webhooks/secret`: the key a caller's jobs' own webhooks are signed with.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use gpuq_service::ErrorBody;

use crate::auth::Caller;
use crate::routes::credits::tenant_of;
use crate::routes::responses::{Internal, Unauthorized};
use crate::state::AppState;
use crate::webhooks::job::{takes_job_webhooks, tenant_key};
use crate::ApiError;

/// `GET /v1/webhooks/secret`.
#[derive(Serialize, ToSchema)]
pub struct WebhookKeyAnswer {
    /// Always true.
    pub success: bool,
    /// The tenant whose jobs' events it signs.
    pub tenant: String,
    /// `whsec_...`: verify the `webhook-signature` of every event a job of the tenant sends
    /// to its own `webhook` with it (Standard Webhooks).
    pub secret: String,
}

/// The caller's tenant's webhook key. Each tenant has its own, derived from the server's
/// job secret, so one tenant's receiver cannot sign events for another's.
#[utoipa::path(get, path = "/v1/webhooks/secret", security(("bearer" = [])),
    responses((status = 200, description = "the key of the caller's tenant", body = WebhookKeyAnswer),
        (status = 403, description = "a token with no user", body = ErrorBody),
        (status = 404, description = "this server takes no per-job webhooks", body = ErrorBody),
        Unauthorized, Internal))]
pub async fn secret(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_of(&caller)?;
    let hooks = &state.settings.webhooks;
    let Some(job_secret) = hooks
        .job_secret
        .as_ref()
        .filter(|_| takes_job_webhooks(hooks))
    else {
        return Err(ApiError::NotFound(
            "this server takes no per-job webhooks".into(),
        ));
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(WebhookKeyAnswer {
            success: true,
            secret: tenant_key(job_secret, tenant.as_str()),
            tenant: tenant.to_string(),
        }))
}
