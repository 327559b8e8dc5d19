//! `http-enqueue`: `POST /v1/jobs` against a release-built dispatcher running as its own
//! process (fresh database, own Redis namespace), with valid JWTs, at several
//! concurrencies. Reports requests/s and latency percentiles.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use futures_util::stream::{self, StreamExt};
use serde_json::json;

use crate::figures::Figure;
use crate::services::{free_port, fresh_database, mint_token, wait_ready};

/// Knobs of the `http-enqueue` scenario.
#[derive(Args)]
pub struct HttpArgs {
    /// Requests per concurrency level.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    #[command(flatten)]
    load: Load,
    /// Credits on: every enqueue holds its price from its user's account (ADR 0014). Run
    /// with and without, alternating, to see what the hold costs.
    #[arg(long)]
    credits: bool,
}

/// Who sends enqueues, how many at once, and to which binary (shared by `http-enqueue` and
/// `credits-ab`).
#[derive(Args)]
pub struct Load {
    /// Concurrency levels to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Distinct users the requests are spread over.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// The dispatcher binary.
    #[arg(long, default_value = "target/release/gpuq-dispatcher")]
    pub dispatcher: String,
}

pub(crate) const SECRET: &str = "bench-secret-0123456789abcdef0123456789";

/// A dispatcher child process, killed on drop.
pub struct Dispatcher {
    child: Child,
    /// Its base URL.
    pub base: String,
    /// Its database URL.
    pub database: String,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the dispatcher binary on a free port against a fresh database.
pub async fn start_dispatcher(
    bin: &str,
    redis_url: &str,
    namespace: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<Dispatcher> {
    let db = fresh_database().await;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.env("DATABASE_URL", &db)
        .env("REDIS_URL", redis_url)
        .env("GPUQ_LISTEN", format!("127.0.0.1:{port}"))
        .env("GPUQ_JWT_SECRET", SECRET)
        .env("GPUQ_REDIS_NAMESPACE", namespace)
        .env("GPUQ__LIMITS__MAX_ACTIVE_JOBS_PER_USER", "1000000")
        .env("GPUQ__LIMITS__REQUESTS_PER_SECOND", "100000")
        .env("GPUQ__LIMITS__BURST", "100000")
        .env("GPUQ__QUEUE__MAX_DEPTH", "10000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {bin}: {e} (cargo build --release first)"))?;
    let d = Dispatcher {
        child,
        base: format!("http://127.0.0.1:{port}"),
        database: db,
    };
    wait_ready(&format!("{}/readyz", d.base)).await?;
    Ok(d)
}

/// Bearer tokens for `n` random users.
pub fn tokens(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| mint_token(SECRET, uuid::Uuid::new_v4()))
        .collect()
}

/// Runs the scenario.
pub async fn run(redis_url: &str, a: HttpArgs) -> anyhow::Result<Vec<Figure>> {
    let ns = format!("bench-{}", uuid::Uuid::new_v4().simple());
    // Each user's starting grant covers every job it sends.
    let credits: &[(&str, &str)] = if a.credits {
        &[
            ("GPUQ_CREDITS", "true"),
            ("GPUQ_STARTING_CREDITS", "1000000000"),
        ]
    } else {
        &[]
    };
    let d = start_dispatcher(&a.load.dispatcher, redis_url, &ns, credits).await?;
    let tokens = Arc::new(tokens(a.load.users));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("{}/v1/jobs", d.base);
    let mut figures = Vec::new();
    for &c in &a.load.concurrency {
        let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
        let start = Instant::now();
        let errors = burst(&http, &url, &tokens, 0..a.requests, c, &mut hist).await?;
        let secs = start.elapsed().as_secs_f64();
        let params = json!({"requests": a.requests, "concurrency": c, "errors": errors,
                            "credits": a.credits});
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        figures.push(Figure {
            scenario: "http-enqueue",
            metric: format!("requests/s at concurrency {c}"),
            value: a.requests as f64 / secs,
            unit: "req/s",
            params: params.clone(),
        });
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            figures.push(Figure {
                scenario: "http-enqueue",
                metric: format!("{name} latency at concurrency {c}"),
                value: ms(q),
                unit: "ms",
                params: params.clone(),
            });
        }
    }
    crate::services::drop_namespace(redis_url, &ns).await?;
    Ok(figures)
}

/// Sends requests `ids` (each an `sdxl_image_fast` job of user `id % users`) to `url`, `c`
/// at a time, recording each accepted one's latency (µs) in `hist`; returns the refusals.
pub async fn burst(
    http: &reqwest::Client,
    url: &str,
    tokens: &Arc<Vec<String>>,
    ids: std::ops::Range<usize>,
    c: usize,
    hist: &mut hdrhistogram::Histogram<u64>,
) -> anyhow::Result<usize> {
    let mut errors = 0usize;
    let mut results = stream::iter(ids)
        .map(|i| {
            let (http, url, token) = (http.clone(), url.to_owned(), tokens[i % tokens.len()].clone());
            async move {
                let body = json!({"jobType": "sdxl_image_fast", "metadata": {"prompt": format!("bench {i}"), "seed": i}});
                let t = Instant::now();
                let ok = http.post(&url).bearer_auth(token).json(&body).send().await.map(|r| r.status().as_u16() == 202).unwrap_or(false);
                (ok, t.elapsed())
            }
        })
        .buffer_unordered(c);
    while let Some((ok, took)) = results.next().await {
        if ok {
            hist.record(took.as_micros() as u64)?;
        } else {
            errors += 1;
        }
    }
    Ok(errors)
}
