//! `fairness`: the fair share on the real services (release dispatcher and callback
//! processes, two SDK workers of one slot each on `sdxl_queue`, handlers that sleep their
//! type's catalog duration × `--time-scale`).
//!
//! 1. **A lone job under a flood.** User A enqueues `--flood` `sdxl_image_high` jobs; while
//!    they run, six other users each enqueue one `sdxl_image_fast`, at moments spread over
//!    a service time. Their waits (row created → started) are reported in units of the
//!    flood's service time per slot (mean and worst): FIFO would make each the whole
//!    backlog ahead (up to `--flood / 2`); the target is ≤ 1.5.
//! 2. **Weighted shares.** Users C (weight 1) and D (weight 3, set with
//!    `PUT /admin/tenants/{user}`) each enqueue `--flood` jobs at once; over the first half
//!    of the completions (both still have jobs waiting), D's share of the GPU-seconds
//!    against the 0.75 its weight gives it (target within ±10 %).
//! 3. **Predictions that come true** (`fairness_eta.rs`): the median error of predicted
//!    against actual start times for a mixed workload (target ≤ 20 %).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use gpuq_schemas::JobEnvelope;
use gpuq_worker_sdk::{Asset, JobContext, JobError, Output, Worker, WorkerError};

use crate::figures::Figure;
use crate::http_bench::{start_dispatcher, SECRET};
use crate::services::{drop_namespace, mint_token};
use crate::system_bench::{start_callback, CALLBACK_SECRET};

const ADMIN: &str = "bench-admin-token-0123456789";
/// Lone jobs sent into the flood.
const PROBES: usize = 6;

/// Knobs of `fairness`.
#[derive(Args)]
pub struct FairnessArgs {
    /// Jobs each flooding user enqueues.
    #[arg(long, default_value_t = 24)]
    flood: usize,
    /// Handlers sleep the catalog's typical duration times this.
    #[arg(long, default_value_t = 0.025)]
    time_scale: f64,
    /// The dispatcher binary.
    #[arg(long, default_value = "target/release/gpuq-dispatcher")]
    dispatcher: String,
    /// The callback binary.
    #[arg(long, default_value = "target/release/gpuq-callback")]
    callback: String,
    /// Leave out part 3 (the ETA's accuracy, about a minute and a half of real run times).
    #[arg(long)]
    skip_eta: bool,
}

/// The running services, as the scenario's users see them.
pub(crate) struct Stack {
    pub http: reqwest::Client,
    pub base: String,
    pub db: PgPool,
}

impl Stack {
    /// Enqueues `n` jobs of `job_type` as `user`; returns their ids.
    pub async fn enqueue(
        &self,
        user: Uuid,
        job_type: &str,
        n: usize,
    ) -> anyhow::Result<Vec<String>> {
        let token = mint_token(SECRET, user);
        let mut ids = Vec::new();
        for i in 0..n {
            let body = json!({"jobType": job_type, "metadata": {"prompt": format!("fair {i}")}});
            let res = self
                .http
                .post(format!("{}/v1/jobs", self.base))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(res.status() == 202, "enqueue: {}", res.text().await?);
            let answer: serde_json::Value = res.json().await?;
            ids.push(answer["job"]["id"].as_str().unwrap_or_default().to_owned());
        }
        Ok(ids)
    }

    /// Waits until `sql` (a count) reaches `n`.
    pub async fn until(&self, sql: &str, n: i64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.db)
            .await?
            < n
        {
            anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {sql}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// `n` SDK workers of `concurrency` slots each on `sdxl_queue`, whose handlers sleep their
/// type's catalog duration × `scale`.
pub(crate) fn sdxl_workers(
    redis_url: &str,
    ns: &str,
    callback_url: &str,
    n: usize,
    concurrency: usize,
    scale: f64,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Result<(), WorkerError>>>> {
    let mut workers = Vec::new();
    for _ in 0..n {
        let handler = move |job: JobEnvelope, _ctx: JobContext| async move {
            let secs = f64::from(job.job_type.spec().typical_seconds) * scale;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            let key = format!("{}/{}/0.png", job.user_id, job.job_id);
            Ok::<_, JobError>(Output::images(vec![Asset::new(key)]))
        };
        let worker = Worker::builder()
            .redis_url(redis_url)
            .namespace(ns)
            .queue("sdxl_queue")
            .concurrency(concurrency)
            .callback_url(callback_url.to_owned())
            .callback_secret(CALLBACK_SECRET.to_string().into())
            .handler(handler)
            .build()?;
        workers.push(tokio::spawn(worker.run(stop.clone())));
    }
    Ok(workers)
}

/// Stops the workers of [`sdxl_workers`] and waits for them.
pub(crate) async fn stop_workers(
    stop: &CancellationToken,
    workers: Vec<tokio::task::JoinHandle<Result<(), WorkerError>>>,
) {
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
}

/// Runs the scenario.
pub async fn run(redis_url: &str, a: FairnessArgs) -> anyhow::Result<Vec<Figure>> {
    let ns = format!("bench-{}", Uuid::new_v4().simple());
    let extra = [("GPUQ_ADMIN_TOKEN", ADMIN)];
    let d = start_dispatcher(&a.dispatcher, redis_url, &ns, &extra).await?;
    let cb = start_callback(&a.callback, &d.database, redis_url, &ns).await?;
    let stack = Stack {
        http: reqwest::Client::new(),
        base: d.base.clone(),
        db: PgPool::connect(&d.database).await?,
    };
    let stop = CancellationToken::new();
    let scale = a.time_scale;
    let workers = sdxl_workers(redis_url, &ns, &cb.1, 2, 1, scale, &stop)?;
    let slot_secs = 12.0 * scale / 2.0;

    // 1. Lone jobs under a flood: five users each enqueue one job at spread-out moments
    //    while the flood runs (not just as a slot starts a flood job: that is the worst
    //    case, a whole service time).
    let a_user = Uuid::new_v4();
    stack.enqueue(a_user, "sdxl_image_high", a.flood).await?;
    stack
        .until("SELECT count(*) FROM jobs WHERE started_at IS NOT NULL", 2)
        .await?;
    let mut waits = Vec::new();
    for i in 0..PROBES {
        // Offsets of 0.37, 0.74, 1.11 ... service times: every phase of the slots.
        tokio::time::sleep(Duration::from_secs_f64(
            0.37 * 12.0 * scale * (i % 3 + 1) as f64,
        ))
        .await;
        let lone = Uuid::new_v4();
        stack.enqueue(lone, "sdxl_image_fast", 1).await?;
        let started = format!(
            "SELECT count(*) FROM jobs WHERE user_id = '{lone}' AND started_at IS NOT NULL"
        );
        stack.until(&started, 1).await?;
        let wait: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM started_at - created_at)::float8 FROM jobs WHERE user_id = $1",
        )
        .bind(lone)
        .fetch_one(&stack.db)
        .await?;
        waits.push(wait / slot_secs);
    }
    let lone_mean = waits.iter().sum::<f64>() / waits.len() as f64;
    let lone_max = waits.iter().copied().fold(0.0, f64::max);
    let total = (a.flood + PROBES) as i64;
    stack
        .until(
            "SELECT count(*) FROM jobs WHERE status = 'completed'",
            total,
        )
        .await?;

    // 2. Weighted shares.
    let (c_user, d_user) = (Uuid::new_v4(), Uuid::new_v4());
    let res = stack
        .http
        .put(format!("{}/admin/tenants/{d_user}", d.base))
        .bearer_auth(ADMIN)
        .json(&json!({"weight": 3}))
        .send()
        .await?;
    anyhow::ensure!(res.status() == 200, "set weight: {}", res.text().await?);
    let (c, dd) = (
        stack.enqueue(c_user, "sdxl_image_high", a.flood),
        stack.enqueue(d_user, "sdxl_image_high", a.flood),
    );
    tokio::try_join!(c, dd)?;
    let half = a.flood as i64;
    stack
        .until(
            &format!("SELECT count(*) FROM jobs WHERE status = 'completed' AND user_id IN ('{c_user}', '{d_user}')"),
            half,
        )
        .await?;
    let shares: Vec<(Uuid, f64)> = sqlx::query_as(
        "SELECT user_id, sum(extract(epoch FROM completed_at - started_at))::float8 FROM \
         (SELECT * FROM jobs WHERE user_id IN ($1, $2) AND status = 'completed' \
          ORDER BY completed_at LIMIT $3) first GROUP BY user_id",
    )
    .bind(c_user)
    .bind(d_user)
    .bind(half)
    .fetch_all(&stack.db)
    .await?;
    let gpu = |u: Uuid| {
        shares
            .iter()
            .find(|(x, _)| *x == u)
            .map_or(0.0, |(_, s)| *s)
    };
    let d_share = gpu(d_user) / (gpu(c_user) + gpu(d_user)).max(f64::EPSILON);

    stop_workers(&stop, workers).await;
    drop(cb);
    drop(d);
    drop_namespace(redis_url, &ns).await?;
    let params = json!({"flood": a.flood, "time_scale": a.time_scale, "slots": 2});
    let mut figures = vec![
        Figure {
            scenario: "fairness",
            metric: format!(
                "lone job's wait under a flood, mean of {PROBES}, in service times per slot"
            ),
            value: lone_mean,
            unit: "slots",
            params: params.clone(),
        },
        Figure {
            scenario: "fairness",
            metric: format!("lone job's wait under a flood, worst of {PROBES}"),
            value: lone_max,
            unit: "slots",
            params: params.clone(),
        },
        Figure {
            scenario: "fairness",
            metric: "GPU-seconds share of the weight-3 tenant (weight gives 0.75)".into(),
            value: d_share,
            unit: "share",
            params,
        },
    ];
    if !a.skip_eta {
        figures.extend(crate::fairness_eta::run(redis_url, &a.dispatcher, &a.callback).await?);
    }
    Ok(figures)
}
