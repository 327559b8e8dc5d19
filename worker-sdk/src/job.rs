//! One job, from claim to ack: report `processing`, run the handler on its own task, watch
//! the lease, report the result, and only then ack (or fail, or release) in the queue, by
//! this delivery's fence: a later claim of the same job is never touched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use gpuq_queue::{Acker, ClaimedJob, ConsumerName, Failure, Fence, Queue, QueueError};
use gpuq_schemas::callback::CallbackError;
use gpuq_schemas::{CallbackPayload, CallbackStatus, FailureCode, JobEnvelope, JobId, JobType};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::callback::ReportError;
use crate::connect::RedisBackoff;
use crate::context::{ContextParts, JobContext};
use crate::error::chain;
use crate::handler::ErasedHandler;
use crate::lease::{LeaseHandle, LeaseState, Leases};
use crate::models::WarmModels;
use crate::{JobError, Output, Storage};

/// What every job task needs.
pub(crate) struct Shared {
    pub handler: Arc<dyn ErasedHandler>,
    pub reporter: crate::callback::Reporter,
    pub gate: crate::gate::Gate,
    pub storage: Option<Arc<dyn Storage>>,
    pub consumer: ConsumerName,
    pub gpu_name: Option<String>,
    pub progress_every: Duration,
    /// How long a job runs before `processing` is reported (0: at once).
    pub processing_after: Duration,
    pub cancel_grace: Duration,
    /// Per-image run limits that replace the catalog's.
    pub run_limits: HashMap<JobType, Duration>,
    pub exit_if_stuck: bool,
    pub redis_backoff: RedisBackoff,
    /// The models loaded, as the handlers said ([`JobContext::loaded`]).
    pub warm: WarmModels,
}

/// The exit status of a worker that stops itself because a handler would not end
/// (`EX_SOFTWARE`).
const EXIT_STUCK: i32 = 70;

/// Retries of a queue operation (ack, fail, release) before leaving the job to the reaper.
const REDIS_OP_RETRIES: usize = 8;
/// Retries of the `processing` report; it is informational, the job goes on without it.
const PROCESSING_RETRIES: usize = 3;

/// What to do in the queue once the result is reported.
enum Finish {
    Ack,
    Fail(Failure),
}

/// Runs `claimed` to its end. `hard_stop` fires when the shutdown deadline passed: the
/// job is then handed back to the queue.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    queue: Queue,
    acks: Acker,
    leases: Leases,
    claimed: ClaimedJob,
    hard_stop: CancellationToken,
) {
    let span = tracing::info_span!("job", job_id = %claimed.id, attempt = claimed.attempt);
    let job = JobRun {
        lease: leases.hold(claimed.id),
        shared,
        queue,
        acks,
        hard_stop,
        id: claimed.id,
        fence: claimed.fence(),
    };
    job.run(claimed).instrument(span).await
}

struct JobRun {
    shared: Arc<Shared>,
    queue: Queue,
    /// This worker's acks, sent together when jobs end together.
    acks: Acker,
    lease: LeaseHandle,
    hard_stop: CancellationToken,
    id: JobId,
    fence: Fence,
}

impl JobRun {
    async fn run(mut self, claimed: ClaimedJob) {
        let env = match claimed.envelope() {
            Ok(env) => env,
            Err(e) => {
                tracing::error!(error = %chain(&e), "envelope does not decode; failing permanently");
                let err = JobError::permanent(format!("undecodable job envelope: {e}"));
                let payload = self.failed(&err);
                return self.report(payload, fail_with(&err)).await;
            }
        };
        tracing::info!(job_type = %env.job_type, "job started");
        // `processing` travels while the handler already runs (pickup latency is the time
        // to the handler, not to the callback service); the final report waits for it, so
        // the callback service always sees `processing` first. With `processing_after`, it
        // waits that long first, and a result that is in by then goes alone (`skip`).
        // A refusal that says this worker is misconfigured stops the handler at once: its
        // result could not be reported either.
        let processing = self.payload(CallbackStatus::Processing);
        let shared = Arc::clone(&self.shared);
        let skip = CancellationToken::new();
        let skipped = skip.clone();
        let mut processing = tokio::spawn(
            async move {
                if !shared.processing_after.is_zero() {
                    tokio::select! {
                        // A result that is in wins over the timer that ran out with it.
                        biased;
                        _ = skipped.cancelled() => return false,
                        _ = tokio::time::sleep(shared.processing_after) => {}
                    }
                }
                match shared.reporter.send_with(&processing, PROCESSING_RETRIES).await {
                    Ok(()) => false,
                    Err(e) if e.is_misconfiguration() => {
                        shared.gate.close(&e, shared.reporter.url());
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "processing report not accepted; running anyway");
                        false
                    }
                }
            }
            .in_current_span(),
        );
        let mut processing_done = false;
        let cancel = CancellationToken::new();
        let ctx = self.context(&env, &cancel);
        let handler = Arc::clone(&self.shared.handler);
        let limit = self.run_limit(&env);
        let overrun = tokio::time::sleep(limit);
        tokio::pin!(overrun);
        let mut handle = tokio::spawn(handler.call(env, ctx.clone()).in_current_span());
        let mut timeout = None;
        let result = loop {
            tokio::select! {
                // A result that is in wins over the timer that fired in the same poll.
                biased;
                res = &mut handle => break res,
                _ = &mut overrun => {
                    if handle.is_finished() {
                        break (&mut handle).await;
                    }
                    cancel.cancel();
                    let (err, stuck) = self.stop_overrun(&mut handle, &ctx, limit).await;
                    timeout = Some(stuck);
                    break Ok(Err(err));
                }
                refused = &mut processing, if !processing_done => {
                    processing_done = true;
                    if refused.unwrap_or(false) {
                        cancel.cancel();
                        handle.abort();
                        return self.release().await;
                    }
                }
                state = self.lease.changed() => {
                    cancel.cancel();
                    processing.abort();
                    return self.stop_early(state, handle).await;
                }
                _ = self.hard_stop.cancelled() => {
                    cancel.cancel();
                    handle.abort();
                    processing.abort();
                    return self.release().await;
                }
            }
        };
        ctx.finish();
        // Not sent yet (still within `processing_after`): the result goes alone.
        skip.cancel();
        if !processing_done && processing.await.unwrap_or(false) {
            return self.release().await;
        }
        let code = timeout.map(|_| FailureCode::ExecutionTimeout);
        let (payload, finish) = match result {
            Ok(Ok(output)) => (self.completed(&output), Finish::Ack),
            Ok(Err(err)) => (self.failed_with(&err, code), fail_with(&err)),
            Err(e) => {
                tracing::error!(error = %e, "handler panicked");
                let err = JobError::retryable(format!("handler panicked: {e}"));
                (self.failed(&err), fail_with(&err))
            }
        };
        let exit = timeout == Some(true) && self.shared.exit_if_stuck;
        self.report(payload, finish).await;
        if exit {
            tracing::error!("a handler would not stop and may still hold the GPU; exiting so that a clean worker replaces this one");
            std::process::exit(EXIT_STUCK);
        }
    }

    /// This attempt's run limit: the worker's or the catalog's, per image asked for.
    fn run_limit(&self, env: &JobEnvelope) -> Duration {
        let per_image = self
            .shared
            .run_limits
            .get(&env.job_type)
            .copied()
            .unwrap_or_else(|| {
                Duration::from_secs(u64::from(env.job_type.spec().run_limit_seconds))
            });
        per_image.saturating_mul(env.config.num_images.max(1))
    }

    /// The handler ran past `limit` and its context was cancelled (the soft signal): it
    /// gets the grace to return by itself, then its future is dropped (the hard stop). The
    /// attempt fails either way. Also returns whether the handler was stuck: still running
    /// a grace after it was dropped (blocking or native code ignores an abort).
    async fn stop_overrun(
        &self,
        handle: &mut JoinHandle<Result<Output, JobError>>,
        ctx: &JobContext,
        limit: Duration,
    ) -> (JobError, bool) {
        let grace = self.shared.cancel_grace;
        let signalled = Instant::now();
        let returned = tokio::time::timeout(grace, &mut *handle).await.is_ok();
        let mut stuck = false;
        if !returned {
            handle.abort();
            // Ended: the task, and any work it handed where dropping it cannot reach.
            let ended = async {
                let _ = (&mut *handle).await;
                ctx.work_ended().await;
            };
            stuck = tokio::time::timeout(grace, ended).await.is_err();
        }
        let stop_ms = signalled.elapsed().as_millis() as u64;
        tracing::warn!(
            limit_ms = limit.as_millis() as u64,
            stop_ms,
            dropped = !returned,
            stuck,
            "execution timeout: the handler ran past its run limit"
        );
        let how = if returned { "returned" } else { "was dropped" };
        let err = JobError::retryable(format!(
            "execution_timeout: the handler ran past its {:.1} s run limit and {how} {:.1} s after it was told to stop",
            limit.as_secs_f64(),
            stop_ms as f64 / 1000.0
        ));
        (err, stuck)
    }

    /// The lease changed under a running handler.
    async fn stop_early(self, state: LeaseState, mut handle: JoinHandle<Result<Output, JobError>>) {
        if state != LeaseState::Cancelled {
            handle.abort();
            tracing::warn!("lease lost; abandoning the job without reporting");
            return;
        }
        tracing::info!("job cancelled; stopping the handler");
        let signalled = Instant::now();
        let returned = tokio::select! {
            _ = &mut handle => true,
            _ = tokio::time::sleep(self.shared.cancel_grace) => false,
        };
        if !returned {
            handle.abort();
        }
        tracing::info!(
            stop_ms = signalled.elapsed().as_millis() as u64,
            dropped = !returned,
            "handler stopped after the cancel"
        );
        // The dispatcher recorded the cancel; removing the job is all that is left.
        let (acks, consumer) = (&self.acks, &self.shared.consumer);
        let fence = &self.fence;
        self.redis_op("ack", || acks.ack_claim(self.id, consumer, fence))
            .await;
    }

    /// Sends the final report, then acks or fails the job in the queue.
    async fn report(mut self, payload: CallbackPayload, finish: Finish) {
        let sent = tokio::select! {
            res = self.shared.reporter.send(&payload) => res,
            _ = self.lease.lost() => {
                tracing::warn!("lease lost while reporting; abandoning the job");
                return;
            }
            _ = self.hard_stop.cancelled() => return self.release().await,
        };
        let finish = match sent {
            Ok(()) => finish,
            Err(e) if e.is_misconfiguration() => {
                // Not the job's fault: another worker (or this one, once the callback URL
                // or secret is right) runs it again, and the attempt is not counted.
                self.shared.gate.close(&e, self.shared.reporter.url());
                return self.release().await;
            }
            Err(ReportError::Rejected { status, body }) => {
                tracing::error!(
                    status, body = %body, report = ?payload.status,
                    "CALLBACK SERVICE REFUSED THE RESULT; dead-lettering the job"
                );
                let message = format!("callback service refused the result ({status}): {body}");
                if payload.status == CallbackStatus::Completed {
                    // Record the refusal as a permanent failure, so the job's row does not
                    // stay `processing` while Redis holds it dead.
                    let failed = self.failed(&JobError::permanent(message.clone()));
                    if let Err(e) = self.shared.reporter.send(&failed).await {
                        tracing::error!(error = %e, "the failure report was refused too");
                    }
                }
                Finish::Fail(Failure {
                    retryable: false,
                    message,
                })
            }
            Err(e @ ReportError::Unreachable(_)) => {
                // Failing the attempt would dead-letter a job on its last attempt with
                // nothing recorded; the result is simply undelivered, so the job runs again.
                tracing::error!(error = %e, "result could not be reported within the retry budget; handing the job back");
                return self.release().await;
            }
        };
        let (queue, consumer) = (&self.queue, &self.shared.consumer);
        match finish {
            Finish::Ack => {
                let out = self
                    .redis_op("ack", || {
                        self.acks.ack_claim(self.id, consumer, &self.fence)
                    })
                    .await;
                tracing::info!(outcome = ?out, "job completed");
            }
            Finish::Fail(f) => {
                let out = self
                    .redis_op("fail", || {
                        queue.fail_fenced(self.id, consumer.as_str(), &self.fence, &f)
                    })
                    .await;
                tracing::info!(outcome = ?out, retryable = f.retryable, message = %f.message, "job failed");
            }
        }
    }

    /// Hands the job back to the queue at once, attempt not counted (shutdown deadline
    /// passed, or the result cannot be reported).
    async fn release(self) {
        let (queue, consumer) = (&self.queue, &self.shared.consumer);
        let out = self
            .redis_op("release", || {
                queue.release_claim(self.id, consumer, &self.fence)
            })
            .await;
        tracing::info!(released = ?out, "job handed back to the queue");
    }

    /// Runs a queue operation with a few retries; `None` if Redis stayed away (the lease
    /// then expires and the reaper redelivers the job).
    async fn redis_op<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let res = op
            .retry(self.shared.redis_backoff.bounded(REDIS_OP_RETRIES))
            .notify(|e, wait| {
                tracing::warn!(op = what, error = %chain(e), retry_in_ms = wait.as_millis() as u64, "queue operation failed; retrying");
            })
            .await;
        match res {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(op = what, error = %chain(&e), "queue operation failed; leaving the job to lease expiry");
                None
            }
        }
    }

    fn context(&self, env: &JobEnvelope, cancel: &CancellationToken) -> JobContext {
        JobContext::new(ContextParts {
            job_id: self.id,
            fence: self.fence.clone(),
            user_id: env.user_id,
            bucket: env.bucket.clone(),
            worker_id: self.shared.consumer.to_string(),
            cancel: cancel.clone(),
            storage: self.shared.storage.clone(),
            reporter: self.shared.reporter.clone(),
            progress_every: self.shared.progress_every,
            warm: self.shared.warm.clone(),
        })
    }

    fn payload(&self, status: CallbackStatus) -> CallbackPayload {
        CallbackPayload {
            job_id: self.id,
            status,
            worker_id: Some(self.shared.consumer.to_string()),
            attempt: Some(self.fence.attempt),
            fence: Some(self.fence.token.clone()),
            outputs: Vec::new(),
            error: None,
            enhanced_prompt: None,
            progress: None,
            gpu: self.shared.gpu_name.clone(),
        }
    }

    fn completed(&self, output: &Output) -> CallbackPayload {
        CallbackPayload {
            outputs: output.to_callback_assets(),
            enhanced_prompt: output.enhanced_prompt.clone(),
            ..self.payload(CallbackStatus::Completed)
        }
    }

    fn failed(&self, err: &JobError) -> CallbackPayload {
        self.failed_with(err, None)
    }

    fn failed_with(&self, err: &JobError, code: Option<FailureCode>) -> CallbackPayload {
        CallbackPayload {
            error: Some(CallbackError {
                message: err.message().to_owned(),
                retryable: err.is_retryable(),
                code,
            }),
            ..self.payload(CallbackStatus::Failed)
        }
    }
}

fn fail_with(err: &JobError) -> Finish {
    Finish::Fail(Failure {
        retryable: err.is_retryable(),
        message: err.message().to_owned(),
    })
}
