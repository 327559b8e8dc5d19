//! The sender: takes due deliveries from the outbox, posts them signed per Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256 of
//! `<id>.<timestamp>.<body>`, by the reference library), and records each attempt.
//!
//! A 2xx delivers; anything else (another status, a timeout, a refused connection) is
//! retried on the schedule, with the same `webhook-id` every time, so a receiver that
//! records ids handles each event once. `NOTIFY gpuq_webhooks` (the trigger's) wakes the
//! loop at once; a poll finds due retries. Several replicas share the outbox through
//! `FOR UPDATE SKIP LOCKED`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use standardwebhooks::Webhook;
use tokio_util::sync::CancellationToken;

use super::store::{self, Due, Outcome};
use super::{schedule, WebhookSettings};
use crate::metrics::WebhookMetrics;

/// The `NOTIFY` channel `gpuq_webhook_wake()` (the migration) wakes senders on.
pub const CHANNEL: &str = "gpuq_webhooks";

/// Longest part of a receiver's error kept in the delivery log.
const MAX_ERROR_CHARS: usize = 300;

/// Posts deliveries; one per process.
#[derive(Clone)]
pub struct Sender {
    db: PgPool,
    client: reqwest::Client,
    settings: WebhookSettings,
    metrics: Option<WebhookMetrics>,
}

impl Sender {
    /// A sender with its own HTTP client: the configured timeout, no redirects (a receiver
    /// that moved must be re-registered, not followed to wherever it points).
    pub fn new(
        db: PgPool,
        settings: WebhookSettings,
        metrics: Option<WebhookMetrics>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout())
            .connect_timeout(settings.timeout().min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gpuq-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            db,
            client,
            settings,
            metrics,
        })
    }

    /// One round: takes what is due (up to a batch), posts it, records every outcome.
    /// Returns how many deliveries it took.
    pub async fn round(&self) -> sqlx::Result<usize> {
        // Longer than this round can take (its POSTs run `max_in_flight` at a time), so no
        // other sender takes a delivery still in flight.
        let waves = self
            .settings
            .batch
            .div_ceil(self.settings.max_in_flight.max(1) as u32);
        let lease = self.settings.timeout() * waves + Duration::from_secs(30);
        let job_webhooks = self.settings.job_secret.is_some();
        let due = store::take_due(&self.db, self.settings.batch, lease, job_webhooks).await?;
        let taken = due.len();
        futures_util::stream::iter(due)
            .for_each_concurrent(self.settings.max_in_flight.max(1), |d| self.deliver(d))
            .await;
        Ok(taken)
    }

    async fn deliver(&self, due: Due) {
        let outcome = self.post(&due).await;
        let recorded = if outcome.error.is_none() {
            store::delivered(&self.db, &due, &outcome).await
        } else {
            let next = schedule::delay_after(&self.settings, due.round_attempts as u32 + 1);
            let age = (chrono::Utc::now() - due.retry_from)
                .to_std()
                .unwrap_or_default();
            let retry_in = (!schedule::gives_up(&self.settings, age, next)).then_some(next);
            if retry_in.is_none() {
                tracing::warn!(delivery = %due.id, endpoint = ?due.endpoint_id, attempts = due.attempts + 1, "webhook delivery given up");
            }
            let disable_after = Duration::from_secs(self.settings.disable_after_secs);
            store::failed(&self.db, &due, &outcome, retry_in, disable_after).await
        };
        if let Err(e) = recorded {
            // The delivery's lease runs out and it is posted again: at least once.
            tracing::warn!(delivery = %due.id, error = %e, "webhook outcome not recorded");
        }
        if let Some(m) = &self.metrics {
            m.attempt(outcome.error.is_none(), outcome.latency);
        }
    }

    /// One signed POST of `due`.
    async fn post(&self, due: &Due) -> Outcome {
        let started = Instant::now();
        let id = due.id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        // An endpoint's own secret, or for a job's own webhook its tenant's key.
        let secret = match (due.endpoint_id, &self.settings.job_secret) {
            (Some(_), _) => due.secret.clone(),
            (None, Some(job)) => Some(super::job::tenant_key(
                job,
                due.tenant.as_deref().unwrap_or_default(),
            )),
            (None, None) => None,
        };
        let Some(secret) = secret else {
            return failure(None, "no secret to sign this delivery with".into(), started);
        };
        let signature =
            match Webhook::new(&secret).and_then(|w| w.sign(&id, timestamp, due.body.as_bytes())) {
                Ok(s) => s,
                Err(e) => return failure(None, format!("cannot sign: {e}"), started),
            };
        let sent = self
            .client
            .post(&due.url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp.to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(due.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Outcome {
                status: Some(r.status().as_u16()),
                error: None,
                latency: started.elapsed(),
            },
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                let error = format!(
                    "HTTP {status}: {}",
                    body.chars().take(MAX_ERROR_CHARS).collect::<String>()
                );
                failure(Some(status), error, started)
            }
            Err(e) if e.is_timeout() => failure(
                None,
                format!("no answer within {} ms", self.settings.timeout_ms),
                started,
            ),
            // Without the URL: a job's own webhook may carry a token in its query.
            Err(e) => failure(
                None,
                printable(error_chain(&e.without_url()).as_bytes()),
                started,
            ),
        }
    }
}

/// At most [`MAX_ERROR_CHARS`] of a receiver's answer, without control characters (a NUL
/// would not even fit in PostgreSQL's text).
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_CHARS)
        .collect()
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn failure(status: Option<u16>, error: String, started: Instant) -> Outcome {
    Outcome {
        status,
        error: Some(error),
        latency: started.elapsed(),
    }
}

/// Runs rounds until `stop`: at once while rounds come back full, otherwise on a `NOTIFY`
/// or every poll interval.
pub async fn run(sender: Sender, stop: CancellationToken) {
    let poll = Duration::from_millis(sender.settings.poll_interval_ms.max(10));
    let mut listener = listen(&sender.db).await;
    loop {
        match sender.round().await {
            Ok(n) if n >= sender.settings.batch as usize => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webhook round failed"),
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => {
                    if let Err(e) = l.recv().await {
                        tracing::debug!(error = %e, "webhook listener lost; polling until it is back");
                        tokio::time::sleep(poll).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = notified => {}
            _ = tokio::time::sleep(poll) => {
                if listener.is_none() {
                    listener = listen(&sender.db).await;
                }
            }
        }
    }
}

/// Wakes every sender now (a replay, an endpoint enabled); a failure only delays the
/// deliveries to the next poll.
pub async fn wake(db: &PgPool) {
    if let Err(e) = sqlx::query("SELECT gpuq_webhook_wake()").execute(db).await {
        tracing::debug!(error = %e, "webhook senders not woken; they poll");
    }
}

/// A listener on [`CHANNEL`]; none while PostgreSQL refuses (the poll still delivers).
async fn listen(db: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(db).await.ok()?;
    listener.listen(CHANNEL).await.ok()?;
    Some(listener)
}
