//! `affinity`: model routing (ADR 0020) on the real services against plain fair order, in
//! the same run. Four users enqueue `--jobs` `sdxl_image_fast` jobs at once, each naming one
//! of three checkpoints at random (`metadata.model`, allow-listed with
//! `GPUQ__ENQUEUE__CHECKPOINTS__SDXL_IMAGE_FAST`). Two SDK workers of one slot run the
//! demo's simulated GPU: one model resident at a time, a switch costs `--load-secs`, a job
//! runs its catalog time, both × `--time-scale`. Once with plain claims (FIFO within the
//! fair share), once routed by model with `--wait-secs` as the bound, alternating
//! `--rounds` times. Reports per mode: model loads per 1,000 jobs, jobs/s from the first
//! enqueue to the last completion, and the longest wait (created → started) in seconds and
//! against the bound plus one service time.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use gpuq_worker_sdk::demo::{DemoHandler, SimulatedLoads};
use gpuq_worker_sdk::{LocalStorage, Worker, WorkerError};

use crate::figures::Figure;
use crate::http_bench::{start_dispatcher, SECRET};
use crate::services::{drop_namespace, mint_token};
use crate::system_bench::{start_callback, CALLBACK_SECRET};

const CHECKPOINTS: [&str; 3] = ["sdxl-base-1.0", "juggernaut-xl-v9", "dreamshaper-xl"];
const USERS: usize = 4;
const WORKERS: usize = 2;

/// Knobs of `affinity`.
#[derive(Args)]
pub struct AffinityArgs {
    /// Jobs per mode and round.
    #[arg(long, default_value_t = 120)]
    jobs: usize,
    /// What a model switch costs, seconds before the time scale.
    #[arg(long, default_value_t = 6.0)]
    load_secs: f64,
    /// Run times and loads are multiplied by this.
    #[arg(long, default_value_t = 0.05)]
    time_scale: f64,
    /// The routed workers' wait bound, seconds (real time). Longer than the backlog takes
    /// to drain, or every job is past it and routing is plain fair order.
    #[arg(long, default_value_t = 30.0)]
    wait_secs: f64,
    /// Rounds of plain, then routed.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The dispatcher binary.
    #[arg(long, default_value = "target/release/gpuq-dispatcher")]
    dispatcher: String,
    /// The callback binary.
    #[arg(long, default_value = "target/release/gpuq-callback")]
    callback: String,
}

/// What one mode did in one round.
struct Outcome {
    loads_per_1000: f64,
    jobs_per_sec: f64,
    longest_wait: f64,
}

/// Runs the scenario.
pub async fn run(redis_url: &str, a: AffinityArgs) -> anyhow::Result<Vec<Figure>> {
    let mut results: [Vec<Outcome>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..a.rounds {
        for (i, routed) in [false, true].into_iter().enumerate() {
            results[i].push(one_mode(redis_url, &a, routed).await?);
        }
    }
    let service = 6.0 * a.time_scale;
    let params = json!({"jobs": a.jobs, "rounds": a.rounds, "load_secs": a.load_secs,
        "time_scale": a.time_scale, "wait_secs": a.wait_secs, "workers": WORKERS,
        "models": CHECKPOINTS.len(), "users": USERS});
    let mut figures = Vec::new();
    for (i, mode) in ["plain fair order", "routed by model"]
        .into_iter()
        .enumerate()
    {
        let mean = |f: fn(&Outcome) -> f64| {
            results[i].iter().map(f).sum::<f64>() / results[i].len().max(1) as f64
        };
        let worst = results[i]
            .iter()
            .map(|o| o.longest_wait)
            .fold(0.0, f64::max);
        for (metric, value, unit) in [
            (
                "model loads per 1,000 jobs",
                mean(|o| o.loads_per_1000),
                "loads",
            ),
            ("throughput", mean(|o| o.jobs_per_sec), "jobs/s"),
            ("longest wait", worst, "s"),
            (
                "longest wait ÷ (bound + one service time)",
                worst / (a.wait_secs + service),
                "ratio",
            ),
        ] {
            figures.push(Figure {
                scenario: "affinity",
                metric: format!("{mode}: {metric}"),
                value,
                unit,
                params: params.clone(),
            });
        }
    }
    Ok(figures)
}

async fn one_mode(redis_url: &str, a: &AffinityArgs, routed: bool) -> anyhow::Result<Outcome> {
    let ns = format!("bench-{}", Uuid::new_v4().simple());
    let lists = CHECKPOINTS.join(",");
    let extra = [(
        "GPUQ__ENQUEUE__CHECKPOINTS__SDXL_IMAGE_FAST",
        lists.as_str(),
    )];
    let d = start_dispatcher(&a.dispatcher, redis_url, &ns, &extra).await?;
    let cb = start_callback(&a.callback, &d.database, redis_url, &ns).await?;
    let db = PgPool::connect(&d.database).await?;
    let stop = CancellationToken::new();
    let outputs = std::env::temp_dir().join(&ns);
    let mut loads = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let sim = SimulatedLoads::new(Duration::from_secs_f64(a.load_secs), 1);
        loads.push(sim.clone());
        let mut builder = Worker::builder()
            .redis_url(redis_url)
            .namespace(&ns)
            .queue("sdxl_queue")
            .callback_url(cb.1.clone())
            .callback_secret(CALLBACK_SECRET.to_string().into())
            .storage(LocalStorage::new(&outputs))
            .handler(DemoHandler {
                time_scale: a.time_scale,
                loads: Some(sim),
            });
        if routed {
            builder = builder.model_wait(Duration::from_secs_f64(a.wait_secs));
        }
        let worker: Worker = builder.build()?;
        workers.push(tokio::spawn(worker.run(stop.clone())));
    }
    let started = Instant::now();
    enqueue_mixed(&d.base, a.jobs).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'completed'")
            .fetch_one(&db)
            .await?;
        if done >= a.jobs as i64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "affinity: jobs did not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let longest_wait: f64 = sqlx::query_scalar(
        "SELECT max(extract(epoch FROM started_at - created_at))::float8 FROM jobs",
    )
    .fetch_one(&db)
    .await?;
    stop.cancel();
    for w in workers {
        let _: Result<Result<(), WorkerError>, _> = w.await;
    }
    drop(cb);
    drop(d);
    drop_namespace(redis_url, &ns).await?;
    let _ = std::fs::remove_dir_all(&outputs);
    let total_loads: u64 = loads.iter().map(SimulatedLoads::loads).sum();
    Ok(Outcome {
        loads_per_1000: total_loads as f64 * 1000.0 / a.jobs as f64,
        jobs_per_sec: a.jobs as f64 / elapsed,
        longest_wait,
    })
}

/// `n` jobs from `USERS` users, each naming a checkpoint drawn by a fixed pseudo-random
/// sequence (the same mix in every mode and round), enqueued at once.
async fn enqueue_mixed(base: &str, n: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
    let mut draw: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        let user = users[i % USERS];
        // xorshift64: reproducible, and no pattern a window of jobs could exploit.
        draw ^= draw << 13;
        draw ^= draw >> 7;
        draw ^= draw << 17;
        let model = CHECKPOINTS[(draw % CHECKPOINTS.len() as u64) as usize];
        let body = json!({"jobType": "sdxl_image_fast",
            "metadata": {"prompt": format!("affinity {i}"), "model": model}});
        let res = http
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(mint_token(SECRET, user))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(res.status() == 202, "enqueue: {}", res.text().await?);
    }
    Ok(())
}
