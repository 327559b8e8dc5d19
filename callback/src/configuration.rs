//! [`Settings`]: the callback service's configuration — the shared sections of
//! [`gpuq_service::configuration`] (`application`, `database`, `redis`, `queue`) plus its
//! own (`auth`, `storage`), loaded by the one layered loader: defaults →
//! `configuration/base.yaml` (or `$GPUQ_CONFIG`) → `$GPUQ_ENVIRONMENT.yaml` →
//! `GPUQ__SECTION__FIELD` → the flat names (`DATABASE_URL`, `GPUQ_CALLBACK_SECRET`,
//! `GPUQ_STORAGE_HOST`, ...).

use config::builder::DefaultState;
use config::ConfigBuilder;
use gpuq_service::configuration::{
    self, ConfigurationError, Environment, Layered, ServiceDefaults,
};
use gpuq_service::{ApplicationSettings, DatabaseSettings, QueueSettings, RedisSettings};
use secrecy::SecretString;
use serde::Deserialize;

/// Every setting of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The listener and its slow-client limits.
    pub application: ApplicationSettings,
    /// PostgreSQL, the system of record.
    pub database: DatabaseSettings,
    /// Redis: the queues and the event streams.
    pub redis: RedisSettings,
    /// Queue behaviour (the retry backoff).
    pub queue: QueueSettings,
    /// Callback authentication.
    pub auth: AuthSettings,
    /// Where outputs may live.
    pub storage: StorageSettings,
    /// What this service writes to the webhook outbox.
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// When a failure makes a job poison or quarantines its worker (ADR 0019).
    #[serde(default)]
    pub health: crate::record::HealthSettings,
}

/// `webhooks` (the dispatcher sends them; this service writes `progress` events).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// At most one `progress` event per job and endpoint per this many ms (default 2,000).
    pub progress_interval_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            progress_interval_ms: 2_000,
        }
    }
}

/// Callback authentication.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HMAC keys (`GPUQ_CALLBACK_SECRET`, comma-separated); a callback signed with any of
    /// them is accepted (rotation, per-worker keys).
    pub secrets: Vec<SecretString>,
    /// Largest accepted clock difference between the signer and us, seconds.
    pub window_secs: i64,
    /// Also accept the replaced workers' newest signature, HMAC of the raw body without a
    /// timestamp, for legacy-shaped reports only (off by default). Such a signature never
    /// ages, so every one applied is remembered for [`LEGACY_REPLAY_MEMORY`] and a copy is
    /// `ignored`; the fence confines a legacy report to the job's current claim.
    #[serde(default)]
    pub legacy_body_signatures: bool,
}

/// How long a timestamp-less signature is remembered against replays.
pub const LEGACY_REPLAY_MEMORY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Object storage.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// The one host whose storage URLs are accepted, e.g. `https://proj.supabase.co`
    /// (`GPUQ_STORAGE_HOST`). Unset: only paths are accepted, every URL is foreign.
    pub host: Option<String>,
    /// Buckets a reported path may name (`GPUQ_STORAGE_BUCKETS`, comma-separated).
    pub buckets: Vec<String>,
}

/// The buckets known by default: one per job type, plus the two shared ones.
pub fn default_buckets() -> Vec<String> {
    gpuq_schemas::JobType::names()
        .map(String::from)
        .chain(["workspace-temp".to_owned(), "user-library".to_owned()])
        .collect()
}

impl Layered for Settings {
    fn builtin() -> Result<ConfigBuilder<DefaultState>, ConfigurationError> {
        Ok(configuration::defaults(ServiceDefaults {
            host: "0.0.0.0",
            port: 8081,
            max_body_bytes: 256 * 1024,
            pool_size: 10,
            acquire_timeout_ms: 5_000,
        })?
        .set_default("auth.secrets", Vec::<String>::new())?
        .set_default("auth.window_secs", 300)?
        .set_default("storage.buckets", default_buckets())?)
    }

    fn load_from(env: &Environment) -> Result<Self, ConfigurationError> {
        let settings: Self = configuration::load(Self::builtin()?, env)?;
        settings
            .health
            .check()
            .map_err(|m| ConfigurationError::Config(config::ConfigError::Message(m)))?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests;
