//! Overflow and fallback to hosted providers (ADR 0017). A job type may name a provider's
//! queue (served by `gpuq-provider-worker`) and when its jobs go there instead of their own:
//!
//! - `when_no_worker`: no live worker serves the type's own queue (decided at enqueue);
//! - `start_over_secs`: the own fleet would start it later than this. Decided at enqueue by
//!   the queue itself, atomically, with the fair-share position it would get (the same
//!   admission check as a start deadline), and revisited by the reconciler for jobs that
//!   have waited longer than this all the same.
//!
//! Only while the provider's queue has a live worker. A waiting job is moved only if it was
//! never claimed, its row locked throughout: out of its own queue, the row (its queue, its
//! envelope's queue and `routed`), into the provider's queue, commit. From then on the
//! callback service, cancellation and the reconciler follow the row's queue as for any job.

use std::collections::HashMap;

use serde::Deserialize;
use uuid::Uuid;

use gpuq_queue::{EnqueueOptions, EnqueueOutcome, Queue};
use gpuq_schemas::catalog::CATALOG;
use gpuq_schemas::{JobEnvelope, JobId, JobType, QueueName};

use crate::state::AppState;
use crate::ApiError;

/// Where a job type's jobs overflow to, and when (`overflow: {<job type>: {...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct OverflowRule {
    /// The provider's queue.
    pub queue: String,
    /// Send a job there when its own fleet would start it later than this, seconds.
    pub start_over_secs: Option<u32>,
    /// Send a job there when no live worker serves its own queue.
    pub when_no_worker: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    queue: String,
    #[serde(default)]
    start_over_secs: Option<u32>,
    #[serde(default)]
    when_no_worker: bool,
}

impl TryFrom<RawRule> for OverflowRule {
    type Error = String;

    fn try_from(r: RawRule) -> Result<Self, String> {
        QueueName::parse(&r.queue).map_err(|e| format!("overflow queue {:?}: {e}", r.queue))?;
        if CATALOG.iter().any(|spec| spec.queue == r.queue) {
            return Err(format!(
                "overflow queue {:?} is a GPU queue; name the provider worker's queue",
                r.queue
            ));
        }
        if r.start_over_secs == Some(0) || r.start_over_secs > Some(86_400) {
            return Err("overflow start_over_secs must be 1 to 86400".into());
        }
        if r.start_over_secs.is_none() && !r.when_no_worker {
            return Err(format!(
                "overflow to {:?} needs start_over_secs or when_no_worker",
                r.queue
            ));
        }
        Ok(Self {
            queue: r.queue,
            start_over_secs: r.start_over_secs,
            when_no_worker: r.when_no_worker,
        })
    }
}

/// Why a job was sent to a provider (`jobs.routed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// No live worker served its own queue when it was enqueued, or while it waited.
    NoLiveWorker,
    /// Its own fleet would have started it later than the rule's bound.
    StartOverLimit,
    /// It waited in its own queue longer than the rule's bound.
    WaitedTooLong,
}

impl Routed {
    /// The `jobs.routed` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoLiveWorker => "no_live_worker",
            Self::StartOverLimit => "start_over_limit",
            Self::WaitedTooLong => "waited_too_long",
        }
    }
}

/// The rule of `job_type`, if it overflows anywhere.
pub fn rule(state: &AppState, job_type: JobType) -> Option<&OverflowRule> {
    state.settings.overflow.get(&job_type)
}

/// Whether `queue` has a live worker, as of the last second's snapshot.
async fn live(state: &AppState, queue: &str) -> bool {
    match state.queue(queue) {
        Ok(q) => state
            .cached_stats(q)
            .await
            .is_ok_and(|s| s.live_consumers > 0),
        Err(_) => false,
    }
}

/// The rule of a `job_type` job, while its provider's queue has a live worker: sending a
/// job where nothing serves it would only strand it.
pub async fn active_rule(state: &AppState, job_type: JobType) -> Option<&OverflowRule> {
    let rule = rule(state, job_type)?;
    live(state, &rule.queue).await.then_some(rule)
}

/// Whether a `job_type` job goes straight to its provider: its rule falls back when no
/// worker serves its own queue, and none does while the provider's does.
pub async fn fallback_now(state: &AppState, job_type: JobType) -> bool {
    match active_rule(state, job_type).await {
        Some(rule) if rule.when_no_worker => !live(state, job_type.spec().queue).await,
        _ => false,
    }
}

/// Points the queued row of `env` (still in its own queue, nothing of it in Redis) at the
/// provider's queue. Returns the envelope as it now is, or None when the row is no longer
/// queued there.
pub async fn reroute(
    state: &AppState,
    env: &JobEnvelope,
    rule: &OverflowRule,
    why: Routed,
) -> Result<Option<JobEnvelope>, ApiError> {
    let moved = point_row(&state.db, env, rule, why).await?;
    Ok(moved.then(|| routed(env, rule)))
}

/// `env` in the provider's queue.
fn routed(env: &JobEnvelope, rule: &OverflowRule) -> JobEnvelope {
    let mut routed = env.clone();
    routed.queue.clone_from(&rule.queue);
    routed
}

async fn point_row<'e>(
    db: impl sqlx::PgExecutor<'e>,
    env: &JobEnvelope,
    rule: &OverflowRule,
    why: Routed,
) -> sqlx::Result<bool> {
    let moved = sqlx::query(
        "UPDATE jobs SET queue = $2, routed = $3, \
         envelope = jsonb_set(envelope, '{queue}', to_jsonb($2::text)) \
         WHERE id = $1 AND status = 'queued' AND queue = $4",
    )
    .bind(env.job_id.as_uuid())
    .bind(&rule.queue)
    .bind(why.as_str())
    .bind(&env.queue)
    .execute(db)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Counts a job queued at its provider (`gpuq_jobs_routed_total`).
pub fn count(state: &AppState, env: &JobEnvelope, why: Routed) {
    state
        .metrics
        .routed
        .get_or_create(&crate::metrics::RoutedLabels {
            job_type: env.job_type.to_string(),
            queue: env.queue.clone(),
            reason: why.as_str().into(),
        })
        .inc();
}

/// The reconciler's pass: moves the jobs of each overflowing type that wait in their own
/// queue past the rule's bound (or while no worker serves it) to the provider's queue.
/// Returns how many moved.
pub async fn revisit(state: &AppState) -> anyhow::Result<usize> {
    let mut moved = 0;
    for (job_type, rule) in &state.settings.overflow {
        if active_rule(state, *job_type).await.is_none() {
            continue;
        }
        let own = state.queue(job_type.spec().queue)?;
        let (why, waited) = match (fallback_now(state, *job_type).await, rule.start_over_secs) {
            (true, _) => (Routed::NoLiveWorker, 0),
            (false, Some(secs)) => (Routed::WaitedTooLong, secs),
            (false, None) => continue,
        };
        // Never-started rows only (`attempts = 0`): one claimed but not yet reported cannot
        // be withdrawn, and would be read again every pass.
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE queue = $1 AND job_type = $2 AND status = 'queued' \
             AND started_at IS NULL AND attempts = 0 \
             AND created_at < now() - make_interval(secs => $3) \
             ORDER BY created_at LIMIT 100",
        )
        .bind(own.name().as_str())
        .bind(job_type.as_str())
        .bind(f64::from(waited))
        .fetch_all(&state.db)
        .await?;
        for id in ids {
            match move_waiting(state, own, JobId::from(id), rule, why).await {
                Ok(done) => moved += usize::from(done),
                Err(e) => {
                    tracing::warn!(job_id = %id, error = ?e, "could not move a job to its provider")
                }
            }
        }
    }
    Ok(moved)
}

/// Moves one waiting job, its row locked throughout (so a cancel or the reconciler's
/// restore waits and then sees where it is): out of its own queue (only if never claimed),
/// the row, into the provider's queue, commit. A provider queue that refuses it gets it
/// back in its own queue, its row untouched.
async fn move_waiting(
    state: &AppState,
    own: &Queue,
    id: JobId,
    rule: &OverflowRule,
    why: Routed,
) -> anyhow::Result<bool> {
    let mut tx = state.db.begin().await?;
    let envelope: Option<Option<serde_json::Value>> = sqlx::query_scalar(
        "SELECT envelope FROM jobs WHERE id = $1 AND status = 'queued' AND queue = $2 FOR UPDATE",
    )
    .bind(id.as_uuid())
    .bind(own.name().as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(env) = envelope
        .flatten()
        .and_then(|e| serde_json::from_value::<JobEnvelope>(e).ok())
    else {
        return Ok(false);
    };
    if env.start_by.is_some_and(|by| by <= chrono::Utc::now()) {
        // Its start deadline passed: it expires where it is.
        return Ok(false);
    }
    if !own.withdraw_unstarted(id).await? {
        return Ok(false);
    }
    let opts = options_for(state, &env).await;
    let moved = routed(&env, rule);
    let queued: anyhow::Result<EnqueueOutcome> = async {
        if !point_row(&mut *tx, &env, rule, why).await? {
            anyhow::bail!("its row changed under its lock");
        }
        Ok(state.queue(&rule.queue)?.enqueue(&moved, &opts).await?)
    }
    .await;
    match queued {
        Ok(EnqueueOutcome::Enqueued { .. } | EnqueueOutcome::AlreadyExists) => {
            tx.commit().await?;
            count(state, &moved, why);
            Ok(true)
        }
        other => {
            drop(tx);
            tracing::warn!(job_id = %id, outcome = ?other, "the provider's queue did not take a job; it stays");
            own.enqueue(&env, &opts).await?;
            Ok(false)
        }
    }
}

/// How a job moved between queues is enqueued: its cost and its tenant's weight as at its
/// enqueue, and what is left of its start deadline.
async fn options_for(state: &AppState, env: &JobEnvelope) -> EnqueueOptions {
    let (_, own) = state.service_times.estimate(&state.db, env.job_type).await;
    let tenant = env.tenant.clone().unwrap_or_else(|| env.user_id.into());
    EnqueueOptions {
        cost_ms: crate::service_times::cost_ms(env.job_type, own, env.config.num_images),
        weight: state.weights.weight(&state.db, &tenant).await,
        start_within: env.start_by.map(|by| {
            (by - chrono::Utc::now())
                .to_std()
                .unwrap_or(std::time::Duration::from_millis(1))
        }),
        ..EnqueueOptions::default()
    }
}

/// The queues jobs may overflow to, to open beside the GPU queues.
pub fn queues(rules: &HashMap<JobType, OverflowRule>) -> Vec<&str> {
    let mut names: Vec<&str> = rules.values().map(|r| r.queue.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<OverflowRule, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn a_rule_names_a_provider_queue_and_at_least_one_trigger() {
        let ok = parse(serde_json::json!({"queue": "sdxl-replicate", "when_no_worker": true}));
        assert_eq!(ok.unwrap().start_over_secs, None);
        for (bad, says) in [
            (
                serde_json::json!({"queue": "sdxl_queue", "when_no_worker": true}),
                "GPU queue",
            ),
            (
                serde_json::json!({"queue": "Bad Name", "when_no_worker": true}),
                "overflow queue",
            ),
            (serde_json::json!({"queue": "p"}), "needs start_over_secs"),
            (
                serde_json::json!({"queue": "p", "start_over_secs": 0}),
                "1 to 86400",
            ),
            (
                serde_json::json!({"queue": "p", "start_over_secs": 86_401}),
                "1 to 86400",
            ),
            (
                serde_json::json!({"queue": "p", "when_no_worker": true, "x": 1}),
                "unknown field",
            ),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
