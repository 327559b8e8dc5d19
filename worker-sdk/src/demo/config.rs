//! [`DemoConfig`]: the demo worker's settings — every worker's [`WorkerSettings`] plus the
//! demo's time scale, read from the same sources (`GPUQ_DEMO_TIME_SCALE` or
//! `worker.demo_time_scale`).

use gpuq_service::configuration::{self, ConfigurationError, Environment};
use serde::Deserialize;

use super::{DemoHandler, SimulatedLoads};
use crate::settings::{SettingsError, WorkerSettings};
use crate::{Worker, WorkerError};

/// The GPU the demo worker reports when `GPUQ_GPU_NAME` is unset.
const DEMO_GPU: &str = "demo (simulated, no GPU)";

/// The demo worker's settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Every worker's settings.
    pub worker: WorkerSettings,
    /// `GPUQ_DEMO_TIME_SCALE` (default 0.02; 0 = instant).
    pub time_scale: f64,
    /// `GPUQ_DEMO_MODEL_LOAD_SECS` (default 0: none): a simulated model load, scaled like
    /// the run times, whenever a job's model is not resident.
    pub model_load: std::time::Duration,
    /// `GPUQ_DEMO_RESIDENT_MODELS` (default 1): models resident at once.
    pub resident_models: usize,
}

#[derive(Deserialize)]
struct Raw {
    worker: RawDemo,
}

#[derive(Deserialize)]
struct RawDemo {
    demo_time_scale: f64,
    demo_model_load_secs: f64,
    demo_resident_models: usize,
}

impl DemoConfig {
    /// Reads the process environment (and `configuration/base.yaml` when present), like
    /// the services.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(&Environment::process())
    }

    /// Reads the settings with `env` as the environment (tests pass a map).
    pub fn load(env: &Environment) -> Result<Self, SettingsError> {
        let mut worker = WorkerSettings::load(env)?;
        worker.gpu_name.get_or_insert_with(|| DEMO_GPU.into());
        let defaults = configuration::common_defaults()?
            .set_default("worker.demo_time_scale", 0.02)
            .and_then(|b| b.set_default("worker.demo_model_load_secs", 0.0))
            .and_then(|b| b.set_default("worker.demo_resident_models", 1))
            .map_err(ConfigurationError::from)?;
        let raw: Raw = configuration::load(defaults, env)?;
        let time_scale = raw.worker.demo_time_scale;
        if !(time_scale.is_finite() && time_scale >= 0.0) {
            return Err(SettingsError::OutOfRange {
                name: "GPUQ_DEMO_TIME_SCALE",
                value: time_scale.to_string(),
            });
        }
        let load = raw.worker.demo_model_load_secs;
        if !(load.is_finite() && (0.0..=3600.0).contains(&load)) {
            return Err(SettingsError::OutOfRange {
                name: "GPUQ_DEMO_MODEL_LOAD_SECS",
                value: load.to_string(),
            });
        }
        if raw.worker.demo_resident_models == 0 {
            return Err(SettingsError::OutOfRange {
                name: "GPUQ_DEMO_RESIDENT_MODELS",
                value: "0".into(),
            });
        }
        Ok(Self {
            worker,
            time_scale,
            model_load: std::time::Duration::from_secs_f64(load),
            resident_models: raw.worker.demo_resident_models,
        })
    }

    /// A worker running [`DemoHandler`] with these settings.
    pub fn build_worker(self) -> Result<Worker, WorkerError> {
        self.worker
            .builder()?
            .worker_name("demo")
            .handler(DemoHandler {
                time_scale: self.time_scale,
                loads: (!self.model_load.is_zero())
                    .then(|| SimulatedLoads::new(self.model_load, self.resident_models)),
            })
            .build()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::settings::StorageChoice;
    use crate::CallbackRetry;

    fn load(pairs: &[(&str, &str)]) -> Result<DemoConfig, SettingsError> {
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
        assert_eq!(c.worker.namespace, "gpuq");
        assert_eq!(c.worker.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.worker.concurrency, 1);
        assert_eq!(c.time_scale, 0.02);
        assert_eq!(c.worker.lease, Duration::from_secs(30));
        assert_eq!(
            c.worker.callback_retries,
            CallbackRetry::default().max_retries
        );
        assert!(
            matches!(c.worker.storage, StorageChoice::Local(ref p) if p == &PathBuf::from("/tmp/out"))
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
        let StorageChoice::S3(s3) = &c.worker.storage else {
            panic!("expected S3")
        };
        assert!(s3.allow_http);
        assert_eq!(s3.region, "us-east-1");
        assert!(c.build_worker().is_ok());
    }

    #[test]
    fn missing_and_bad_values_name_the_variable() {
        let err = load(&BASE).unwrap_err();
        assert!(matches!(err, SettingsError::NoStorage));
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
        assert_eq!(load(&env).unwrap().worker.callback_retries, 3);
        let err = load(&[("GPUQ_STORAGE_DIR", "/x")]).unwrap_err().to_string();
        assert!(err.contains("GPUQ_QUEUE"), "{err}");
    }

    #[test]
    fn short_leases_are_accepted_down_to_a_floor() {
        let mut env = BASE.to_vec();
        env.extend([("GPUQ_STORAGE_DIR", "/x"), ("GPUQ_LEASE_SECS", "1.5")]);
        let c = load(&env).unwrap();
        assert_eq!(c.worker.lease, Duration::from_millis(1500));
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
        assert_eq!(c.worker.callback_secret.expose_secret(), "current");
        assert_eq!(c.worker.namespace, "nested");
    }
}
