//! The exceptions of the package, and how a handler's exception becomes a [`JobError`].
//!
//! - `JobFailed`: base of the two a handler raises on purpose.
//!   - `RetryableError`: another attempt may succeed; retried with backoff.
//!   - `PermanentError`: no attempt will; dead-lettered at once.
//! - `ConfigError` (a `ValueError`): a setting is missing or unusable.
//! - `WorkerError`: the worker had to stop (the callback service refused its probe).

use gpuq_worker_sdk::JobError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(
    gpuq_worker,
    JobFailed,
    PyException,
    "A handler's job cannot produce its outputs."
);
create_exception!(
    gpuq_worker,
    RetryableError,
    JobFailed,
    "Another attempt may succeed (out of GPU memory, a flaky download): retried with backoff until the type's attempts are used up."
);
create_exception!(
    gpuq_worker,
    PermanentError,
    JobFailed,
    "No attempt will succeed (an invalid prompt, a missing reference image): dead-lettered at once."
);
create_exception!(
    gpuq_worker,
    ConfigError,
    PyValueError,
    "A worker setting is missing or unusable; the message names it."
);
create_exception!(
    gpuq_worker,
    WorkerError,
    PyException,
    "The worker had to stop, e.g. the callback service refused its signed start-up probe."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("JobFailed", py.get_type::<JobFailed>())?;
    m.add("RetryableError", py.get_type::<RetryableError>())?;
    m.add("PermanentError", py.get_type::<PermanentError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("WorkerError", py.get_type::<WorkerError>())?;
    Ok(())
}

/// What the queue does with a handler's exception. `PermanentError` dead-letters; anything
/// else is retried, a `SystemExit` or `KeyboardInterrupt` raised in a handler too (the
/// worker goes on; stop it with SIGTERM or `stop()`): an unexpected exception is most often passing on a GPU (CUDA out of
/// memory is a `RuntimeError` in torch), and the type's attempt limit bounds the cost of
/// one that is not. The traceback goes to stderr, where Python puts it.
pub(crate) fn job_error(py: Python<'_>, err: PyErr) -> JobError {
    let message = err.value(py).str().map_or_else(
        |_| "(unprintable exception)".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    if err.is_instance_of::<PermanentError>(py) {
        JobError::permanent(message)
    } else if err.is_instance_of::<RetryableError>(py) {
        JobError::retryable(message)
    } else {
        let kind = err
            .get_type(py)
            .name()
            .map_or_else(|_| "Exception".to_owned(), |n| n.to_string());
        // `display`, not `print`: printing a SystemExit would exit the process mid-job.
        err.display(py);
        JobError::retryable(format!("{kind}: {message}"))
    }
}

/// A [`JobError`] from the SDK (a failed upload) as the exception a handler would raise.
pub(crate) fn job_error_to_py(e: JobError) -> PyErr {
    match e {
        JobError::Retryable(m) => RetryableError::new_err(m),
        JobError::Permanent(m) => PermanentError::new_err(m),
    }
}
