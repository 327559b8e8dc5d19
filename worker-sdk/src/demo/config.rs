//! [`DemoConfig`]: the demo worker's settings, read from the environment like the
//! services' (`REDIS_URL`, `GPUQ_*`).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::DemoHandler;
use crate::{LocalStorage, S3Config, S3Storage, Worker, WorkerError};

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
}

/// A missing or malformed setting; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum DemoConfigError {
    /// A required variable is unset or empty.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("{name} has an invalid value {value:?}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// Neither local nor S3 storage is configured.
    #[error("set GPUQ_STORAGE_DIR, or GPUQ_S3_ENDPOINT with the other GPUQ_S3_* settings")]
    NoStorage,
}

impl DemoConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, DemoConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DemoConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let req = |k: &'static str| get(k).ok_or(DemoConfigError::Missing(k));
        let parse = |k: &'static str, default: &str| -> Result<f64, DemoConfigError> {
            let v = get(k).unwrap_or_else(|| default.into());
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or(DemoConfigError::Invalid { name: k, value: v })
        };
        let storage = if let Some(endpoint) = get("GPUQ_S3_ENDPOINT") {
            StorageChoice::S3(S3Config {
                allow_http: match get("GPUQ_S3_ALLOW_HTTP") {
                    Some(v) => matches!(v.as_str(), "1" | "true" | "yes"),
                    None => endpoint.starts_with("http://"),
                },
                endpoint: Some(endpoint),
                region: get("GPUQ_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
                access_key_id: req("GPUQ_S3_ACCESS_KEY_ID")?,
                secret_access_key: req("GPUQ_S3_SECRET_ACCESS_KEY")?.into(),
                bucket: get("GPUQ_S3_BUCKET"),
            })
        } else if let Some(dir) = get("GPUQ_STORAGE_DIR") {
            StorageChoice::Local(dir.into())
        } else {
            return Err(DemoConfigError::NoStorage);
        };
        let concurrency = parse("GPUQ_CONCURRENCY", "1")?;
        if concurrency < 1.0 || concurrency.fract() != 0.0 {
            return Err(DemoConfigError::Invalid {
                name: "GPUQ_CONCURRENCY",
                value: concurrency.to_string(),
            });
        }
        Ok(Self {
            redis_url: get("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            queue: req("GPUQ_QUEUE")?,
            namespace: get("GPUQ_REDIS_NAMESPACE").unwrap_or_else(|| "gpuq".into()),
            callback_url: req("GPUQ_CALLBACK_URL")?,
            callback_secret: req("GPUQ_CALLBACK_SECRET")?.into(),
            concurrency: concurrency as usize,
            storage,
            time_scale: parse("GPUQ_DEMO_TIME_SCALE", "0.02")?,
            shutdown_deadline: Duration::from_secs_f64(parse("GPUQ_SHUTDOWN_DEADLINE_SECS", "30")?),
            lease: match parse("GPUQ_LEASE_SECS", "30")? {
                secs if secs >= 0.3 => Duration::from_secs_f64(secs),
                secs => {
                    return Err(DemoConfigError::Invalid {
                        name: "GPUQ_LEASE_SECS",
                        value: secs.to_string(),
                    })
                }
            },
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
            .heartbeat_every(self.lease / 3)
            .worker_name("demo")
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
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
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
        let c = DemoConfig::from_lookup(lookup(&env)).unwrap();
        assert_eq!(c.namespace, "gpuq");
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.time_scale, 0.02);
        assert_eq!(c.lease, Duration::from_secs(30));
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
        let c = DemoConfig::from_lookup(lookup(&env)).unwrap();
        let StorageChoice::S3(s3) = &c.storage else {
            panic!("expected S3")
        };
        assert!(s3.allow_http);
        assert_eq!(s3.region, "us-east-1");
        assert!(c.build_worker().is_ok());
    }

    #[test]
    fn missing_and_bad_values_name_the_variable() {
        let err = DemoConfig::from_lookup(lookup(&BASE)).unwrap_err();
        assert!(matches!(err, DemoConfigError::NoStorage));
        let mut env = BASE.to_vec();
        env.extend([("GPUQ_STORAGE_DIR", "/x"), ("GPUQ_CONCURRENCY", "two")]);
        let err = DemoConfig::from_lookup(lookup(&env))
            .unwrap_err()
            .to_string();
        assert!(err.contains("GPUQ_CONCURRENCY"), "{err}");
    }

    #[test]
    fn short_leases_are_accepted_down_to_a_floor() {
        let mut env = BASE.to_vec();
        env.extend([("GPUQ_STORAGE_DIR", "/x"), ("GPUQ_LEASE_SECS", "1.5")]);
        let c = DemoConfig::from_lookup(lookup(&env)).unwrap();
        assert_eq!(c.lease, Duration::from_millis(1500));
        assert!(c.build_worker().is_ok());
        env.push(("GPUQ_LEASE_SECS", "0.1"));
        env.retain(|(k, v)| *k != "GPUQ_LEASE_SECS" || *v == "0.1");
        let err = DemoConfig::from_lookup(lookup(&env))
            .unwrap_err()
            .to_string();
        assert!(err.contains("GPUQ_LEASE_SECS"), "{err}");
    }
}
