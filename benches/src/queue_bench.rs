//! Queue-only scenarios: enqueue throughput (single with N in flight, and batched),
//! claim+ack throughput with C consumers, and Redis bytes per waiting job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::task::JoinSet;

use gpuq_queue::{ConsumerName, EnqueueOptions, Queue, QueueConfig};
use gpuq_schemas::{JobEnvelope, JobType, QueueName};

use crate::figures::Figure;

/// Knobs of the `queue` scenario.
#[derive(Args)]
pub struct QueueArgs {
    /// Jobs per measurement.
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Enqueue calls in flight at once.
    #[arg(long, default_value_t = 50)]
    in_flight: usize,
    /// Jobs per pipelined batch in the batched enqueue measurement.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Consumers claiming and acking at once, one job per claim.
    #[arg(long, default_value_t = 50)]
    consumers: usize,
    /// Handler slots of the one worker in the worker-style claim+ack measurement.
    #[arg(long, default_value_t = 50)]
    worker_slots: usize,
    /// Approximate envelope size, bytes.
    #[arg(long, default_value_t = 500)]
    payload: usize,
    /// Tenants the jobs are spread over, round robin (each is a fair-share list of its own).
    #[arg(long, default_value_t = 100)]
    tenants: usize,
}

/// Knobs of the `memory` scenario.
#[derive(Args)]
pub struct MemoryArgs {
    /// Waiting jobs to add.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Approximate envelope size, bytes.
    #[arg(long, default_value_t = 500)]
    payload: usize,
    /// Tenants the jobs are spread over, round robin.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
}

async fn bench_queue(redis_url: &str) -> anyhow::Result<Queue> {
    let target = gpuq_queue::RedisTarget::open(redis_url)?;
    let conn = gpuq_queue::connect(&target).await?;
    let ns = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = QueueConfig {
        max_depth: None,
        lease: Duration::from_secs(300),
        ..QueueConfig::default()
    };
    Ok(Queue::new(
        target,
        conn,
        &ns,
        QueueName::parse("sdxl_queue")?,
        config,
    ))
}

/// A realistic SDXL envelope, every field the dispatcher writes, padded to about `size`
/// bytes of JSON. Its prompt is short so that 500 bytes leave room for padding: the memory
/// figure is for a 500-byte envelope, not one a few bytes over jemalloc's 512-byte class.
pub fn envelope(queue: &str, size: usize) -> JobEnvelope {
    let mut env = gpuq_service::testkit::envelope(JobType::SdxlImageFast);
    env.queue = queue.into();
    env.prompt = "a lighthouse at dusk".into();
    env.config.seed = Some(1234);
    gpuq_service::testkit::envelope::padded(env, size)
}

/// `n` envelopes whose owners (their tenants) take turns among `tenants` fixed users.
fn spread_envelopes(queue: &str, size: usize, n: usize, tenants: usize) -> Vec<JobEnvelope> {
    (0..n)
        .map(|i| {
            let mut env = envelope(queue, size);
            env.user_id = uuid::Uuid::from_u128((i % tenants.max(1)) as u128 + 1).into();
            env
        })
        .collect()
}

/// Deletes the bench queue's namespace, tenants' lists included.
async fn cleanup(queue: &Queue) -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = queue.keys().prefix();
    let ns = prefix.split(':').next().unwrap_or(prefix);
    crate::services::drop_namespace(&url, ns).await
}

/// Runs the `queue` scenario.
pub async fn run_queue(redis_url: &str, a: QueueArgs) -> anyhow::Result<Vec<Figure>> {
    let q = bench_queue(redis_url).await?;
    let name = q.name().to_string();
    let params = json!({"jobs": a.jobs, "in_flight": a.in_flight, "payload_bytes": a.payload, "tenants": a.tenants});
    let envelopes = spread_envelopes(&name, a.payload, a.jobs, a.tenants);

    let opts = EnqueueOptions::default();
    let start = Instant::now();
    stream::iter(&envelopes)
        .map(|e| q.enqueue(e, &opts))
        .buffer_unordered(a.in_flight)
        .for_each(|r| {
            r.expect("enqueue");
            async {}
        })
        .await;
    let single = a.jobs as f64 / start.elapsed().as_secs_f64();

    let consumers = claim_and_ack_all(&q, a.jobs, a.consumers).await?;

    let batches: Vec<Vec<_>> = spread_envelopes(&name, a.payload, a.jobs, a.tenants)
        .chunks(a.batch)
        .map(|c| {
            c.iter()
                .map(|e| (e.clone(), EnqueueOptions::default()))
                .collect()
        })
        .collect();
    let start = Instant::now();
    stream::iter(&batches)
        .map(|b| q.enqueue_batch(b))
        .buffer_unordered(4)
        .for_each(|r| {
            r.expect("enqueue batch");
            async {}
        })
        .await;
    let batched = a.jobs as f64 / start.elapsed().as_secs_f64();
    let worker = worker_claim_and_ack(&q, a.jobs, a.worker_slots).await?;
    cleanup(&q).await?;

    Ok(vec![
        Figure {
            scenario: "queue",
            metric: format!("enqueue, single, {} in flight", a.in_flight),
            value: single,
            unit: "jobs/s",
            params: params.clone(),
        },
        Figure {
            scenario: "queue",
            metric: format!("enqueue, batches of {}", a.batch),
            value: batched,
            unit: "jobs/s",
            params: params.clone(),
        },
        Figure {
            scenario: "queue",
            metric: format!("claim+ack, {} consumers", a.consumers),
            value: consumers,
            unit: "jobs/s",
            params: json!({"jobs": a.jobs, "consumers": a.consumers, "payload_bytes": a.payload}),
        },
        Figure {
            scenario: "queue",
            metric: format!("claim+ack, one worker with {} slots", a.worker_slots),
            value: worker,
            unit: "jobs/s",
            params: json!({"jobs": a.jobs, "worker_slots": a.worker_slots, "payload_bytes": a.payload}),
        },
    ])
}

/// Claims and acks `total` jobs the way one SDK worker with `slots` handler slots does:
/// one claimer asks for as many jobs as there are free slots, and each job is acked by a
/// task of its own (a no-op handler), by its claim's fence, through the worker's one
/// [`gpuq_queue::Acker`] (acks that end together share a call). Returns jobs/s.
async fn worker_claim_and_ack(q: &Queue, total: usize, slots: usize) -> anyhow::Result<f64> {
    let me = ConsumerName::unique("bench-worker");
    let mut claimer = q.claimer(me.clone()).await?;
    let acks = q.acker();
    let mut running = JoinSet::new();
    let mut done = 0;
    let start = Instant::now();
    while done < total {
        while let Some(acked) = running.try_join_next() {
            acked??;
            done += 1;
        }
        let free = slots - running.len();
        if free == 0 {
            if let Some(acked) = running.join_next().await {
                acked??;
                done += 1;
            }
            continue;
        }
        for job in claimer.claim(free, Duration::from_millis(200)).await? {
            let (acks, me) = (acks.clone(), me.clone());
            running.spawn(async move { acks.ack_claim(job.id, &me, &job.fence()).await });
        }
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Claims and acks `total` jobs with `consumers` tasks, each claiming one job at a time;
/// returns jobs/s.
async fn claim_and_ack_all(q: &Queue, total: usize, consumers: usize) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..consumers {
        let (q, done) = (q.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let me = ConsumerName::unique(&format!("bench{i}"));
            let mut claimer = q.claimer(me.clone()).await?;
            while done.load(Ordering::Relaxed) < total {
                for job in claimer.claim(1, Duration::from_millis(200)).await? {
                    q.ack(job.id, Some(&me)).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no used_memory in INFO"))
}

/// Runs the `memory` scenario.
pub async fn run_memory(redis_url: &str, a: MemoryArgs) -> anyhow::Result<Vec<Figure>> {
    let q = bench_queue(redis_url).await?;
    let name = q.name().to_string();
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let sample = serde_json::to_string(&envelope(&name, a.payload))?.len();
    let before = used_memory(&mut conn).await?;
    for chunk in spread_envelopes(&name, a.payload, a.jobs, a.tenants).chunks(1000) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|e| (e.clone(), EnqueueOptions::default()))
            .collect();
        q.enqueue_batch(&batch).await?;
    }
    let after = used_memory(&mut conn).await?;
    cleanup(&q).await?;
    let per_job = (after.saturating_sub(before)) as f64 / a.jobs as f64;
    Ok(vec![Figure {
        scenario: "memory",
        metric: "Redis used_memory per waiting job".into(),
        value: per_job,
        unit: "bytes",
        params: json!({"jobs": a.jobs, "envelope_bytes": sample, "tenants": a.tenants}),
    }])
}
