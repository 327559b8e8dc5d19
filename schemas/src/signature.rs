//! Callback signatures: `X-Callback-Signature: sha256=<hex>` where the hex is
//! HMAC-SHA256(secret, "<unix seconds>.<raw body>") and the seconds travel in
//! `X-Callback-Timestamp`. Pure functions, shared by the SDK (signing) and the callback
//! service (verifying), so the two can never disagree.
//!
//! [`verify_body`] checks the replaced workers' newest form, HMAC-SHA256(secret, raw body)
//! without a timestamp; the callback service accepts it only when configured to.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Header carrying the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Callback-Timestamp";
/// Header carrying `sha256=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "X-Callback-Signature";

type HmacSha256 = Hmac<Sha256>;

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The `X-Callback-Signature` value of the legacy form: `body` alone, no timestamp.
pub fn sign_body(secret: &[u8], body: &[u8]) -> String {
    let mut mac = keyed(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a legacy signature (HMAC of the raw body, no timestamp) against each of
/// `secrets`, in constant time per secret. Nothing bounds its age: the caller must remember
/// what it applied (the callback service keeps such signatures for days).
pub fn verify_body<S: AsRef<[u8]>>(
    secrets: &[S],
    signature: &str,
    body: &[u8],
) -> Result<usize, SignatureError> {
    let given = parse_signature(signature)?;
    matching(secrets, &given, |secret| {
        let mut mac = keyed(secret);
        mac.update(body);
        mac
    })
}

fn parse_signature(signature: &str) -> Result<Vec<u8>, SignatureError> {
    let hex_sig = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let given = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if given.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    Ok(given)
}

/// The index of the first secret whose MAC is `given`; every secret is checked, so timing
/// does not reveal which matched.
fn matching<S: AsRef<[u8]>>(
    secrets: &[S],
    given: &[u8],
    mac: impl Fn(&[u8]) -> HmacSha256,
) -> Result<usize, SignatureError> {
    let mut matched = None;
    for (i, secret) in secrets.iter().enumerate() {
        let expected = mac(secret.as_ref()).finalize().into_bytes();
        if bool::from(expected.as_slice().ct_eq(given)) && matched.is_none() {
            matched = Some(i);
        }
    }
    matched.ok_or(SignatureError::Mismatch)
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = keyed(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Callback-Signature` value for `body` signed at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a signature was refused. Deliberately coarse: callers answer 401 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing or malformed.
    #[error("missing or malformed signature headers")]
    Malformed,
    /// The timestamp is outside the allowed window.
    #[error("signature timestamp outside the allowed window")]
    Stale,
    /// No configured secret produced this signature.
    #[error("signature does not match")]
    Mismatch,
}

/// Checks `signature` (the header value) against each of `secrets`, in constant time per
/// secret, and `timestamp` against `now` ± `window_secs`. Returns the index of the secret
/// that matched (useful to log which key a worker uses, never the key itself).
pub fn verify<S: AsRef<[u8]>>(
    secrets: &[S],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    window_secs: i64,
) -> Result<usize, SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    let given = parse_signature(signature)?;
    if (now - ts).abs() > window_secs {
        return Err(SignatureError::Stale);
    }
    matching(secrets, &given, |secret| mac(secret, ts, body))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_body_signature_verifies_without_a_timestamp_and_names_its_key() {
        let body = br#"{"job_id":"x","status":"completed"}"#;
        let sig = sign_body(b"second", body);
        assert_eq!(
            verify_body(&[b"first".as_slice(), b"second"], &sig, body),
            Ok(1)
        );
        assert_eq!(
            verify_body(&[b"first".as_slice()], &sig, body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_body(&[b"second".as_slice()], &sig, b"{}"),
            Err(SignatureError::Mismatch)
        );
        // A timestamped signature is no body signature.
        let stamped = sign(b"second", 1_700_000_000, body);
        assert!(verify_body(&[b"second".as_slice()], &stamped, body).is_err());
    }

    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_fresh_signature_verifies_against_the_right_secret() {
        let sig = sign(b"k2", NOW, b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(
            verify(&["k1", "k2"], &NOW.to_string(), &sig, b"{}", NOW + 10, 300),
            Ok(1)
        );
    }

    #[test]
    fn tampering_staleness_and_garbage_are_refused() {
        let sig = sign(b"k", NOW, b"{\"a\":1}");
        let ts = NOW.to_string();
        assert_eq!(
            verify(&["k"], &ts, &sig, b"{\"a\":2}", NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&["other"], &ts, &sig, b"{\"a\":1}", NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&["k"], &ts, &sig, b"{\"a\":1}", NOW + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&["k"], &ts, &sig, b"{\"a\":1}", NOW - 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&["k"], "soon", &sig, b"{\"a\":1}", NOW, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&["k"], &ts, "md5=00", b"{\"a\":1}", NOW, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&["k"], &ts, "sha256=zz", b"{\"a\":1}", NOW, 300),
            Err(SignatureError::Malformed)
        );
        let no_secrets: [&str; 0] = [];
        assert_eq!(
            verify(&no_secrets, &ts, &sig, b"{\"a\":1}", NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_signed_string_is_timestamp_dot_body() {
        // Cross-checked with: printf '1800000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign(b"secret", NOW, b"{}"),
            "sha256=bb7079132825ac793cea8c013c1dd24d926b9b02132245b10588d9e5c0df70d7"
        );
    }
}
