//! A client for the documented subset of Replicate's HTTP API that a provider worker needs
//! (<https://replicate.com/docs/reference/http>):
//!
//! - `POST /v1/predictions` with `{"version", "input"}`, or, for a model run by name,
//!   `POST /v1/models/{owner}/{name}/predictions` with `{"input"}`: creates a prediction
//!   (201, the prediction object);
//! - `GET /v1/predictions/{id}`: the prediction object;
//! - `POST /v1/predictions/{id}/cancel`: cancels it.
//!
//! A prediction object has `id`, `status` (`starting`, `processing`, `succeeded`, `failed`,
//! `canceled`), `output` (for image and video models a file URL or a list of them) and
//! `error`. Requests carry `Authorization: Bearer <token>`. A throttled request is answered
//! 429 with a `Retry-After` header (seconds) and `{"detail": "Request was throttled. ..."}`.
//!
//! Not run against the live service from these machines (no route to it): the tests run it
//! against a local server implementing the same subset (`tests/sdk/provider.rs`).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

/// What to run for a job type: a model by name (`owner/name`), optionally pinned to one
/// version (`owner/name:version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// `owner/name`.
    pub model: String,
    /// A version id, when pinned.
    pub version: Option<String>,
}

impl ModelRef {
    /// Parses `owner/name` or `owner/name:version`.
    pub fn parse(s: &str) -> Option<Self> {
        let (model, version) = match s.split_once(':') {
            Some((m, v)) => (m, Some(v)),
            None => (s, None),
        };
        let (owner, name) = model.split_once('/')?;
        let part = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !part(owner) || !part(name) || version.is_some_and(|v| !part(v)) {
            return None;
        }
        Some(Self {
            model: model.to_owned(),
            version: version.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}:{v}", self.model),
            None => f.write_str(&self.model),
        }
    }
}

/// A prediction as the API describes it (the fields a worker reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Prediction {
    /// The prediction's id.
    pub id: String,
    /// `starting`, `processing`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// The model's output: file URLs for image and video models.
    #[serde(default)]
    pub output: Value,
    /// Why it failed.
    #[serde(default)]
    pub error: Value,
}

impl Prediction {
    /// Whether the prediction has ended (`succeeded`, `failed`, `canceled`).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "canceled" | "aborted"
        )
    }

    /// The output's file URLs, in order.
    pub fn output_urls(&self) -> Vec<String> {
        match &self.output {
            Value::String(url) => vec![url.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Why a request to the provider did not give a prediction.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// 429: try again after the delay (from `Retry-After` when given).
    #[error("throttled by the provider; retry in {0:?}")]
    RateLimited(Duration),
    /// The request can never succeed as made (400, 404, 422): the job's input or the model
    /// named for its type is wrong.
    #[error("the provider refused the request ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Start of the answer.
        body: String,
    },
    /// The provider refused the token (401, 403): a configuration problem, not the job's.
    #[error("the provider refused the API token ({0}); check the provider token")]
    Unauthorized(u16),
    /// A server error, a timeout or an unreadable answer: another try may work.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// The longest `Retry-After` honoured; a longer one is cut to this and asked again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// One output file's download, body included: a video of hundreds of megabytes takes longer
/// than an API call's timeout allows.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// A Replicate API client configured by base URL and token.
#[derive(Clone)]
pub struct ReplicateClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl std::fmt::Debug for ReplicateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicateClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ReplicateClient {
    /// A client of the API at `base` (`https://api.replicate.com`), each request bounded by
    /// `timeout`.
    pub fn new(base: &str, token: SecretString, timeout: Duration) -> reqwest::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Creates a prediction of `model` with `input`.
    pub async fn create(
        &self,
        model: &ModelRef,
        input: &Value,
    ) -> Result<Prediction, ProviderError> {
        let (url, body) = match &model.version {
            Some(version) => (
                format!("{}/v1/predictions", self.base),
                json!({"version": version, "input": input}),
            ),
            None => (
                format!("{}/v1/models/{}/predictions", self.base, model.model),
                json!({"input": input}),
            ),
        };
        self.send(self.http.post(url).json(&body)).await
    }

    /// The prediction `id` as it stands.
    pub async fn get(&self, id: &str) -> Result<Prediction, ProviderError> {
        let url = format!("{}/v1/predictions/{}", self.base, path_segment(id)?);
        self.send(self.http.get(url)).await
    }

    /// Asks the provider to stop prediction `id`.
    pub async fn cancel(&self, id: &str) -> Result<Prediction, ProviderError> {
        let url = format!("{}/v1/predictions/{}/cancel", self.base, path_segment(id)?);
        self.send(self.http.post(url)).await
    }

    /// Downloads an output file, at most `limit` bytes. Returns its bytes and content type.
    /// The URL's query (a signed URL's token) is never in an error.
    pub async fn download(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<(bytes::Bytes, Option<String>), ProviderError> {
        // No token: output URLs are the provider's file hosts, signed in themselves.
        let mut resp = self
            .http
            .get(url)
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(unavailable)?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::TOO_MANY_REQUESTS => {
                return Err(ProviderError::RateLimited(retry_after(resp.headers())))
            }
            // An expired signed URL, a file host down: not the token's fault, and not the
            // job's either.
            s => {
                return Err(ProviderError::Unavailable(format!(
                    "an output file's download answered {s}"
                )))
            }
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(ProviderError::Refused {
                    status: 200,
                    body: format!("an output file is larger than {limit} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body.freeze(), content_type))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Prediction, ProviderError> {
        let resp = req
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(unavailable)?;
        if !status.is_success() {
            return Err(classify(status, &headers, body));
        }
        serde_json::from_str(&body)
            .map_err(|e| ProviderError::Unavailable(format!("unreadable prediction: {e}")))
    }
}

/// Prediction ids are opaque; one that could leave its path segment is not followed.
fn path_segment(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        Ok(id)
    } else {
        Err(ProviderError::Unavailable(format!(
            "the provider answered an unusable prediction id {id:?}"
        )))
    }
}

fn unavailable(e: reqwest::Error) -> ProviderError {
    // Never the URL's query (a signed output URL's token) in the message.
    ProviderError::Unavailable(e.without_url().to_string())
}

fn classify(status: StatusCode, headers: &HeaderMap, body: String) -> ProviderError {
    let body: String = body.chars().take(300).collect();
    match status.as_u16() {
        429 => ProviderError::RateLimited(retry_after(headers)),
        401 | 403 => ProviderError::Unauthorized(status.as_u16()),
        400 | 404 | 413 | 422 => ProviderError::Refused {
            status: status.as_u16(),
            body,
        },
        s => ProviderError::Unavailable(format!("{s}: {body}")),
    }
}

/// `Retry-After` in seconds (the form the API sends); 1 s when absent or unreadable.
fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(1), |s| {
            Duration::from_secs_f64(s).min(MAX_RETRY_AFTER)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_named_with_or_without_a_version() {
        let m = ModelRef::parse("stability-ai/sdxl:7762fd07").unwrap();
        assert_eq!(m.model, "stability-ai/sdxl");
        assert_eq!(m.version.as_deref(), Some("7762fd07"));
        assert_eq!(ModelRef::parse("owner/name").unwrap().version, None);
        for bad in [
            "",
            "sdxl",
            "/name",
            "owner/",
            "a/b:",
            "a/b/c",
            "a/b:v/../x",
            "a b/c",
        ] {
            assert_eq!(ModelRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn output_urls_come_from_a_string_or_a_list() {
        let p = |output: Value| Prediction {
            id: "p".into(),
            status: "succeeded".into(),
            output,
            error: Value::Null,
        };
        assert_eq!(
            p(json!("https://x/a.png")).output_urls(),
            ["https://x/a.png"]
        );
        assert_eq!(
            p(json!(["https://x/a.png", "https://x/b.png"])).output_urls(),
            ["https://x/a.png", "https://x/b.png"]
        );
        assert!(p(Value::Null).output_urls().is_empty());
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(RETRY_AFTER, "2.5".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_millis(2500));
        h.insert(RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&h), MAX_RETRY_AFTER);
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(1));
    }
}
