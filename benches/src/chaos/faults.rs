//! The fault kinds, how each is injected, and when the system counts as recovered.
//!
//! Recovery time of a fault, by kind:
//! - worker SIGKILL: until every job the worker held is finished (lease expiry, redelivery,
//!   rerun);
//! - callback restart, callback outage, PostgreSQL restart: until the first job is
//!   completed after the fault began;
//! - dispatcher restart: until the new process answers `/readyz`;
//! - Redis restart: until Redis knows every job PostgreSQL says is unfinished again;
//! - misconfigured worker, forged reports: see [`super::contract`].

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{contract, Stack};
use crate::services::wait_ready;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Fault {
    WorkerKill,
    CallbackRestart,
    CallbackOutage,
    DispatcherRestart,
    RedisRestart,
    PostgresRestart,
    MisconfiguredWorker,
    ForgedReports,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::WorkerKill,
        Fault::CallbackRestart,
        Fault::CallbackOutage,
        Fault::DispatcherRestart,
        Fault::RedisRestart,
        Fault::PostgresRestart,
        Fault::MisconfiguredWorker,
        Fault::ForgedReports,
    ];

    /// The order faults come in, round robin (Redis restarts once, apart from it). The
    /// outage comes first: it only tests something while jobs flow.
    pub const PLAN: [Fault; 8] = [
        Fault::CallbackOutage,
        Fault::WorkerKill,
        Fault::PostgresRestart,
        Fault::CallbackRestart,
        Fault::ForgedReports,
        Fault::WorkerKill,
        Fault::DispatcherRestart,
        Fault::MisconfiguredWorker,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::WorkerKill => "worker SIGKILL",
            Fault::CallbackRestart => "callback restart",
            Fault::CallbackOutage => "callback outage > retry budget",
            Fault::DispatcherRestart => "dispatcher restart",
            Fault::RedisRestart => "Redis restart, persistence off",
            Fault::PostgresRestart => "PostgreSQL crash and restart",
            Fault::MisconfiguredWorker => "worker with wrong secret or URL",
            Fault::ForgedReports => "forged and replayed reports",
        }
    }
}

/// How long PostgreSQL stays down in a restart: long enough that enqueues and reports
/// meet a refused connection, short enough that reports ride it out.
const POSTGRES_DOWN: Duration = Duration::from_millis(1500);

/// A fault's recovery: `Some(time)` once recovered, `None` if not within 300 s.
pub(super) type Recovery = JoinHandle<(Fault, Option<Duration>)>;

type Check = Box<dyn Fn() -> BoxFuture<'static, bool> + Send>;

/// Polls `check` until it holds; the time since `t0` is the recovery time.
fn recovered_when(fault: Fault, t0: Instant, check: Check) -> Recovery {
    tokio::spawn(async move {
        while t0.elapsed() < Duration::from_secs(300) {
            if check().await {
                return (fault, Some(t0.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (fault, None)
    })
}

/// Holds once some job has been completed after `since`.
fn a_job_completed_after(db: sqlx::PgPool, since: chrono::DateTime<chrono::Utc>) -> Check {
    Box::new(move || {
        let db = db.clone();
        Box::pin(async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'completed' AND completed_at > $1)",
            )
            .bind(since)
            .fetch_one(&db)
            .await
            .unwrap_or(false)
        })
    })
}

/// Injects one fault and returns the task that measures its recovery.
pub(super) async fn inject(
    stack: &mut Stack,
    fault: Fault,
    db: &sqlx::PgPool,
) -> anyhow::Result<Recovery> {
    let t0 = Instant::now();
    let db = db.clone();
    eprintln!(
        "chaos: t={:>6.1}s {}",
        stack.started.elapsed().as_secs_f64(),
        fault.name()
    );
    Ok(match fault {
        Fault::WorkerKill => {
            let victim = (t0.elapsed().as_nanos() as usize) % stack.workers.len();
            let (queue, mut worker) = stack.workers.swap_remove(victim);
            worker.child.start_kill()?;
            let _ = worker.child.wait().await;
            let consumer = worker.consumer.lock().unwrap().clone().unwrap_or_default();
            let held: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE status = 'processing' AND worker_id = $1",
            )
            .bind(&consumer)
            .fetch_all(&db)
            .await?;
            stack.start_worker(queue)?;
            recovered_when(
                fault,
                t0,
                Box::new(move || {
                    let (db, held) = (db.clone(), held.clone());
                    Box::pin(async move {
                        sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status IN ('queued', 'processing')",
                    )
                    .bind(&held)
                    .fetch_one(&db)
                    .await
                    .is_ok_and(|n| n == 0)
                    })
                }),
            )
        }
        Fault::CallbackRestart | Fault::CallbackOutage => {
            let since = chrono::Utc::now();
            stack.callback.start_kill()?;
            let _ = stack.callback.wait().await;
            // An outage outlasts every retry of a report: the workers must hand those
            // jobs back (not fail them) and run them again once the service is back.
            let down = match fault {
                Fault::CallbackOutage => stack.report_budget() * 2,
                _ => Duration::from_millis(500),
            };
            tokio::time::sleep(down).await;
            stack.callback = stack.start_callback().await?;
            recovered_when(fault, t0, a_job_completed_after(db, since))
        }
        Fault::PostgresRestart => {
            let since = chrono::Utc::now();
            stack.postgres.crash_and_restart(POSTGRES_DOWN).await?;
            recovered_when(fault, t0, a_job_completed_after(db, since))
        }
        Fault::MisconfiguredWorker => {
            // A callback service still starting would let the worker start anyway (it
            // cannot tell "not up yet" from "refusing"): probe against a ready one.
            wait_ready(&format!("http://127.0.0.1:{}/readyz", stack.callback_port)).await?;
            stack.spawned_workers += 1;
            let refused = contract::misconfigured_worker(stack, stack.spawned_workers)?;
            tokio::spawn(async move { (fault, refused.await.ok().flatten()) })
        }
        Fault::ForgedReports => {
            let took = contract::forge_reports(stack, &db, &stack.forgeries).await?;
            tokio::spawn(async move { (fault, Some(took)) })
        }
        Fault::DispatcherRestart => {
            stack.dispatcher.start_kill()?;
            let _ = stack.dispatcher.wait().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.dispatcher = stack.start_dispatcher().await?;
            recovered_when(fault, t0, Box::new(|| Box::pin(async { true })))
        }
        Fault::RedisRestart => {
            stack.redis.start_kill()?;
            let _ = stack.redis.wait().await;
            stack.redis = stack.start_redis().await?;
            let (url, ns) = (stack.redis_url(), stack.namespace.clone());
            recovered_when(
                fault,
                t0,
                Box::new(move || {
                    let (db, url, ns) = (db.clone(), url.clone(), ns.clone());
                    Box::pin(async move {
                        redis_knows_unfinished(&db, &url, &ns)
                            .await
                            .unwrap_or(false)
                    })
                }),
            )
        }
    })
}

/// Whether Redis holds every job PostgreSQL says is queued or processing.
async fn redis_knows_unfinished(db: &sqlx::PgPool, url: &str, ns: &str) -> anyhow::Result<bool> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, queue FROM jobs WHERE status IN ('queued', 'processing')")
            .fetch_all(db)
            .await?;
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut pipe = redis::pipe();
    for (id, queue) in &rows {
        pipe.cmd("HEXISTS")
            .arg(format!("{ns}:{{{queue}}}:jobs"))
            .arg(id.to_string());
    }
    let known: Vec<bool> = pipe.query_async(&mut conn).await?;
    Ok(known.into_iter().all(|k| k))
}
