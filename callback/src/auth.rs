//! [`Verifier`]: checks a callback's HMAC signature over the raw body, against every
//! configured secret, before anything else looks at the body.

use actix_web::HttpRequest;
use gpuq_schemas::signature::{self, SignatureError, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use secrecy::{ExposeSecret, SecretString};

/// The configured keys and clock window.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<SecretString>,
    window_secs: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets.len())
            .field("window_secs", &self.window_secs)
            .finish()
    }
}

impl Verifier {
    /// A verifier accepting signatures by any of `secrets` made within `window_secs` of now.
    pub fn new(secrets: Vec<SecretString>, window_secs: i64) -> Self {
        Self {
            secrets,
            window_secs,
        }
    }

    /// The index of the secret that signed `body` (safe to log; the key itself is not).
    pub fn verify(&self, req: &HttpRequest, body: &[u8]) -> Result<usize, SignatureError> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(SignatureError::Malformed)
        };
        let timestamp = header(TIMESTAMP_HEADER)?;
        let sig = header(SIGNATURE_HEADER)?;
        let keys: Vec<&[u8]> = self
            .secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes())
            .collect();
        let now = chrono::Utc::now().timestamp();
        signature::verify(&keys, timestamp, sig, body, now, self.window_secs)
    }
}
