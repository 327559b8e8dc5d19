//! Scenarios through real services: `pickup` (idle SDK worker latency), `callback`
//! (callback service throughput on 3-image jobs) and `e2e` (HTTP enqueue → SDK workers →
//! signed callbacks → rows in PostgreSQL).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use gpuq_queue::{ConsumerName, EnqueueOptions, Queue, QueueConfig};
use gpuq_schemas::{JobEnvelope, JobId, QueueName};
use gpuq_worker_sdk::{Asset, JobContext, JobError, Output, Worker};

use crate::figures::Figure;
use crate::http_bench::{start_dispatcher, tokens};
use crate::queue_bench::envelope;
use crate::services::{drop_namespace, free_port, fresh_database, wait_ready};

pub(crate) const CALLBACK_SECRET: &str = "bench-callback-secret-0123456789";

/// Knobs of `pickup`.
#[derive(Args)]
pub struct PickupArgs {
    /// Jobs to enqueue.
    #[arg(long, default_value_t = 500)]
    jobs: usize,
    /// Pause between enqueues, ms.
    #[arg(long, default_value_t = 10)]
    gap_ms: u64,
}

/// Knobs of `callback`.
#[derive(Args)]
pub struct CallbackArgs {
    /// Jobs to complete.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// The callback binary.
    #[arg(long, default_value = "target/release/gpuq-callback")]
    callback: String,
}

/// Knobs of `e2e`.
#[derive(Args)]
pub struct E2eArgs {
    /// Jobs through the system.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Handler slots per worker process (two workers in this process).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// HTTP clients enqueueing at once.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// The dispatcher binary.
    #[arg(long, default_value = "target/release/gpuq-dispatcher")]
    dispatcher: String,
    /// The callback binary.
    #[arg(long, default_value = "target/release/gpuq-callback")]
    callback: String,
    /// The workers' `report_processing_after`, ms (0: `processing` as each handler starts,
    /// the SDK's default).
    #[arg(long, default_value_t = 0)]
    processing_after_ms: u64,
}

/// A callback child process, killed on drop.
pub(crate) struct CallbackProcess(Child, pub(crate) String);

impl Drop for CallbackProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn start_callback(
    bin: &str,
    db: &str,
    redis_url: &str,
    ns: &str,
) -> anyhow::Result<CallbackProcess> {
    let port = free_port()?;
    let child = Command::new(bin)
        .env("DATABASE_URL", db)
        .env("REDIS_URL", redis_url)
        .env("GPUQ_LISTEN", format!("127.0.0.1:{port}"))
        .env("GPUQ_CALLBACK_SECRET", CALLBACK_SECRET)
        .env("GPUQ_REDIS_NAMESPACE", ns)
        .env("GPUQ__DATABASE__MAX_CONNECTIONS", "32")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {bin}: {e} (cargo build --release first)"))?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/readyz")).await?;
    Ok(CallbackProcess(child, format!("{base}/v1/callback")))
}

async fn open_queue(redis_url: &str, ns: &str, name: &str) -> anyhow::Result<Queue> {
    let target = gpuq_queue::RedisTarget::open(redis_url)?;
    let conn = gpuq_queue::connect(&target).await?;
    let config = QueueConfig {
        max_depth: None,
        ..QueueConfig::default()
    };
    Ok(Queue::new(
        target,
        conn,
        ns,
        QueueName::parse(name)?,
        config,
    ))
}

fn percentiles(
    scenario: &'static str,
    what: &str,
    hist: &hdrhistogram::Histogram<u64>,
    params: serde_json::Value,
) -> Vec<Figure> {
    [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)]
        .into_iter()
        .map(|(name, q)| Figure {
            scenario,
            metric: format!("{what} {name}"),
            value: hist.value_at_quantile(q) as f64 / 1000.0,
            unit: "ms",
            params: params.clone(),
        })
        .collect()
}

/// `pickup`: an idle SDK worker; time from just before each enqueue to its handler start.
pub async fn run_pickup(redis_url: &str, a: PickupArgs) -> anyhow::Result<Vec<Figure>> {
    let ns = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let started: Arc<Mutex<HashMap<JobId, Instant>>> = Arc::default();
    let seen = started.clone();
    let handler = move |job: JobEnvelope, _ctx: JobContext| {
        seen.lock()
            .map(|mut m| m.insert(job.job_id, Instant::now()))
            .ok();
        async move {
            Ok::<_, JobError>(Output::images(vec![Asset::new(format!(
                "{}/{}/0.png",
                job.user_id, job.job_id
            ))]))
        }
    };
    // Results go to a sink that accepts everything: pickup latency ends at handler start.
    let sink = crate::services::accept_all_server().await?;
    let worker = Worker::builder()
        .redis_url(redis_url)
        .namespace(&ns)
        .queue("sdxl_queue")
        .concurrency(4)
        .callback_url(sink)
        .callback_secret(CALLBACK_SECRET.to_string().into())
        .claim_wait(Duration::from_secs(5))
        .handler(handler)
        .build()?;
    let stop = CancellationToken::new();
    let run = tokio::spawn(worker.run(stop.clone()));
    let q = open_queue(redis_url, &ns, "sdxl_queue").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut enqueued = HashMap::new();
    for _ in 0..a.jobs {
        let env = envelope("sdxl_queue", 500);
        let t = Instant::now();
        q.enqueue(&env, &EnqueueOptions::default()).await?;
        enqueued.insert(env.job_id, t);
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let _ = run.await;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    let starts = started
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    for (id, t0) in &enqueued {
        let t1 = starts
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("job {id} never started"))?;
        hist.record(t1.duration_since(*t0).as_micros() as u64)?;
    }
    drop_namespace(redis_url, &ns).await?;
    Ok(percentiles(
        "pickup",
        "enqueue → handler start",
        &hist,
        json!({"jobs": a.jobs, "gap_ms": a.gap_ms}),
    ))
}

/// `callback`: 3-image `completed` callbacks for jobs held in flight, from N senders.
pub async fn run_callback(redis_url: &str, a: CallbackArgs) -> anyhow::Result<Vec<Figure>> {
    let ns = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let db = fresh_database().await;
    let cb = start_callback(&a.callback, &db, redis_url, &ns).await?;
    let pool = sqlx::PgPool::connect(&db).await?;
    let q = open_queue(redis_url, &ns, "sdxl_queue").await?;
    let worker = ConsumerName::unique("bench");
    let mut jobs = Vec::with_capacity(a.jobs);
    for chunk in (0..a.jobs).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|_| (envelope("sdxl_queue", 500), EnqueueOptions::default()))
            .collect();
        for (env, _) in &batch {
            sqlx::query("INSERT INTO jobs (id, user_id, job_type, queue, status, prompt, max_attempts) VALUES ($1, $2, 'sdxl_image_fast', 'sdxl_queue', 'processing', $3, 3)")
                .bind(env.job_id.as_uuid())
                .bind(env.user_id.as_uuid())
                .bind(&env.prompt)
                .execute(&pool)
                .await?;
            jobs.push((env.job_id, env.user_id));
        }
        q.enqueue_batch(&batch).await?;
        while !q.claim(&worker, 500).await?.is_empty() {}
    }
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut failures = 0usize;
    let mut results = stream::iter(jobs)
        .map(|(id, user)| {
            let (http, url) = (http.clone(), cb.1.clone());
            async move {
                let body = json!({"jobId": id, "status": "completed", "attempt": 1, "outputs": (0..3).map(|i| json!({"path": format!("{user}/{id}/{i}.png"), "seed": i})).collect::<Vec<_>>()}).to_string();
                let ts = chrono::Utc::now().timestamp();
                let sig = gpuq_schemas::signature::sign(CALLBACK_SECRET.as_bytes(), ts, body.as_bytes());
                let t = Instant::now();
                let ok = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header(gpuq_schemas::signature::TIMESTAMP_HEADER, ts.to_string())
                    .header(gpuq_schemas::signature::SIGNATURE_HEADER, sig)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                (ok, t.elapsed())
            }
        })
        .buffer_unordered(a.senders);
    while let Some((ok, took)) = results.next().await {
        if ok {
            hist.record(took.as_micros() as u64)?;
        } else {
            failures += 1;
        }
    }
    let rate = a.jobs as f64 / start.elapsed().as_secs_f64();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM images")
        .fetch_one(&pool)
        .await?;
    drop_namespace(redis_url, &ns).await?;
    let params = json!({"jobs": a.jobs, "senders": a.senders, "images_per_job": 3, "failures": failures, "image_rows": rows});
    let mut out = vec![Figure {
        scenario: "callback",
        metric: format!("completed callbacks/s, {} senders", a.senders),
        value: rate,
        unit: "callbacks/s",
        params: params.clone(),
    }];
    out.extend(percentiles("callback", "callback latency", &hist, params));
    Ok(out)
}

/// `e2e`: HTTP enqueue through a dispatcher process, two SDK workers with no-op handlers,
/// signed callbacks to a callback process, until every job is `completed` in PostgreSQL.
pub async fn run_e2e(redis_url: &str, a: E2eArgs) -> anyhow::Result<Vec<Figure>> {
    let ns = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let d = start_dispatcher(&a.dispatcher, redis_url, &ns, &[]).await?;
    let db = d.database.clone();
    let cb = start_callback(&a.callback, &db, redis_url, &ns).await?;
    let pool = sqlx::PgPool::connect(&db).await?;
    let stop = CancellationToken::new();
    let mut runs = Vec::new();
    for queue in ["sdxl_queue", "wan_queue"] {
        let handler = |job: JobEnvelope, _ctx: JobContext| async move {
            Ok::<_, JobError>(Output::images(vec![Asset::new(format!(
                "{}/{}/0.png",
                job.user_id, job.job_id
            ))]))
        };
        let worker = Worker::builder()
            .redis_url(redis_url)
            .namespace(&ns)
            .queue(queue)
            .concurrency(a.concurrency)
            .callback_url(cb.1.clone())
            .callback_secret(CALLBACK_SECRET.to_string().into())
            .report_processing_after(Duration::from_millis(a.processing_after_ms))
            .handler(handler)
            .build()?;
        runs.push(tokio::spawn(worker.run(stop.clone())));
    }
    let tokens = Arc::new(tokens(200));
    let http = reqwest::Client::new();
    let url = format!("{}/v1/jobs", d.base);
    let start = Instant::now();
    stream::iter(0..a.jobs)
        .map(|i| {
            let (http, url, token) = (http.clone(), url.clone(), tokens[i % tokens.len()].clone());
            let job_type = if i % 2 == 0 {
                "sdxl_image_fast"
            } else {
                "image_fast"
            };
            async move {
                let body = json!({"jobType": job_type, "metadata": {"prompt": format!("e2e {i}")}});
                http.post(&url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(a.clients)
        .for_each(|r| {
            if !matches!(r, Ok(202)) {
                eprintln!("enqueue failed: {r:?}");
            }
            async {}
        })
        .await;
    let enqueue_secs = start.elapsed().as_secs_f64();
    // Poll the unfinished jobs through their partial index, every 20 ms: counting the
    // completed ones instead scans the whole table each time, and at 50 scans a second
    // that scanning took a visible share of PostgreSQL's CPU from the system under test.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'processing')",
        )
        .fetch_one(&pool)
        .await?;
        if unfinished == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'completed'")
        .fetch_one(&pool)
        .await?;
    stop.cancel();
    for r in runs {
        let _ = r.await;
    }
    drop_namespace(redis_url, &ns).await?;
    let params = json!({"jobs": a.jobs, "completed": completed, "worker_slots": a.concurrency * 2, "http_clients": a.clients, "processing_after_ms": a.processing_after_ms});
    let tuned = match a.processing_after_ms {
        0 => String::new(),
        ms => format!(", processing after {ms} ms"),
    };
    Ok(vec![
        Figure {
            scenario: "e2e",
            metric: format!("jobs/s, HTTP enqueue to completed row{tuned}"),
            value: completed as f64 / secs,
            unit: "jobs/s",
            params: params.clone(),
        },
        Figure {
            scenario: "e2e",
            metric: format!("HTTP enqueue phase{tuned}"),
            value: a.jobs as f64 / enqueue_secs,
            unit: "req/s",
            params,
        },
    ])
}
