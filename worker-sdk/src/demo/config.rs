//! [`DemoConfig`]: the demo worker's settings, read by the one configuration loader the
//! services use (`gpuq_service::configuration`): the same files, the same `redis` section,
//! the same flat names (`REDIS_URL`, `GPUQ_REDIS_NAMESPACE`, `GPUQ_CALLBACK_SECRET`, ...),
//! plus the `worker` and `storage` settings of workers.

use std::path::PathBuf;
use std::time::Duration;

use gpuq_service::configuration::{self, ConfigurationError, Environment};
use gpuq_service::RedisSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::DemoHandler;
use crate::{CallbackRetry, LocalStorage, S3Config, S3Storage, Worker, WorkerError};

/// Where the demo worker writes its outputs.
#[derive(Debug, Clone)]
pub enum StorageChoice {
    /// `GPUQ_STORAGE_DIR`: files under `<dir>/<bucket>/<key>`.
    Local(PathBuf),
    /// `GPUQ_S3_*`: an S3-compatible store.
    S3(S3Config),
}

/// The demo worker's settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// `REDIS_URL` (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// `GPUQ_QUEUE`: `sdxl_queue` or `wan_queue`.
    pub queue: String,
    /// `GPUQ_REDIS_NAMESPACE` (default `gpuq`).
    pub namespace: String,
    /// `GPUQ_CALLBACK_URL`: full URL of `POST /v1/callback`.
    pub callback_url: String,
    /// `GPUQ_CALLBACK_SECRET`.
    pub callback_secret: SecretString,
    /// `GPUQ_CONCURRENCY` (default 1).
    pub concurrency: usize,
    /// `GPUQ_STORAGE_DIR` or the `GPUQ_S3_*` settings.
    pub storage: StorageChoice,
    /// `GPUQ_DEMO_TIME_SCALE` (default 0.02; 0 = instant).
    pub time_scale: f64,
    /// `GPUQ_SHUTDOWN_DEADLINE_SECS` (default 30).
    pub shutdown_deadline: Duration,
    /// `GPUQ_LEASE_SECS` (default 30): how long a silent worker keeps its jobs. Leases are
    /// renewed every third of it.
    pub lease: Duration,
    /// `GPUQ_CALLBACK_RETRIES` (default 20, about eight minutes): retries of a report
    /// before the worker gives up and hands the job back.
    pub callback_retries: usize,
    /// The GPU name reported with each attempt (`GPUQ_GPU_NAME`).
    pub gpu_name: String,
}

/// A missing or malformed setting; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum DemoConfigError {
    /// A required variable is unset or empty.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A variable does not parse, or a file or section is malformed.
    #[error(transparent)]
    Invalid(#[from] ConfigurationError),
    /// A value parses but is out of range.
    #[error("{name} has an invalid value {value:?}")]
    OutOfRange {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// Neither local nor S3 storage is configured.
    #[error("set GPUQ_STORAGE_DIR, or GPUQ_S3_ENDPOINT with the other GPUQ_S3_* settings")]
    NoStorage,
}

/// The sections the demo worker reads, as the one configuration loader builds them.
#[derive(Deserialize)]
struct Raw {
    redis: RedisSettings,
    #[serde(default)]
    auth: RawAuth,
    worker: RawWorker,
    #[serde(default)]
    storage: RawStorage,
}

#[derive(Default, Deserialize)]
struct RawAuth {
    /// The callback service's keys; the worker signs with the first (the current one).
    #[serde(default)]
    secrets: Vec<SecretString>,
}

#[derive(Deserialize)]
struct RawWorker {
    queue: Option<String>,
    callback_url: Option<String>,
    concurrency: usize,
    lease_secs: f64,
    callback_retries: usize,
    shutdown_deadline_secs: f64,
    demo_time_scale: f64,
    gpu_name: String,
}

#[derive(Default, Deserialize)]
struct RawStorage {
    dir: Option<PathBuf>,
    #[serde(default)]
    s3: RawS3,
}

#[derive(Default, Deserialize)]
struct RawS3 {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<SecretString>,
    bucket: Option<String>,
    allow_http: Option<bool>,
}

fn required<T>(value: Option<T>, name: &'static str) -> Result<T, DemoConfigError> {
    value.ok_or(DemoConfigError::Missing(name))
}

fn seconds(secs: f64, floor: f64, name: &'static str) -> Result<Duration, DemoConfigError> {
    if secs.is_finite() && secs >= floor {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(DemoConfigError::OutOfRange {
            name,
            value: secs.to_string(),
        })
    }
}

impl DemoConfig {
    /// Reads the process environment (and `configuration/base.yaml` when present), like
    /// the services.
    pub fn from_env() -> Result<Self, DemoConfigError> {
        Self::load(&Environment::process())
    }

    /// Reads the settings with `env` as the environment (tests pass a map).
    pub fn load(env: &Environment) -> Result<Self, DemoConfigError> {
        let defaults = configuration::common_defaults()?
            .set_default("worker.concurrency", 1)
            .and_then(|b| b.set_default("worker.lease_secs", 30.0))
            .and_then(|b| {
                let retries = CallbackRetry::default().max_retries as u64;
                b.set_default("worker.callback_retries", retries)
            })
            .and_then(|b| b.set_default("worker.shutdown_deadline_secs", 30.0))
            .and_then(|b| b.set_default("worker.demo_time_scale", 0.02))
            .and_then(|b| b.set_default("worker.gpu_name", "demo (simulated, no GPU)"))
            .map_err(ConfigurationError::from)?;
        let raw: Raw = configuration::load(defaults, env)?;
        let s3 = raw.storage.s3;
        let storage = match (s3.endpoint, raw.storage.dir) {
            (Some(endpoint), _) => StorageChoice::S3(S3Config {
                allow_http: s3.allow_http.unwrap_or(endpoint.starts_with("http://")),
                endpoint: Some(endpoint),
                region: s3.region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id: required(s3.access_key_id, "GPUQ_S3_ACCESS_KEY_ID")?,
                secret_access_key: required(s3.secret_access_key, "GPUQ_S3_SECRET_ACCESS_KEY")?,
                bucket: s3.bucket,
            }),
            (None, Some(dir)) => StorageChoice::Local(dir),
            (None, None) => return Err(DemoConfigError::NoStorage),
        };
        let worker = raw.worker;
        if worker.concurrency == 0 {
            return Err(DemoConfigError::OutOfRange {
                name: "GPUQ_CONCURRENCY",
                value: "0".into(),
            });
        }
        if !(worker.demo_time_scale.is_finite() && worker.demo_time_scale >= 0.0) {
            return Err(DemoConfigError::OutOfRange {
                name: "GPUQ_DEMO_TIME_SCALE",
                value: worker.demo_time_scale.to_string(),
            });
        }
        Ok(Self {
            redis_url: raw.redis.url.expose_secret().to_owned(),
            queue: required(worker.queue, "GPUQ_QUEUE")?,
            namespace: raw.redis.namespace,
            callback_url: required(worker.callback_url, "GPUQ_CALLBACK_URL")?,
            callback_secret: required(
                raw.auth
                    .secrets
                    .into_iter()
                    .next()
                    .filter(|k| !k.expose_secret().trim().is_empty()),
                "GPUQ_CALLBACK_SECRET",
            )?,
            concurrency: worker.concurrency,
            storage,
            time_scale: worker.demo_time_scale,
            shutdown_deadline: seconds(
                worker.shutdown_deadline_secs,
                0.0,
                "GPUQ_SHUTDOWN_DEADLINE_SECS",
            )?,
            lease: seconds(worker.lease_secs, 0.3, "GPUQ_LEASE_SECS")?,
            callback_retries: worker.callback_retries,
            gpu_name: worker.gpu_name,
        })
    }

    /// A worker running [`DemoHandler`] with these settings.
    pub fn build_worker(self) -> Result<Worker, WorkerError> {
        let builder = Worker::builder()
            .redis_url(self.redis_url)
            .queue(self.queue)
            .namespace(self.namespace)
            .callback_url(self.callback_url)
            .callback_secret(self.callback_secret)
            .concurrency(self.concurrency)
            .shutdown_deadline(self.shutdown_deadline)
            .lease(self.lease)
            .callback_retry(CallbackRetry {
                max_retries: self.callback_retries,
                ..CallbackRetry::default()
            })
            .heartbeat_every(self.lease / 3)
            .worker_name("demo")
            .gpu_name(self.gpu_name)
            .handler(DemoHandler {
                time_scale: self.time_scale,
            });
        let builder = match self.storage {
            StorageChoice::Local(dir) => builder.storage(LocalStorage::new(dir)),
            StorageChoice::S3(s3) => builder.storage(
                S3Storage::new(s3).map_err(|e| WorkerError::Invalid(format!("S3 storage: {e}")))?,
            ),
        };
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<DemoConfig, DemoConfigError> {
        DemoConfig::load(&Environment::from_pairs(pairs.iter().copied()))
    }

    const BASE: [(&str, &str); 3] = [
        ("GPUQ_QUEUE", "wan_queue"),
        ("GPUQ_CALLBACK_URL", "http://127.0.0.1:1/v1/callback"),
        ("GPUQ_CALLBACK_SECRET", "s"),
    ];

    #[test]
    fn local_storage_and_defaults() {
        let mut env = BASE.to_vec();
        env.push(("GPUQ_STORAGE_DIR", "/tmp/out"));
        let c = load(&env).unwrap();
        assert_eq!(c.namespace, "gpuq");
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.time_scale, 0.02);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert_eq!(c.callback_retries, CallbackRetry::default().max_retries);
        assert!(
            matches!(c.storage, StorageChoice::Local(ref p) if p == &PathBuf::from("/tmp/out"))
        );
        assert!(c.build_worker().is_ok());
    }

    #[test]
    fn s3_settings_win_and_plain_http_is_allowed_for_http_endpoints() {
        let mut env = BASE.to_vec();
        env.extend([
            ("GPUQ_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("GPUQ_S3_ACCESS_KEY_ID", "k"),
            ("GPUQ_S3_SECRET_ACCESS_KEY", "s"),
            ("GPUQ_STORAGE_DIR", "/tmp/out"),
        ]);
        let c = load(&env).unwrap();
        let StorageChoice::S3(s3) = &c.storage else {
            panic!("expected S3")
        };
        assert!(s3.allow_http);
        assert_eq!(s3.region, "us-east-1");
        assert!(c.build_worker().is_ok());
    }

    #[test]
    fn missing_and_bad_values_name_the_variable() {
        let err = load(&BASE).unwrap_err();
        assert!(matches!(err, DemoConfigError::NoStorage));
        let mut env = BASE.to_vec();
        env.extend([("GPUQ_STORAGE_DIR", "/x"), ("GPUQ_CONCURRENCY", "two")]);
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("GPUQ_CONCURRENCY"), "{err}");
        env.retain(|(k, _)| *k != "GPUQ_CONCURRENCY");
        env.push(("GPUQ_CALLBACK_RETRIES", "-1"));
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("GPUQ_CALLBACK_RETRIES"), "{err}");
        env.retain(|(k, _)| *k != "GPUQ_CALLBACK_RETRIES");
        env.push(("GPUQ_CALLBACK_RETRIES", "3"));
        assert_eq!(load(&env).unwrap().callback_retries, 3);
        let err = load(&[("GPUQ_STORAGE_DIR", "/x")]).unwrap_err().to_string();
        assert!(err.contains("GPUQ_QUEUE"), "{err}");
    }

    #[test]
    fn short_leases_are_accepted_down_to_a_floor() {
        let mut env = BASE.to_vec();
        env.extend([("GPUQ_STORAGE_DIR", "/x"), ("GPUQ_LEASE_SECS", "1.5")]);
        let c = load(&env).unwrap();
        assert_eq!(c.lease, Duration::from_millis(1500));
        assert!(c.build_worker().is_ok());
        env.retain(|(k, _)| *k != "GPUQ_LEASE_SECS");
        env.push(("GPUQ_LEASE_SECS", "0.1"));
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("GPUQ_LEASE_SECS"), "{err}");
    }

    #[test]
    fn the_worker_reads_the_services_names_and_signs_with_the_current_key() {
        let env = [
            ("GPUQ_QUEUE", "sdxl_queue"),
            ("GPUQ_CALLBACK_URL", "http://127.0.0.1:1/v1/callback"),
            ("GPUQ__AUTH__SECRETS", "current,previous"),
            ("GPUQ__REDIS__NAMESPACE", "nested"),
            ("GPUQ__STORAGE__DIR", "/x"),
        ];
        let c = load(&env).unwrap();
        assert_eq!(c.callback_secret.expose_secret(), "current");
        assert_eq!(c.namespace, "nested");
    }
}
