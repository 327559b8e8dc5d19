//! A job's own webhook: `webhook` (a URL whose host is on `webhooks.job_hosts`) and
//! `webhookEvents` on an enqueue. Its deliveries share the outbox and the sender with the
//! registered endpoints' (`job_webhooks` in `…0010_job_webhooks.sql`) and are signed with
//! its tenant's key ([`tenant_key`]), derived from the job secret
//! (`webhooks.job_secret_env`): one key verifies all of a tenant's jobs' events, and no
//! tenant's receiver can sign another's.

use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::{WebhookSettings, EVENTS};
use crate::ApiError;

/// The events a job's webhook gets when the enqueue names none: how it ended.
pub const DEFAULT_EVENTS: [&str; 3] = ["completed", "failed", "cancelled"];

/// The longest URL stored (the table's check).
const MAX_URL_BYTES: usize = 2048;

/// Where a job's events go, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobWebhook {
    /// The URL, as parsed and re-serialized.
    pub url: String,
    /// The events wanted, without repeats.
    pub events: Vec<String>,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

/// `webhook` and `webhookEvents` of an enqueue body (either API version names them so).
pub fn parse(
    body: &Map<String, Value>,
    settings: &WebhookSettings,
) -> Result<Option<JobWebhook>, ApiError> {
    let events = body.get("webhookEvents").filter(|v| !v.is_null());
    let url = match body.get("webhook") {
        None | Some(Value::Null) if events.is_some() => {
            return Err(bad("invalid_webhook", "webhookEvents needs a webhook URL"))
        }
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("invalid_webhook", "webhook must be a URL string")),
    };
    if !takes_job_webhooks(settings) {
        return Err(bad(
            "invalid_webhook",
            "this server takes no per-job webhooks (webhooks.job_hosts and \
             webhooks.job_secret_env are not set); register an endpoint instead",
        ));
    }
    Ok(Some(JobWebhook {
        url: checked_url(url, &settings.job_hosts)?,
        events: checked_events(events)?,
    }))
}

/// Whether this server takes jobs' own webhooks: it has hosts to send them to and a secret
/// to sign them with.
pub fn takes_job_webhooks(settings: &WebhookSettings) -> bool {
    !settings.job_hosts.is_empty() && settings.job_secret.is_some()
}

/// The `whsec_` key `tenant`'s jobs' own webhooks are signed with: HMAC-SHA256 of the
/// tenant under the job secret. Nothing per tenant is stored, and a tenant gets its key
/// from `GET /v1/webhooks/secret`.
pub fn tenant_key(job_secret: &SecretString, tenant: &str) -> String {
    let raw = job_secret.expose_secret();
    let key = base64::engine::general_purpose::STANDARD
        .decode(raw.trim_start_matches("whsec_"))
        .unwrap_or_else(|_| raw.as_bytes().to_vec());
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(b"gpuq job webhook key\0");
    mac.update(tenant.as_bytes());
    let derived = mac.finalize().into_bytes();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(derived)
    )
}

fn checked_url(raw: &str, hosts: &[String]) -> Result<String, ApiError> {
    if raw.chars().any(char::is_control) || raw.len() > MAX_URL_BYTES {
        return Err(bad(
            "invalid_webhook",
            format!(
                "webhook must be a URL of at most {MAX_URL_BYTES} bytes without control characters"
            ),
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| bad("invalid_webhook", format!("webhook is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad(
            "invalid_webhook",
            "webhook must be an http or https URL without credentials",
        ));
    }
    // The text must say what the parser read: `http(s)://<host>[:<port>]` then the rest,
    // so no other spelling of an address slips past the allow-list.
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let plain = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .and_then(|rest| rest.strip_prefix(authority.as_str()))
        .is_some_and(|after| after.is_empty() || after.starts_with(['/', '?', '#']));
    if !plain {
        return Err(bad(
            "invalid_webhook",
            "webhook must be written http(s)://<host>[:<port>]/...: a lower-case host as \
             the allow-list names it",
        ));
    }
    // A port only where the allow-list names it: a host's other ports are other services.
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&authority)) {
        return Err(bad(
            "webhook_host_not_allowed",
            format!("webhook host {authority:?} is not on the allow-list"),
        ));
    }
    let url = String::from(url);
    if url.len() > MAX_URL_BYTES {
        return Err(bad(
            "invalid_webhook",
            "webhook URL is too long once encoded",
        ));
    }
    Ok(url)
}

fn checked_events(events: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let Some(events) = events else {
        return Ok(DEFAULT_EVENTS.map(String::from).to_vec());
    };
    let invalid = || {
        bad(
            "invalid_webhook_events",
            format!(
                "webhookEvents must be a non-empty list of {}",
                EVENTS.join(", ")
            ),
        )
    };
    let list = events
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(invalid)?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for e in list {
        let e = e
            .as_str()
            .filter(|e| EVENTS.contains(e))
            .ok_or_else(invalid)?;
        if !out.iter().any(|o| o == e) {
            out.push(e.to_owned());
        }
    }
    Ok(out)
}

/// The job secret, from the variable `webhooks.job_secret_env` names (looked up by
/// `var`); a secret set otherwise (tests) is kept when no variable is named.
pub fn secret(
    settings: &WebhookSettings,
    var: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<SecretString>> {
    let Some(name) = &settings.job_secret_env else {
        return Ok(settings.job_secret.clone());
    };
    let value = var(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("webhooks.job_secret_env names {name}, which is not set"))?;
    let strong = value
        .trim()
        .strip_prefix("whsec_")
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
        .is_some_and(|k| k.len() >= 24);
    if !strong {
        anyhow::bail!("{name} must be whsec_ and the base64 of at least 24 random bytes");
    }
    Ok(Some(SecretString::from(value.trim().to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            job_hosts: vec!["hooks.example.com".into()],
            job_secret: Some(SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
            ..WebhookSettings::default()
        }
    }

    fn parse_json(v: Value) -> Result<Option<JobWebhook>, String> {
        parse(v.as_object().unwrap(), &settings()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_webhook_on_an_allowed_host_gets_the_endings_unless_it_names_events() {
        let w = parse_json(json!({"webhook": "https://hooks.example.com/a?b=1"}))
            .unwrap()
            .unwrap();
        assert_eq!(w.url, "https://hooks.example.com/a?b=1");
        assert_eq!(w.events, DEFAULT_EVENTS);
        let w = parse_json(json!({"webhook": "http://hooks.example.com/", "webhookEvents": ["queued", "queued", "progress"]}))
            .unwrap()
            .unwrap();
        assert_eq!(w.events, ["queued", "progress"]);
        assert_eq!(parse_json(json!({"webhook": null})).unwrap(), None);
    }

    #[test]
    fn a_bad_webhook_is_refused_with_what_is_wrong() {
        for (body, says) in [
            (json!({"webhookEvents": ["queued"]}), "needs a webhook URL"),
            (json!({"webhook": 7}), "URL string"),
            (json!({"webhook": "hooks.example.com/x"}), "not a URL"),
            (
                json!({"webhook": "https://hooks.example.com:6379/x"}),
                "not on the allow-list",
            ),
            (
                json!({"webhook": "https://HOOKS.example.com/x"}),
                "lower-case host",
            ),
            (
                json!({"webhook": "https://hooks.example.com./x"}),
                "not on the allow-list",
            ),
            (
                json!({"webhook": "ftp://hooks.example.com/x"}),
                "http or https",
            ),
            (
                json!({"webhook": "https://u:p@hooks.example.com/x"}),
                "without credentials",
            ),
            (
                json!({"webhook": "https://evil.example.com/x"}),
                "not on the allow-list",
            ),
            (
                json!({"webhook": "https://hooks.example.com/\u{0}"}),
                "control characters",
            ),
            (
                json!({"webhook": "https://hooks.example.com/x", "webhookEvents": []}),
                "non-empty list",
            ),
            (
                json!({"webhook": "https://hooks.example.com/x", "webhookEvents": ["done"]}),
                "non-empty list",
            ),
            (
                json!({"webhook": "https://hooks.example.com/x", "webhookEvents": "queued"}),
                "non-empty list",
            ),
        ] {
            let e = parse_json(body.clone()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn a_server_without_job_hosts_or_secret_takes_no_per_job_webhook() {
        let off = WebhookSettings::default();
        let e = parse(
            json!({"webhook": "https://hooks.example.com/x"})
                .as_object()
                .unwrap(),
            &off,
        )
        .unwrap_err();
        assert!(e.to_string().contains("takes no per-job webhooks"), "{e}");
        assert_eq!(parse(&Map::new(), &off).unwrap(), None);
    }

    #[test]
    fn the_job_secret_is_read_from_its_variable_and_must_be_a_whsec_key() {
        let named = WebhookSettings {
            job_secret_env: Some("HOOK_KEY".into()),
            ..WebhookSettings::default()
        };
        let good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert!(secret(&named, |_| Some(good.into())).unwrap().is_some());
        assert!(secret(&named, |_| None)
            .unwrap_err()
            .to_string()
            .contains("HOOK_KEY"));
        assert!(secret(&named, |_| Some("not base64!".into())).is_err());
        assert!(secret(&named, |_| Some("whsec_".into())).is_err());
        assert!(
            secret(&named, |_| Some("whsec_c2hvcnQ=".into())).is_err(),
            "5 bytes"
        );
        assert!(secret(&WebhookSettings::default(), |_| None)
            .unwrap()
            .is_none());
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn each_tenant_has_its_own_key_and_it_signs_standard_webhooks() {
        let job = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let a = tenant_key(&job, "acme");
        assert_ne!(a, tenant_key(&job, "globex"));
        assert_eq!(a, tenant_key(&job, "acme"), "derived, not random");
        let other = SecretString::from("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkh");
        assert_ne!(a, tenant_key(&other, "acme"));
        assert!(standardwebhooks::Webhook::new(&a).is_ok());
    }
}
