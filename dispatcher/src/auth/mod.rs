//! Who is calling: [`Caller`], extracted from `Authorization: Bearer …` — an app user's JWT,
//! a `service_role` JWT, or the static admin token.

mod jwt;
mod stream_token;

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use gpuq_schemas::{Tenant, UserId};
pub use jwt::{JwtError, JwtVerifier};
pub use stream_token::{StreamToken, StreamTokens};

use crate::{ApiError, AppState};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user, for JWT callers (`sub`); `None` for the static admin token.
    pub user: Option<UserId>,
    /// May use `/admin/*` and act on any job.
    pub is_admin: bool,
    /// Whose fair share the caller's jobs count against, when the token's configured
    /// tenant claim names one (`auth.tenant_claim`); otherwise the user.
    pub tenant: Option<Tenant>,
}

impl Caller {
    /// True if the caller may see and act on a job owned by `owner`.
    pub fn may_access(&self, owner: UserId) -> bool {
        self.is_admin || self.user == Some(owner)
    }

    /// The user id, or 403 for the static admin token (which owns no jobs).
    pub fn require_user(&self) -> Result<UserId, ApiError> {
        self.user.ok_or_else(|| ApiError::Forbidden {
            code: "user_required",
            message: "this endpoint needs a user's token".into(),
        })
    }
}

/// Checks bearer tokens against the configuration.
pub struct Authenticator {
    jwt: JwtVerifier,
    admin_token: Option<SecretString>,
    tenant_claim: Option<String>,
    /// Job-scoped tokens for browsers' `EventSource`.
    pub streams: StreamTokens,
}

impl Authenticator {
    /// From the auth settings.
    pub fn new(settings: &crate::configuration::AuthSettings) -> Self {
        Self {
            jwt: JwtVerifier::new(
                settings.jwt_secret.as_ref(),
                settings.jwks_url.clone(),
                settings.audience.clone(),
            ),
            admin_token: settings.admin_token.clone(),
            tenant_claim: settings.tenant_claim.clone(),
            streams: StreamTokens::new(
                settings.stream_token_secret.as_ref(),
                std::time::Duration::from_secs(settings.stream_token_ttl_secs),
            ),
        }
    }

    /// Authenticates a raw bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        if let Some(admin) = &self.admin_token {
            if bool::from(admin.expose_secret().as_bytes().ct_eq(token.as_bytes())) {
                return Ok(Caller {
                    user: None,
                    is_admin: true,
                    tenant: None,
                });
            }
        }
        let claims = self.jwt.verify(token).await.map_err(|e| {
            tracing::info!(reason = %e, "token refused");
            ApiError::Unauthorized("invalid or expired token".into())
        })?;
        let user: UserId = claims
            .sub
            .parse()
            .map_err(|_| ApiError::Unauthorized("token subject must be a user id (UUID)".into()))?;
        Ok(Caller {
            user: Some(user),
            is_admin: claims.role.as_deref() == Some("service_role"),
            tenant: self.tenant_of(&claims)?,
        })
    }

    /// The configured tenant claim's value: a string or a number that is a valid tenant
    /// name. Absent: none (the user is the tenant). Anything else refuses the token, so a
    /// misissued token never lands its jobs in someone else's share.
    fn tenant_of(&self, claims: &jwt::Claims) -> Result<Option<Tenant>, ApiError> {
        let Some(name) = &self.tenant_claim else {
            return Ok(None);
        };
        let value = match claims.other.get(name) {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => String::new(),
        };
        value.parse().map(Some).map_err(|e| {
            ApiError::Unauthorized(format!("the token's {name:?} claim is not a tenant: {e}"))
        })
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token =
                token.ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("app state missing")))?;
            state.auth.authenticate(&token).await
        })
    }
}

/// A caller allowed on `/admin/*`; anyone else gets 401 (no credentials) or 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let caller = caller.await?;
            if !caller.is_admin {
                return Err(ApiError::Forbidden {
                    code: "admin_required",
                    message: "admin credentials required".into(),
                });
            }
            Ok(Admin(caller))
        })
    }
}
