//! [`ProviderConfig`]: the provider worker's settings — every worker's [`WorkerSettings`]
//! plus the `provider` section, read from the same sources:
//!
//! ```yaml
//! provider:
//!   base_url: https://api.replicate.com    # GPUQ_PROVIDER_BASE_URL
//!   token: r8_...                          # REPLICATE_API_TOKEN
//!   models:                                # job type -> model (and fixed inputs)
//!     sdxl_image_fast: {model: "stability-ai/sdxl:7762fd07", input: {refine: "no_refiner"}}
//!   poll_first_ms: 500                     # first poll of a running prediction
//!   poll_max_ms: 5000                      # polls grow by half up to this
//!   request_timeout_secs: 30
//!   max_output_mb: 512                     # largest output file downloaded
//!   max_throttled_secs: 600                # 429s an attempt waits out in all
//!   max_prediction_secs: 3600              # then the prediction is cancelled
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use gpuq_schemas::JobType;
use gpuq_service::configuration::{self, ConfigurationError, Environment};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{ModelRef, PollInterval, ProviderHandler, ProviderModel, ReplicateClient};
use crate::settings::{SettingsError, WorkerSettings};
use crate::{Worker, WorkerError};

/// The provider worker's settings.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Every worker's settings.
    pub worker: WorkerSettings,
    /// The provider's API (`GPUQ_PROVIDER_BASE_URL`, default `https://api.replicate.com`).
    pub base_url: String,
    /// `REPLICATE_API_TOKEN`.
    pub token: SecretString,
    /// The model of each job type served.
    pub models: BTreeMap<JobType, ProviderModel>,
    /// Polling of running predictions.
    pub poll: PollInterval,
    /// Each request to the provider.
    pub request_timeout: Duration,
    /// The largest output file downloaded, bytes.
    pub max_output_bytes: u64,
    /// How long an attempt waits out throttling (429s) in all before it gives up.
    pub max_throttled: Duration,
    /// How long a prediction may run before it is cancelled.
    pub max_prediction: Duration,
}

#[derive(Deserialize)]
struct Raw {
    provider: RawProvider,
}

#[derive(Deserialize)]
struct RawProvider {
    base_url: String,
    token: Option<SecretString>,
    #[serde(default)]
    models: HashMap<String, RawModel>,
    poll_first_ms: u64,
    poll_max_ms: u64,
    request_timeout_secs: u64,
    max_output_mb: u64,
    max_throttled_secs: u64,
    max_prediction_secs: u64,
}

#[derive(Deserialize)]
struct RawModel {
    model: String,
    #[serde(default)]
    input: Map<String, Value>,
}

fn out_of_range(name: &'static str, value: impl ToString) -> SettingsError {
    SettingsError::OutOfRange {
        name,
        value: value.to_string(),
    }
}

impl ProviderConfig {
    /// Reads the process environment (and `configuration/base.yaml` when present).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(&Environment::process())
    }

    /// Reads the settings with `env` as the environment (tests pass a map).
    pub fn load(env: &Environment) -> Result<Self, SettingsError> {
        let mut worker = WorkerSettings::load(env)?;
        worker.gpu_name.get_or_insert_with(|| "replicate".into());
        let defaults = configuration::common_defaults()?
            .set_default("provider.base_url", "https://api.replicate.com")
            .and_then(|b| b.set_default("provider.poll_first_ms", 500))
            .and_then(|b| b.set_default("provider.poll_max_ms", 5000))
            .and_then(|b| b.set_default("provider.request_timeout_secs", 30))
            .and_then(|b| b.set_default("provider.max_output_mb", 512))
            .and_then(|b| b.set_default("provider.max_throttled_secs", 600))
            .and_then(|b| b.set_default("provider.max_prediction_secs", 3600))
            .map_err(ConfigurationError::from)?;
        let raw: Raw = configuration::load(defaults, env)?;
        let p = raw.provider;
        let base = url::Url::parse(&p.base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| out_of_range("GPUQ_PROVIDER_BASE_URL", &p.base_url))?;
        let token = p
            .token
            .filter(|t| !t.expose_secret().trim().is_empty())
            .ok_or(SettingsError::Missing("REPLICATE_API_TOKEN"))?;
        let mut models = BTreeMap::new();
        for (job_type, m) in p.models {
            let t: JobType = job_type
                .parse()
                .map_err(|_| out_of_range("provider.models", format!("job type {job_type}")))?;
            let model = ModelRef::parse(&m.model).ok_or_else(|| {
                out_of_range("provider.models", format!("{job_type}: {}", m.model))
            })?;
            models.insert(
                t,
                ProviderModel {
                    model,
                    input: m.input,
                },
            );
        }
        if models.is_empty() {
            return Err(SettingsError::Missing("provider.models"));
        }
        if p.poll_first_ms == 0 || p.poll_max_ms < p.poll_first_ms {
            return Err(out_of_range("provider.poll_max_ms", p.poll_max_ms));
        }
        if p.request_timeout_secs == 0 {
            return Err(out_of_range("provider.request_timeout_secs", 0));
        }
        if p.max_output_mb == 0 {
            return Err(out_of_range("provider.max_output_mb", 0));
        }
        Ok(Self {
            worker,
            base_url: base.as_str().trim_end_matches('/').to_owned(),
            token,
            models,
            poll: PollInterval {
                first: Duration::from_millis(p.poll_first_ms),
                max: Duration::from_millis(p.poll_max_ms),
            },
            request_timeout: Duration::from_secs(p.request_timeout_secs),
            max_output_bytes: p.max_output_mb.saturating_mul(1 << 20),
            max_throttled: Duration::from_secs(p.max_throttled_secs),
            max_prediction: Duration::from_secs(p.max_prediction_secs.max(1)),
        })
    }

    /// The handler these settings describe.
    pub fn handler(&self) -> Result<ProviderHandler, WorkerError> {
        let client = ReplicateClient::new(&self.base_url, self.token.clone(), self.request_timeout)
            .map_err(WorkerError::Http)?;
        Ok(ProviderHandler {
            client,
            models: self.models.clone(),
            poll: self.poll,
            max_output_bytes: self.max_output_bytes,
            max_throttled: self.max_throttled,
            max_prediction: self.max_prediction,
        })
    }

    /// A worker running [`ProviderHandler`] with these settings.
    pub fn build_worker(self) -> Result<Worker, WorkerError> {
        let handler = self.handler()?;
        self.worker
            .builder()?
            .worker_name("replicate")
            .handler(handler)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Environment {
        let vars: Vec<(String, String)> = [
            ("GPUQ_QUEUE", "sdxl_queue-replicate"),
            ("GPUQ_CALLBACK_URL", "http://127.0.0.1:8081/v1/callback"),
            ("GPUQ_CALLBACK_SECRET", "s"),
            ("GPUQ_STORAGE_DIR", "/tmp/x"),
            ("REPLICATE_API_TOKEN", "r8_test"),
            (
                "GPUQ__PROVIDER__MODELS__SDXL_IMAGE_FAST__MODEL",
                "stability-ai/sdxl:abc123",
            ),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        Environment::from_pairs(vars)
    }

    #[test]
    fn the_models_come_from_the_nested_variables_with_replicates_defaults() {
        let c = ProviderConfig::load(&env(&[])).unwrap();
        assert_eq!(c.base_url, "https://api.replicate.com");
        assert_eq!(c.token.expose_secret(), "r8_test");
        let m = &c.models[&JobType::SdxlImageFast];
        assert_eq!(m.model.to_string(), "stability-ai/sdxl:abc123");
        assert_eq!(c.poll.first, Duration::from_millis(500));
        assert_eq!(c.worker.gpu_name.as_deref(), Some("replicate"));
    }

    #[test]
    fn a_missing_token_or_model_and_a_bad_value_name_the_setting() {
        let no_token = env(&[("REPLICATE_API_TOKEN", " ")]);
        let e = ProviderConfig::load(&no_token).unwrap_err().to_string();
        assert!(e.contains("REPLICATE_API_TOKEN"), "{e}");
        let bad_type = env(&[("GPUQ__PROVIDER__MODELS__NOPE__MODEL", "a/b")]);
        let e = ProviderConfig::load(&bad_type).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
        let bad_model = env(&[("GPUQ__PROVIDER__MODELS__VIDEO_FAST__MODEL", "wan")]);
        let e = ProviderConfig::load(&bad_model).unwrap_err().to_string();
        assert!(e.contains("video_fast: wan"), "{e}");
        let bad_url = env(&[("GPUQ_PROVIDER_BASE_URL", "ftp://x")]);
        let e = ProviderConfig::load(&bad_url).unwrap_err().to_string();
        assert!(e.contains("GPUQ_PROVIDER_BASE_URL"), "{e}");
    }
}
