//! How a job reaches the Python handler: on a blocking thread of the worker's runtime, which
//! takes the GIL only for the call. The lease keeper, the reports and the claim loop run
//! elsewhere and never wait for the GIL, so a handler that holds it keeps its job.

use std::sync::Arc;
use std::time::Duration;

use gpuq_worker_sdk::{CancellationToken, Handler, JobContext, JobEnvelope, JobError};
use pyo3::prelude::*;
use tokio::sync::Semaphore;

use crate::context::Context;
use crate::errors::job_error;
use crate::job::Job;
use crate::output::Output;

/// A Python callable `(job, ctx) -> Output`; `async def` handlers arrive wrapped by
/// `gpuq_worker._aio.adapt`, which runs them on an event loop of their own.
pub(crate) struct PyHandler {
    pub func: Arc<Py<PyAny>>,
    pub cancel_grace: Duration,
    /// A permit per call in Python. The SDK stops waiting for a handler that outlives its
    /// cancel grace, and frees its slot for the next job; the Python call cannot be stopped
    /// from outside, so the next job's call waits for this permit instead of running beside
    /// it on the same GPU.
    pub slots: Arc<Semaphore>,
}

impl PyHandler {
    /// Upper bound of `concurrency`, so `run` can wait for every permit at once.
    pub const MAX_SLOTS: usize = 4096;

    /// The permits for a worker of `concurrency` slots.
    pub fn slots(concurrency: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(concurrency.clamp(1, Self::MAX_SLOTS)))
    }
}

impl Handler for PyHandler {
    async fn handle(
        &self,
        job: JobEnvelope,
        ctx: JobContext,
    ) -> Result<gpuq_worker_sdk::Output, JobError> {
        let func = Arc::clone(&self.func);
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| JobError::retryable("the worker is stopping"))?;
        let done = CancellationToken::new();
        // Dropping this future cannot stop the Python call: the worker learns from the guard
        // whether it really ended (a handler stuck past its run limit, ADR 0018).
        let working = ctx.hold_work();
        let context = Context::new(ctx, self.cancel_grace, done.clone());
        tokio::task::spawn_blocking(move || {
            let result = Python::attach(|py| call(py, &func, job, context));
            // Ends the waits `Cancellation` started for this job.
            done.cancel();
            drop(permit);
            drop(working);
            result
        })
        .await
        .unwrap_or_else(|e| {
            Err(JobError::retryable(format!(
                "the handler's thread ended: {e}"
            )))
        })
    }
}

fn call(
    py: Python<'_>,
    func: &Py<PyAny>,
    envelope: JobEnvelope,
    context: Context,
) -> Result<gpuq_worker_sdk::Output, JobError> {
    let job = Job::new(py, envelope).map_err(|e| job_error(py, e))?;
    let returned = func
        .call1(py, (job, context))
        .map_err(|e| job_error(py, e))?;
    let returned = returned.bind(py);
    match returned.cast::<Output>() {
        Ok(output) => Ok(output.get().to_sdk()),
        Err(_) => Err(JobError::permanent(format!(
            "the handler returned {}, not a gpuq_worker.Output",
            returned
                .get_type()
                .name()
                .map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string())
        ))),
    }
}
