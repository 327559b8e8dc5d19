//! Admin bodies for endpoints, checked field by field: anything PostgreSQL would refuse or
//! a sender could not use is a 400 `invalid_webhook` naming the field, before a row is
//! written.

use base64::Engine;
use rand::RngCore;
use serde_json::{Map, Value};

use gpuq_schemas::Tenant;

use super::store::{EndpointChange, NewEndpoint};
use super::EVENTS;
use crate::ApiError;

/// Longest endpoint URL.
pub const MAX_URL: usize = 2048;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 200;
/// Bytes of a generated signing key.
const KEY_BYTES: usize = 32;

fn bad(message: String) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_webhook",
        message,
    }
}

fn fields<'a>(body: &'a Value, allowed: &[&str]) -> Result<&'a Map<String, Value>, ApiError> {
    let fields = body
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object".into()))?;
    if let Some(other) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field {other:?}; the fields are {}",
            allowed.join(", ")
        )));
    }
    Ok(fields)
}

/// `POST /admin/webhooks`: `url` and `events` required; `tenant`, `description` and
/// `secret` (`whsec_` + base64 of 24 to 64 bytes; generated when absent) optional.
pub fn new_endpoint(body: &Value) -> Result<NewEndpoint, ApiError> {
    let f = fields(body, &["url", "events", "tenant", "description", "secret"])?;
    let url = url_of(f.get("url").ok_or_else(|| bad("url is required".into()))?)?;
    let events = events_of(
        f.get("events")
            .ok_or_else(|| bad("events is required".into()))?,
    )?;
    let tenant = match f.get("tenant") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(
            t.parse::<Tenant>()
                .map_err(|e| bad(format!("tenant: {e}")))?
                .to_string(),
        ),
        Some(_) => return Err(bad("tenant must be a string or null".into())),
    };
    let description = match f.get("description") {
        None => String::new(),
        Some(v) => description_of(v)?,
    };
    let secret = match f.get("secret") {
        None | Some(Value::Null) => generated_secret(),
        Some(v) => secret_of(v)?,
    };
    Ok(NewEndpoint {
        url,
        secret,
        events,
        tenant,
        description,
    })
}

/// `PATCH /admin/webhooks/{id}`: any of `url`, `events`, `description`, `enabled`.
pub fn endpoint_change(body: &Value) -> Result<EndpointChange, ApiError> {
    let f = fields(body, &["url", "events", "description", "enabled"])?;
    Ok(EndpointChange {
        url: f.get("url").map(url_of).transpose()?,
        events: f.get("events").map(events_of).transpose()?,
        description: f.get("description").map(description_of).transpose()?,
        enabled: match f.get("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(bad("enabled must be true or false".into())),
        },
    })
}

/// `POST /admin/webhooks/{id}/replay`: `{"deliveryId": "<uuid>"}` names one delivery; `{}`
/// every failed one.
pub fn replay_target(body: &Value) -> Result<Option<uuid::Uuid>, ApiError> {
    let f = fields(body, &["deliveryId"])?;
    match f.get("deliveryId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => id
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("deliveryId {id:?} is not a UUID"))),
        Some(_) => Err(bad("deliveryId must be a UUID string".into())),
    }
}

/// An absolute `http`/`https` URL with a host, at most [`MAX_URL`] long.
fn url_of(v: &Value) -> Result<String, ApiError> {
    let text = v
        .as_str()
        .ok_or_else(|| bad("url must be a string".into()))?;
    if text.len() > MAX_URL {
        return Err(bad(format!("url is longer than {MAX_URL} bytes")));
    }
    // A URL parser drops surrounding spaces and inner tabs and newlines; the endpoint's URL
    // is what the admin sent, or nothing.
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(format!(
            "url {text:?} must not contain spaces or control characters"
        )));
    }
    let parsed = url::Url::parse(text).map_err(|e| bad(format!("url {text:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!(
            "url {text:?} must be an http or https URL with a host"
        )));
    }
    let normal = parsed.to_string();
    if normal.len() > MAX_URL {
        return Err(bad(format!("url is longer than {MAX_URL} bytes")));
    }
    Ok(normal)
}

/// A non-empty list of distinct known events.
fn events_of(v: &Value) -> Result<Vec<String>, ApiError> {
    let list = v
        .as_array()
        .ok_or_else(|| bad(format!("events must be a list of {}", EVENTS.join(", "))))?;
    let mut events: Vec<String> = Vec::with_capacity(list.len());
    for e in list {
        let name = e
            .as_str()
            .filter(|n| EVENTS.contains(n))
            .ok_or_else(|| bad(format!("events: {e} is not one of {}", EVENTS.join(", "))))?;
        if events.iter().any(|have| have == name) {
            return Err(bad(format!("events: {name:?} is listed twice")));
        }
        events.push(name.to_owned());
    }
    if events.is_empty() {
        return Err(bad("events must name at least one event".into()));
    }
    Ok(events)
}

/// Text PostgreSQL can store (no NUL), at most [`MAX_DESCRIPTION`] characters.
fn description_of(v: &Value) -> Result<String, ApiError> {
    let text = v
        .as_str()
        .ok_or_else(|| bad("description must be a string".into()))?;
    if text.contains('\0') || text.chars().count() > MAX_DESCRIPTION {
        return Err(bad(format!(
            "description must be at most {MAX_DESCRIPTION} characters, without NUL"
        )));
    }
    Ok(text.to_owned())
}

/// `whsec_` + standard base64 of 24 to 64 bytes, as Standard Webhooks libraries take it.
fn secret_of(v: &Value) -> Result<String, ApiError> {
    let rule = "secret must be \"whsec_\" followed by the standard base64 of 24 to 64 random bytes";
    let text = v.as_str().ok_or_else(|| bad(rule.into()))?;
    let key = text
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter(|k| (24..=64).contains(&k.len()))
        .ok_or_else(|| bad(rule.into()))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

fn generated_secret() -> String {
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(body: Value) -> String {
        match new_endpoint(&body) {
            Err(ApiError::BadRequest { code, message }) => {
                assert_eq!(code, "invalid_webhook");
                message
            }
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_minimal_endpoint_gets_a_generated_secret_standard_webhooks_accepts() {
        let e =
            new_endpoint(&json!({"url": "https://app.example.com/hooks", "events": ["completed"]}))
                .unwrap();
        assert_eq!(e.url, "https://app.example.com/hooks");
        assert!(standardwebhooks::Webhook::new(&e.secret).is_ok());
        assert_ne!(e.secret, generated_secret());
    }

    #[test]
    fn every_bad_field_is_refused_by_name() {
        let ok = json!({"url": "http://127.0.0.1:9/h", "events": ["queued"]});
        for (field, value, says) in [
            ("url", json!("ftp://x/y"), "http or https"),
            ("url", json!("not a url"), "url"),
            ("url", json!(7), "url must be a string"),
            ("url", json!(" http://x/"), "spaces"),
            ("events", json!([]), "at least one"),
            ("events", json!(["done"]), "not one of"),
            ("events", json!(["queued", "queued"]), "twice"),
            ("events", json!("queued"), "list"),
            ("tenant", json!("a b"), "tenant"),
            ("description", json!("a\u{0}b"), "NUL"),
            ("description", json!("x".repeat(201)), "200"),
            ("secret", json!("whsec_c2hvcnQ="), "24 to 64"),
            ("secret", json!("plain"), "whsec_"),
            ("colour", json!("red"), "unknown field"),
        ] {
            let mut body = ok.clone();
            body[field] = value;
            let message = refused(body);
            assert!(message.contains(says), "{field}: {message}");
        }
        assert!(refused(json!([])).contains("object"));
        assert!(refused(json!({"events": ["queued"]})).contains("url is required"));
    }

    #[test]
    fn a_change_names_only_what_it_changes() {
        let c = endpoint_change(&json!({"enabled": true})).unwrap();
        assert_eq!(c.enabled, Some(true));
        assert!(c.url.is_none() && c.events.is_none() && c.description.is_none());
        assert!(endpoint_change(&json!({"enabled": "yes"})).is_err());
        assert!(endpoint_change(&json!({"secret": "whsec_x"})).is_err());
    }
}
