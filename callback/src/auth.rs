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
    legacy_body_signatures: bool,
}

/// A signature that checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index of the secret that signed (safe to log; the key itself is not).
    pub key: usize,
    /// Signed with a timestamp (`false`: the legacy body-only form).
    pub timestamped: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets.len())
            .field("window_secs", &self.window_secs)
            .field("legacy_body_signatures", &self.legacy_body_signatures)
            .finish()
    }
}

impl Verifier {
    /// A verifier accepting signatures by any of `secrets` made within `window_secs` of now
    /// (and, with `legacy_body_signatures`, body-only signatures without a timestamp).
    pub fn new(secrets: Vec<SecretString>, window_secs: i64, legacy_body_signatures: bool) -> Self {
        Self {
            secrets,
            window_secs,
            legacy_body_signatures,
        }
    }

    /// Which secret signed `body`, and in which form.
    pub fn verify(&self, req: &HttpRequest, body: &[u8]) -> Result<Verified, SignatureError> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(SignatureError::Malformed)
        };
        let sig = header(SIGNATURE_HEADER)?;
        let keys: Vec<&[u8]> = self
            .secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes())
            .collect();
        match header(TIMESTAMP_HEADER) {
            Ok(timestamp) => {
                let now = chrono::Utc::now().timestamp();
                let key = signature::verify(&keys, timestamp, sig, body, now, self.window_secs)?;
                Ok(Verified {
                    key,
                    timestamped: true,
                })
            }
            Err(missing) if !self.legacy_body_signatures => Err(missing),
            Err(_) => Ok(Verified {
                key: signature::verify_body(&keys, sig, body)?,
                timestamped: false,
            }),
        }
    }
}
