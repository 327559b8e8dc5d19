//! gpuq-worker-py: the Rust worker SDK as the Python module `gpuq_worker._native`.
//!
//! Claiming, leases, fencing, signed callbacks with retries, uploads and graceful shutdown
//! are the SDK's own code; this crate only carries jobs and results across the language
//! boundary. The one rule it keeps everywhere: nothing the worker needs to keep a job
//! (lease renewal, reports, the claim loop) ever waits for the GIL. The SDK renews leases
//! from a Rust thread of its own and runs everything else on a tokio runtime that holds no
//! Python objects except the handler, which is only called on a blocking thread that takes
//! the GIL for the call. A handler that holds the GIL for minutes keeps its job.
//!
//! # Layout
//!
//! - [`worker`]: `Worker` — settings (keywords or the environment), `run`, `stop`.
//! - [`handler`]: how a job reaches the Python handler and how its return value or
//!   exception becomes the SDK's `Output` or `JobError`.
//! - [`job`]: `Job` and `JobConfig`, the typed job a handler receives.
//! - [`context`]: `Context` — progress, cancellation (flag, wait, awaitable), uploads,
//!   attempt and fence.
//! - [`output`]: `Output` and `Asset`, what a handler returns.
//! - [`errors`]: the exceptions (`RetryableError`, `PermanentError`, `WorkerError`,
//!   `ConfigError`).
//!
//! The Python half (`python/gpuq_worker/`) re-exports these, runs `async def` handlers
//! and carries the type stubs.

mod context;
mod errors;
mod handler;
mod job;
mod output;
mod worker;

use pyo3::prelude::*;

/// The native module; `gpuq_worker/__init__.py` is its public face.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<worker::Worker>()?;
    m.add_class::<job::Job>()?;
    m.add_class::<job::JobConfig>()?;
    m.add_class::<context::Context>()?;
    m.add_class::<context::Cancellation>()?;
    m.add_class::<output::Output>()?;
    m.add_class::<output::Asset>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
