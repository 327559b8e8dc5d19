//! Where an accepted job goes (its own queue, or its provider's: ADR 0017) and putting it
//! there once its row is written.

use gpuq_queue::{EnqueueOptions, EnqueueOutcome, Lane, WorkAhead};
use gpuq_schemas::{JobEnvelope, JobStatus, Tenant};

use super::{reject_metric, EnqueueAnswer};
use crate::jobs_db::{self, JobRecord};
use crate::overflow::{self, OverflowRule, Routed};
use crate::state::AppState;
use crate::{service_times, ApiError};

/// Where a job's type may send it instead of its own queue, decided before its row exists.
pub(super) struct Route<'a> {
    rule: Option<&'a OverflowRule>,
    /// Sent to the provider at once: no live worker serves its own queue.
    fallback: bool,
}

impl<'a> Route<'a> {
    /// The job's route; a job that falls back has its envelope (so its row) name the
    /// provider's queue from the start.
    pub(super) async fn of(state: &'a AppState, env: &mut JobEnvelope) -> Self {
        let rule = overflow::active_rule(state, env.job_type).await;
        let fallback = overflow::fallback_now(state, env.job_type).await;
        if let Some(rule) = rule.filter(|_| fallback) {
            env.queue.clone_from(&rule.queue);
        }
        Self { rule, fallback }
    }

    /// The bound past which its own queue hands it to the provider, seconds.
    fn start_over(&self) -> Option<u32> {
        self.rule
            .filter(|_| !self.fallback)
            .and_then(|r| r.start_over_secs)
    }
}

/// Where a job goes and what it costs: its lane, its charge to its tenant's fair share, its
/// start deadline, and the run times and capacity its ETA is made of.
pub(super) struct Plan {
    opts: EnqueueOptions,
    /// A job its queue refuses as too late goes to the provider's queue (its rule's bound,
    /// or its deadline's when tighter: the provider's queue applies the deadline again).
    overflows: bool,
    /// Expected run time of a job of its queue (the jobs ahead), seconds.
    per_job_ahead: f64,
    /// Expected run time of the job itself, seconds.
    own: f64,
    /// Jobs the queue's live workers run at once.
    slots: u64,
}

impl Plan {
    /// Run times are measured per type: they give the job's cost to its tenant's fair share
    /// and, with the live workers' slots, its ETA and how many jobs may be ahead of it for
    /// it to start by its deadline (or its overflow bound). Every read is cached.
    pub(super) async fn of(
        state: &AppState,
        env: &JobEnvelope,
        tenant: &Tenant,
        start_within: Option<u32>,
        route: &Route<'_>,
    ) -> Result<Self, ApiError> {
        let (per_job_ahead, own) = state.service_times.estimate(&state.db, env.job_type).await;
        let slots = state.live_slots(state.queue(&env.queue)?).await;
        let bound = |s: u32| service_times::max_ahead(s.into(), slots, per_job_ahead);
        let deadline_ahead = start_within.and_then(bound);
        // No live slot: nothing may be ahead of it (an empty queue keeps it, for a fleet
        // scaling up from zero; the reconciler moves it if it then waits too long).
        let overflow_ahead = route.start_over().map(|s| bound(s).unwrap_or(0));
        let max_ahead = match (overflow_ahead, deadline_ahead) {
            (Some(o), Some(d)) => Some(o.min(d)),
            (o, d) => o.or(d),
        };
        let opts = EnqueueOptions {
            lane: Lane::Normal,
            cost_ms: service_times::cost_ms(env.job_type, own, env.config.num_images),
            weight: state.weights.weight(&state.db, tenant).await,
            start_within: start_within.map(|s| std::time::Duration::from_secs(s.into())),
            max_ahead,
            ..EnqueueOptions::default()
        };
        Ok(Self {
            opts,
            overflows: overflow_ahead.is_some(),
            per_job_ahead,
            own,
            slots,
        })
    }

    /// Seconds until the job ends `own` seconds after it starts, from the work ahead.
    async fn eta(&self, state: &AppState, work: &WorkAhead, own: f64) -> u64 {
        let gpu_ms = state.weights.gpu_ms(&state.db, work).await;
        service_times::eta_from_work(gpu_ms, work.high_jobs, self.slots, self.per_job_ahead, own)
    }
}

/// What came of [`push`].
enum Pushed {
    Queued(Box<EnqueueAnswer>),
    /// Its own queue would start it later than its overflow rule allows; nothing written.
    Overflow,
}

/// Puts the recorded job on the queue its envelope names, or on its provider's when its own
/// queue would start it too late. A job that fell back is already the provider's.
pub(super) async fn place(
    state: &AppState,
    env: JobEnvelope,
    record: JobRecord,
    plan: Plan,
    route: Route<'_>,
) -> Result<EnqueueAnswer, ApiError> {
    let tenant = env.tenant.clone().unwrap_or_else(|| env.user_id.into());
    let start_within = plan.opts.start_within.map(|d| d.as_secs() as u32);
    let (env, record, plan, why) = match (route.rule, route.fallback) {
        (Some(_), true) => {
            let record = mark_fallback(state, record).await;
            (env, record, plan, Routed::NoLiveWorker)
        }
        _ => match push(state, &env, record.clone(), plan).await? {
            Pushed::Queued(answer) => return Ok(*answer),
            Pushed::Overflow => {
                let rule = route
                    .rule
                    .ok_or_else(|| internal(&env, "no overflow rule"))?;
                let env = reroute_or_fail(state, &env, rule).await?;
                let record = JobRecord {
                    queue: env.queue.clone(),
                    routed: Some(Routed::StartOverLimit.as_str().into()),
                    ..record
                };
                let unrouted = Route {
                    rule: None,
                    fallback: false,
                };
                let plan = Plan::of(state, &env, &tenant, start_within, &unrouted).await?;
                (env, record, plan, Routed::StartOverLimit)
            }
        },
    };
    match push(state, &env, record, plan).await? {
        Pushed::Queued(answer) => {
            overflow::count(state, &env, why);
            Ok(*answer)
        }
        Pushed::Overflow => Err(internal(&env, "a provider's queue overflowed")),
    }
}

fn internal(env: &JobEnvelope, what: &str) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{what} for job {}", env.job_id))
}

/// Records why a job that fell back is in its provider's queue (its row already names it).
/// Only what `GET` shows depends on it: a failure is logged, not the request's.
async fn mark_fallback(state: &AppState, record: JobRecord) -> JobRecord {
    let why = Routed::NoLiveWorker.as_str();
    let marked = sqlx::query("UPDATE jobs SET routed = $2 WHERE id = $1")
        .bind(record.id)
        .bind(why)
        .execute(&state.db)
        .await;
    if let Err(e) = marked {
        tracing::warn!(error = %e, "could not record why the job went to its provider");
    }
    JobRecord {
        routed: Some(why.into()),
        ..record
    }
}

/// Points the row at the provider's queue; a row that cannot be is failed, never left
/// queued with nothing in Redis behind it (the reconciler would run it after a 5xx).
async fn reroute_or_fail(
    state: &AppState,
    env: &JobEnvelope,
    rule: &OverflowRule,
) -> Result<JobEnvelope, ApiError> {
    let failed = match overflow::reroute(state, env, rule, Routed::StartOverLimit).await {
        Ok(Some(routed)) => return Ok(routed),
        Ok(None) => internal(env, "the row left its queue before its enqueue"),
        Err(e) => e,
    };
    let message = Some("could not be queued at its provider");
    if let Err(e) =
        jobs_db::finish(&state.db, env.job_id.as_uuid(), JobStatus::Failed, message).await
    {
        tracing::error!(error = %e, "a job neither queued nor failed; the reconciler restores it");
    }
    Err(failed)
}

/// Puts the recorded job on the queue its envelope names. Never leaves a `queued` row with
/// nothing behind it, except to overflow: a full queue deletes the row (the job never
/// existed: 429), a Redis failure marks it failed (503).
async fn push(
    state: &AppState,
    env: &JobEnvelope,
    record: JobRecord,
    plan: Plan,
) -> Result<Pushed, ApiError> {
    let queue = state.queue(&env.queue)?;
    let id = env.job_id.as_uuid();
    let outcome = match queue.enqueue(env, &plan.opts).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = ?e, "enqueue failed; marking the job failed");
            jobs_db::finish(
                &state.db,
                id,
                JobStatus::Failed,
                Some("queue unavailable when the job was submitted"),
            )
            .await?;
            return Err(ApiError::Unavailable(
                "queue unavailable; the job was not queued".into(),
            ));
        }
    };
    let (position, waiting, eta) = match outcome {
        EnqueueOutcome::Enqueued {
            position,
            waiting,
            work,
        } => (position, waiting, plan.eta(state, &work, plan.own).await),
        EnqueueOutcome::WouldStartLate { .. } if plan.overflows => {
            return Ok(Pushed::Overflow);
        }
        EnqueueOutcome::WouldStartLate { position, work } => {
            jobs_db::delete(&state.db, id).await?;
            reject_metric(state, "deadline_unreachable");
            let wait = plan.eta(state, &work, 0.0).await;
            let within = plan.opts.start_within.map_or(0, |d| d.as_secs());
            return Err(ApiError::TooManyRequests {
                code: "deadline_unreachable",
                message: format!(
                    "{position} jobs would start before this one: predicted wait {wait} s, \
                     over its startWithinSeconds of {within}"
                ),
                retry_after: wait.saturating_sub(within).max(1),
            });
        }
        EnqueueOutcome::QueueFull { waiting } => {
            jobs_db::delete(&state.db, id).await?;
            reject_metric(state, "queue_full");
            return Err(ApiError::TooManyRequests {
                code: "queue_full",
                message: format!(
                    "{} holds {waiting} waiting jobs, its maximum; try again later",
                    env.queue
                ),
                retry_after: 30,
            });
        }
        EnqueueOutcome::AlreadyExists => {
            // The reconciler restored the committed row's job before this push (possible
            // with a grace period of 0): it waits all the same.
            let waiting = queue.stats().await.map(|s| s.waiting()).unwrap_or(1);
            let ahead = waiting.saturating_sub(1);
            let eta = service_times::eta_seconds(ahead, plan.slots, plan.per_job_ahead, plan.own);
            (ahead, waiting, eta)
        }
        EnqueueOutcome::Duplicate { existing } => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "fresh job id reported as a duplicate of {existing}"
            )))
        }
    };
    Ok(Pushed::Queued(Box::new(EnqueueAnswer::queued(
        env, record, waiting, position, eta,
    ))))
}
