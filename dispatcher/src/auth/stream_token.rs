//! Stream tokens: how a browser page follows its job with the browser's own `EventSource`,
//! which cannot send an `Authorization` header.
//!
//! A stream token is a short-lived HS256 JWT naming one user and one job (`sub`, `job`),
//! with its own audience (`gpuq-job-events`), signed with the dispatcher's stream key, never
//! with the app's JWT secret: so it opens that job's event stream and nothing else, and no
//! user token can pass for one. The enqueue answer carries one, `POST
//! /v1/jobs/{id}/stream-token` mints a fresh one, and `GET /v1/jobs/{id}/events` accepts it
//! as `?access_token=` (query values are redacted from the request log).
//!
//! Several dispatcher replicas must share the key (`GPUQ_STREAM_TOKEN_SECRET`); without one
//! each process makes its own, and its tokens open streams on that process only.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use gpuq_schemas::{JobId, UserId};

use crate::ApiError;

/// The audience of stream tokens; user tokens never carry it.
const AUDIENCE: &str = "gpuq-job-events";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    job: String,
    aud: String,
    exp: i64,
}

/// A minted token and when it stops working.
#[derive(Debug, Clone)]
pub struct StreamToken {
    /// The JWT.
    pub token: String,
    /// Its expiry.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Mints and checks stream tokens.
pub struct StreamTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl StreamTokens {
    /// With the configured key, or a random one for this process when none is set.
    pub fn new(secret: Option<&SecretString>, ttl: Duration) -> Self {
        let key: Vec<u8> = match secret.map(|s| s.expose_secret().as_bytes().to_vec()) {
            Some(key) if !key.is_empty() => key,
            _ => {
                tracing::warn!(
                    "GPUQ_STREAM_TOKEN_SECRET is not set: stream tokens open event streams on \
                     this dispatcher process only (set it when running several)"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            ttl,
        }
    }

    /// A token that opens `job`'s event stream for `user` until the configured lifetime ends.
    pub fn mint(&self, user: UserId, job: JobId) -> Result<StreamToken, ApiError> {
        let expires_at = chrono::Utc::now()
            + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(1));
        let claims = Claims {
            sub: user.to_string(),
            job: job.to_string(),
            aud: AUDIENCE.to_owned(),
            exp: expires_at.timestamp(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("minting a stream token: {e}")))?;
        Ok(StreamToken { token, expires_at })
    }

    /// The user a token lets follow `job`; 401 for anything else (another job's token, an
    /// expired or forged one, a user token).
    pub fn verify(&self, token: &str, job: JobId) -> Result<UserId, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 5;
        let refused = || ApiError::Unauthorized("invalid or expired stream token".into());
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| {
                tracing::info!(reason = %e, "stream token refused");
                refused()
            })?
            .claims;
        if claims.job != job.to_string() {
            return Err(refused());
        }
        claims.sub.parse().map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        uuid::Uuid::new_v4().to_string().parse().unwrap()
    }

    fn tokens() -> StreamTokens {
        StreamTokens::new(
            Some(&SecretString::from("stream-key-0123456789abcdef")),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_token_opens_its_own_job_for_its_own_user_only() {
        let (user, job, other) = (user(), JobId::new(), JobId::new());
        let t = tokens().mint(user, job).unwrap();
        assert_eq!(tokens().verify(&t.token, job).unwrap(), user);
        assert!(tokens().verify(&t.token, other).is_err());
        let elsewhere = StreamTokens::new(
            Some(&SecretString::from("another-key-0123456789abcdef")),
            Duration::from_secs(60),
        );
        assert!(elsewhere.verify(&t.token, job).is_err());
        assert!(tokens().verify("not-a-token", job).is_err());
    }

    #[test]
    fn a_token_of_the_same_key_for_another_audience_is_refused() {
        let t = tokens();
        let (user, job) = (user(), JobId::new());
        let claims = Claims {
            sub: user.to_string(),
            job: job.to_string(),
            aud: "authenticated".into(),
            exp: chrono::Utc::now().timestamp() + 60,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &t.encoding).unwrap();
        assert!(t.verify(&token, job).is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let short = StreamTokens::new(
            Some(&SecretString::from("stream-key-0123456789abcdef")),
            Duration::ZERO,
        );
        let (user, job) = (user(), JobId::new());
        let mut t = short.mint(user, job).unwrap();
        // Past the leeway.
        let claims = Claims {
            sub: user.to_string(),
            job: job.to_string(),
            aud: AUDIENCE.into(),
            exp: chrono::Utc::now().timestamp() - 60,
        };
        t.token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &short.encoding).unwrap();
        assert!(short.verify(&t.token, job).is_err());
    }
}
