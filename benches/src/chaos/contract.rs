//! The faults that attack the callback contract instead of killing processes, and the
//! end-of-run truth check.
//!
//! - misconfigured worker: a demo worker started with a wrong callback secret, or with the
//!   dispatcher's base URL as its callback URL. It must refuse to start (non-zero exit,
//!   no job started); recovery = how long it took to refuse.
//! - forged reports: an attacker holding the callback secret sends, for running jobs, a
//!   `failed` under a forged fence, a `completed` from a worker that does not hold the job,
//!   a `processing` of an earlier attempt, and the same signed request twice. None may
//!   change anything; recovery = the time to send them all.
//! - truth: after the drain, PostgreSQL and Redis must agree on every accepted job (a
//!   finished job is gone from Redis, or dead there when `failed`), and none may be stuck
//!   queued or processing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpuq_queue::{Queue, QueueConfig, RedisTarget};
use gpuq_schemas::signature::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use gpuq_schemas::QueueName;
use serde_json::{json, Value};
use tokio::process::Command;
use uuid::Uuid;

use super::{Stack, CALLBACK_SECRET};

/// Forged reports the callback service applied (must stay 0), and how many were sent.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Forgeries {
    pub sent: usize,
    pub applied: usize,
}

/// Starts a misconfigured demo worker (wrong secret on odd `nth`, wrong URL on even) and
/// returns the task that waits for it to refuse to start: `Some(time)` when it exited
/// non-zero without starting a job within 60 s.
pub(super) fn misconfigured_worker(
    stack: &Stack,
    nth: usize,
) -> anyhow::Result<tokio::task::JoinHandle<Option<Duration>>> {
    let t0 = Instant::now();
    let callback = format!("http://127.0.0.1:{}/v1/callback", stack.callback_port);
    let (secret, url, what) = if nth % 2 == 1 {
        (
            "not-the-callback-secret-0123456789",
            callback,
            "wrong secret",
        )
    } else {
        let base = format!("http://127.0.0.1:{}", stack.dispatcher_port);
        (CALLBACK_SECRET, base, "wrong URL")
    };
    let name = format!("misconfigured-{nth}");
    let log_path = stack.dir.join(format!("{name}.log"));
    let mut child = Command::new(stack.bins.join("gpuq-demo-worker"))
        .env("REDIS_URL", stack.redis_url())
        .env("GPUQ_REDIS_NAMESPACE", &stack.namespace)
        .env("GPUQ_QUEUE", "sdxl_queue")
        .env("GPUQ_CALLBACK_URL", url)
        .env("GPUQ_CALLBACK_SECRET", secret)
        .env("GPUQ_STORAGE_DIR", stack.dir.join("storage"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::from(stack.log(&name)?))
        .stderr(std::process::Stdio::from(stack.log(&name)?))
        .kill_on_drop(true)
        .spawn()?;
    Ok(tokio::spawn(async move {
        let exited = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
        let refused = matches!(exited, Ok(Ok(status)) if !status.success());
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        // Refused for the right reason: its probe, before anything was claimed.
        let probe_refused = log.contains("refused this worker's signed probe");
        if !refused || !probe_refused || log.contains("job started") {
            eprintln!("chaos: the {what} worker did not refuse to start (see {name}.log)");
            return None;
        }
        Some(t0.elapsed())
    }))
}

/// Sends forged and replayed reports for up to five running jobs.
pub(super) async fn forge_reports(
    stack: &Stack,
    db: &sqlx::PgPool,
    tally: &Arc<Mutex<Forgeries>>,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let running: Vec<(Uuid, Uuid, Option<String>, i32)> = sqlx::query_as(
        "SELECT id, user_id, worker_id, attempts FROM jobs WHERE status = 'processing' LIMIT 5",
    )
    .fetch_all(db)
    .await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://127.0.0.1:{}/v1/callback", stack.callback_port);
    for (id, user, worker, attempts) in running {
        let worker = worker.unwrap_or_default();
        let forged_fence = format!("{:032x}", rand_u128());
        let reports = [
            json!({"jobId": id, "status": "failed", "workerId": worker, "attempt": attempts,
                   "fence": forged_fence, "error": {"message": "forged", "retryable": true}}),
            json!({"jobId": id, "status": "completed", "workerId": "intruder", "attempt": attempts,
                   "fence": forged_fence, "outputs": [{"path": format!("{user}/{id}/0.png")}]}),
            json!({"jobId": id, "status": "processing", "workerId": worker,
                   "attempt": (attempts - 1).max(0), "fence": forged_fence}),
        ];
        for report in reports {
            let body = serde_json::to_vec(&report)?;
            let ts = chrono::Utc::now().timestamp();
            let signature = sign(CALLBACK_SECRET.as_bytes(), ts, &body);
            // Sent, then captured and replayed as is.
            for _ in 0..2 {
                let applied = post(&http, &url, &body, ts, &signature).await;
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                t.sent += 1;
                t.applied += usize::from(applied);
            }
        }
    }
    Ok(t0.elapsed())
}

/// Whether the callback service applied the report (answered 2xx without `ignored`).
async fn post(http: &reqwest::Client, url: &str, body: &[u8], ts: i64, sig: &str) -> bool {
    let res = http
        .post(url)
        .header("Content-Type", "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, sig)
        .body(body.to_vec())
        .send()
        .await;
    let Ok(res) = res else { return false };
    if !res.status().is_success() {
        return false;
    }
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    answer["ignored"] == false
}

/// A forged token: random, so never the claim's.
fn rand_u128() -> u128 {
    Uuid::new_v4().as_u128()
}

/// After the drain: accepted jobs on which PostgreSQL and Redis disagree, and those stuck
/// queued or processing. Waits two reconcile periods first (the chaos dispatcher
/// reconciles every second).
pub(super) async fn truth(
    stack: &Stack,
    db: &sqlx::PgPool,
    accepted: &[Uuid],
) -> anyhow::Result<(Vec<Uuid>, Vec<Uuid>)> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, queue, status FROM jobs WHERE id = ANY($1)")
            .bind(accepted)
            .fetch_all(db)
            .await?;
    let target = RedisTarget::open(&stack.redis_url())?;
    let conn = gpuq_queue::connect(&target).await?;
    let (mut disagree, mut stuck) = (Vec::new(), Vec::new());
    for queue_name in ["sdxl_queue", "wan_queue"] {
        let queue = Queue::new(
            target.clone(),
            conn.clone(),
            &stack.namespace,
            QueueName::parse(queue_name)?,
            QueueConfig::default(),
        );
        let mine: Vec<&(Uuid, String, String)> =
            rows.iter().filter(|(_, q, _)| q == queue_name).collect();
        let ids: Vec<_> = mine.iter().map(|(id, _, _)| (*id).into()).collect();
        let known = queue.known(&ids).await?;
        let dead = queue.dead_reasons(&ids).await?;
        for (((id, _, status), known), dead) in mine.into_iter().zip(known).zip(dead) {
            let agrees = match status.as_str() {
                "completed" | "cancelled" => !known,
                "failed" => !known || dead.is_some(),
                _ => {
                    stuck.push(*id);
                    true
                }
            };
            if !agrees {
                disagree.push(*id);
            }
        }
    }
    Ok((disagree, stuck))
}
