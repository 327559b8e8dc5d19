//! `Worker`: configured like the Rust builder, by keywords or by the environment variables
//! every gpuq worker reads (`Worker.from_env`), then `run()` until SIGTERM or `stop()`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpuq_worker_sdk::settings::WorkerSettings;
use gpuq_worker_sdk::{
    self as sdk, shutdown_on_signal, CallbackRetry, CancellationToken, LocalStorage, WorkerBuilder,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{ConfigError, WorkerError};
use crate::handler::PyHandler;

/// A worker serving one queue with one handler.
#[pyclass(frozen, module = "gpuq_worker")]
pub(crate) struct Worker {
    worker: Mutex<Option<sdk::Worker>>,
    stop: CancellationToken,
    consumer: String,
}

#[pymethods]
impl Worker {
    /// `Worker(handler, redis_url=..., queue=..., callback_url=..., callback_secret=...,
    /// storage_dir=..., ...)`; see the stubs for every setting.
    #[new]
    #[pyo3(signature = (handler, **settings))]
    fn new(handler: &Bound<'_, PyAny>, settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let options = Options::from_kwargs(settings)?;
        Self::build(handler, sdk::Worker::builder(), options)
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
        let settings =
            WorkerSettings::from_env().map_err(|e| ConfigError::new_err(e.to_string()))?;
        let builder = settings
            .builder()
            .map_err(|e| ConfigError::new_err(e.to_string()))?;
        Self::build(handler, builder, options)
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
        let stop = self.stop.clone();
        py.detach(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("gpuq-worker")
                .build()
                .map_err(|e| format!("could not start the worker's runtime: {e}"))?;
            let result = runtime.block_on(async {
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
            // A handler still in Python code after the deadline (its job was handed back) is
            // not waited for: its result would be refused anyway.
            runtime.shutdown_timeout(Duration::from_secs(1));
            result.map_err(|e| e.to_string())
        })
        .map_err(WorkerError::new_err)
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
    fn build(
        handler: &Bound<'_, PyAny>,
        builder: WorkerBuilder,
        options: Options,
    ) -> PyResult<Self> {
        let py = handler.py();
        let func = py
            .import("gpuq_worker._aio")?
            .getattr("adapt")?
            .call1((handler,))?
            .unbind();
        let cancel_grace = options.cancel_grace.unwrap_or(Duration::from_secs(2));
        let worker = options
            .apply(builder)
            .cancel_grace(cancel_grace)
            .handler(PyHandler {
                func: Arc::new(func),
                cancel_grace,
            })
            .build()
            .map_err(|e| ConfigError::new_err(e.to_string()))?;
        Ok(Self {
            consumer: worker.consumer().to_string(),
            worker: Mutex::new(Some(worker)),
            stop: CancellationToken::new(),
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
}

impl Options {
    fn from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut o = Self::default();
        let Some(kwargs) = kwargs else { return Ok(o) };
        for (key, value) in kwargs.iter() {
            let key: String = key.extract()?;
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
                "lease_seconds" => o.lease = Some(secs(&value)?),
                "heartbeat_seconds" => o.heartbeat = Some(secs(&value)?),
                "shutdown_deadline_seconds" => o.shutdown_deadline = Some(secs(&value)?),
                "cancel_grace_seconds" => o.cancel_grace = Some(secs(&value)?),
                "progress_interval_seconds" => o.progress_interval = Some(secs(&value)?),
                "claim_wait_seconds" => o.claim_wait = Some(secs(&value)?),
                "callback_retries" => o.callback_retries = Some(value.extract()?),
                "worker_name" => o.worker_name = Some(value.extract()?),
                "gpu_name" => o.gpu_name = Some(value.extract()?),
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "Worker got an unexpected setting {other:?}"
                    )))
                }
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
        b
    }
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
