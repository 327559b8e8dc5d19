//! `Worker`: configured like the Rust builder, by keywords or by the environment variables
//! every gpuq worker reads (`Worker.from_env`), then `run()` until SIGTERM or `stop()`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpuq_schemas::JobType;
use gpuq_service::configuration::Environment;
use gpuq_worker_sdk::settings::WorkerSettings;
use gpuq_worker_sdk::{
    self as sdk, shutdown_on_signal, CallbackRetry, CancellationToken, LocalStorage, WorkerBuilder,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::Semaphore;

use crate::errors::{ConfigError, WorkerError};
use crate::handler::PyHandler;

/// A worker serving one queue with one handler.
#[pyclass(frozen, module = "gpuq_worker")]
pub(crate) struct Worker {
    worker: Mutex<Option<sdk::Worker>>,
    stop: CancellationToken,
    consumer: String,
    /// One permit per handler call in Python (see [`PyHandler`]), `slot_count` in all.
    slots: Arc<Semaphore>,
    slot_count: u32,
    cancel_grace: Duration,
}

#[pymethods]
impl Worker {
    /// `Worker(handler, redis_url=..., queue=..., callback_url=..., callback_secret=...,
    /// storage_dir=..., ...)`; see the stubs for every setting.
    #[new]
    #[pyo3(signature = (handler, **settings))]
    fn new(handler: &Bound<'_, PyAny>, settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let options = Options::from_kwargs(settings)?;
        Self::build(handler, sdk::Worker::builder(), options, 1)
    }

    /// The settings from the environment (`REDIS_URL`, `GPUQ_QUEUE`, `GPUQ_CALLBACK_URL`,
    /// `GPUQ_CALLBACK_SECRET`, `GPUQ_STORAGE_DIR` or `GPUQ_S3_*`, `GPUQ_CONCURRENCY`, ...,
    /// as the demo worker reads them), with keywords overriding any of them.
    #[staticmethod]
    #[pyo3(signature = (handler, **overrides))]
    fn from_env(
        handler: &Bound<'_, PyAny>,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let options = Options::from_kwargs(overrides)?;
        // A keyword stands in for its variable, so it may supply one that is unset.
        let mut env = Environment::process();
        for (name, value) in options.as_variables() {
            env = env.with(name, value);
        }
        let settings =
            WorkerSettings::load(&env).map_err(|e| ConfigError::new_err(e.to_string()))?;
        let concurrency = settings.concurrency;
        let builder = settings
            .builder()
            .map_err(|e| ConfigError::new_err(e.to_string()))?;
        Self::build(handler, builder, options, concurrency)
    }

    /// This process's unique consumer name (the `workerId` of its reports).
    #[getter]
    fn consumer(&self) -> String {
        self.consumer.clone()
    }

    /// Serves the queue until SIGTERM or ctrl-c (when `handle_signals`, the default) or
    /// `stop()`, then lets running jobs finish until the shutdown deadline and hands the rest
    /// back. Blocks the calling thread without holding the GIL. Raises `WorkerError` when
    /// the callback service refuses the worker's signed start-up probe (a wrong callback
    /// URL or secret): nothing is claimed then.
    #[pyo3(signature = (*, handle_signals=true))]
    fn run(&self, py: Python<'_>, handle_signals: bool) -> PyResult<()> {
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                PyRuntimeError::new_err("this worker has already run; make a new one")
            })?;
        gpuq_service::telemetry::init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("gpuq-worker")
            .build()
            .map_err(|e| {
                WorkerError::new_err(format!("could not start the worker's runtime: {e}"))
            })?;
        let stop = self.stop.clone();
        let mut task = runtime.spawn(async move {
            if handle_signals {
                let signal = shutdown_on_signal();
                let stop = stop.clone();
                tokio::spawn(async move {
                    signal.cancelled().await;
                    stop.cancel();
                });
            }
            worker.run(stop).await
        });
        // The GIL is let go while the worker runs; every 100 ms this thread takes it back to
        // run Python's own signal handlers (an embedding application's, calling `stop()`).
        // One that raises (KeyboardInterrupt) starts the shutdown and is raised after it.
        let mut raised: Option<PyErr> = None;
        let result = loop {
            let finished = py.detach(|| {
                runtime.block_on(async {
                    tokio::time::timeout(Duration::from_millis(100), &mut task)
                        .await
                        .ok()
                })
            });
            if let Some(joined) = finished {
                break joined;
            }
            if let Err(e) = py.check_signals() {
                self.stop.cancel();
                raised.get_or_insert(e);
            }
        };
        // A handler still in Python code (its job was handed back) gets the cancel grace to
        // return: the runtime is not torn down under a thread that runs Python.
        let (slots, slot_count) = (Arc::clone(&self.slots), self.slot_count);
        let grace = self.cancel_grace + Duration::from_millis(500);
        let idle = py.detach(|| {
            runtime.block_on(async {
                tokio::time::timeout(grace, slots.acquire_many(slot_count))
                    .await
                    .is_ok()
            })
        });
        if !idle {
            tracing::warn!("a handler is still running after the cancel grace; leaving it");
        }
        py.detach(|| runtime.shutdown_timeout(Duration::from_secs(1)));
        if let Some(e) = raised {
            return Err(e);
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WorkerError::new_err(e.to_string())),
            Err(e) => Err(WorkerError::new_err(format!(
                "the worker ended abnormally: {e}"
            ))),
        }
    }

    /// Starts a graceful shutdown, as SIGTERM does; callable from any thread.
    fn stop(&self) {
        self.stop.cancel();
    }

    fn __repr__(&self) -> String {
        format!("Worker(consumer={:?})", self.consumer)
    }
}

impl Worker {
    /// `concurrency`: the worker's when `options` do not say.
    fn build(
        handler: &Bound<'_, PyAny>,
        builder: WorkerBuilder,
        options: Options,
        concurrency: usize,
    ) -> PyResult<Self> {
        let py = handler.py();
        let func = py
            .import("gpuq_worker._aio")?
            .getattr("adapt")?
            .call1((handler,))?
            .unbind();
        let cancel_grace = options.cancel_grace.unwrap_or(Duration::from_secs(2));
        let slot_count = options
            .concurrency
            .unwrap_or(concurrency)
            .clamp(1, PyHandler::MAX_SLOTS);
        let slots = PyHandler::slots(slot_count);
        let worker = options
            .apply(builder)
            .cancel_grace(cancel_grace)
            .handler(PyHandler {
                func: Arc::new(func),
                cancel_grace,
                slots: Arc::clone(&slots),
            })
            .build()
            .map_err(|e| ConfigError::new_err(e.to_string()))?;
        Ok(Self {
            consumer: worker.consumer().to_string(),
            worker: Mutex::new(Some(worker)),
            stop: CancellationToken::new(),
            slots,
            slot_count: u32::try_from(slot_count).unwrap_or(u32::MAX),
            cancel_grace,
        })
    }
}

/// The keyword settings, each optional (the environment or the builder's default stands).
#[derive(Default)]
struct Options {
    redis_url: Option<String>,
    queue: Option<String>,
    namespace: Option<String>,
    callback_url: Option<String>,
    callback_secret: Option<String>,
    storage_dir: Option<PathBuf>,
    concurrency: Option<usize>,
    lease: Option<Duration>,
    heartbeat: Option<Duration>,
    shutdown_deadline: Option<Duration>,
    cancel_grace: Option<Duration>,
    progress_interval: Option<Duration>,
    claim_wait: Option<Duration>,
    callback_retries: Option<usize>,
    worker_name: Option<String>,
    gpu_name: Option<String>,
    models: Option<Models>,
    model_wait: Option<Duration>,
    vram_gb: Option<u32>,
    run_limits: Vec<(JobType, Duration)>,
    exit_if_stuck: Option<bool>,
}

/// `models=`: the names a routing worker can run, or `"*"` for any.
enum Models {
    Any,
    Only(Vec<String>),
}

/// Every keyword setting.
const SETTINGS: [&str; 21] = [
    "redis_url",
    "queue",
    "namespace",
    "callback_url",
    "callback_secret",
    "storage_dir",
    "concurrency",
    "lease_seconds",
    "heartbeat_seconds",
    "shutdown_deadline_seconds",
    "cancel_grace_seconds",
    "progress_interval_seconds",
    "claim_wait_seconds",
    "callback_retries",
    "worker_name",
    "gpu_name",
    "models",
    "model_wait_seconds",
    "vram_gb",
    "run_limit_seconds",
    "exit_if_stuck",
];

impl Options {
    /// The keywords that stand for a required variable, as (variable, value).
    fn as_variables(&self) -> Vec<(&'static str, String)> {
        let mut vars = Vec::new();
        let mut add = |name: &'static str, value: Option<String>| {
            if let Some(v) = value {
                vars.push((name, v));
            }
        };
        add("REDIS_URL", self.redis_url.clone());
        add("GPUQ_QUEUE", self.queue.clone());
        add("GPUQ_CALLBACK_URL", self.callback_url.clone());
        add("GPUQ_CALLBACK_SECRET", self.callback_secret.clone());
        add(
            "GPUQ_STORAGE_DIR",
            self.storage_dir.as_ref().map(|d| d.display().to_string()),
        );
        vars
    }

    fn from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut o = Self::default();
        let Some(kwargs) = kwargs else { return Ok(o) };
        for (key, value) in kwargs.iter() {
            let key: String = key.extract()?;
            if !SETTINGS.contains(&key.as_str()) {
                return Err(PyTypeError::new_err(format!(
                    "Worker got an unexpected setting {key:?}"
                )));
            }
            if value.is_none() {
                continue;
            }
            let secs = |v: &Bound<'_, PyAny>| -> PyResult<Duration> { seconds(&key, v.extract()?) };
            match key.as_str() {
                "redis_url" => o.redis_url = Some(value.extract()?),
                "queue" => o.queue = Some(value.extract()?),
                "namespace" => o.namespace = Some(value.extract()?),
                "callback_url" => o.callback_url = Some(value.extract()?),
                "callback_secret" => o.callback_secret = Some(value.extract()?),
                "storage_dir" => o.storage_dir = Some(value.extract()?),
                "concurrency" => o.concurrency = Some(value.extract()?),
                "lease_seconds" => {
                    let lease = secs(&value)?;
                    if lease < Duration::from_millis(300) {
                        return Err(ConfigError::new_err("lease_seconds must be at least 0.3"));
                    }
                    o.lease = Some(lease);
                }
                "heartbeat_seconds" => o.heartbeat = Some(secs(&value)?),
                "shutdown_deadline_seconds" => o.shutdown_deadline = Some(secs(&value)?),
                "cancel_grace_seconds" => o.cancel_grace = Some(secs(&value)?),
                "progress_interval_seconds" => o.progress_interval = Some(secs(&value)?),
                "claim_wait_seconds" => o.claim_wait = Some(secs(&value)?),
                "callback_retries" => o.callback_retries = Some(value.extract()?),
                "worker_name" => o.worker_name = Some(value.extract()?),
                "gpu_name" => o.gpu_name = Some(value.extract()?),
                "models" => o.models = Some(models(&value)?),
                "model_wait_seconds" => o.model_wait = Some(secs(&value)?),
                "run_limit_seconds" => o.run_limits = run_limits(&value)?,
                "exit_if_stuck" => o.exit_if_stuck = Some(value.extract()?),
                "vram_gb" => match value.extract::<u32>() {
                    Ok(v) if (1..=10_000).contains(&v) => o.vram_gb = Some(v),
                    _ => {
                        return Err(ConfigError::new_err(
                            "vram_gb must be a whole number of GiB from 1 to 10000",
                        ))
                    }
                },
                _ => unreachable!("checked against SETTINGS"),
            }
        }
        Ok(o)
    }

    /// The builder with every given setting. A lease without a heartbeat interval renews
    /// every third of the lease, as the demo worker does.
    fn apply(self, mut b: WorkerBuilder) -> WorkerBuilder {
        if let Some(v) = self.redis_url {
            b = b.redis_url(v);
        }
        if let Some(v) = self.queue {
            b = b.queue(v);
        }
        if let Some(v) = self.namespace {
            b = b.namespace(v);
        }
        if let Some(v) = self.callback_url {
            b = b.callback_url(v);
        }
        if let Some(v) = self.callback_secret {
            b = b.callback_secret(v.into());
        }
        if let Some(v) = self.storage_dir {
            b = b.storage(LocalStorage::new(v));
        }
        if let Some(v) = self.concurrency {
            b = b.concurrency(v);
        }
        if let Some(v) = self.lease {
            b = b.lease(v).heartbeat_every(self.heartbeat.unwrap_or(v / 3));
        } else if let Some(v) = self.heartbeat {
            b = b.heartbeat_every(v);
        }
        if let Some(v) = self.shutdown_deadline {
            b = b.shutdown_deadline(v);
        }
        if let Some(v) = self.progress_interval {
            b = b.progress_interval(v);
        }
        if let Some(v) = self.claim_wait {
            b = b.claim_wait(v);
        }
        if let Some(v) = self.callback_retries {
            b = b.callback_retry(CallbackRetry {
                max_retries: v,
                ..CallbackRetry::default()
            });
        }
        if let Some(v) = self.worker_name {
            b = b.worker_name(v);
        }
        if let Some(v) = self.gpu_name {
            b = b.gpu_name(v);
        }
        // Any of the three turns routing on (the SDK's default wait unless one is given).
        match self.models {
            Some(Models::Only(names)) => b = b.models(names),
            Some(Models::Any) => b = b.any_model(),
            None => {}
        }
        if let Some(v) = self.model_wait {
            b = b.model_wait(v);
        }
        if let Some(v) = self.vram_gb {
            b = b.vram_gb(v);
        }
        for (job_type, per_image) in self.run_limits {
            b = b.run_limit(job_type, per_image);
        }
        if let Some(v) = self.exit_if_stuck {
            b = b.exit_if_stuck(v);
        }
        b
    }
}

/// `run_limit_seconds=`: `{job_type: seconds per image}` (each positive, checked when the
/// worker is built).
fn run_limits(value: &Bound<'_, PyAny>) -> PyResult<Vec<(JobType, Duration)>> {
    let limits: std::collections::HashMap<String, f64> = value.extract().map_err(|_| {
        ConfigError::new_err("run_limit_seconds must be a dict of job type -> seconds per image")
    })?;
    limits
        .into_iter()
        .map(|(name, secs)| {
            let job_type = name
                .parse::<JobType>()
                .map_err(|e| ConfigError::new_err(format!("run_limit_seconds: {e}")))?;
            Ok((job_type, seconds("run_limit_seconds", secs)?))
        })
        .collect()
}

/// `models=`: `"*"`, or a list of names (each checked when the worker is built).
fn models(value: &Bound<'_, PyAny>) -> PyResult<Models> {
    if let Ok(s) = value.extract::<String>() {
        return if s == "*" {
            Ok(Models::Any)
        } else {
            Err(ConfigError::new_err(
                "models must be \"*\" (any model) or a list of model names",
            ))
        };
    }
    let names: Vec<String> = value.extract().map_err(|_| {
        ConfigError::new_err("models must be \"*\" (any model) or a list of model names")
    })?;
    if names.is_empty() {
        return Err(ConfigError::new_err(
            "models must name at least one model (\"*\": any)",
        ));
    }
    Ok(Models::Only(names))
}

fn seconds(name: &str, secs: f64) -> PyResult<Duration> {
    if (0.0..1e9).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ConfigError::new_err(format!(
            "{name} must be a number of seconds, got {secs}"
        )))
    }
}
