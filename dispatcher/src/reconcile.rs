//! The reconciler: PostgreSQL is the system of record, Redis holds live state. This brings
//! Redis back in line after it lost data (restart without persistence, a failover that
//! dropped writes, eviction) or kept jobs that are already finished.
//!
//! - Rows `queued`/`processing` older than a grace period whose job Redis no longer knows
//!   are enqueued again from the stored envelope (status back to `queued`). The enqueue
//!   script refuses an id Redis already holds, so replicas racing here enqueue once.
//! - Jobs Redis holds whose row is finished are removed, except failed jobs in the
//!   dead-letter set, which is where they belong.
//! - Rows `processing` (unchanged for the grace period) whose job Redis holds but nobody
//!   is running (waiting, or delayed for a retry: a failure whose commit was lost, a reaped
//!   lease whose row update failed) go back to `queued`.
//! - Jobs Redis holds as dead whose row is not finished (a worker that ran `fail_job.lua`
//!   itself, a callback that died between Redis and its commit) become `failed` with the
//!   queue's last error: PostgreSQL and Redis never disagree longer than one period.
//!
//! Each call does one bounded step; the loop lives in [`crate::maintenance`].

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use gpuq_queue::{EnqueueOptions, EnqueueOutcome, Queue};
use gpuq_schemas::{JobEnvelope, JobEvent, JobId, JobStatus};
use uuid::Uuid;

use crate::state::AppState;
use crate::{events, jobs_db};

/// What one [`reconcile_once`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Jobs Redis had lost, enqueued again.
    pub requeued: Vec<JobId>,
    /// Rows `processing` that nobody runs, put back to `queued`.
    pub unstuck: Vec<JobId>,
    /// Finished jobs Redis still held, removed.
    pub removed: Vec<JobId>,
    /// Jobs Redis lost during their last allowed attempt, or holds as dead while their
    /// row was not finished, marked failed.
    pub failed: Vec<JobId>,
}

/// Rows examined per pass and queue.
const BATCH: i64 = 500;

/// One pass over one queue. `grace` keeps the reconciler away from jobs being enqueued
/// right now (their row is written just before Redis hears of them).
pub async fn reconcile_once(
    state: &AppState,
    queue: &Queue,
    grace: Duration,
) -> anyhow::Result<Reconciled> {
    let mut out = Reconciled::default();
    requeue_lost(state, queue, grace, &mut out).await?;
    remove_finished(state, queue, grace, &mut out).await?;
    Ok(out)
}

async fn requeue_lost(
    state: &AppState,
    queue: &Queue,
    grace: Duration,
    out: &mut Reconciled,
) -> anyhow::Result<()> {
    // Keyset pages over every unfinished row: after Redis lost everything, the oldest page
    // is restored first and must not hide the rows behind it.
    let mut after: Option<(DateTime<Utc>, Uuid)> = None;
    loop {
        let rows: Vec<Unfinished> = sqlx::query_as(
            "SELECT id, created_at, attempts, envelope, status FROM jobs \
             WHERE queue = $1 AND status IN ('queued', 'processing') \
             AND created_at < now() - make_interval(secs => $2) \
             AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4)) \
             ORDER BY created_at, id LIMIT $5",
        )
        .bind(queue.name().as_str())
        .bind(grace.as_secs_f64())
        .bind(after.map(|(t, _)| t))
        .bind(after.map(|(_, id)| id))
        .bind(BATCH)
        .fetch_all(&state.db)
        .await?;
        let full = rows.len() as i64 == BATCH;
        after = rows.last().map(|r| (r.created_at, r.id));
        let ids: Vec<JobId> = rows.iter().map(|r| JobId::from(r.id)).collect();
        let known = queue.known(&ids).await?;
        let (held, lost): (Vec<_>, Vec<_>) =
            rows.into_iter().zip(known).partition(|(_, known)| *known);
        let lost = lost.into_iter().map(|(row, _)| row).collect();
        restore(state, queue, lost, out).await?;
        let processing: Vec<JobId> = held
            .iter()
            .filter(|(row, _)| row.status == JobStatus::Processing)
            .map(|(row, _)| JobId::from(row.id))
            .collect();
        unstick(state, queue, processing, grace, out).await?;
        if !full {
            return Ok(());
        }
    }
}

/// An unfinished row, as the reconciler reads it.
#[derive(sqlx::FromRow)]
struct Unfinished {
    id: Uuid,
    created_at: DateTime<Utc>,
    /// Deliveries the callback service recorded; the restored job goes on counting.
    attempts: i32,
    envelope: Option<serde_json::Value>,
    status: JobStatus,
}

/// Puts `processing` rows whose job Redis holds but nobody runs (not leased, not dead)
/// back to `queued`. Only rows unchanged for `grace`: a worker's fresh `processing` report
/// (which sets `updated_at`) is never overwritten.
async fn unstick(
    state: &AppState,
    queue: &Queue,
    processing: Vec<JobId>,
    grace: Duration,
    out: &mut Reconciled,
) -> anyhow::Result<()> {
    if processing.is_empty() {
        return Ok(());
    }
    let leased = queue.leased(&processing).await?;
    let dead = queue.dead_reasons(&processing).await?;
    let idle: Vec<Uuid> = processing
        .iter()
        .zip(leased.into_iter().zip(dead))
        .filter(|(_, (leased, dead))| !leased && dead.is_none())
        .map(|(id, _)| id.as_uuid())
        .collect();
    if idle.is_empty() {
        return Ok(());
    }
    // Rows locked in id order, as the callback service's batches lock theirs: the two never
    // wait for each other in a cycle (an UPDATE alone locks in whatever order its plan
    // visits the rows).
    let unstuck: Vec<Uuid> = sqlx::query_scalar(
        "WITH stuck AS (SELECT id FROM jobs WHERE id = ANY($1) AND status = 'processing' \
                AND updated_at < now() - make_interval(secs => $2) ORDER BY id FOR UPDATE) \
         UPDATE jobs j SET status = 'queued', updated_at = now() FROM stuck \
         WHERE j.id = stuck.id AND j.status = 'processing' RETURNING j.id",
    )
    .bind(&idle)
    .bind(grace.as_secs_f64())
    .fetch_all(&state.db)
    .await?;
    for id in unstuck.into_iter().map(JobId::from) {
        tracing::warn!(job_id = %id, queue = %queue.name(), "processing in PostgreSQL but nobody runs it; back to queued");
        events::publish(state, JobEvent::status(id, JobStatus::Queued, None)).await;
        out.unstuck.push(id);
    }
    Ok(())
}

/// Enqueues a page of jobs Redis lost again from their stored envelopes (one pipeline), in
/// one transaction holding their rows, so no callback finishes one of them between the
/// check and the enqueue. Rows are locked in id order: replicas doing the same page wait
/// for each other instead of deadlocking, and the second finds the jobs already queued.
async fn restore(
    state: &AppState,
    queue: &Queue,
    lost: Vec<Unfinished>,
    out: &mut Reconciled,
) -> anyhow::Result<()> {
    if lost.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = lost.iter().map(|r| r.id).collect();
    let mut tx = state.db.begin().await?;
    let unfinished: HashSet<Uuid> = sqlx::query_scalar(
        // Still this queue's: a job moved to a provider's queue meanwhile (ADR 0017) is
        // that queue's to restore.
        "SELECT id FROM jobs WHERE id = ANY($1) AND status IN ('queued', 'processing') \
         AND queue = $2 ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .bind(queue.name().as_str())
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut failed: Vec<(Uuid, &str)> = Vec::new();
    let mut expired: Vec<Uuid> = Vec::new();
    let now = chrono::Utc::now();
    let mut batch = Vec::new();
    for row in lost.into_iter().filter(|r| unfinished.contains(&r.id)) {
        let attempts_used = u32::try_from(row.attempts).unwrap_or(0);
        match row
            .envelope
            .and_then(|e| serde_json::from_value::<JobEnvelope>(e).ok())
        {
            None => failed.push((row.id, "lost by the queue and could not be rebuilt")),
            Some(env) if attempts_used >= env.max_attempts => {
                failed.push((row.id, "lost by the queue during its last attempt"));
            }
            // Never started, and too late to: it fails as the queue would have failed it.
            Some(env) if attempts_used == 0 && env.start_by.is_some_and(|by| by < now) => {
                expired.push(row.id);
            }
            Some(env) => {
                // A job that never started keeps what is left of its start deadline.
                let start_within = env
                    .start_by
                    .filter(|_| attempts_used == 0)
                    .and_then(|by| (by - now).to_std().ok());
                let opts = EnqueueOptions {
                    attempts_used,
                    start_within,
                    ..EnqueueOptions::default()
                };
                batch.push((env, opts));
            }
        }
    }
    // The jobs about to end release their credit holds: their accounts first, in order,
    // and only when some do (the common pass then holds no account while it calls Redis).
    let ending: Vec<Uuid> = failed
        .iter()
        .map(|(id, _)| *id)
        .chain(expired.iter().copied())
        .collect();
    if !ending.is_empty() {
        jobs_db::lock_accounts(&mut tx, &ending).await?;
    }
    for (id, message) in &failed {
        jobs_db::finish(&mut *tx, *id, JobStatus::Failed, Some(message)).await?;
    }
    let mut unstarted = Vec::new();
    for id in expired {
        if jobs_db::fail_unstarted(&mut *tx, id).await? {
            unstarted.push(JobId::from(id));
        }
    }
    let mut requeued = Vec::new();
    for ((env, _), outcome) in batch.iter().zip(queue.enqueue_batch(&batch).await?) {
        match outcome {
            EnqueueOutcome::Enqueued { .. } => requeued.push(env.job_id),
            EnqueueOutcome::QueueFull { .. } => {
                tracing::warn!(job_id = %env.job_id, "queue full; will restore the lost job on a later pass");
            }
            // Another replica (or the original enqueue) got there first.
            EnqueueOutcome::AlreadyExists | EnqueueOutcome::Duplicate { .. } => {}
            // Restores ask for no admission bound.
            EnqueueOutcome::WouldStartLate { .. } => {}
        }
    }
    let requeued_ids: Vec<Uuid> = requeued.iter().map(JobId::as_uuid).collect();
    sqlx::query("UPDATE jobs SET status = 'queued', updated_at = now() WHERE id = ANY($1)")
        .bind(&requeued_ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    for id in unstarted {
        tracing::warn!(job_id = %id, queue = %queue.name(), "Redis lost this job and its start deadline passed; marked failed");
        events::publish(state, crate::events::start_deadline_exceeded(id)).await;
        out.failed.push(id);
    }
    for (id, message) in failed {
        let id = JobId::from(id);
        tracing::warn!(job_id = %id, queue = %queue.name(), message, "Redis lost this job; marked failed");
        events::publish(
            state,
            JobEvent::status(id, JobStatus::Failed, Some(message.into())),
        )
        .await;
        out.failed.push(id);
    }
    for id in requeued {
        tracing::warn!(job_id = %id, queue = %queue.name(), "Redis had lost this job; enqueued it again");
        events::publish(
            state,
            JobEvent::status(
                id,
                JobStatus::Queued,
                Some("restored after queue data loss".into()),
            ),
        )
        .await;
        out.requeued.push(id);
    }
    Ok(())
}

/// Scans a page of what Redis holds; removes jobs whose row is finished. One query for the
/// page's statuses and one `ZMSCORE` each for dead-set membership and leases.
async fn remove_finished(
    state: &AppState,
    queue: &Queue,
    grace: Duration,
    out: &mut Reconciled,
) -> anyhow::Result<()> {
    let cursor = state.reconcile_cursor(queue.name().as_str());
    let (next, ids) = queue.scan_ids(cursor, BATCH as usize).await?;
    state.set_reconcile_cursor(queue.name().as_str(), next);
    if ids.is_empty() {
        return Ok(());
    }
    let uuids: Vec<Uuid> = ids.iter().map(JobId::as_uuid).collect();
    // The rows stay locked until the page is done: an admin requeue (which reopens the row
    // and moves the job out of the dead set in one transaction) either finished before, or
    // waits, or holds its row, which is then skipped. Unlocked, a requeued job could be
    // read as "failed, not dead" between its two steps and removed from Redis.
    let mut tx = state.db.begin().await?;
    // Whether each row changed within the grace: a job that just died in Redis has its
    // failure report on the way (the callback service marks the row itself), or was just
    // written by hand; the next pass sees it.
    let statuses: std::collections::HashMap<Uuid, (JobStatus, bool)> =
        sqlx::query_as::<_, (Uuid, JobStatus, bool)>(
            "SELECT id, status, updated_at > now() - make_interval(secs => $2) FROM jobs \
             WHERE id = ANY($1) FOR UPDATE SKIP LOCKED",
        )
        .bind(&uuids)
        .bind(grace.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(id, status, recent)| (id, (status, recent)))
        .collect();
    let dead = queue.dead_reasons(&ids).await?;
    let leased = queue.leased(&ids).await?;
    // The jobs about to fail release their credit holds: their accounts first, in order,
    // and only when some do.
    let ending: Vec<Uuid> = ids
        .iter()
        .zip(&dead)
        .filter(|(id, dead)| {
            dead.is_some()
                && matches!(
                    statuses.get(&id.as_uuid()),
                    Some((JobStatus::Queued | JobStatus::Processing, false))
                )
        })
        .map(|(id, _)| id.as_uuid())
        .collect();
    if !ending.is_empty() {
        jobs_db::lock_accounts(&mut tx, &ending).await?;
    }
    let mut failed = Vec::new();
    for ((id, dead), leased) in ids.into_iter().zip(dead).zip(leased) {
        // A job without a row may be an enqueue still in flight, one whose row is locked is
        // being changed: leave both alone. A failed job in the dead set is where it belongs
        // (admins requeue or discard it there); an unfinished one there failed for good.
        let (status, recent) = match statuses.get(&id.as_uuid()) {
            Some((status, recent)) => (Some(*status), *recent),
            None => (None, false),
        };
        if let (Some(JobStatus::Queued | JobStatus::Processing), Some(reason), false) =
            (status, &dead, recent)
        {
            // A worker wrote the reason; PostgreSQL cannot store U+0000.
            let reason = reason.replace('\0', "\u{fffd}");
            jobs_db::finish(&mut *tx, id.as_uuid(), JobStatus::Failed, Some(&reason)).await?;
            failed.push((id, reason));
            continue;
        }
        let stray = match status {
            Some(JobStatus::Completed) => true,
            // A running job that was cancelled stays until its holder hears of it at the
            // next heartbeat (and stops cleanly) or its lease runs out (the reaper drops it).
            Some(JobStatus::Cancelled) => !leased,
            Some(JobStatus::Failed) => dead.is_none(),
            Some(JobStatus::Queued | JobStatus::Processing) | None => false,
        };
        if stray && queue.ack(id, None).await? == gpuq_queue::AckOutcome::Removed {
            tracing::info!(job_id = %id, status = ?status, "removed a finished job Redis still held");
            out.removed.push(id);
        }
    }
    tx.commit().await?;
    for (id, reason) in failed {
        tracing::warn!(job_id = %id, queue = %queue.name(), %reason, "dead in the queue but not finished in PostgreSQL; marked failed");
        events::publish(state, JobEvent::status(id, JobStatus::Failed, Some(reason))).await;
        out.failed.push(id);
    }
    Ok(())
}
