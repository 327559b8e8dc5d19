//! [`Settings`]: the dispatcher's configuration — the shared sections of
//! [`gpuq_service::configuration`] (`application`, `database`, `redis`, `queue`) plus its
//! own (`auth`, `limits`, `enqueue`, `credits`, `webhooks`), loaded by the one layered loader: defaults →
//! `configuration/base.yaml` (or `$GPUQ_CONFIG`) → `$GPUQ_ENVIRONMENT.yaml` →
//! `GPUQ__SECTION__FIELD` → the flat names (`DATABASE_URL`, `GPUQ_JWT_SECRET`, ...).

use std::collections::HashMap;

use config::builder::DefaultState;
use config::ConfigBuilder;
use gpuq_service::configuration::{
    self, ConfigurationError, Environment, Layered, ServiceDefaults,
};
use gpuq_service::{ApplicationSettings, DatabaseSettings, QueueSettings, RedisSettings};
use secrecy::SecretString;
use serde::Deserialize;

use gpuq_schemas::JobType;

use crate::credits::CreditSettings;
use crate::validation::MAX_START_WITHIN_SECS;
use crate::webhooks::WebhookSettings;

/// Everything the dispatcher reads at start-up. Secrets are [`SecretString`]s, so they never
/// show in `Debug` output or logs.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The listener and its slow-client limits.
    pub application: ApplicationSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// Redis.
    pub redis: RedisSettings,
    /// Queue behaviour.
    pub queue: QueueSettings,
    /// Bearer-token checks.
    pub auth: AuthSettings,
    /// Per-user limits.
    pub limits: LimitSettings,
    /// Enqueue rules.
    pub enqueue: EnqueueSettings,
    /// Prices, and whether they are held and charged (ADR 0014).
    #[serde(default)]
    pub credits: CreditSettings,
    /// The webhook sender (ADR 0016).
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// Job types whose jobs may go to a hosted provider's queue, and when (ADR 0017; files
    /// only: `overflow: {sdxl_image_fast: {queue: sdxl-replicate, when_no_worker: true}}`).
    #[serde(default)]
    pub overflow: HashMap<JobType, crate::overflow::OverflowRule>,
}

/// How callers are authenticated.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 secret of the app's auth server (`GPUQ_JWT_SECRET`).
    pub jwt_secret: Option<SecretString>,
    /// JWKS URL for RS256/ES256 tokens (`GPUQ_JWKS_URL`).
    pub jwks_url: Option<String>,
    /// Required `aud` claim.
    pub audience: String,
    /// Static admin bearer token (`GPUQ_ADMIN_TOKEN`).
    pub admin_token: Option<SecretString>,
    /// Key of the stream tokens a browser's `EventSource` follows a job with
    /// (`GPUQ_STREAM_TOKEN_SECRET`); replicas must share it. Unset: a random key per process.
    #[serde(default)]
    pub stream_token_secret: Option<SecretString>,
    /// How long a stream token opens its job's event stream, seconds.
    pub stream_token_ttl_secs: u64,
    /// The JWT claim naming the tenant whose fair share a caller's jobs count against (e.g.
    /// `org_id`; `GPUQ_TENANT_CLAIM`). Unset, or absent from a token: the user (`sub`).
    #[serde(default)]
    pub tenant_claim: Option<String>,
}

/// Abuse limits; each breach is a 429 with `Retry-After`.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Jobs one user may have queued or processing at once.
    pub max_active_jobs_per_user: i64,
    /// Sustained enqueue requests per user per second (token bucket refill rate).
    pub requests_per_second: f64,
    /// Token bucket size: the burst a user may send at once.
    pub burst: u32,
    /// Event streams (`GET /v1/jobs/{id}/events`) one user may hold open at once.
    pub max_streams_per_user: usize,
    /// Event streams one dispatcher process serves at once (they share one Redis
    /// subscription; each costs memory and a socket).
    pub max_streams: usize,
}

/// Enqueue rules.
#[derive(Debug, Clone, Deserialize)]
pub struct EnqueueSettings {
    /// Hosts whose http(s) URLs are accepted as reference images (`GPUQ_REFERENCE_HOSTS`).
    pub reference_hosts: Vec<String>,
    /// Start deadline of a type's jobs that name none, seconds, by job type (files only:
    /// `enqueue: {start_within_secs: {video_high: 600}}`). An unknown type or a figure
    /// outside 1 to 86,400 refuses the configuration.
    #[serde(default)]
    pub start_within_secs: HashMap<JobType, StartWithin>,
    /// The most jobs one tenant may have in flight at once in each queue
    /// (`GPUQ_MAX_IN_FLIGHT_PER_TENANT`, 1 to 100,000); unset: no cap. A tenant at its cap
    /// waits for one of its jobs to end while other tenants use the free slots (ADR 0012).
    #[serde(default)]
    pub max_in_flight_per_tenant: Option<MaxInFlight>,
    /// Checkpoints a job of each type may name in `metadata.model` (files only:
    /// `enqueue: {checkpoints: {sdxl_image_fast: [sdxl-base-1.0, juggernaut-xl-v9]}}`); a type
    /// with a list refuses any other name, and its jobs carry the name for model routing
    /// (ADR 0020).
    /// A variable gives one type's list comma-separated
    /// (`GPUQ__ENQUEUE__CHECKPOINTS__SDXL_IMAGE_FAST=a,b`).
    #[serde(default, deserialize_with = "name_lists")]
    pub checkpoints: HashMap<JobType, Vec<String>>,
    /// LoRAs a job of each type may name in `metadata.loras` (`enqueue: {loras:
    /// {sdxl_image_fast: [detail-tweaker, film-grain]}}`, or
    /// `GPUQ__ENQUEUE__LORAS__SDXL_IMAGE_FAST=a,b`); a type with a list refuses any other
    /// name, a type without one passes `metadata.loras` through untouched (ADR 0020). A LoRA
    /// may not share a name with a checkpoint or a type's model: workers say both loaded
    /// in one list.
    #[serde(default, deserialize_with = "name_lists")]
    pub loras: HashMap<JobType, Vec<String>>,
}

/// `enqueue.checkpoints` and `enqueue.loras`: per type a list, or one comma-separated string
/// (a variable).
fn name_lists<'de, D>(d: D) -> Result<HashMap<JobType, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Csv(String),
    }
    let raw = HashMap::<JobType, Names>::deserialize(d)?;
    raw.into_iter()
        .map(|(job_type, names)| {
            let names = match names {
                Names::List(list) => list,
                Names::Csv(csv) => csv.split(',').map(str::to_owned).collect(),
            };
            let names: Vec<String> = names
                .into_iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            // Workers send model names comma-separated in their claims (ADR 0020).
            match names.iter().find(|n| !gpuq_queue::valid_model_name(n)) {
                Some(bad) => Err(serde::de::Error::custom(format!(
                    "{bad:?}, listed for {job_type} in enqueue.checkpoints or enqueue.loras, is \
                     not a name a worker can advertise (1 to 128 characters without commas, spaces or *)"
                ))),
                None => Ok((job_type, names)),
            }
        })
        .collect()
}

impl EnqueueSettings {
    /// The start deadline of a `job_type` job that names none, seconds.
    pub fn start_within(&self, job_type: JobType) -> Option<u32> {
        self.start_within_secs.get(&job_type).map(|s| s.0)
    }
}

/// A start deadline, seconds: 1 to [`MAX_START_WITHIN_SECS`], as a request's
/// `startWithinSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct StartWithin(u32);

impl TryFrom<u32> for StartWithin {
    type Error = String;

    fn try_from(secs: u32) -> Result<Self, Self::Error> {
        if (1..=MAX_START_WITHIN_SECS).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(format!(
                "a start deadline is 1 to {MAX_START_WITHIN_SECS} seconds, not {secs}"
            ))
        }
    }
}

/// A per-tenant concurrency cap: 1 to [`gpuq_queue::MAX_CAP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct MaxInFlight(u32);

impl MaxInFlight {
    /// The cap.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for MaxInFlight {
    type Error = String;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        if (1..=gpuq_queue::MAX_CAP).contains(&n) {
            Ok(Self(n))
        } else {
            Err(format!(
                "max_in_flight_per_tenant is 1 to {}, not {n}",
                gpuq_queue::MAX_CAP
            ))
        }
    }
}

impl Layered for Settings {
    fn builtin() -> Result<ConfigBuilder<DefaultState>, ConfigurationError> {
        Ok(configuration::defaults(ServiceDefaults {
            host: "127.0.0.1",
            port: 8080,
            max_body_bytes: 64 * 1024,
            pool_size: 32,
            acquire_timeout_ms: 3_000,
        })?
        .set_default("auth.audience", "authenticated")?
        .set_default("auth.stream_token_ttl_secs", 3600)?
        .set_default("limits.max_active_jobs_per_user", 20)?
        .set_default("limits.requests_per_second", 5.0)?
        .set_default("limits.burst", 30)?
        .set_default("limits.max_streams_per_user", 10)?
        .set_default("limits.max_streams", 2000)?
        .set_default("enqueue.reference_hosts", Vec::<String>::new())?)
    }

    fn load_from(env: &Environment) -> Result<Self, ConfigurationError> {
        let settings: Self = configuration::load(Self::builtin()?, env)?;
        settings
            .enqueue
            .lora_names_are_not_models()
            .map_err(|m| ConfigurationError::Config(config::ConfigError::Message(m)))?;
        Ok(settings)
    }
}

impl EnqueueSettings {
    /// Workers say which checkpoints and LoRAs they have loaded in one list (ADR 0020): a
    /// LoRA named like a checkpoint or a type's model would make that model look warm.
    fn lora_names_are_not_models(&self) -> Result<(), String> {
        let models: std::collections::HashSet<&str> = self
            .checkpoints
            .values()
            .flatten()
            .map(String::as_str)
            .chain(JobType::ALL.iter().map(|t| t.spec().model_variant))
            .collect();
        for (job_type, loras) in &self.loras {
            if let Some(clash) = loras.iter().find(|l| models.contains(l.as_str())) {
                return Err(format!(
                    "enqueue.loras.{job_type}: {clash:?} is also the name of a model; a LoRA \
                     needs a name of its own"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
