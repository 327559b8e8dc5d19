//! JWT verification: HS256 with the shared secret, RS256/ES256 with keys from a JWKS URL
//! (cached, refreshed when a token names an unknown `kid`, at most every 30 s).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::RwLock;

/// The claims gpuq reads. `exp`, `aud` and `sub` are required by [`Validation`].
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// The user id; must be a UUID.
    pub sub: String,
    /// `service_role` opens the admin endpoints.
    #[serde(default)]
    pub role: Option<String>,
    /// Every other claim, for the configured tenant claim (`auth.tenant_claim`).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Why a token was refused. Callers answer 401 for all of them.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Unparseable, unsupported algorithm, bad signature, expired, wrong audience...
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The algorithm has no configured key (e.g. HS256 without a secret, or `none`).
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    /// No JWKS key has the token's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The JWKS could not be fetched.
    #[error("key set unavailable: {0}")]
    Jwks(String),
}

const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies bearer tokens.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    jwks_url: Option<String>,
    audience: String,
    http: reqwest::Client,
    jwks: RwLock<JwksCache>,
}

impl JwtVerifier {
    /// A verifier for the configured secret and/or JWKS URL.
    pub fn new(secret: Option<&SecretString>, jwks_url: Option<String>, audience: String) -> Self {
        Self {
            hs256: secret.map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            jwks_url,
            audience,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            jwks: RwLock::default(),
        }
    }

    /// Checks signature, `exp`, `nbf` and `aud`; returns the claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let header = jsonwebtoken::decode_header(token)?;
        let key = match header.alg {
            // HS256 only ever verifies with the shared secret, never with a public key from
            // the JWKS: that is the classic algorithm-confusion attack.
            Algorithm::HS256 => self.hs256.clone().ok_or(JwtError::Algorithm(header.alg))?,
            Algorithm::RS256 | Algorithm::ES256 if self.jwks_url.is_some() => {
                self.jwks_key(header.kid.as_deref().ok_or(JwtError::UnknownKey)?)
                    .await?
            }
            other => return Err(JwtError::Algorithm(other)),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(jsonwebtoken::decode::<Claims>(token, &key, &validation)?.claims)
    }

    async fn jwks_key(&self, kid: &str) -> Result<DecodingKey, JwtError> {
        {
            let cache = self.jwks.read().await;
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            if cache
                .fetched_at
                .is_some_and(|t| t.elapsed() < JWKS_MIN_REFRESH)
            {
                return Err(JwtError::UnknownKey);
            }
        }
        let mut cache = self.jwks.write().await;
        if !cache.keys.contains_key(kid)
            && cache
                .fetched_at
                .is_none_or(|t| t.elapsed() >= JWKS_MIN_REFRESH)
        {
            cache.keys = self.fetch_jwks().await?;
            cache.fetched_at = Some(Instant::now());
        }
        cache.keys.get(kid).cloned().ok_or(JwtError::UnknownKey)
    }

    async fn fetch_jwks(&self) -> Result<HashMap<String, DecodingKey>, JwtError> {
        let url = self.jwks_url.as_deref().ok_or(JwtError::UnknownKey)?;
        let set: JwkSet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| JwtError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| JwtError::Jwks(e.to_string()))?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect())
    }
}
