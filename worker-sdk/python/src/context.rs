//! `Context`: what a handler can ask of the worker while its job runs — the attempt and
//! fence, progress, cancellation, uploads — and `Cancellation`, the flag a handler checks,
//! waits on, or awaits.
//!
//! Every call that waits (an upload, `Cancellation.wait`) lets go of the GIL first, so other
//! jobs' Python code runs meanwhile.

use std::time::Duration;

use gpuq_worker_sdk::{CancellationToken, JobContext};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tokio::runtime::Handle;

use crate::errors::job_error_to_py;

/// One job's context. Valid while its handler runs; cheap to pass to other threads.
#[pyclass(frozen, module = "gpuq_worker")]
pub(crate) struct Context {
    inner: JobContext,
    runtime: Handle,
    cancel_grace: Duration,
    /// Fires when the handler returned: ends the waits `Cancellation` started.
    done: CancellationToken,
}

impl Context {
    pub(crate) fn new(inner: JobContext, cancel_grace: Duration, done: CancellationToken) -> Self {
        Self {
            inner,
            runtime: Handle::current(),
            cancel_grace,
            done,
        }
    }
}

#[pymethods]
impl Context {
    /// The job's id.
    #[getter]
    fn job_id(&self) -> String {
        self.inner.job_id().to_string()
    }

    /// This delivery's attempt, from 1.
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt()
    }

    /// This delivery's fence: the callback service applies a report only with the fence of
    /// the job's current delivery, so a stale worker's reports change nothing.
    #[getter]
    fn fence(&self) -> String {
        self.inner.fence().to_owned()
    }

    /// The bucket outputs go to.
    #[getter]
    fn bucket(&self) -> String {
        self.inner.bucket().to_owned()
    }

    /// Seconds a cancelled handler has to return before the worker stops waiting for it.
    #[getter]
    fn cancel_grace(&self) -> f64 {
        self.cancel_grace.as_secs_f64()
    }

    /// Tells the worker that `name` (a checkpoint, e.g. `job.model_key`, or a LoRA) is loaded
    /// now: a worker that routes by model is given jobs that need it first, and counts a
    /// load in the profile it advertises. A name a claim cannot carry raises ValueError.
    fn loaded(&self, name: &str) -> PyResult<()> {
        if !gpuq_worker_sdk::valid_model_name(name) {
            return Err(PyValueError::new_err(format!(
                "{name:?} is not a model name: 1 to 128 characters without commas, spaces or *"
            )));
        }
        self.inner.loaded(name);
        Ok(())
    }

    /// Tells the worker that `name` is no longer loaded.
    fn evicted(&self, name: &str) {
        self.inner.evicted(name);
    }

    /// Reports progress (`fraction` in 0..1) to the job's event stream. Never blocks: sent in
    /// the background, at most once per progress interval (1.0 always goes), not retried.
    #[pyo3(signature = (fraction, message=""))]
    fn progress(&self, fraction: f64, message: &str) {
        self.inner.progress(fraction, message);
    }

    /// Truthy once the job is cancelled (by its owner, a lost lease or shutdown);
    /// `.wait(timeout)` blocks for it and `await ctx.cancelled` waits in `async def`.
    #[getter]
    fn cancelled(&self) -> Cancellation {
        Cancellation {
            token: self.inner.cancellation_token(),
            runtime: self.runtime.clone(),
            done: self.done.clone(),
        }
    }

    /// `<user_id>/<job_id>/<index>.<ext>`: the key output `index` is stored under.
    fn output_key(&self, index: usize, ext: &str) -> String {
        self.inner.output_key(index, ext)
    }

    /// Uploads output `index` (`data`: the file's bytes) to the job's bucket and returns the
    /// path to put in its `Asset`. Storage trouble raises `RetryableError`.
    fn upload(
        &self,
        py: Python<'_>,
        index: usize,
        ext: &str,
        data: &[u8],
        content_type: &str,
    ) -> PyResult<String> {
        if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PyValueError::new_err(format!(
                "ext must be letters and digits, like \"png\" (got {ext:?})"
            )));
        }
        let bytes = data.to_vec();
        let (ctx, runtime) = (self.inner.clone(), self.runtime.clone());
        let ext = ext.to_owned();
        let content_type = content_type.to_owned();
        py.detach(move || runtime.block_on(ctx.upload(index, &ext, bytes, &content_type)))
            .map_err(job_error_to_py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Context(job_id={:?}, attempt={})",
            self.inner.job_id().to_string(),
            self.inner.attempt()
        )
    }
}

/// Whether the worker stopped caring about the job's result. `bool(c)` is the flag;
/// `c.wait(timeout)` blocks until it fires; `await c` waits in a coroutine.
#[pyclass(frozen, module = "gpuq_worker")]
pub(crate) struct Cancellation {
    token: CancellationToken,
    runtime: Handle,
    done: CancellationToken,
}

#[pymethods]
impl Cancellation {
    fn __bool__(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Blocks (without the GIL) until the job is cancelled, its handler returned, or
    /// `timeout` seconds pass; returns whether it was cancelled.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let limit = match timeout {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout {t} is not a number of seconds"
                )))
            }
        };
        let (token, done, runtime) = (self.token.clone(), self.done.clone(), self.runtime.clone());
        Ok(py.detach(move || {
            runtime.block_on(async {
                let either = async {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = done.cancelled() => {}
                    }
                };
                match limit {
                    None => either.await,
                    Some(limit) => {
                        let _ = tokio::time::timeout(limit, either).await;
                    }
                }
            });
            token.is_cancelled()
        }))
    }

    /// Calls `callback()` when the job is cancelled, unless its handler returned first.
    /// Used by `await`. The call takes the GIL on a blocking thread, never on one of the
    /// runtime's workers (those must not wait for a handler holding it).
    fn _on_cancel(&self, callback: Py<PyAny>) {
        let (token, done) = (self.token.clone(), self.done.clone());
        self.runtime.spawn(async move {
            tokio::select! {
                // A cancellation and the end of the wait often come together: the
                // cancellation wins.
                biased;
                _ = token.cancelled() => {}
                _ = done.cancelled() => return,
            }
            let _ = tokio::task::spawn_blocking(move || {
                // None: the interpreter is shutting down; nobody awaits any more.
                Python::try_attach(|py| {
                    if let Err(e) = callback.call0(py) {
                        tracing::debug!(error = %e, "cancellation callback failed");
                    }
                })
            })
            .await;
        });
    }

    fn __await__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("gpuq_worker._aio")?
            .getattr("wait_cancelled")?
            .call1((slf,))?
            .call_method0("__await__")
    }

    fn __repr__(&self) -> String {
        format!("Cancellation(cancelled={})", self.token.is_cancelled())
    }
}
