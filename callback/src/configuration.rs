//! [`Settings`]: everything the service reads at start-up, layered (later wins):
//!
//! 1. built-in defaults (a local PostgreSQL and Redis, port 8081);
//! 2. a YAML file: `$GPUQ_CONFIG`, else `configuration/base.yaml` or
//!    `callback/configuration/base.yaml` when present; then `<dir>/$GPUQ_ENVIRONMENT.yaml`
//!    next to it when that variable is set and the file exists;
//! 3. nested environment variables `GPUQ__<SECTION>__<FIELD>` (e.g.
//!    `GPUQ__DATABASE__MAX_CONNECTIONS=20`);
//! 4. the flat names shared with the other gpuq services: `DATABASE_URL`, `REDIS_URL`,
//!    `GPUQ_LISTEN` (`host:port`), `GPUQ_CALLBACK_SECRET` (comma-separated),
//!    `GPUQ_STORAGE_HOST`, `GPUQ_STORAGE_BUCKETS` (comma-separated),
//!    `GPUQ_REDIS_NAMESPACE`, `GPUQ_MIGRATE` (`true`/`false`), `GPUQ_BODY_TIMEOUT_MS`.
//!
//! Secrets (URLs with passwords, signing keys) are [`SecretString`]s: they never appear in
//! `Debug` output or logs.

use std::path::{Path, PathBuf};

use config::{Config, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;

/// Every setting of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The HTTP listener.
    pub application: ApplicationSettings,
    /// Callback authentication.
    pub auth: AuthSettings,
    /// PostgreSQL, the system of record.
    pub database: DatabaseSettings,
    /// Redis: the queues and the event streams.
    pub redis: RedisSettings,
    /// Where outputs may live.
    pub storage: StorageSettings,
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplicationSettings {
    /// Interface to bind, e.g. `0.0.0.0` or `127.0.0.1`.
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Largest callback body accepted, bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Actix worker threads; 0 means one per core.
    pub workers: usize,
    /// The whole callback body must arrive within this, ms, once the handler starts reading
    /// it; else 408 and the connection is closed (`GPUQ_BODY_TIMEOUT_MS`). Actix-web itself
    /// has no body deadline.
    pub body_timeout_ms: u64,
    /// The head (request line and headers) of a connection's first request must arrive
    /// within this, ms, else 408 (actix-web's `client_request_timeout`).
    pub header_timeout_ms: u64,
    /// After a response that closes the connection, how long the client gets to close its
    /// side before the socket is dropped, ms (actix-web's `client_disconnect_timeout`).
    pub disconnect_timeout_ms: u64,
    /// Open connections per worker thread; further connections wait in the listen
    /// backlog. Bounds the memory idle or slow clients can hold.
    pub max_connections: usize,
}

/// Callback authentication.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HMAC keys; a callback signed with any of them is accepted (rotation, per-worker keys).
    pub secrets: Vec<SecretString>,
    /// Largest accepted clock difference between the signer and us, seconds.
    pub window_secs: i64,
}

/// PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: SecretString,
    /// Pool size. Each in-flight callback holds one connection for one short transaction.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering 503, ms.
    pub acquire_timeout_ms: u64,
    /// Apply the migrations at start-up (safe when several instances start at once:
    /// sqlx's PostgreSQL migrator holds an advisory lock).
    pub migrate: bool,
}

/// Redis.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: SecretString,
    /// Key prefix shared with the dispatcher and workers (`gpuq`); tests use a random one.
    pub namespace: String,
    /// Delay before the first retry of a failed job, before jitter, ms. Must match the
    /// dispatcher's setting so the whole fleet backs off alike.
    pub backoff_base_ms: u64,
    /// Upper bound of any retry delay, ms.
    pub backoff_max_ms: u64,
}

/// Object storage.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// The one host whose storage URLs are accepted, e.g. `https://proj.supabase.co`.
    /// Unset: only paths are accepted, every URL is foreign.
    pub host: Option<String>,
    /// Buckets a reported path may name.
    pub buckets: Vec<String>,
}

/// The configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    /// A file or value could not be read.
    #[error("configuration")]
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

/// The buckets known by default: one per job type, plus the two shared ones.
pub fn default_buckets() -> Vec<String> {
    gpuq_schemas::JobType::names()
        .map(String::from)
        .chain(["workspace-temp".to_owned(), "user-library".to_owned()])
        .collect()
}

fn defaults() -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigurationError> {
    Ok(Config::builder()
        .set_default("application.host", "0.0.0.0")?
        .set_default("application.port", 8081)?
        .set_default("application.max_body_bytes", 256 * 1024)?
        .set_default("application.workers", 0)?
        .set_default("application.body_timeout_ms", 10_000)?
        .set_default("application.header_timeout_ms", 5_000)?
        .set_default("application.disconnect_timeout_ms", 1_000)?
        .set_default("application.max_connections", 4_096)?
        .set_default("auth.secrets", Vec::<String>::new())?
        .set_default("auth.window_secs", 300)?
        .set_default(
            "database.url",
            "postgres://postgres:postgres@127.0.0.1:5432/postgres",
        )?
        .set_default("database.max_connections", 10)?
        .set_default("database.acquire_timeout_ms", 5000)?
        .set_default("database.migrate", true)?
        .set_default("redis.url", "redis://127.0.0.1:6379")?
        .set_default("redis.namespace", "gpuq")?
        .set_default("redis.backoff_base_ms", 5000)?
        .set_default("redis.backoff_max_ms", 300_000)?
        .set_default("storage.buckets", default_buckets())?)
}

impl Settings {
    /// The built-in defaults only: no file, no environment. Handy in tests and scripts,
    /// which then set what they need (at least `auth.secrets`).
    pub fn defaults() -> Result<Self, ConfigurationError> {
        Ok(defaults()?.build()?.try_deserialize()?)
    }

    /// Defaults, then the YAML file(s), then the environment (see the module docs).
    pub fn load() -> Result<Self, ConfigurationError> {
        let mut builder = defaults()?;
        if let Some(file) = config_file() {
            builder = builder.add_source(File::from(file.as_path()).format(FileFormat::Yaml));
            if let Ok(env) = std::env::var("GPUQ_ENVIRONMENT") {
                let dir = file.parent().unwrap_or(Path::new("."));
                let layered = dir.join(format!("{env}.yaml"));
                builder = builder.add_source(
                    File::from(layered.as_path())
                        .format(FileFormat::Yaml)
                        .required(false),
                );
            }
        }
        let nested = config::Environment::with_prefix("GPUQ")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true);
        let mut settings: Self = builder.add_source(nested).build()?.try_deserialize()?;
        settings.apply_env(|name| std::env::var(name).ok())?;
        Ok(settings)
    }

    /// Applies the flat environment variables, read through `get`.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigurationError> {
        if let Some(url) = get("DATABASE_URL") {
            self.database.url = SecretString::from(url);
        }
        if let Some(url) = get("REDIS_URL") {
            self.redis.url = SecretString::from(url);
        }
        if let Some(listen) = get("GPUQ_LISTEN") {
            let (host, port) = parse_listen(&listen).ok_or(ConfigurationError::Env {
                name: "GPUQ_LISTEN",
                reason: "expected host:port".into(),
            })?;
            self.application.host = host;
            self.application.port = port;
        }
        if let Some(secrets) = get("GPUQ_CALLBACK_SECRET") {
            self.auth.secrets = comma_list(&secrets)
                .into_iter()
                .map(SecretString::from)
                .collect();
        }
        if let Some(host) = get("GPUQ_STORAGE_HOST") {
            self.storage.host = Some(host).filter(|h| !h.trim().is_empty());
        }
        if let Some(buckets) = get("GPUQ_STORAGE_BUCKETS") {
            self.storage.buckets = comma_list(&buckets);
        }
        if let Some(ns) = get("GPUQ_REDIS_NAMESPACE") {
            self.redis.namespace = ns;
        }
        if let Some(ms) = get("GPUQ_BODY_TIMEOUT_MS") {
            self.application.body_timeout_ms =
                ms.trim().parse().map_err(|_| ConfigurationError::Env {
                    name: "GPUQ_BODY_TIMEOUT_MS",
                    reason: "expected milliseconds".into(),
                })?;
        }
        if let Some(migrate) = get("GPUQ_MIGRATE") {
            self.database.migrate = parse_bool(&migrate).ok_or(ConfigurationError::Env {
                name: "GPUQ_MIGRATE",
                reason: "expected true or false".into(),
            })?;
        }
        Ok(())
    }
}

fn config_file() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("GPUQ_CONFIG") {
        return Some(PathBuf::from(path));
    }
    [
        "configuration/base.yaml",
        "callback/configuration/base.yaml",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
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

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    #[test]
    fn defaults_know_every_bucket_and_no_secret() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.storage.buckets.len(), 12);
        assert!(s.auth.secrets.is_empty());
        assert!(s.database.migrate);
        assert_eq!(s.redis.namespace, "gpuq");
    }

    #[test]
    fn flat_environment_names_override() {
        let env: HashMap<&str, &str> = [
            ("DATABASE_URL", "postgres://a@db/x"),
            ("REDIS_URL", "redis://r:1"),
            ("GPUQ_LISTEN", "[::1]:9000"),
            ("GPUQ_CALLBACK_SECRET", "k1, k2,,"),
            ("GPUQ_STORAGE_HOST", "https://proj.supabase.co"),
            ("GPUQ_STORAGE_BUCKETS", "a,b"),
            ("GPUQ_REDIS_NAMESPACE", "ns"),
            ("GPUQ_MIGRATE", "false"),
            ("GPUQ_BODY_TIMEOUT_MS", "2000"),
        ]
        .into();
        let mut s = Settings::defaults().unwrap();
        s.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(s.database.url.expose_secret(), "postgres://a@db/x");
        assert_eq!(s.redis.url.expose_secret(), "redis://r:1");
        assert_eq!(
            (s.application.host.as_str(), s.application.port),
            ("::1", 9000)
        );
        let secrets: Vec<&str> = s.auth.secrets.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(secrets, ["k1", "k2"]);
        assert_eq!(s.storage.buckets, ["a", "b"]);
        assert_eq!(s.redis.namespace, "ns");
        assert!(!s.database.migrate);
        assert_eq!(s.application.body_timeout_ms, 2000);
    }

    #[test]
    fn bad_flat_values_are_errors_and_secrets_stay_out_of_debug() {
        let mut s = Settings::defaults().unwrap();
        assert!(s
            .apply_env(|k| (k == "GPUQ_LISTEN").then(|| "8080".into()))
            .is_err());
        assert!(s
            .apply_env(|k| (k == "GPUQ_MIGRATE").then(|| "maybe".into()))
            .is_err());
        s.apply_env(|k| (k == "GPUQ_CALLBACK_SECRET").then(|| "hunter2".into()))
            .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s:?}").contains("postgres:postgres"));
    }
}
