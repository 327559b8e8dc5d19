//! Reporting to the callback service: signed POSTs of the canonical
//! [`CallbackPayload`], retried with exponential backoff on network errors and 5xx.
//!
//! Each attempt is signed afresh (timestamp and HMAC over the raw body, exactly as
//! [`gpuq_schemas::signature`] says), so a retry after minutes is not refused as stale.
//! A 4xx other than 408/429 is final: the service understood the report and refused it,
//! and sending it again cannot help. Of those, 401, 403, 404, 405 and 410 say the worker is
//! misconfigured (wrong secret, wrong URL), not that the job failed
//! ([`ReportError::is_misconfiguration`]); before claiming anything a worker checks both
//! with a signed probe ([`Reporter::probe`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use gpuq_schemas::callback::PROBE_BODY;
use gpuq_schemas::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use gpuq_schemas::CallbackPayload;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};

/// How a report is retried.
#[derive(Debug, Clone, Copy)]
pub struct CallbackRetry {
    /// Delay before the first retry.
    pub min_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Retries after the first attempt before giving up.
    pub max_retries: usize,
    /// Time limit of one request.
    pub request_timeout: Duration,
}

impl Default for CallbackRetry {
    /// About eight minutes of retries: long enough to ride out a callback deploy.
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_retries: 20,
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// Why a report was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    /// The service answered a final 4xx.
    #[error("callback service refused the report with {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Network errors or 5xx until the retries ran out.
    #[error("callback service unreachable: {0}")]
    Unreachable(String),
}

impl ReportError {
    /// Whether the refusal says the worker, not the report, is wrong: the secret is not
    /// accepted (401, 403) or the URL is not the callback route (404, 405, 410). The
    /// callback service's own 404 for an unknown job (`job_not_found`) is about the job.
    pub(crate) fn is_misconfiguration(&self) -> bool {
        match self {
            Self::Rejected { status: 404, body } => !body.contains("\"job_not_found\""),
            Self::Rejected { status, .. } => matches!(status, 401 | 403 | 405 | 410),
            Self::Unreachable(_) => false,
        }
    }
}

/// The route a callback URL without a path means.
pub(crate) const CALLBACK_ROUTE: &str = "/v1/callback";

/// The URL reports go to: `url` itself, or, for a base URL without a path
/// (`http://callback:8081`, a natural mistake), its `/v1/callback` route.
pub(crate) fn callback_url(url: &str) -> Result<Url, String> {
    let mut parsed = Url::parse(url.trim()).map_err(|e| format!("callback_url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "callback_url {url:?}: the scheme must be http or https"
        ));
    }
    if parsed.path() == "/" || parsed.path().is_empty() {
        parsed.set_path(CALLBACK_ROUTE);
        tracing::info!(url = %parsed, "callback_url has no path; reporting to its /v1/callback route");
    }
    Ok(parsed)
}

/// Sends signed callbacks.
#[derive(Clone)]
pub(crate) struct Reporter {
    http: reqwest::Client,
    url: Url,
    secret: SecretString,
    retry: CallbackRetry,
}

impl Reporter {
    pub(crate) fn new(
        url: Url,
        secret: SecretString,
        retry: CallbackRetry,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(retry.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("gpuq-worker-sdk/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            url,
            secret,
            retry,
        })
    }

    /// The URL reports go to.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// Sends `payload`, retrying network errors, 5xx, 408 and 429 with backoff.
    pub(crate) async fn send(&self, payload: &CallbackPayload) -> Result<(), ReportError> {
        self.send_with(payload, self.retry.max_retries).await
    }

    /// Checks the URL and the secret with a signed probe the service answers without
    /// touching any job, with at most `max_retries` retries.
    pub(crate) async fn probe(&self, max_retries: usize) -> Result<(), ReportError> {
        self.send_body(PROBE_BODY, "probe", max_retries).await
    }

    /// Sends `payload` with at most `max_retries` retries.
    pub(crate) async fn send_with(
        &self,
        payload: &CallbackPayload,
        max_retries: usize,
    ) -> Result<(), ReportError> {
        let body = serde_json::to_vec(payload)
            .map_err(|e| ReportError::Unreachable(format!("could not encode: {e}")))?;
        let status = format!("{:?}", payload.status).to_lowercase();
        self.send_body(&body, &status, max_retries).await
    }

    async fn send_body(
        &self,
        body: &[u8],
        what: &str,
        max_retries: usize,
    ) -> Result<(), ReportError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(max_retries)
            .with_jitter();
        (|| self.post(body))
            .retry(backoff)
            .when(|e| matches!(e, ReportError::Unreachable(_)))
            .notify(|e, wait| {
                tracing::warn!(
                    report = what,
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "callback attempt failed; retrying"
                );
            })
            .await
    }

    /// One signed POST.
    async fn post(&self, body: &[u8]) -> Result<(), ReportError> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let signature = sign(self.secret.expose_secret().as_bytes(), ts, body);
        let res = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| ReportError::Unreachable(crate::error::chain(&e)))?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = res
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect();
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(ReportError::Unreachable(format!("{status}: {text}")))
        } else {
            Err(ReportError::Rejected {
                status: status.as_u16(),
                body: text,
            })
        }
    }
}
