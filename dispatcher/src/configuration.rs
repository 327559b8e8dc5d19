//! [`Settings`]: the dispatcher's configuration, layered with the `config` crate:
//! built-in defaults → an optional YAML file (`GPUQ_CONFIG`, else
//! `dispatcher/configuration/base.yaml` when present) → `GPUQ__<SECTION>__<KEY>` variables →
//! the well-known flat variables (`DATABASE_URL`, `REDIS_URL`, `GPUQ_LISTEN`,
//! `GPUQ_JWT_SECRET`, `GPUQ_JWKS_URL`, `GPUQ_ADMIN_TOKEN`, `GPUQ_CALLBACK_SECRET`,
//! `GPUQ_REDIS_NAMESPACE`, `GPUQ_MIGRATE`, `GPUQ_REFERENCE_HOSTS`, `GPUQ_BODY_TIMEOUT_MS`).

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// Everything the dispatcher reads at start-up. Secrets are [`SecretString`]s, so they never
/// show in `Debug` output or logs.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `host:port` to listen on (`GPUQ_LISTEN`).
    pub listen: String,
    /// PostgreSQL URL (`DATABASE_URL`); may carry a password.
    pub database_url: SecretString,
    /// Redis URL (`REDIS_URL`); may carry a password.
    pub redis_url: SecretString,
    /// Prefix of every Redis key (tests use a random one).
    pub redis_namespace: String,
    /// Apply the SQL migrations at start-up (safe with several instances: sqlx holds a
    /// PostgreSQL advisory lock while migrating).
    pub migrate: bool,
    /// Bearer-token checks.
    pub auth: AuthSettings,
    /// Per-user and per-queue limits.
    pub limits: LimitSettings,
    /// Queue behaviour.
    pub queue: QueueSettings,
    /// Deadlines and connection bounds against slow or hostile clients.
    #[serde(default)]
    pub http: HttpSettings,
    /// Hosts whose http(s) URLs are accepted as reference images.
    pub reference_hosts: Vec<String>,
    /// Shared with the callback service; unused here but accepted so one environment can
    /// configure every service.
    pub callback_secret: Option<SecretString>,
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
}

/// How long the server waits for a client, and how many it serves at once: a client that
/// trickles its request (slow loris) is cut off, and idle connections cannot pile up.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// The whole request body must arrive within this, ms, once the handler starts reading
    /// it; else 408 and the connection is closed (`GPUQ_BODY_TIMEOUT_MS`). Actix-web itself
    /// has no body deadline.
    pub body_timeout_ms: u64,
    /// The head (request line and headers) of a connection's first request must arrive
    /// within this, ms, else 408 (actix-web's `client_request_timeout`).
    pub header_timeout_ms: u64,
    /// After a response that closes the connection, how long the client gets to close its
    /// side before the socket is dropped, ms (actix-web's `client_disconnect_timeout`).
    pub disconnect_timeout_ms: u64,
    /// Open connections per worker thread (one worker per core); further connections wait
    /// in the listen backlog. Bounds the memory idle or slow clients can hold.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_timeout_ms: 10_000,
            header_timeout_ms: 5_000,
            disconnect_timeout_ms: 1_000,
            max_connections: 4_096,
        }
    }
}

impl HttpSettings {
    /// [`Self::body_timeout_ms`] as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

/// Queue tunables.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    /// Waiting jobs per queue beyond which enqueue answers 429 `queue_full`.
    pub max_depth: u64,
    /// Lease length, ms; workers heartbeat well within it.
    pub lease_ms: u64,
    /// Delay before the first retry, ms (doubles per retry, with jitter).
    pub backoff_base_ms: u64,
    /// Largest retry delay, ms.
    pub backoff_max_ms: u64,
    /// How often the reaper and promoter run, ms.
    pub maintenance_interval_ms: u64,
    /// How often the reconciler compares PostgreSQL with Redis, ms.
    pub reconcile_interval_ms: u64,
    /// Unfinished rows younger than this are left to their in-flight enqueue, ms.
    pub reconcile_grace_ms: u64,
}

impl QueueSettings {
    /// The queue crate's configuration.
    pub fn queue_config(&self) -> gpuq_queue::QueueConfig {
        gpuq_queue::QueueConfig {
            max_depth: Some(self.max_depth),
            lease: Duration::from_millis(self.lease_ms),
            backoff: gpuq_queue::Backoff {
                base: Duration::from_millis(self.backoff_base_ms),
                max: Duration::from_millis(self.backoff_max_ms),
            },
            ..gpuq_queue::QueueConfig::default()
        }
    }
}

/// Flat environment variables that override the layered settings.
const FLAT_ENV: [(&str, &str); 10] = [
    ("GPUQ_REDIS_NAMESPACE", "redis_namespace"),
    ("GPUQ_MIGRATE", "migrate"),
    ("DATABASE_URL", "database_url"),
    ("REDIS_URL", "redis_url"),
    ("GPUQ_LISTEN", "listen"),
    ("GPUQ_JWT_SECRET", "auth.jwt_secret"),
    ("GPUQ_JWKS_URL", "auth.jwks_url"),
    ("GPUQ_ADMIN_TOKEN", "auth.admin_token"),
    ("GPUQ_CALLBACK_SECRET", "callback_secret"),
    ("GPUQ_BODY_TIMEOUT_MS", "http.body_timeout_ms"),
];

impl Settings {
    /// Reads the layered configuration from the process environment.
    pub fn load() -> Result<Self, config::ConfigError> {
        let file = std::env::var("GPUQ_CONFIG")
            .unwrap_or_else(|_| "dispatcher/configuration/base.yaml".into());
        let mut builder = config::Config::builder()
            .set_default("listen", "127.0.0.1:8080")?
            .set_default(
                "database_url",
                "postgres://postgres:postgres@127.0.0.1:5432/postgres",
            )?
            .set_default("redis_url", "redis://127.0.0.1:6379")?
            .set_default("redis_namespace", "gpuq")?
            .set_default("migrate", true)?
            .set_default("auth.audience", "authenticated")?
            .set_default("limits.max_active_jobs_per_user", 20)?
            .set_default("limits.requests_per_second", 5.0)?
            .set_default("limits.burst", 30)?
            .set_default("queue.max_depth", 100_000)?
            .set_default("queue.lease_ms", 30_000)?
            .set_default("queue.backoff_base_ms", 5_000)?
            .set_default("queue.backoff_max_ms", 300_000)?
            .set_default("queue.maintenance_interval_ms", 250)?
            .set_default("queue.reconcile_interval_ms", 30_000)?
            .set_default("queue.reconcile_grace_ms", 60_000)?
            .set_default("reference_hosts", Vec::<String>::new())?
            .add_source(
                config::File::with_name(&file).required(std::env::var("GPUQ_CONFIG").is_ok()),
            )
            .add_source(
                config::Environment::with_prefix("GPUQ")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("reference_hosts")
                    .try_parsing(true),
            );
        for (var, key) in FLAT_ENV {
            if let Ok(value) = std::env::var(var) {
                builder = builder.set_override(key, value)?;
            }
        }
        if let Ok(hosts) = std::env::var("GPUQ_REFERENCE_HOSTS") {
            let hosts: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from)
                .collect();
            builder = builder.set_override("reference_hosts", hosts)?;
        }
        builder.build()?.try_deserialize()
    }
}
