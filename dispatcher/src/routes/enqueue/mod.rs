//! `POST /v1/jobs` (and `/functions/v1/queue-job`): validate, limit, record, enqueue.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{SubsecRound, Utc};
use serde_json::Value;

use gpuq_queue::{EnqueueOptions, EnqueueOutcome, Lane, WorkAhead};
use gpuq_schemas::{JobEnvelope, JobEvent, JobId, JobStatus, Tenant, UserId};
use gpuq_service::body::json_body;

use crate::auth::Caller;
use crate::jobs_db::{self, JobRecord, NewJob, Recorded};
use crate::metrics::JobTypeLabel;
use gpuq_service::ErrorBody;

use crate::overflow::{self, Routed};
use crate::routes::responses::{Internal, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::validation::{self, ReferencePolicy, ValidatedJob};
use crate::{events, limits, service_times, webhooks, ApiError};

mod answer;

pub use answer::EnqueueAnswer;

const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Enqueues one job. Also served at `POST /functions/v1/queue-job`.
#[utoipa::path(post, path = "/v1/jobs", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
        pattern = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
        description = "same key, same user, same body, 24 h: same answer (another body: 422)")),
    responses(
        (status = 202, description = "queued", body = EnqueueAnswer),
        (status = 400, description = "invalid input; the code names the rule", body = ErrorBody),
        (status = 402, description = "credits are on and the tenant's available credits do not cover the price (insufficient_credits, with the account and the price); nothing was written", body = ErrorBody),
        (status = 403, description = "reference image under another user's id, or a token with no user", body = ErrorBody),
        (status = 408, description = "the body did not arrive in time", body = ErrorBody),
        (status = 409, description = "a request with the same Idempotency-Key is still in progress", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "the Idempotency-Key was used with another body (idempotency_key_reused)", body = ErrorBody),
        (status = 429, description = "rate, active-job or queue limit", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        Unauthorized, Unavailable, Internal))]
#[tracing::instrument(name = "enqueue", skip_all, fields(user_id, job_id))]
pub async fn enqueue(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let user = caller.require_user()?;
    tracing::Span::current().record("user_id", tracing::field::display(user));
    let idem_key = idempotency_key(&req)?;
    let app = &state.settings.application;
    let body = json_body(&req, payload, app.max_body_bytes, app.body_timeout()).await?;
    let policy = ReferencePolicy {
        user,
        allowed_hosts: &state.settings.enqueue.reference_hosts,
    };
    let job = validation::validate(&body, &policy)?;
    let webhook = match body.as_object() {
        Some(b) => webhooks::job::parse(b, &state.settings.webhooks)?,
        None => None,
    };
    let idem = idem_key.map(|key| Idempotency::new(key, &body));

    if let Some(idem) = &idem {
        if let Some(answer) = previous_answer(&state, user, idem).await? {
            return accepted(&state, user, answer);
        }
    }
    limits::take_token(
        &mut state.redis.clone(),
        &state.namespace,
        user,
        &state.settings.limits,
    )
    .await
    .inspect_err(|_| reject_metric(&state, "rate_limited"))?;

    let id = JobId::new();
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let tenant = caller.tenant.clone().unwrap_or_else(|| user.into());
    let start_within = job
        .start_within_secs
        .or_else(|| state.settings.enqueue.start_within(job.job_type));
    let envelope = envelope(id, user, &tenant, &job, start_within);
    let fallback = overflow::fallback_now(&state, job.job_type).await;
    let overflow_after = overflow::rule(&state, job.job_type)
        .and_then(|r| r.start_over_secs)
        .filter(|_| !fallback);
    // Before the row exists: from its commit on, the reconciler may restore the job itself.
    let plan = Plan::of(&state, &envelope, &tenant, start_within, overflow_after).await?;
    let Some(row) = record(&state, &envelope, &tenant, &job, webhook, idem.as_ref()).await? else {
        // Another request with the same key won the race; answer as it did.
        let in_progress =
            || ApiError::Conflict("a request with this Idempotency-Key is in progress".into());
        let idem = idem.as_ref().ok_or_else(in_progress)?;
        let answer = previous_answer(&state, user, idem)
            .await?
            .ok_or_else(in_progress)?;
        return accepted(&state, user, answer);
    };
    let placed = place(&state, envelope, row, plan, &tenant, start_within, fallback).await;
    let answer = match placed {
        Ok(answer) => answer,
        Err(e) => {
            // Nothing was queued: free the key, so a retry with it makes a job rather than
            // replaying this failure.
            if let Some(idem) = &idem {
                jobs_db::release_idempotency_key(
                    &state.db,
                    user.as_uuid(),
                    &idem.key,
                    id.as_uuid(),
                )
                .await?;
            }
            return Err(e);
        }
    };
    let answer = to_value(&answer)?;
    if let Some(idem) = &idem {
        jobs_db::store_answer(&state.db, user.as_uuid(), &idem.key, &answer).await?;
    }
    events::publish(&state, JobEvent::status(id, JobStatus::Queued, None)).await;
    state
        .metrics
        .enqueued
        .get_or_create(&JobTypeLabel {
            job_type: job.job_type.to_string(),
        })
        .inc();
    state
        .metrics
        .enqueue_seconds
        .observe(started.elapsed().as_secs_f64());
    accepted(&state, user, answer)
}

/// The 202 with `answer` and a fresh stream token for its job (tokens are never stored with
/// an `Idempotency-Key`: a replay gets its own).
fn accepted(
    state: &AppState,
    user: UserId,
    mut answer: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    let job = answer["job"]["id"].as_str().and_then(|id| id.parse().ok());
    if let (Some(job), Some(fields)) = (job, answer.as_object_mut()) {
        let minted = state.auth.streams.mint(user, job)?;
        fields.insert("streamToken".into(), minted.token.into());
        fields.insert("streamTokenExpiresAt".into(), to_value(&minted.expires_at)?);
    }
    Ok(HttpResponse::Accepted().json(answer))
}

fn reject_metric(state: &AppState, reason: &str) {
    state
        .metrics
        .rejected
        .get_or_create(&JobTypeLabel {
            job_type: reason.into(),
        })
        .inc();
}

/// The request's `Idempotency-Key`, if it sent one; 400 for a malformed one.
pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        // As the documented pattern says: visible ASCII and inner spaces, no tab (which
        // `to_str` lets through), no space at either end.
        Ok(k)
            if (1..=255).contains(&k.len())
                && k.bytes().all(|b| (0x20..=0x7e).contains(&b))
                && !k.starts_with(' ')
                && !k.ends_with(' ') =>
        {
            Ok(Some(k.to_owned()))
        }
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// An `Idempotency-Key` and the request it names.
struct Idempotency {
    key: String,
    /// SHA-256 (hex) of the body as parsed (object keys sorted, so spacing and key order
    /// do not make two requests different).
    request_hash: String,
}

impl Idempotency {
    fn new(key: String, body: &Value) -> Self {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(body).unwrap_or_default();
        Self {
            key,
            request_hash: hex::encode(Sha256::digest(canonical)),
        }
    }
}

/// The answer a key already gave, for the same request; 422 for another request.
async fn previous_answer(
    state: &AppState,
    user: UserId,
    idem: &Idempotency,
) -> Result<Option<Value>, ApiError> {
    let Some(previous) = jobs_db::idempotent_answer(&state.db, user.as_uuid(), &idem.key).await?
    else {
        return Ok(None);
    };
    if previous
        .request_hash
        .as_ref()
        .is_some_and(|h| *h != idem.request_hash)
    {
        return Err(ApiError::refused(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body within 24 h; \
             use a new key for a new request",
        ));
    }
    let (job_id, answer) = (previous.job_id, previous.response);
    if answer.get("success").is_some() {
        return Ok(Some(answer));
    }
    // The first request is still between its row and its enqueue: describe the job.
    let Some(job) = jobs_db::get(&state.db, job_id).await? else {
        return Ok(None);
    };
    Ok(Some(to_value(&EnqueueAnswer::already_submitted(job))?))
}

fn envelope(
    id: JobId,
    user: UserId,
    tenant: &Tenant,
    job: &ValidatedJob,
    start_within: Option<u32>,
) -> JobEnvelope {
    // PostgreSQL keeps microseconds; the answer and the row must agree.
    let created_at = Utc::now().trunc_subsecs(6);
    let spec = job.job_type.spec();
    let mut metadata = job.metadata.clone();
    if let Value::Object(m) = &mut metadata {
        for (k, v) in [
            ("projectId", &job.project_id),
            ("videoId", &job.video_id),
            ("imageId", &job.image_id),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
    }
    JobEnvelope {
        job_id: id,
        job_type: job.job_type,
        queue: spec.queue.into(),
        prompt: job.prompt.clone(),
        negative_prompt: job.negative_prompt.clone(),
        config: job.config.clone(),
        user_id: user,
        // Named only when it is not the owner: most jobs carry nothing extra.
        tenant: (*tenant != Tenant::from(user)).then(|| tenant.clone()),
        bucket: job.job_type.as_str().into(),
        model_variant: spec.model_variant.into(),
        attempt: 0,
        max_attempts: spec.max_attempts,
        created_at,
        start_by: start_within.map(|s| created_at + chrono::Duration::seconds(s.into())),
        metadata,
    }
}

/// Writes the `jobs` row (and claims the idempotency key) in one transaction, under the
/// user's lock so the active-job limit holds (see [`crate::recorder`]). None if the key
/// was taken meanwhile.
async fn record(
    state: &AppState,
    env: &JobEnvelope,
    tenant: &Tenant,
    job: &ValidatedJob,
    webhook: Option<webhooks::job::JobWebhook>,
    idem: Option<&Idempotency>,
) -> Result<Option<JobRecord>, ApiError> {
    let credits = &state.settings.credits;
    let price = credits.price(env.job_type, env.config.num_images);
    if price.is_some() {
        // Only an optimisation of the batch (which copes without it): a failure here is
        // not the request's.
        if let Err(e) = state
            .credit_accounts
            .ensure(&state.db, tenant, credits.starting_grant.into())
            .await
        {
            tracing::warn!(error = %e, "could not create the tenant's credit account ahead");
        }
    }
    let row = NewJob {
        id: env.job_id.as_uuid(),
        user_id: env.user_id.as_uuid(),
        job_type: env.job_type.as_str(),
        queue: env.queue.clone(),
        prompt: env.prompt.clone(),
        metadata: env.metadata.clone(),
        config: to_value(&env.config)?,
        project_id: job.project_id.clone(),
        video_id: job.video_id.clone(),
        image_id: job.image_id.clone(),
        credits: env.job_type.spec().credits as i32,
        max_attempts: env.max_attempts as i32,
        created_at: env.created_at,
        envelope: to_value(env)?,
        idempotency_key: idem.map(|i| i.key.clone()),
        request_hash: idem.map(|i| i.request_hash.clone()),
        tenant: tenant.to_string(),
        price: price.map(|p| p.amount),
        per_gpu_second: price.and_then(|p| p.per_gpu_second),
        webhook,
    };
    let max = state.settings.limits.max_active_jobs_per_user;
    let record = JobRecord::queued(&row);
    match state.recorder.record(row).await? {
        Recorded::Inserted => Ok(Some(record)),
        Recorded::KeyTaken => Ok(None),
        Recorded::InsufficientCredits(shortfall) => {
            reject_metric(state, "insufficient_credits");
            Err(ApiError::InsufficientCredits(shortfall))
        }
        Recorded::TooManyActive { active } => {
            reject_metric(state, "too_many_active_jobs");
            Err(ApiError::TooManyRequests {
                code: "too_many_active_jobs",
                message: format!(
                    "you already have {active} jobs queued or running; the limit is {max}"
                ),
                retry_after: 5,
            })
        }
    }
}

fn to_value(v: &impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.into()))
}

/// Where a job goes and what it costs: its lane, its charge to its tenant's fair share, its
/// start deadline, and the run times and capacity its ETA is made of.
struct Plan {
    opts: EnqueueOptions,
    /// The admission bound is the overflow rule's, not the start deadline's: a job refused
    /// by it goes to the provider's queue instead of being refused.
    overflow_binds: bool,
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
    /// it to start by its deadline. Every read is cached.
    async fn of(
        state: &AppState,
        env: &JobEnvelope,
        tenant: &Tenant,
        start_within: Option<u32>,
        overflow_after: Option<u32>,
    ) -> Result<Self, ApiError> {
        let (per_job_ahead, own) = state.service_times.estimate(&state.db, env.job_type).await;
        let slots = state.live_slots(state.queue(&env.queue)?).await;
        let deadline_ahead =
            start_within.and_then(|s| service_times::max_ahead(s.into(), slots, per_job_ahead));
        // No live slot: nothing may be ahead of it (an empty queue keeps it, for a fleet
        // scaling up from zero; the reconciler moves it if it then waits too long).
        let overflow_ahead = overflow_after
            .map(|s| service_times::max_ahead(s.into(), slots, per_job_ahead).unwrap_or(0));
        let overflow_binds = overflow_ahead.is_some_and(|o| deadline_ahead.is_none_or(|d| o <= d));
        let opts = EnqueueOptions {
            lane: Lane::Normal,
            cost_ms: service_times::cost_ms(env.job_type, own, env.config.num_images),
            weight: state.weights.weight(&state.db, tenant).await,
            start_within: start_within.map(|s| std::time::Duration::from_secs(s.into())),
            max_ahead: if overflow_binds {
                overflow_ahead
            } else {
                deadline_ahead
            },
            ..EnqueueOptions::default()
        };
        Ok(Self {
            opts,
            overflow_binds,
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
    /// Its own fleet would start it later than its overflow rule allows; nothing written.
    Overflow,
}

/// Puts the job on its queue, or on its provider's when its type overflows and it was sent
/// there (no live worker) or its own queue would start it too late (ADR 0017).
async fn place(
    state: &AppState,
    env: JobEnvelope,
    record: JobRecord,
    plan: Plan,
    tenant: &Tenant,
    start_within: Option<u32>,
    fallback: bool,
) -> Result<EnqueueAnswer, ApiError> {
    let why = if fallback {
        Routed::NoLiveWorker
    } else {
        match push(state, &env, record.clone(), plan).await? {
            Pushed::Queued(answer) => return Ok(*answer),
            Pushed::Overflow => Routed::StartOverLimit,
        }
    };
    let internal = |m: &str| ApiError::Internal(anyhow::anyhow!("{m} for job {}", env.job_id));
    let rule = overflow::rule(state, env.job_type).ok_or_else(|| internal("no overflow rule"))?;
    let env = overflow::reroute(state, &env, rule, why)
        .await?
        .ok_or_else(|| internal("the row left the queued state before its enqueue"))?;
    let record = JobRecord {
        queue: env.queue.clone(),
        routed: Some(why.as_str().into()),
        ..record
    };
    let plan = Plan::of(state, &env, tenant, start_within, None).await?;
    match push(state, &env, record, plan).await? {
        Pushed::Queued(answer) => Ok(*answer),
        Pushed::Overflow => Err(internal("a provider queue overflowed")),
    }
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
        EnqueueOutcome::WouldStartLate { .. } if plan.overflow_binds => {
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
