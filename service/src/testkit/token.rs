//! HS256 bearer tokens as a Supabase-style auth server issues them.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

/// The HS256 secret test services are configured with.
pub const JWT_SECRET: &str = "test-jwt-secret-with-enough-entropy-0123456789";

/// A valid user token for `user`, signed with [`JWT_SECRET`], valid for 10 minutes.
pub fn token_for(user: Uuid) -> String {
    token_with(json!({
        "sub": user.to_string(),
        "aud": "authenticated",
        "exp": chrono::Utc::now().timestamp() + 600,
        "role": "authenticated",
    }))
}

/// A token with exactly these claims, signed with [`JWT_SECRET`].
pub fn token_with(claims: Value) -> String {
    signed(JWT_SECRET, &claims)
}

/// A token with these claims signed with `secret` (HS256).
pub fn signed(secret: &str, claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}
