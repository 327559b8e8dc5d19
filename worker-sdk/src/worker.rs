//! [`Worker`]: the claim loop and graceful shutdown.
//!
//! The loop claims up to as many jobs as there are free slots with the queue's blocking
//! [`Claimer`] (no polling: an idle worker sleeps on Redis and a new job wakes it), and
//! runs each on its own task ([`crate::job`]). On shutdown it stops claiming, lets running
//! jobs finish until the deadline, then has the rest handed back to the queue.

use std::sync::Arc;
use std::time::Duration;

use gpuq_queue::{Acker, ClaimedJob, Claimer, ConsumerName, Queue, QueueError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connect::{sleep_or_stop, QueueTarget};
use crate::error::chain;
use crate::job::{supervise, Shared};
use crate::lease::{LeaseKeeper, Leases};
use crate::models::{advertise, Advert, Routing};
use crate::{WorkerBuilder, WorkerError};

/// Retries of the start-up probe while the callback service does not answer.
const STARTUP_PROBE_RETRIES: usize = 3;
/// How many claim waits a quarantined worker lets pass before it asks again whether it was
/// released (10 s with the default wait).
const QUARANTINE_RECHECK: u32 = 5;

/// A configured worker; see [`Worker::builder`].
pub struct Worker {
    pub(crate) target: QueueTarget,
    pub(crate) concurrency: usize,
    pub(crate) heartbeat_every: Duration,
    pub(crate) shutdown_deadline: Duration,
    pub(crate) claim_wait: Duration,
    /// Claims route by model when set (ADR 0020).
    pub(crate) routing: Option<Routing>,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.target.name)
            .field("consumer", &self.shared.consumer)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A builder with the defaults.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }

    /// This process's unique consumer name (also sent as `workerId` in callbacks).
    pub fn consumer(&self) -> &ConsumerName {
        &self.shared.consumer
    }

    /// Readiness, for a host application's health endpoint: `false` while the callback
    /// service refuses this worker's reports (nothing is claimed then).
    pub fn readiness(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.gate.subscribe()
    }

    /// Checks the callback URL and secret before anything is claimed: a refusal that says
    /// either is wrong ends [`Self::run`] with [`WorkerError::CallbackRefused`]; a service
    /// that does not answer yet, or does not know probes (an older release: 400), is
    /// logged and the worker starts anyway.
    async fn probe_callback(&self, shutdown: &CancellationToken) -> Result<(), WorkerError> {
        let reporter = &self.shared.reporter;
        let probe = tokio::select! {
            res = reporter.probe(STARTUP_PROBE_RETRIES) => res,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match probe {
            Ok(()) => {
                tracing::info!(url = %reporter.url(), "the callback service accepts this worker's reports");
                Ok(())
            }
            Err(e) if e.is_misconfiguration() => {
                let crate::callback::ReportError::Rejected { status, body } = e else {
                    unreachable!("only a refusal is a misconfiguration")
                };
                Err(WorkerError::CallbackRefused {
                    url: reporter.url().to_string(),
                    status,
                    body,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %reporter.url(), "the callback service did not answer the start-up probe; starting anyway");
                Ok(())
            }
        }
    }

    /// Runs until `shutdown` fires and every job is finished or handed back. Never gives
    /// up on Redis: while it is unreachable the worker logs and retries with backoff.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        self.probe_callback(&shutdown).await?;
        let keeper = LeaseKeeper::start(
            self.target.clone(),
            self.shared.consumer.clone(),
            self.heartbeat_every,
        )
        .map_err(WorkerError::LeaseKeeper)?;
        let hard_stop = CancellationToken::new();
        let deadline_task = tokio::spawn(arm_deadline(
            shutdown.clone(),
            hard_stop.clone(),
            self.shutdown_deadline,
        ));
        tracing::info!(consumer = %self.shared.consumer, queue = %self.target.name, "worker starting");
        if let Some(queue) = self.target.connect(&shutdown, "claimer").await {
            let mut jobs = JoinSet::new();
            let advert = Advert {
                consumer: &self.shared.consumer,
                warm: &self.shared.warm,
                routing: self.routing.as_ref(),
                gpu: self.shared.gpu_name.as_deref(),
                slots: u32::try_from(self.concurrency).unwrap_or(u32::MAX),
                every: self.heartbeat_every,
            };
            // Advertised until its last job ended (a draining worker still holds jobs).
            let serving = CancellationToken::new();
            tokio::join!(advertise(queue.clone(), advert, serving.clone()), async {
                let runs = Runs {
                    queue: &queue,
                    acks: queue.acker(),
                    leases: keeper.leases(),
                };
                self.claim_loop(&runs, &mut jobs, &shutdown, &hard_stop)
                    .await;
                tracing::info!(running = jobs.len(), deadline = ?self.shutdown_deadline, "shutting down");
                while let Some(res) = jobs.join_next().await {
                    log_join(res);
                }
                serving.cancel();
            });
        }
        deadline_task.abort();
        keeper.stop().await;
        tracing::info!("worker stopped");
        Ok(())
    }

    async fn claim_loop(
        &self,
        runs: &Runs<'_>,
        jobs: &mut JoinSet<()>,
        shutdown: &CancellationToken,
        hard_stop: &CancellationToken,
    ) {
        let mut claimer: Option<Claimer> = None;
        let mut delays = self.target.backoff.delays();
        loop {
            while let Some(res) = jobs.try_join_next() {
                log_join(res);
            }
            if shutdown.is_cancelled() {
                return;
            }
            if !self.shared.gate.is_open() {
                // Reports are refused: claim nothing until a probe is accepted.
                if self
                    .shared
                    .gate
                    .reopen(&self.shared.reporter, shutdown)
                    .await
                {
                    return;
                }
                continue;
            }
            let free = self.concurrency.saturating_sub(jobs.len());
            if free == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(res) = jobs.join_next() => log_join(res),
                }
                continue;
            }
            // The claim is never dropped half-way (a reply lost in flight would strand a
            // leased job until its lease expires); `claim_wait` bounds it instead.
            let route = self.routing.as_ref().map(|r| self.shared.warm.route(r));
            let res = match claimer.as_mut() {
                Some(c) => {
                    c.set_route(route);
                    c.claim(free, self.claim_wait).await
                }
                None => match runs.queue.claimer(self.shared.consumer.clone()).await {
                    // The queue counts live capacity by what consumers advertise (ETAs).
                    Ok(c) => {
                        let slots = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
                        let c = claimer.insert(c.with_slots(slots));
                        c.set_route(route);
                        c.claim(free, self.claim_wait).await
                    }
                    Err(e) => Err(e),
                },
            };
            match res {
                Ok(claimed) => {
                    delays = self.target.backoff.delays();
                    for job in claimed {
                        self.start(job, runs, jobs, shutdown, hard_stop).await;
                    }
                }
                Err(QueueError::Quarantined(reason)) => {
                    // Not an outage: an admin must look at this GPU (ADR 0019). Keep asking,
                    // slowly, so the release takes effect without a restart; the claim
                    // itself keeps this worker visible as alive.
                    let recheck = self.claim_wait * QUARANTINE_RECHECK;
                    tracing::error!(
                        reason, retry_in_ms = recheck.as_millis() as u64,
                        "THIS WORKER IS QUARANTINED: it gets no jobs until an admin releases it (POST /admin/workers/{{consumer}}/release)"
                    );
                    if sleep_or_stop(recheck, shutdown).await {
                        return;
                    }
                }
                Err(e) => {
                    let wait = delays.next().unwrap_or(self.target.backoff.max_delay);
                    tracing::warn!(error = %chain(&e), retry_in_ms = wait.as_millis() as u64, "claim failed; retrying");
                    if sleep_or_stop(wait, shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Starts a claimed job, or hands it straight back if shutdown began meanwhile.
    async fn start(
        &self,
        job: ClaimedJob,
        runs: &Runs<'_>,
        jobs: &mut JoinSet<()>,
        shutdown: &CancellationToken,
        hard_stop: &CancellationToken,
    ) {
        if shutdown.is_cancelled() {
            match runs.queue.release(job.id, &self.shared.consumer).await {
                Ok(_) => tracing::info!(job_id = %job.id, "claimed during shutdown; released"),
                Err(e) => {
                    tracing::warn!(job_id = %job.id, error = %chain(&e), "release failed; the lease will expire")
                }
            }
            return;
        }
        jobs.spawn(supervise(
            Arc::clone(&self.shared),
            runs.queue.clone(),
            runs.acks.clone(),
            runs.leases.clone(),
            job,
            hard_stop.clone(),
        ));
    }
}

/// What every job claimed on one Redis connection shares.
struct Runs<'a> {
    queue: &'a Queue,
    acks: Acker,
    leases: Leases,
}

/// Fires `hard_stop` once `shutdown` has been on for `deadline`.
async fn arm_deadline(
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    deadline: Duration,
) {
    shutdown.cancelled().await;
    tokio::time::sleep(deadline).await;
    tracing::warn!("shutdown deadline passed; handing running jobs back to the queue");
    hard_stop.cancel();
}

fn log_join(res: Result<(), tokio::task::JoinError>) {
    if let Err(e) = res {
        tracing::error!(error = %e, "job task ended abnormally");
    }
}
