//! `gpuq-dispatcher mint-token`: a development token signed with the configured HS256
//! secret, so a local stack can be driven without an auth server. Refuses to run without
//! a secret; never used by the server itself.

use jsonwebtoken::{encode, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::Settings;

/// Mints a token for `sub` (a UUID) valid for `ttl_secs`, with the configured audience.
pub fn mint(settings: &Settings, sub: &str, ttl_secs: i64, role: &str) -> anyhow::Result<String> {
    let secret = settings
        .auth
        .jwt_secret
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("GPUQ_JWT_SECRET is not set"))?;
    sub.parse::<gpuq_schemas::UserId>()?;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": sub, "aud": settings.auth.audience, "role": role, "iat": now, "exp": now + ttl_secs });
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?)
}
