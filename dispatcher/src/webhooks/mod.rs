//! Webhooks (ADR 0016): apps register endpoints; every job event they asked for is written
//! to an outbox in PostgreSQL by the transaction that changes the job (a trigger, see
//! `schemas/migrations/…0008_webhooks.sql`), and [`sender`] posts it, signed per
//! Standard Webhooks, retrying with backoff for a day and more.
//!
//! - [`WebhookSettings`]: timeouts, concurrency, the retry schedule, auto-disable.
//! - [`config`]: endpoints from the configuration, applied at start-up.
//! - [`input`]: admin bodies for endpoints, checked before anything is written.
//! - [`job`]: a job's own webhook, named by its enqueue.
//! - [`schedule`]: when a failed delivery is tried again, and when it is given up.
//! - [`store`]: endpoints, deliveries and the delivery log in PostgreSQL.
//! - [`sender`]: the loop — woken by `NOTIFY`, safe with several replicas.

pub mod config;
pub mod input;
pub mod job;
pub mod schedule;
pub mod sender;
pub mod store;

use std::time::Duration;

use serde::Deserialize;

/// The events an endpoint may ask for.
pub use gpuq_schemas::WEBHOOK_EVENTS as EVENTS;

/// `webhooks` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Run the sender loop in this process (default true). Any number of replicas may.
    pub enabled: bool,
    /// How long one POST may take, ms (default 10,000); longer counts as a failed attempt.
    pub timeout_ms: u64,
    /// POSTs in flight at once per process (default 32).
    pub max_in_flight: usize,
    /// Deliveries a sender takes per round (default 100).
    pub batch: u32,
    /// How often a sender looks for due retries when no `NOTIFY` woke it, ms (default 1,000).
    pub poll_interval_ms: u64,
    /// The first retry's delay, ms (default 5,000); each next one doubles, with jitter.
    pub retry_base_ms: u64,
    /// The longest delay between two attempts, ms (default 3,600,000: hourly at the end).
    pub retry_max_ms: u64,
    /// How long after the event a delivery is still tried, seconds (default 90,000: 25 h).
    pub retry_for_secs: u64,
    /// An endpoint whose deliveries all failed for this long is disabled, seconds (default
    /// 86,400: a day). An admin enables it again.
    pub disable_after_secs: u64,
    /// Endpoints from the configuration (files only), applied at start-up.
    pub endpoints: Vec<config::ConfiguredEndpoint>,
    /// Hosts a job's own `webhook` URL may point at (`GPUQ__WEBHOOKS__JOB_HOSTS=a,b`);
    /// empty (the default): enqueues naming a webhook are refused.
    pub job_hosts: Vec<String>,
    /// The variable holding the `whsec_...` secret jobs' own webhooks are signed with.
    pub job_secret_env: Option<String>,
    /// That secret, read at start-up ([`job::secret`]).
    #[serde(skip)]
    pub job_secret: Option<secrecy::SecretString>,
    // `progress_interval_ms` (the same section) is the callback service's: at most one
    // `progress` event per job and endpoint per interval.
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout_ms: 10_000,
            max_in_flight: 32,
            batch: 100,
            poll_interval_ms: 1_000,
            retry_base_ms: 5_000,
            retry_max_ms: 3_600_000,
            retry_for_secs: 90_000,
            disable_after_secs: 86_400,
            endpoints: Vec::new(),
            job_hosts: Vec::new(),
            job_secret_env: None,
            job_secret: None,
        }
    }
}

impl WebhookSettings {
    /// The POST timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}
