//! The background loops the queue needs: reaping expired leases and promoting due
//! retries, for every queue, on a fixed interval. Each step is one atomic script, so any
//! number of dispatcher replicas can run them at once without losing or doubling a job.

use std::time::Duration;

use actix_web::web;
use tokio_util::sync::CancellationToken;

use gpuq_queue::{Caps, Queue};
use gpuq_schemas::{JobEvent, JobStatus};

use crate::state::AppState;
use crate::{events, jobs_db};

/// Runs until `stop` is cancelled.
pub async fn run(state: web::Data<AppState>, stop: CancellationToken) {
    let settings = &state.settings.queue;
    let mut tick = tokio::time::interval(Duration::from_millis(
        settings.maintenance_interval_ms.max(10),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reconcile = tokio::time::interval(Duration::from_millis(
        settings.reconcile_interval_ms.max(100),
    ));
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let grace = Duration::from_millis(settings.reconcile_grace_ms);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                for queue in state.queues.values() {
                    if let Err(e) = run_once(&state, queue).await {
                        tracing::warn!(queue = %queue.name(), error = ?e, "maintenance step failed");
                    }
                }
            }
            _ = reconcile.tick() => {
                sync_caps(&state).await;
                check_credits(&state, reconcile.period() * 2).await;
                for queue in state.queues.values() {
                    if let Err(e) = crate::reconcile::reconcile_once(&state, queue, grace).await {
                        tracing::warn!(queue = %queue.name(), error = ?e, "reconcile step failed");
                    }
                    if let Err(e) = crate::quarantine::agree(&state.db, queue).await {
                        tracing::warn!(queue = %queue.name(), error = ?e, "quarantine step failed");
                    }
                }
                if let Err(e) = crate::overflow::revisit(&state).await {
                    tracing::warn!(error = ?e, "overflow step failed");
                }
            }
        }
    }
}

/// Checks the accounts changed since the last pass (the first: within `first_window`)
/// against their ledger (see [`crate::credits::check`]); sets `gpuq_credit_violations` and
/// logs each difference.
pub async fn check_credits(state: &AppState, first_window: Duration) {
    match state.ledger_check.pass(&state.db, first_window).await {
        Ok(found) => {
            for violation in &found {
                tracing::error!(%violation, "credit account differs from its ledger");
            }
            state
                .metrics
                .credit_violations
                .set(i64::try_from(found.len()).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::warn!(error = %e, "credit check failed"),
    }
}

/// Sets the queue's per-tenant concurrency caps from the configuration (the default) and
/// the database (tenants' own) and recounts them (`Queue::set_caps`): at start-up, when an
/// admin sets one, and every reconcile period, so that the counts heal within one (after a
/// Redis restart, say) and a cap removed goes. Nothing changes while the database cannot
/// be read (the caps in Redis stay as they were).
/// Read once, set on every queue. Failures are logged: the next period tries again.
pub async fn sync_caps(state: &AppState) {
    let (version, tenants) = match crate::tenants::caps(&state.db).await {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(error = ?e, "concurrency caps not read; Redis keeps the last ones");
            return;
        }
    };
    let caps = Caps {
        version,
        default: state
            .settings
            .enqueue
            .max_in_flight_per_tenant
            .map(|m| m.get()),
        tenants,
    };
    for queue in state.queues.values() {
        match queue.set_caps(&caps).await {
            Ok(Some(parked)) if parked > 0 => {
                tracing::debug!(queue = %queue.name(), parked, "tenants waiting at their concurrency cap");
            }
            // None: another replica set caps it read later; they stand.
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(queue = %queue.name(), error = ?e, "concurrency caps not synced");
            }
        }
    }
}

/// One pass over one queue: promote due retries, reap expired leases, and bring the
/// `jobs` rows of reaped jobs in line.
pub async fn run_once(state: &AppState, queue: &Queue) -> anyhow::Result<()> {
    queue.promote_due_once().await?;
    for id in queue.expire_unstarted_once().await? {
        tracing::info!(job_id = %id, queue = %queue.name(), "start deadline passed; job failed");
        if jobs_db::fail_unstarted(&state.db, id.as_uuid()).await? {
            events::publish(state, events::start_deadline_exceeded(id)).await;
        }
    }
    let reaped = queue.reap_once().await?;
    if reaped.is_empty() {
        return Ok(());
    }
    state.metrics.reaped.inc_by(reaped.requeued.len() as u64);
    for id in &reaped.requeued {
        tracing::info!(job_id = %id, queue = %queue.name(), "lease expired; job requeued");
        jobs_db::mark_requeued(&state.db, id.as_uuid()).await?;
        events::publish(
            state,
            JobEvent::status(
                *id,
                JobStatus::Queued,
                Some("lease expired; requeued".into()),
            ),
        )
        .await;
    }
    for id in &reaped.dead {
        let message = "lease expired on the last attempt";
        tracing::warn!(job_id = %id, queue = %queue.name(), "{message}; dead-lettered");
        if jobs_db::finish(&state.db, id.as_uuid(), JobStatus::Failed, Some(message)).await? {
            events::publish(
                state,
                JobEvent::status(*id, JobStatus::Failed, Some(message.into())),
            )
            .await;
        }
    }
    Ok(())
}
