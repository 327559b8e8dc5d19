//! `chaos`: jobs of every type through real dispatcher, callback and demo-worker processes
//! while workers are SIGKILLed, the callback service and the dispatcher are killed and
//! restarted, the callback service stays away longer than a report's retries, PostgreSQL
//! (a private cluster) crashes and restarts, and Redis (a private one, persistence off) is
//! restarted empty once; misconfigured workers start and forged reports arrive ([`faults`]
//! lists every kind and how its recovery is timed). Then every accepted job must be
//! finished in PostgreSQL with exactly its rows, no job may have run more often than its
//! attempts (plus the times a worker handed it back) allow, and PostgreSQL and Redis must
//! agree.

mod contract;
mod faults;
mod ledger;
mod postgres;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use clap::Args;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use gpuq_schemas::{JobKind, JobType};

use crate::figures::Figure;
use crate::services::{drop_namespace, free_port, mint_token, wait_ready};
use faults::Fault;
use postgres::PrivatePostgres;

const JWT_SECRET: &str = "chaos-jwt-secret-0123456789abcdef0123";
const CALLBACK_SECRET: &str = "chaos-callback-secret-0123456789abc";

/// Knobs of `chaos`.
#[derive(Args)]
pub struct ChaosArgs {
    /// Jobs to enqueue (spread over all ten types).
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Enqueue rate, jobs per second (faults land while jobs flow).
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Demo-worker processes per queue.
    #[arg(long, default_value_t = 2)]
    workers_per_queue: usize,
    /// Jobs at once per worker process.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Time between two faults, ms.
    #[arg(long, default_value_t = 2000)]
    fault_every_ms: u64,
    /// Worker lease, seconds (a killed worker's jobs come back after it).
    #[arg(long, default_value_t = 2.0)]
    lease_secs: f64,
    /// Retries of a worker's report (`GPUQ_CALLBACK_RETRIES`); a callback outage lasts
    /// twice as long as they take.
    #[arg(long, default_value_t = 4)]
    callback_retries: usize,
    /// Simulated GPU time = the type's typical seconds × this.
    #[arg(long, default_value_t = 0.003)]
    time_scale: f64,
    /// Give up waiting for every job to finish after this long, seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Folder holding gpuq-dispatcher, gpuq-callback and gpuq-demo-worker.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Folder for logs and worker outputs (kept after the run).
    #[arg(long, default_value = "target/chaos")]
    out_dir: PathBuf,
}

/// Per job, how often something happened, read from the workers' logs.
type Counts = Arc<Mutex<HashMap<Uuid, u32>>>;

struct Worker {
    child: Child,
    consumer: Arc<Mutex<Option<String>>>,
}

/// Every process of the system under test, on fixed ports so restarts keep addresses.
struct Stack {
    bins: PathBuf,
    dir: PathBuf,
    namespace: String,
    database: String,
    redis_port: u16,
    dispatcher_port: u16,
    callback_port: u16,
    redis: Child,
    postgres: PrivatePostgres,
    dispatcher: Child,
    callback: Child,
    workers: Vec<(&'static str, Worker)>,
    spawned_workers: usize,
    /// Handler starts.
    starts: Counts,
    /// Jobs handed back to the queue without spending an attempt.
    handbacks: Counts,
    started: Instant,
    time_scale: f64,
    lease_secs: f64,
    callback_retries: usize,
    concurrency: usize,
    forgeries: Arc<Mutex<contract::Forgeries>>,
}

impl Stack {
    fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.dispatcher_port)
    }

    /// How long a worker keeps retrying a report (the SDK's backoff: 0.25 s doubling,
    /// at most 30 s apart).
    fn report_budget(&self) -> Duration {
        (0..self.callback_retries)
            .map(|i| Duration::from_millis(250 << i.min(7)).min(Duration::from_secs(30)))
            .sum()
    }

    fn log(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?)
    }

    async fn start_redis(&self) -> anyhow::Result<Child> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::from(self.log("redis")?))
            .stderr(Stdio::from(self.log("redis")?))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start redis-server: {e}"))?;
        let client = redis::Client::open(self.redis_url())?;
        for _ in 0..100 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return Ok(child);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server on port {} never answered", self.redis_port)
    }

    fn service(&self, bin: &str, port: u16) -> anyhow::Result<Command> {
        let mut cmd = Command::new(self.bins.join(bin));
        cmd.env("DATABASE_URL", &self.database)
            .env("REDIS_URL", self.redis_url())
            .env("GPUQ_REDIS_NAMESPACE", &self.namespace)
            .env("GPUQ_LISTEN", format!("127.0.0.1:{port}"))
            .env("GPUQ_CALLBACK_SECRET", CALLBACK_SECRET)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(self.log(bin)?))
            .stderr(Stdio::from(self.log(bin)?))
            .kill_on_drop(true);
        Ok(cmd)
    }

    async fn start_dispatcher(&self) -> anyhow::Result<Child> {
        let child = self
            .service("gpuq-dispatcher", self.dispatcher_port)?
            .env("GPUQ_JWT_SECRET", JWT_SECRET)
            .env("GPUQ__LIMITS__MAX_ACTIVE_JOBS_PER_USER", "100000")
            .env("GPUQ__LIMITS__REQUESTS_PER_SECOND", "100000")
            .env("GPUQ__LIMITS__BURST", "100000")
            .env("GPUQ__QUEUE__BACKOFF_BASE_MS", "200")
            .env("GPUQ__QUEUE__BACKOFF_MAX_MS", "2000")
            .env("GPUQ__QUEUE__RECONCILE_INTERVAL_MS", "1000")
            .env("GPUQ__QUEUE__RECONCILE_GRACE_MS", "3000")
            // Credits on, with more than any user spends: every job is held, and the
            // ledger is checked after the run.
            .env("GPUQ_CREDITS", "true")
            .env("GPUQ_STARTING_CREDITS", "1000000")
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start gpuq-dispatcher: {e} (build it first)"))?;
        wait_ready(&format!("{}/readyz", self.base())).await?;
        Ok(child)
    }

    async fn start_callback(&self) -> anyhow::Result<Child> {
        let child = self
            .service("gpuq-callback", self.callback_port)?
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start gpuq-callback: {e} (build it first)"))?;
        wait_ready(&format!("http://127.0.0.1:{}/readyz", self.callback_port)).await?;
        Ok(child)
    }

    /// Starts a demo worker whose log lines are scanned for handler starts.
    fn start_worker(&mut self, queue: &'static str) -> anyhow::Result<()> {
        self.spawned_workers += 1;
        let name = format!("worker-{}-{}", queue, self.spawned_workers);
        let mut child = Command::new(self.bins.join("gpuq-demo-worker"))
            .env("REDIS_URL", self.redis_url())
            .env("GPUQ_REDIS_NAMESPACE", &self.namespace)
            .env("GPUQ_QUEUE", queue)
            .env(
                "GPUQ_CALLBACK_URL",
                format!("http://127.0.0.1:{}/v1/callback", self.callback_port),
            )
            .env("GPUQ_CALLBACK_SECRET", CALLBACK_SECRET)
            .env("GPUQ_CONCURRENCY", self.concurrency.to_string())
            .env("GPUQ_STORAGE_DIR", self.dir.join("storage"))
            .env("GPUQ_DEMO_TIME_SCALE", self.time_scale.to_string())
            .env("GPUQ_LEASE_SECS", self.lease_secs.to_string())
            .env("GPUQ_CALLBACK_RETRIES", self.callback_retries.to_string())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(self.log(&name)?))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start gpuq-demo-worker: {e} (build it first)"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let consumer = Arc::new(Mutex::new(None));
        let (starts, handbacks) = (self.starts.clone(), self.handbacks.clone());
        let seen_consumer = consumer.clone();
        let log_path = self.dir.join(format!("{name}.log"));
        tokio::spawn(async move {
            let mut log = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .await
                .ok();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let job = field(&line, "job_id=").and_then(|v| v.parse::<Uuid>().ok());
                if let (Some(id), true) = (job, line.contains("job started")) {
                    *starts.lock().unwrap().entry(id).or_default() += 1;
                } else if let (Some(id), true) = (job, line.contains("job handed back")) {
                    *handbacks.lock().unwrap().entry(id).or_default() += 1;
                } else if line.contains("worker starting") {
                    *seen_consumer.lock().unwrap() = field(&line, "consumer=").map(String::from);
                }
                if let Some(log) = log.as_mut() {
                    let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                }
            }
        });
        self.workers.push((queue, Worker { child, consumer }));
        Ok(())
    }
}

/// The value after `key` in a tracing log line, up to the next space or `}`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest.find([' ', '}']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Runs the scenario.
pub async fn run(a: ChaosArgs) -> anyhow::Result<Vec<Figure>> {
    let run_id = Uuid::new_v4().simple().to_string();
    let dir = a.out_dir.join(&run_id[..8]);
    std::fs::create_dir_all(dir.join("storage"))?;
    let dir = std::fs::canonicalize(dir)?;
    eprintln!("chaos: logs and outputs in {}", dir.display());
    let postgres = PrivatePostgres::start(&dir, &run_id[..12])?;
    let database = postgres.create_database("gpuq_chaos").await?;
    let mut stack = Stack {
        bins: std::fs::canonicalize(&a.bin_dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.bin_dir.display()))?,
        dir,
        namespace: format!("chaos-{}", &run_id[..12]),
        database: database.clone(),
        redis_port: free_port()?,
        dispatcher_port: free_port()?,
        callback_port: free_port()?,
        redis: Command::new("true").spawn()?,
        postgres,
        dispatcher: Command::new("true").spawn()?,
        callback: Command::new("true").spawn()?,
        workers: Vec::new(),
        spawned_workers: 0,
        starts: Arc::default(),
        handbacks: Arc::default(),
        started: Instant::now(),
        time_scale: a.time_scale,
        lease_secs: a.lease_secs,
        callback_retries: a.callback_retries,
        concurrency: a.concurrency,
        forgeries: Arc::default(),
    };
    stack.redis = stack.start_redis().await?;
    stack.dispatcher = stack.start_dispatcher().await?;
    stack.callback = stack.start_callback().await?;
    for queue in ["sdxl_queue", "wan_queue"] {
        for _ in 0..a.workers_per_queue {
            stack.start_worker(queue)?;
        }
    }
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database)
        .await?;

    let started = Instant::now();
    stack.started = started;
    let accepted: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let enqueue = tokio::spawn(enqueue_all(
        stack.base(),
        a.jobs,
        a.rate,
        accepted.clone(),
        refused.clone(),
    ));

    // Faults, round robin, until every job is enqueued and most have finished.
    let mut injected: HashMap<Fault, usize> = HashMap::new();
    let mut recoveries: Vec<faults::Recovery> = Vec::new();
    let mut step = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(a.fault_every_ms)).await;
        let done_enqueueing = enqueue.is_finished();
        let so_far = accepted.lock().unwrap().clone();
        // PostgreSQL may be down right now (a restart fault); count again next time.
        let finished = count_finished(&db, &so_far).await.unwrap_or(0);
        let all = so_far.len();
        let every_kind = Fault::ALL.iter().all(|f| injected.contains_key(f));
        if done_enqueueing && every_kind && finished * 10 >= all * 8 {
            break;
        }
        if started.elapsed() > Duration::from_secs(a.timeout_secs) {
            break;
        }
        // Redis once, when about half the jobs are in.
        let fault = if !injected.contains_key(&Fault::RedisRestart) && all * 2 >= a.jobs {
            Fault::RedisRestart
        } else {
            step += 1;
            Fault::PLAN[(step - 1) % Fault::PLAN.len()]
        };
        *injected.entry(fault).or_default() += 1;
        recoveries.push(faults::inject(&mut stack, fault, &db).await?);
    }
    let enqueued_in = enqueue.await??;

    // Drain: every accepted job finished, or the deadline.
    let accepted: Vec<Uuid> = accepted.lock().unwrap().clone();
    let deadline = started + Duration::from_secs(a.timeout_secs);
    while count_finished(&db, &accepted).await? < accepted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let total = started.elapsed();
    let mut worst: HashMap<Fault, Duration> = HashMap::new();
    let mut unrecovered = 0usize;
    for r in recoveries {
        match r.await? {
            (fault, Some(took)) => {
                let w = worst.entry(fault).or_default();
                *w = (*w).max(took);
            }
            (_, None) => unrecovered += 1,
        }
    }
    let verdict = verify(&db, &accepted, &stack.starts, &stack.handbacks).await?;
    let (disagree, stuck) = contract::truth(&stack, &db, &accepted).await?;
    let ledger = ledger::violations(&db, &accepted).await?;
    let forged = *stack.forgeries.lock().unwrap();

    for (_, w) in &mut stack.workers {
        let _ = w.child.kill().await;
    }
    let _ = stack.dispatcher.kill().await;
    let _ = stack.callback.kill().await;
    drop_namespace(&stack.redis_url(), &stack.namespace).await?;
    let _ = stack.redis.kill().await;

    let refused = refused.lock().unwrap().clone();
    eprintln!(
        "chaos: {} jobs accepted ({} refused) in {:.1} s, all finished after {:.1} s",
        accepted.len(),
        refused.len(),
        enqueued_in.as_secs_f64(),
        total.as_secs_f64()
    );
    for f in Fault::ALL {
        eprintln!(
            "chaos: {:<32} injected {:>3}   longest recovery {:>6.2} s",
            f.name(),
            injected.get(&f).copied().unwrap_or(0),
            worst.get(&f).map_or(f64::NAN, Duration::as_secs_f64)
        );
    }
    eprintln!("chaos: {verdict}");
    eprintln!(
        "chaos: PostgreSQL/Redis disagreements {}, jobs stuck non-terminal {}, forged reports applied {} of {}, ledger violations {}",
        disagree.len(),
        stuck.len(),
        forged.applied,
        forged.sent,
        ledger.len()
    );
    let params = json!({
        "jobs": a.jobs, "rate": a.rate, "workers": a.workers_per_queue * 2,
        "concurrency": a.concurrency, "fault_every_ms": a.fault_every_ms, "lease_secs": a.lease_secs,
        "callback_retries": a.callback_retries,
    });
    let figure = |metric: String, value: f64, unit: &'static str| Figure {
        scenario: "chaos",
        metric,
        value,
        unit,
        params: params.clone(),
    };
    let mut figures = vec![
        figure("jobs accepted".into(), accepted.len() as f64, "jobs"),
        figure("jobs completed".into(), verdict.completed as f64, "jobs"),
        figure("jobs failed".into(), verdict.failed as f64, "jobs"),
        figure("jobs lost".into(), verdict.lost.len() as f64, "jobs"),
        figure("duplicated rows".into(), verdict.duplicates as f64, "rows"),
        figure("missing rows".into(), verdict.missing as f64, "rows"),
        figure(
            "jobs run more often than allowed".into(),
            verdict.overrun.len() as f64,
            "jobs",
        ),
        figure(
            "jobs run more than once".into(),
            verdict.rerun as f64,
            "jobs",
        ),
        figure(
            "jobs handed back".into(),
            f64::from(verdict.handbacks),
            "hand-backs",
        ),
        figure(
            "PostgreSQL/Redis disagreements".into(),
            disagree.len() as f64,
            "jobs",
        ),
        figure("jobs stuck non-terminal".into(), stuck.len() as f64, "jobs"),
        figure(
            "ledger violations".into(),
            ledger.len() as f64,
            "violations",
        ),
        figure("forged reports sent".into(), forged.sent as f64, "reports"),
        figure(
            "forged reports applied".into(),
            forged.applied as f64,
            "reports",
        ),
        figure("run time".into(), total.as_secs_f64(), "s"),
    ];
    for f in Fault::ALL {
        figures.push(figure(
            format!("{} injected", f.name()),
            injected.get(&f).copied().unwrap_or(0) as f64,
            "faults",
        ));
        figures.push(figure(
            format!("{} longest recovery", f.name()),
            worst.get(&f).map_or(f64::NAN, Duration::as_secs_f64),
            "s",
        ));
    }
    let missing_kind = Fault::ALL.iter().any(|f| !injected.contains_key(f));
    let truthful =
        disagree.is_empty() && stuck.is_empty() && forged.applied == 0 && ledger.is_empty();
    if !verdict.passed() || !truthful || unrecovered > 0 || missing_kind || !refused.is_empty() {
        crate::figures::print(&figures);
        anyhow::bail!(
            "chaos failed: {verdict}; disagreements {:?}, stuck {:?}, forged reports applied {}, ledger violations {:?}; {unrecovered} faults never recovered; every kind injected: {}; refused enqueues: {refused:?}",
            disagree.first(),
            stuck.first(),
            forged.applied,
            ledger.first(),
            !missing_kind
        );
    }
    Ok(figures)
}

/// Enqueues `jobs` jobs of all ten types at `rate` per second from 200 users. Each request
/// is retried with its own `Idempotency-Key` until it is accepted (the dispatcher may be
/// restarting); a refusal other than 429/5xx is recorded.
async fn enqueue_all(
    base: String,
    jobs: usize,
    rate: u32,
    accepted: Arc<Mutex<Vec<Uuid>>>,
    refused: Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<Duration> {
    let tokens: Vec<String> = (0..200)
        .map(|_| mint_token(JWT_SECRET, Uuid::new_v4()))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{base}/v1/jobs");
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    stream::iter(0..jobs)
        .then(|i| async move {
            tokio::time::sleep_until((start + gap * i as u32).into()).await;
            i
        })
        .map(|i| {
            let (http, url, token) = (http.clone(), url.clone(), tokens[i % tokens.len()].clone());
            let job_type = JobType::ALL[i % JobType::ALL.len()];
            let images = job_type.spec().allowed_num_images[i % job_type.spec().allowed_num_images.len()];
            let body = json!({"jobType": job_type.as_str(), "metadata": {"prompt": format!("chaos {i}"), "num_images": images, "seed": i}});
            let key = Uuid::new_v4().to_string();
            async move {
                let send = || async {
                    let resp = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .await
                        .map_err(|e| Attempt::Retry(e.to_string()))?;
                    let status = resp.status();
                    let text = resp.text().await.map_err(|e| Attempt::Retry(e.to_string()))?;
                    match status.as_u16() {
                        200..=299 => serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|v| v["job"]["id"].as_str()?.parse::<Uuid>().ok())
                            .ok_or(Attempt::Refused(format!("{status}: {text}"))),
                        429 | 500..=599 => Err(Attempt::Retry(format!("{status}: {text}"))),
                        _ => Err(Attempt::Refused(format!("{status}: {text}"))),
                    }
                };
                send.retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(100))
                        .with_max_delay(Duration::from_secs(2))
                        .with_max_times(60),
                )
                .when(|e| matches!(e, Attempt::Retry(_)))
                .await
            }
        })
        .buffer_unordered(32)
        .for_each(|r| {
            match r {
                Ok(id) => accepted.lock().unwrap().push(id),
                Err(Attempt::Refused(why) | Attempt::Retry(why)) => refused.lock().unwrap().push(why),
            }
            async {}
        })
        .await;
    Ok(start.elapsed())
}

enum Attempt {
    Retry(String),
    Refused(String),
}

/// How many of the `accepted` jobs are finished. Only those: a request answered 503 leaves
/// a `failed` row the client never got an id for (its retry made another job), and
/// counting it once ended the drain while an accepted job was still running.
async fn count_finished(db: &sqlx::PgPool, accepted: &[Uuid]) -> anyhow::Result<usize> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE id = ANY($1) \
         AND status IN ('completed', 'failed', 'cancelled')",
    )
    .bind(accepted)
    .fetch_one(db)
    .await?;
    Ok(n as usize)
}

/// What the database says after the run.
struct Verdict {
    completed: usize,
    failed: usize,
    /// Accepted jobs missing from PostgreSQL or not finished.
    lost: Vec<Uuid>,
    /// Output rows beyond a job's expected count, plus rows of jobs not completed.
    duplicates: usize,
    /// Output rows a completed job lacks.
    missing: usize,
    /// Jobs whose handler started more often than their `max_attempts` plus the times a
    /// worker handed them back (a hand-back does not spend an attempt): id, starts, allowed.
    overrun: Vec<(Uuid, u32, i64)>,
    /// Jobs whose handler started more than once.
    rerun: usize,
    /// Hand-backs in all (a callback outage must cause some).
    handbacks: u32,
}

impl Verdict {
    fn passed(&self) -> bool {
        self.lost.is_empty() && self.duplicates == 0 && self.missing == 0 && self.overrun.is_empty()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} completed, {} failed, lost {}, duplicated rows {}, missing rows {}, run too often {}, run more than once {}, handed back {}×",
            self.completed,
            self.failed,
            self.lost.len(),
            self.duplicates,
            self.missing,
            self.overrun.len(),
            self.rerun,
            self.handbacks
        )?;
        if let Some(id) = self.lost.first() {
            write!(f, " (first lost: {id})")?;
        }
        if let Some((id, runs, allowed)) = self.overrun.first() {
            write!(f, " (first overrun: {id} ran {runs}×, allowed {allowed}×)")?;
        }
        Ok(())
    }
}

async fn verify(
    db: &sqlx::PgPool,
    accepted: &[Uuid],
    starts: &Counts,
    handbacks: &Counts,
) -> anyhow::Result<Verdict> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        job_type: String,
        status: String,
        max_attempts: i32,
        num_images: Option<i32>,
        images: i64,
        videos: i64,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT j.id, j.job_type, j.status, j.max_attempts, \
                (j.envelope->'config'->>'num_images')::int AS num_images, \
                (SELECT count(*) FROM images i WHERE i.job_id = j.id) AS images, \
                (SELECT count(*) FROM videos v WHERE v.job_id = j.id) AS videos \
         FROM jobs j WHERE j.id = ANY($1)",
    )
    .bind(accepted)
    .fetch_all(db)
    .await?;
    let by_id: HashMap<Uuid, &Row> = rows.iter().map(|r| (r.id, r)).collect();
    let starts = starts.lock().unwrap().clone();
    let handbacks = handbacks.lock().unwrap().clone();
    let mut v = Verdict {
        completed: 0,
        failed: 0,
        lost: Vec::new(),
        duplicates: 0,
        missing: 0,
        overrun: Vec::new(),
        rerun: starts.values().filter(|&&n| n > 1).count(),
        handbacks: handbacks.values().sum(),
    };
    for id in accepted {
        let Some(row) = by_id.get(id) else {
            v.lost.push(*id);
            continue;
        };
        let kind = row.job_type.parse::<JobType>().map(|t| t.spec().kind);
        let (want_images, want_videos) = match (row.status.as_str(), kind) {
            ("completed", Ok(JobKind::Video)) => (0, 1),
            ("completed", _) => (i64::from(row.num_images.unwrap_or(1)), 0),
            _ => (0, 0),
        };
        match row.status.as_str() {
            "completed" => v.completed += 1,
            "failed" | "cancelled" => v.failed += 1,
            _ => v.lost.push(*id),
        }
        v.duplicates += (row.images - want_images).max(0) as usize;
        v.duplicates += (row.videos - want_videos).max(0) as usize;
        v.missing += (want_images - row.images).max(0) as usize;
        v.missing += (want_videos - row.videos).max(0) as usize;
        let runs = starts.get(id).copied().unwrap_or(0);
        let allowed =
            i64::from(row.max_attempts) + i64::from(handbacks.get(id).copied().unwrap_or(0));
        if i64::from(runs) > allowed {
            v.overrun.push((*id, runs, allowed));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_read_from_tracing_lines() {
        let line = "2026-11-22T10:00:00Z  INFO job{job_id=0193a4b2-7c1e-7000-8000-000000000001 attempt=2}: gpuq_worker_sdk::job: job started job_type=video_fast";
        assert_eq!(
            field(line, "job_id="),
            Some("0193a4b2-7c1e-7000-8000-000000000001")
        );
        assert_eq!(field(line, "attempt="), Some("2"));
        assert_eq!(
            field("worker starting consumer=demo-1:abc queue=x", "consumer="),
            Some("demo-1:abc")
        );
        assert_eq!(field(line, "nope="), None);
    }
}
