//! Overflow and fallback to hosted providers (ADR 0017). A job type may name a provider's
//! queue (served by `gpuq-provider-worker`) and when its jobs go there instead of their own:
//!
//! - `when_no_worker`: no live worker serves the type's own queue (decided at enqueue);
//! - `start_over_secs`: the own fleet would start it later than this. Decided at enqueue by
//!   the queue itself, atomically, with the fair-share position it would get (the same
//!   admission check as a start deadline), and revisited by the reconciler for jobs that
//!   have waited longer than this all the same.
//!
//! A job is moved only while it is waiting and was never claimed: the row first (its queue,
//! its envelope's queue and `routed`), then the provider's queue. From then on the callback
//! service, cancellation and the reconciler follow the row's queue as for any job; a crash
//! between the two steps leaves a queued row the reconciler restores where the row says.

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

/// Whether a `job_type` job goes straight to its provider: its rule falls back when no
/// worker serves its own queue, and none does (as of the last second's snapshot).
pub async fn fallback_now(state: &AppState, job_type: JobType) -> bool {
    if !rule(state, job_type).is_some_and(|r| r.when_no_worker) {
        return false;
    }
    let Ok(own) = state.queue(job_type.spec().queue) else {
        return false;
    };
    state
        .cached_stats(own)
        .await
        .is_ok_and(|s| s.live_consumers == 0)
}

/// Points the queued row of `env` at the provider's queue. Returns the envelope as it now
/// is, or None when the row is no longer queued in its own queue (it ended meanwhile).
pub async fn reroute(
    state: &AppState,
    env: &JobEnvelope,
    rule: &OverflowRule,
    why: Routed,
) -> Result<Option<JobEnvelope>, ApiError> {
    let moved = sqlx::query(
        "UPDATE jobs SET queue = $2, routed = $3, \
         envelope = jsonb_set(envelope, '{queue}', to_jsonb($2::text)) \
         WHERE id = $1 AND status = 'queued' AND queue = $4",
    )
    .bind(env.job_id.as_uuid())
    .bind(&rule.queue)
    .bind(why.as_str())
    .bind(&env.queue)
    .execute(&state.db)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(None);
    }
    state
        .metrics
        .routed
        .get_or_create(&crate::metrics::RoutedLabels {
            job_type: env.job_type.to_string(),
            queue: rule.queue.clone(),
            reason: why.as_str().into(),
        })
        .inc();
    let mut routed = env.clone();
    routed.queue.clone_from(&rule.queue);
    Ok(Some(routed))
}

/// The reconciler's pass: moves the jobs of each overflowing type that wait in their own
/// queue past the rule's bound (or while no worker serves it) to the provider's queue.
/// Returns how many moved.
pub async fn revisit(state: &AppState) -> anyhow::Result<usize> {
    let mut moved = 0;
    for (job_type, rule) in &state.settings.overflow {
        let own = state.queue(job_type.spec().queue)?;
        let no_worker = rule.when_no_worker && fallback_now(state, *job_type).await;
        let (why, waited) = match (no_worker, rule.start_over_secs) {
            (true, _) => (Routed::NoLiveWorker, 0),
            (false, Some(secs)) => (Routed::WaitedTooLong, secs),
            (false, None) => continue,
        };
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE queue = $1 AND job_type = $2 AND status = 'queued' \
             AND started_at IS NULL AND created_at < now() - make_interval(secs => $3) \
             ORDER BY created_at LIMIT 100",
        )
        .bind(own.name().as_str())
        .bind(job_type.as_str())
        .bind(f64::from(waited))
        .fetch_all(&state.db)
        .await?;
        for id in ids {
            moved += usize::from(move_waiting(state, own, JobId::from(id), rule, why).await?);
        }
    }
    Ok(moved)
}

/// Moves one waiting job: out of its own queue (only if never claimed), then the row, then
/// into the provider's queue.
async fn move_waiting(
    state: &AppState,
    own: &Queue,
    id: JobId,
    rule: &OverflowRule,
    why: Routed,
) -> anyhow::Result<bool> {
    let envelope: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT envelope FROM jobs WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&state.db)
            .await?
            .flatten();
    let Some(env) = envelope.and_then(|e| serde_json::from_value::<JobEnvelope>(e).ok()) else {
        return Ok(false);
    };
    if env.start_by.is_some_and(|by| by <= chrono::Utc::now()) {
        // Its start deadline passed: it expires where it is.
        return Ok(false);
    }
    if !own.withdraw_unstarted(id).await? {
        return Ok(false);
    }
    let Some(routed) = reroute(state, &env, rule, why).await? else {
        return Ok(false);
    };
    let start_within = routed
        .start_by
        .and_then(|by| (by - chrono::Utc::now()).to_std().ok());
    let opts = EnqueueOptions {
        start_within,
        ..EnqueueOptions::default()
    };
    match state.queue(&rule.queue)?.enqueue(&routed, &opts).await? {
        EnqueueOutcome::Enqueued { .. } | EnqueueOutcome::AlreadyExists => Ok(true),
        // The reconciler restores it where its row now says on a later pass.
        other => {
            tracing::warn!(job_id = %id, outcome = ?other, "overflow queue refused a moved job");
            Ok(true)
        }
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
