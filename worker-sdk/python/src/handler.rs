//! How a job reaches the Python handler: on a blocking thread of the worker's runtime, which
//! takes the GIL only for the call. The lease keeper, the reports and the claim loop run
//! elsewhere and never wait for the GIL, so a handler that holds it keeps its job.

use std::sync::Arc;
use std::time::Duration;

use gpuq_worker_sdk::{CancellationToken, Handler, JobContext, JobEnvelope, JobError};
use pyo3::prelude::*;

use crate::context::Context;
use crate::errors::job_error;
use crate::job::Job;
use crate::output::Output;

/// A Python callable `(job, ctx) -> Output`; `async def` handlers arrive wrapped by
/// `gpuq_worker._aio.adapt`, which runs them on an event loop of their own.
pub(crate) struct PyHandler {
    pub func: Arc<Py<PyAny>>,
    pub cancel_grace: Duration,
}

impl Handler for PyHandler {
    async fn handle(
        &self,
        job: JobEnvelope,
        ctx: JobContext,
    ) -> Result<gpuq_worker_sdk::Output, JobError> {
        let func = Arc::clone(&self.func);
        let done = CancellationToken::new();
        // Ends `Cancellation` waits when the handler returns, or when the SDK stops waiting.
        let _done = done.clone().drop_guard();
        let context = Context::new(ctx, self.cancel_grace, done);
        tokio::task::spawn_blocking(move || Python::attach(|py| call(py, &func, job, context)))
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
