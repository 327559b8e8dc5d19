//! [`WorkerSettings`]: a worker's settings read by the one configuration loader the services
//! use (`gpuq_service::configuration`): the same files, the same `redis` section, the same
//! flat names (`REDIS_URL`, `GPUQ_REDIS_NAMESPACE`, `GPUQ_CALLBACK_SECRET`, ...), plus the
//! `worker` and `storage` sections. The demo worker and the Python package read them
//! here, so a worker in either language is configured by the same variables.

use std::path::PathBuf;
use std::time::Duration;

use gpuq_service::configuration::{self, ConfigurationError, Environment};
use gpuq_service::RedisSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{CallbackRetry, LocalStorage, S3Config, S3Storage, WorkerBuilder, WorkerError};

/// Where a worker writes its outputs.
#[derive(Debug, Clone)]
pub enum StorageChoice {
    /// `GPUQ_STORAGE_DIR`: files under `<dir>/<bucket>/<key>`.
    Local(PathBuf),
    /// `GPUQ_S3_*`: an S3-compatible store.
    S3(S3Config),
}

/// A worker's settings, whatever its handler.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
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
    /// `GPUQ_SHUTDOWN_DEADLINE_SECS` (default 30).
    pub shutdown_deadline: Duration,
    /// `GPUQ_LEASE_SECS` (default 30): how long a silent worker keeps its jobs. Leases are
    /// renewed every third of it.
    pub lease: Duration,
    /// `GPUQ_CALLBACK_RETRIES` (default 20, about eight minutes): retries of a report
    /// before the worker gives up and hands the job back.
    pub callback_retries: usize,
    /// `GPUQ_GPU_NAME`: the GPU reported with each attempt, if set.
    pub gpu_name: Option<String>,
    /// `GPUQ_MODELS` (comma-separated; `*`: any): claims route by model (ADR 0020); unset:
    /// plain fair order.
    pub models: Option<Models>,
    /// `GPUQ_VRAM_GB` (1 to 10,000): the GPU memory jobs may use; a job whose type needs
    /// more is never claimed (routing on, any model, when `GPUQ_MODELS` is unset).
    pub vram_gb: Option<u32>,
    /// `GPUQ_MODEL_WAIT_SECS` (default 300): how long a job waits for a worker with its
    /// model loaded before any worker that can run it gets it.
    pub model_wait: Duration,
    /// `GPUQ_PROCESSING_AFTER_SECS` (default 0): how long a job runs before `processing`
    /// is reported ([`WorkerBuilder::report_processing_after`]).
    pub processing_after: Duration,
}

/// The models a routing worker can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Models {
    /// Any model; the warm ones first.
    Any,
    /// Only these (what fits the GPU).
    Only(Vec<String>),
}

/// A missing or malformed setting; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
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

/// The sections a worker reads, as the one configuration loader builds them.
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
    gpu_name: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    vram_gb: Option<u32>,
    model_wait_secs: f64,
    processing_after_secs: f64,
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

fn required<T>(value: Option<T>, name: &'static str) -> Result<T, SettingsError> {
    value.ok_or(SettingsError::Missing(name))
}

fn seconds(secs: f64, floor: f64, name: &'static str) -> Result<Duration, SettingsError> {
    // `try_from`: a finite number too large for a Duration is refused, not a panic.
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if secs >= floor => Ok(d),
        _ => Err(SettingsError::OutOfRange {
            name,
            value: secs.to_string(),
        }),
    }
}

impl WorkerSettings {
    /// Reads the process environment (and `configuration/base.yaml` when present), like
    /// the services.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(&Environment::process())
    }

    /// Reads the settings with `env` as the environment (tests pass a map).
    pub fn load(env: &Environment) -> Result<Self, SettingsError> {
        let defaults = configuration::common_defaults()?
            .set_default("worker.concurrency", 1)
            .and_then(|b| b.set_default("worker.lease_secs", 30.0))
            .and_then(|b| {
                let retries = CallbackRetry::default().max_retries as u64;
                b.set_default("worker.callback_retries", retries)
            })
            .and_then(|b| b.set_default("worker.shutdown_deadline_secs", 30.0))
            .and_then(|b| b.set_default("worker.model_wait_secs", 300.0))
            .and_then(|b| b.set_default("worker.processing_after_secs", 0.0))
            .map_err(ConfigurationError::from)?;
        let raw: Raw = configuration::load(defaults, env)?;
        let worker = raw.worker;
        if worker.concurrency == 0 {
            return Err(SettingsError::OutOfRange {
                name: "GPUQ_CONCURRENCY",
                value: "0".into(),
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
            storage: storage(raw.storage)?,
            shutdown_deadline: seconds(
                worker.shutdown_deadline_secs,
                0.0,
                "GPUQ_SHUTDOWN_DEADLINE_SECS",
            )?,
            lease: seconds(worker.lease_secs, 0.3, "GPUQ_LEASE_SECS")?,
            callback_retries: worker.callback_retries,
            gpu_name: worker.gpu_name.filter(|g| !g.is_empty()),
            models: routing(worker.models),
            vram_gb: match worker.vram_gb {
                Some(v) if !(1..=10_000).contains(&v) => {
                    return Err(SettingsError::OutOfRange {
                        name: "GPUQ_VRAM_GB",
                        value: v.to_string(),
                    })
                }
                v => v,
            },
            model_wait: seconds(worker.model_wait_secs, 0.0, "GPUQ_MODEL_WAIT_SECS")?,
            processing_after: seconds(
                worker.processing_after_secs,
                0.0,
                "GPUQ_PROCESSING_AFTER_SECS",
            )?,
        })
    }

    /// A builder with every one of these settings; the caller adds the handler (and may
    /// change anything else) before [`WorkerBuilder::build`].
    pub fn builder(self) -> Result<WorkerBuilder, WorkerError> {
        let mut builder = crate::Worker::builder()
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
            .report_processing_after(self.processing_after);
        if let Some(gpu) = self.gpu_name {
            builder = builder.gpu_name(gpu);
        }
        if let Some(vram) = self.vram_gb {
            builder = builder.vram_gb(vram).model_wait(self.model_wait);
        }
        builder = match self.models {
            None => builder,
            Some(Models::Any) => builder.any_model().model_wait(self.model_wait),
            Some(Models::Only(models)) => builder.models(models).model_wait(self.model_wait),
        };
        Ok(match self.storage {
            StorageChoice::Local(dir) => builder.storage(LocalStorage::new(dir)),
            StorageChoice::S3(s3) => builder.storage(
                S3Storage::new(s3).map_err(|e| WorkerError::Invalid(format!("S3 storage: {e}")))?,
            ),
        })
    }
}

/// `GPUQ_MODELS`: unset or empty, no routing; `*`, any model (warm ones first); else the
/// models this worker can run.
fn routing(models: Vec<String>) -> Option<Models> {
    let models: Vec<String> = models
        .into_iter()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    if models.is_empty() {
        None
    } else if models.len() == 1 && models[0] == "*" {
        Some(Models::Any)
    } else {
        Some(Models::Only(models))
    }
}

/// S3 when an endpoint is set (it wins over a directory), else the directory.
fn storage(raw: RawStorage) -> Result<StorageChoice, SettingsError> {
    let s3 = raw.s3;
    Ok(match (s3.endpoint, raw.dir) {
        (Some(endpoint), _) => StorageChoice::S3(S3Config {
            allow_http: s3.allow_http.unwrap_or(endpoint.starts_with("http://")),
            endpoint: Some(endpoint),
            region: s3.region.unwrap_or_else(|| "us-east-1".into()),
            access_key_id: required(s3.access_key_id, "GPUQ_S3_ACCESS_KEY_ID")?,
            secret_access_key: required(s3.secret_access_key, "GPUQ_S3_SECRET_ACCESS_KEY")?,
            bucket: s3.bucket,
        }),
        (None, Some(dir)) => StorageChoice::Local(dir),
        (None, None) => return Err(SettingsError::NoStorage),
    })
}

/// The rest of a worker binary's `main` once telemetry is up: a worker that could not be
/// built stops the process with code 2 (a configuration error); one that was runs until
/// SIGTERM or ctrl-c, then exits 0, or 1 if it failed.
pub async fn run_binary<E: std::fmt::Display>(
    worker: Result<crate::Worker, E>,
) -> std::process::ExitCode {
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return std::process::ExitCode::from(2);
        }
    };
    match worker.run(crate::shutdown_on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<WorkerSettings, SettingsError> {
        WorkerSettings::load(&Environment::from_pairs(pairs.iter().copied()))
    }

    const BASE: [(&str, &str); 4] = [
        ("GPUQ_QUEUE", "sdxl_queue"),
        ("GPUQ_CALLBACK_URL", "http://127.0.0.1:1/v1/callback"),
        ("GPUQ_CALLBACK_SECRET", "s"),
        ("GPUQ_STORAGE_DIR", "/tmp/out"),
    ];

    #[test]
    fn a_worker_reports_no_gpu_unless_one_is_named() {
        assert_eq!(load(&BASE).unwrap().gpu_name, None);
        let mut env = BASE.to_vec();
        env.push(("GPUQ_GPU_NAME", "NVIDIA L40S"));
        assert_eq!(load(&env).unwrap().gpu_name.as_deref(), Some("NVIDIA L40S"));
    }

    #[test]
    fn a_worker_says_its_gpu_memory_in_whole_gib_and_nothing_else() {
        assert_eq!(load(&BASE).unwrap().vram_gb, None);
        let with = |v: &'static str| {
            let mut env = BASE.to_vec();
            env.push(("GPUQ_VRAM_GB", v));
            load(&env)
        };
        assert_eq!(with("24").unwrap().vram_gb, Some(24));
        for bad in ["0", "-1", "24.5", "lots", "10001"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.contains("GPUQ_VRAM_GB") || err.contains("vram_gb"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn processing_is_reported_at_once_unless_a_delay_is_set_and_a_bad_one_is_refused() {
        assert_eq!(load(&BASE).unwrap().processing_after, Duration::ZERO);
        let with = |v: &'static str| {
            let mut env = BASE.to_vec();
            env.push(("GPUQ_PROCESSING_AFTER_SECS", v));
            load(&env)
        };
        assert_eq!(
            with("0.25").unwrap().processing_after,
            Duration::from_millis(250)
        );
        // Too large for a Duration is refused, not a panic.
        for bad in ["-1", "1e30", "NaN", "soon"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.to_lowercase().contains("processing_after"),
                "{bad}: {err}"
            );
        }
    }

    fn refusal(builder: crate::WorkerBuilder) -> String {
        let handler = |_: crate::JobEnvelope, _: crate::JobContext| async {
            Err::<crate::Output, _>(crate::JobError::permanent("unused"))
        };
        builder.handler(handler).build().unwrap_err().to_string()
    }

    #[test]
    fn a_models_list_mixing_names_and_any_and_a_zero_run_limit_are_refused() {
        let mut env = BASE.to_vec();
        env.push(("GPUQ_MODELS", "sdxl-base,*"));
        let err = refusal(load(&env).unwrap().builder().unwrap());
        assert!(err.contains("\"*\""), "{err}");
        let builder = load(&BASE).unwrap().builder().unwrap();
        let err = refusal(builder.run_limit(gpuq_schemas::JobType::VideoHigh, Duration::ZERO));
        assert!(err.contains("run limit of video_high"), "{err}");
    }

    #[test]
    fn the_settings_make_a_builder_that_needs_only_a_handler() {
        let builder = load(&BASE).unwrap().builder().unwrap();
        let err = builder.build().unwrap_err().to_string();
        assert!(err.contains("handler"), "{err}");
    }

    #[test]
    fn a_blank_secret_is_missing() {
        let mut env = BASE.to_vec();
        env.retain(|(k, _)| *k != "GPUQ_CALLBACK_SECRET");
        env.push(("GPUQ_CALLBACK_SECRET", "  "));
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("GPUQ_CALLBACK_SECRET"), "{err}");
    }
}
