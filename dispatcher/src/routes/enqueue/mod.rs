//! `POST /v1/jobs` (and `/functions/v1/queue-job`): validate, limit, record, enqueue.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{SubsecRound, Utc};
use serde_json::Value;

use gpuq_schemas::{JobEnvelope, JobEvent, JobId, JobStatus, Tenant, UserId};
use gpuq_service::body::json_body;

use crate::auth::Caller;
use crate::jobs_db::{self, JobRecord, NewJob, Recorded};
use crate::metrics::JobTypeLabel;
use gpuq_service::ErrorBody;

use crate::routes::responses::{Internal, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::validation::{self, ReferencePolicy, ValidatedJob};
use crate::{events, limits, webhooks, ApiError};

mod answer;

mod place;

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
    let mut job = validation::validate(&body, &policy)?;
    job.model = validation::checkpoint(&job, &state.settings.enqueue.checkpoints)?;
    job.loras = validation::loras(&job, &state.settings.enqueue.loras)?;
    let webhook = match body.as_object() {
        Some(b) => webhooks::job::parse(b, &state.settings.webhooks)?,
        None => None,
    };
    let idem = idem_key.map(|key| Idempotency::new(key, &body));

    if let Some(idem) = &idem {
        if let Some(answer) = previous_answer(&state, user, idem).await? {
            return replayed(&state, user, answer);
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
    let mut envelope = envelope(id, user, &tenant, &job, start_within);
    let route = place::Route::of(&state, &mut envelope).await;
    // Before the row exists: from its commit on, the reconciler may restore the job itself.
    let plan = place::Plan::of(&state, &envelope, &tenant, start_within, &route).await?;
    let Some(row) = record(&state, &envelope, &tenant, &job, webhook, idem.as_ref()).await? else {
        // Another request with the same key won the race; answer as it did.
        let in_progress =
            || ApiError::Conflict("a request with this Idempotency-Key is in progress".into());
        let idem = idem.as_ref().ok_or_else(in_progress)?;
        let answer = previous_answer(&state, user, idem)
            .await?
            .ok_or_else(in_progress)?;
        return replayed(&state, user, answer);
    };
    let placed = place::place(&state, envelope, row, plan, route).await;
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
    if let Some(idem) = &idem {
        let stored = to_value(&answer)?;
        jobs_db::store_answer(&state.db, user.as_uuid(), &idem.key, &stored).await?;
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
/// an `Idempotency-Key`: a replay gets its own). Serialized straight from the struct: a
/// JSON value tree built only to add the token was about a tenth of the dispatcher's
/// `perf` samples.
fn accepted(
    state: &AppState,
    user: UserId,
    mut answer: EnqueueAnswer,
) -> Result<HttpResponse, ApiError> {
    let minted = state.auth.streams.mint(user, answer.job_id.into())?;
    answer.stream_token = Some(minted.token);
    answer.stream_token_expires_at = Some(minted.expires_at);
    Ok(HttpResponse::Accepted().json(answer))
}

/// The 202 replaying the answer an `Idempotency-Key` stored, with a fresh stream token
/// under the names [`EnqueueAnswer`] serializes it with.
fn replayed(
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
        model: job.model.clone(),
        loras: job.loras.clone(),
        vram_gb: Some(spec.vram_gb),
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
