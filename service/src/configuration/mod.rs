//! The one configuration model of every gpuq process, zero-to-production style. A service
//! declares its `Settings` as the shared sections ([`ApplicationSettings`],
//! [`DatabaseSettings`], [`RedisSettings`], [`QueueSettings`]) plus its own, and [`load`]s
//! it from these layers, later winning:
//!
//! 1. built-in defaults ([`defaults`], with the few that differ per service);
//! 2. a YAML file: `$GPUQ_CONFIG`, else `configuration/base.yaml` when present (one file for
//!    every service: each reads its sections and ignores the others);
//! 3. `<that folder>/<$GPUQ_ENVIRONMENT, lowercased>.yaml` (`configuration/` without a base file) when
//!    `GPUQ_ENVIRONMENT` is set (required then: a misspelt environment fails at start-up,
//!    not silently);
//! 4. nested variables `GPUQ__<SECTION>__<FIELD>` (e.g. `GPUQ__DATABASE__MAX_CONNECTIONS`);
//!    the names of earlier releases are still read ([`RENAMED`]: `GPUQ__HTTP__*` is now
//!    `GPUQ__APPLICATION__*`, `GPUQ__REDIS__BACKOFF_*` is `GPUQ__QUEUE__BACKOFF_*`, the
//!    dispatcher's flat `GPUQ__DATABASE_URL`, `GPUQ__REDIS_URL`, `GPUQ__REDIS_NAMESPACE`,
//!    `GPUQ__MIGRATE`, `GPUQ__REFERENCE_HOSTS` are now in their sections);
//! 5. the conventional flat names of [`FLAT_NAMES`] (`DATABASE_URL`, `REDIS_URL`,
//!    `GPUQ_LISTEN`, ...).
//!
//! Secrets are `SecretString`s: never in `Debug` output or logs.

mod sections;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config::builder::DefaultState;
use config::{Config, ConfigBuilder, File, FileFormat};
use serde::de::DeserializeOwned;

pub use sections::{ApplicationSettings, DatabaseSettings, QueueSettings, RedisSettings};

/// How a flat variable's value becomes settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatKind {
    /// The value as it is.
    Value,
    /// A comma-separated list (empty items dropped).
    List,
    /// `host:port` (`[v6]:port` too), split into `application.host` and `application.port`.
    Listen,
}

/// The flat environment variables every gpuq process reads: name, settings key, kind.
/// They are a public interface (deploy files and the README use them): never drop one.
pub const FLAT_NAMES: [(&str, &str, FlatKind); 43] = [
    ("DATABASE_URL", "database.url", FlatKind::Value),
    ("REDIS_URL", "redis.url", FlatKind::Value),
    ("GPUQ_LISTEN", "application", FlatKind::Listen),
    ("GPUQ_REDIS_NAMESPACE", "redis.namespace", FlatKind::Value),
    ("GPUQ_MIGRATE", "database.migrate", FlatKind::Value),
    (
        "GPUQ_BODY_TIMEOUT_MS",
        "application.body_timeout_ms",
        FlatKind::Value,
    ),
    (
        "GPUQ_METRICS_TOKEN",
        "application.metrics_token",
        FlatKind::Value,
    ),
    (
        "GPUQ_CORS_ORIGINS",
        "application.cors_origins",
        FlatKind::List,
    ),
    ("GPUQ_JWT_SECRET", "auth.jwt_secret", FlatKind::Value),
    ("GPUQ_JWKS_URL", "auth.jwks_url", FlatKind::Value),
    ("GPUQ_ADMIN_TOKEN", "auth.admin_token", FlatKind::Value),
    (
        "GPUQ_STREAM_TOKEN_SECRET",
        "auth.stream_token_secret",
        FlatKind::Value,
    ),
    ("GPUQ_TENANT_CLAIM", "auth.tenant_claim", FlatKind::Value),
    ("GPUQ_CALLBACK_SECRET", "auth.secrets", FlatKind::List),
    (
        "GPUQ_REFERENCE_HOSTS",
        "enqueue.reference_hosts",
        FlatKind::List,
    ),
    (
        "GPUQ_MAX_IN_FLIGHT_PER_TENANT",
        "enqueue.max_in_flight_per_tenant",
        FlatKind::Value,
    ),
    ("GPUQ_CREDITS", "credits.enabled", FlatKind::Value),
    (
        "GPUQ_STARTING_CREDITS",
        "credits.starting_grant",
        FlatKind::Value,
    ),
    ("GPUQ_STORAGE_HOST", "storage.host", FlatKind::Value),
    ("GPUQ_STORAGE_BUCKETS", "storage.buckets", FlatKind::List),
    // Workers (the demo worker; a worker built on the SDK may read them the same way).
    ("GPUQ_QUEUE", "worker.queue", FlatKind::Value),
    ("GPUQ_CALLBACK_URL", "worker.callback_url", FlatKind::Value),
    ("GPUQ_CONCURRENCY", "worker.concurrency", FlatKind::Value),
    ("GPUQ_LEASE_SECS", "worker.lease_secs", FlatKind::Value),
    (
        "GPUQ_CALLBACK_RETRIES",
        "worker.callback_retries",
        FlatKind::Value,
    ),
    (
        "GPUQ_SHUTDOWN_DEADLINE_SECS",
        "worker.shutdown_deadline_secs",
        FlatKind::Value,
    ),
    (
        "GPUQ_DEMO_TIME_SCALE",
        "worker.demo_time_scale",
        FlatKind::Value,
    ),
    ("GPUQ_GPU_NAME", "worker.gpu_name", FlatKind::Value),
    // Model routing (ADR 0020): the models a worker can run ('*': any), its GPU memory, and
    // how long a job waits for a worker with its model loaded; the demo worker's simulated
    // loads.
    ("GPUQ_MODELS", "worker.models", FlatKind::List),
    ("GPUQ_VRAM_GB", "worker.vram_gb", FlatKind::Value),
    (
        "GPUQ_MODEL_WAIT_SECS",
        "worker.model_wait_secs",
        FlatKind::Value,
    ),
    // How long a job runs before its worker reports `processing` (issue #21).
    (
        "GPUQ_PROCESSING_AFTER_SECS",
        "worker.processing_after_secs",
        FlatKind::Value,
    ),
    (
        "GPUQ_DEMO_MODEL_LOAD_SECS",
        "worker.demo_model_load_secs",
        FlatKind::Value,
    ),
    (
        "GPUQ_DEMO_RESIDENT_MODELS",
        "worker.demo_resident_models",
        FlatKind::Value,
    ),
    // The provider worker (Replicate's own name for its token).
    ("REPLICATE_API_TOKEN", "provider.token", FlatKind::Value),
    (
        "GPUQ_PROVIDER_BASE_URL",
        "provider.base_url",
        FlatKind::Value,
    ),
    ("GPUQ_STORAGE_DIR", "storage.dir", FlatKind::Value),
    ("GPUQ_S3_ENDPOINT", "storage.s3.endpoint", FlatKind::Value),
    ("GPUQ_S3_REGION", "storage.s3.region", FlatKind::Value),
    (
        "GPUQ_S3_ACCESS_KEY_ID",
        "storage.s3.access_key_id",
        FlatKind::Value,
    ),
    (
        "GPUQ_S3_SECRET_ACCESS_KEY",
        "storage.s3.secret_access_key",
        FlatKind::Value,
    ),
    ("GPUQ_S3_BUCKET", "storage.s3.bucket", FlatKind::Value),
    (
        "GPUQ_S3_ALLOW_HTTP",
        "storage.s3.allow_http",
        FlatKind::Value,
    ),
];

/// Settings keys that hold lists, so a nested variable (`GPUQ__AUTH__SECRETS=a,b`) is split
/// on commas like its flat name.
const LIST_KEYS: [&str; 5] = [
    "auth.secrets",
    "worker.models",
    "enqueue.reference_hosts",
    "storage.buckets",
    "webhooks.job_hosts",
];

/// Nested names of earlier releases and what they are now (prefix renames): the
/// dispatcher's `http` section and flat fields, the callback's backoff under `redis`.
pub const RENAMED: [(&str, &str); 7] = [
    ("GPUQ__HTTP__", "GPUQ__APPLICATION__"),
    ("GPUQ__REDIS__BACKOFF_", "GPUQ__QUEUE__BACKOFF_"),
    ("GPUQ__DATABASE_URL", "GPUQ__DATABASE__URL"),
    ("GPUQ__REDIS_URL", "GPUQ__REDIS__URL"),
    ("GPUQ__REDIS_NAMESPACE", "GPUQ__REDIS__NAMESPACE"),
    ("GPUQ__MIGRATE", "GPUQ__DATABASE__MIGRATE"),
    ("GPUQ__REFERENCE_HOSTS", "GPUQ__ENQUEUE__REFERENCE_HOSTS"),
];

/// The configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    /// A file or value could not be read, or a setting is missing or has the wrong type.
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    /// A flat environment variable has a bad value.
    #[error("environment variable {name}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The environment variables a load reads: the process's, or a map (tests, which must not
/// change the process environment other tests read in parallel).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    /// Look for `configuration/base.yaml` under the working directory when `GPUQ_CONFIG` is
    /// unset: a process does, a test's map does not (tests stay hermetic).
    implicit_file: bool,
}

impl Environment {
    /// The process environment's `GPUQ*` variables and the flat names.
    pub fn process() -> Self {
        let mut env = Self::from_pairs(std::env::vars().filter(|(k, _)| {
            k.starts_with("GPUQ") || FLAT_NAMES.iter().any(|(name, ..)| name == k)
        }));
        env.implicit_file = true;
        env
    }

    /// Exactly these variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            implicit_file: false,
        }
    }

    /// The same environment with `name` set to `value` (a caller's own override, as a
    /// Python worker's keywords are).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// A variable's value; an empty (or blank) one counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The `GPUQ__*` variables, earlier names renamed (a current name wins over its old
    /// one), list values tidied as the flat names' are.
    fn nested(&self) -> config::Map<String, String> {
        let mut out = config::Map::new();
        for (name, value) in self.vars.iter().filter(|(k, _)| k.starts_with("GPUQ__")) {
            let current = RENAMED
                .iter()
                .find_map(|(old, new)| name.strip_prefix(old).map(|rest| format!("{new}{rest}")));
            let name = match current {
                Some(current) if self.vars.contains_key(&current) => continue,
                Some(current) => current,
                None => name.clone(),
            };
            out.insert(name.clone(), tidy_if_list(&name, value));
        }
        out
    }
}

/// A list variable's items trimmed and empty ones dropped: `"k1, k2,"` is two keys, never an
/// empty third (an empty HMAC key would accept callbacks anyone can sign).
fn tidy_if_list(name: &str, value: &str) -> String {
    let key = name
        .trim_start_matches("GPUQ__")
        .replace("__", ".")
        .to_lowercase();
    if LIST_KEYS.contains(&key.as_str()) {
        comma_list(value).join(",")
    } else {
        value.to_owned()
    }
}

/// The built-in defaults of the sections every gpuq process has (`redis`, `queue`).
pub fn common_defaults() -> Result<ConfigBuilder<DefaultState>, ConfigurationError> {
    Ok(Config::builder()
        .set_default("redis.url", "redis://127.0.0.1:6379")?
        .set_default("redis.namespace", "gpuq")?
        .set_default("queue.max_depth", 100_000)?
        .set_default("queue.lease_ms", 30_000)?
        .set_default("queue.backoff_base_ms", 5_000)?
        .set_default("queue.backoff_max_ms", 300_000)?
        .set_default("queue.maintenance_interval_ms", 250)?
        .set_default("queue.reconcile_interval_ms", 30_000)?
        .set_default("queue.reconcile_grace_ms", 60_000)?)
}

/// The built-in defaults of an HTTP service's shared sections; `service` holds the few
/// that differ between services.
pub fn defaults(
    service: ServiceDefaults,
) -> Result<ConfigBuilder<DefaultState>, ConfigurationError> {
    Ok(common_defaults()?
        .set_default("application.host", service.host)?
        .set_default("application.port", service.port)?
        .set_default("application.workers", 0)?
        .set_default("application.max_body_bytes", service.max_body_bytes as u64)?
        .set_default("application.body_timeout_ms", 10_000)?
        .set_default("application.header_timeout_ms", 5_000)?
        .set_default("application.disconnect_timeout_ms", 1_000)?
        .set_default("application.max_connections", 4_096)?
        .set_default(
            "database.url",
            "postgres://postgres:postgres@127.0.0.1:5432/postgres",
        )?
        .set_default("database.max_connections", service.pool_size)?
        .set_default("database.acquire_timeout_ms", service.acquire_timeout_ms)?
        .set_default("database.migrate", true)?)
}

/// The shared defaults that differ between services.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    /// Interface to bind.
    pub host: &'static str,
    /// Port to bind.
    pub port: u16,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// PostgreSQL pool size.
    pub pool_size: u32,
    /// How long a request waits for a pooled connection, ms.
    pub acquire_timeout_ms: u64,
}

/// A process's settings: its own defaults (over [`defaults`] or [`common_defaults`]),
/// loaded in layers by [`load`]. A service implements [`Layered::builtin`] only.
pub trait Layered: DeserializeOwned {
    /// The built-in defaults of every section this process reads.
    fn builtin() -> Result<ConfigBuilder<DefaultState>, ConfigurationError>;

    /// The built-in defaults only: no file, no environment (tests start from these).
    fn defaults() -> Result<Self, ConfigurationError> {
        Self::load_from(&Environment::default())
    }

    /// This process's configuration: files and its environment.
    fn load() -> Result<Self, ConfigurationError> {
        Self::load_from(&Environment::process())
    }

    /// The configuration with `env` as the environment.
    fn load_from(env: &Environment) -> Result<Self, ConfigurationError> {
        load(Self::builtin()?, env)
    }
}

/// Builds `T` from `defaults`, the YAML files, then the nested and flat variables of `env`
/// (see the module docs).
pub fn load<T: DeserializeOwned>(
    defaults: ConfigBuilder<DefaultState>,
    env: &Environment,
) -> Result<T, ConfigurationError> {
    let mut builder = defaults;
    let base = config_file(env);
    if let Some(file) = &base {
        builder = builder.add_source(File::from(file.as_path()).format(FileFormat::Yaml));
    }
    if let Some(name) = env.get("GPUQ_ENVIRONMENT") {
        let dir = base
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("configuration"));
        let layered = dir.join(format!("{}.yaml", name.to_lowercase()));
        builder = builder.add_source(File::from(layered.as_path()).format(FileFormat::Yaml));
    }
    let mut nested = config::Environment::with_prefix("GPUQ")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS {
        nested = nested.with_list_parse_key(key);
    }
    builder = builder.add_source(nested.source(Some(env.nested())));
    builder = flat_overrides(builder, env)?;
    builder
        .build()
        .and_then(Config::try_deserialize)
        .map_err(|e| name_the_variable(e, env))
}

/// A bad value is reported with its settings key (`worker.concurrency`); when a flat
/// variable set that key, name the variable too, since that is what the operator wrote.
fn name_the_variable(e: config::ConfigError, env: &Environment) -> ConfigurationError {
    let text = e.to_string();
    let set_by = FLAT_NAMES
        .iter()
        .find(|(name, key, _)| env.get(name).is_some() && text.contains(&format!("`{key}")));
    match set_by {
        Some((name, ..)) => ConfigurationError::Env { name, reason: text },
        None => ConfigurationError::Config(e),
    }
}

/// The YAML file to read: `$GPUQ_CONFIG` (must exist), else `configuration/base.yaml` under
/// the working directory when present.
fn config_file(env: &Environment) -> Option<PathBuf> {
    if let Some(path) = env.get("GPUQ_CONFIG") {
        return Some(PathBuf::from(path));
    }
    Some(PathBuf::from("configuration/base.yaml")).filter(|p| env.implicit_file && p.is_file())
}

fn flat_overrides(
    mut builder: ConfigBuilder<DefaultState>,
    env: &Environment,
) -> Result<ConfigBuilder<DefaultState>, ConfigurationError> {
    for (name, key, kind) in FLAT_NAMES {
        let Some(value) = env.get(name) else { continue };
        builder = match kind {
            FlatKind::Value => builder.set_override(key, value.trim())?,
            FlatKind::List => builder.set_override(key, comma_list(value))?,
            FlatKind::Listen => {
                let (host, port) = parse_listen(value).ok_or(ConfigurationError::Env {
                    name,
                    reason: "expected host:port".into(),
                })?;
                builder
                    .set_override(format!("{key}.host"), host)?
                    .set_override(format!("{key}.port"), port)?
            }
        };
    }
    Ok(builder)
}

fn parse_listen(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host.to_owned(), port.parse().ok()?))
}

fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}
