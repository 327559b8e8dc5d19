//! `fairness`, part 3: **do the predictions come true?** A mixed workload (cheap and
//! expensive SDXL jobs from four users, all enqueued at once) on a fresh stack whose
//! handlers sleep their type's catalog duration (time scale 1: the dispatcher's cost model
//! starts from the catalog, so what is measured is the scheduler's forecast, not a cost
//! model still learning a scaled clock). Right after the last enqueue, every waiting job's
//! `GET /v1/jobs/{id}` gives its `etaSeconds`; its predicted start is that minus its own
//! expected run. The figure is the median of |predicted − actual| ÷ actual over the jobs
//! that waited at least [`MIN_WAIT`] (the target is ≤ 20 %).

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use gpuq_schemas::JobType;

use crate::fairness_bench::{sdxl_workers, stop_workers, Stack};
use crate::figures::Figure;
use crate::http_bench::{start_dispatcher, SECRET};
use crate::services::{drop_namespace, mint_token};
use crate::system_bench::start_callback;

/// Jobs that started sooner than this are left out: a relative error of a near-zero wait
/// says nothing (they were at the front; their position was 0).
const MIN_WAIT: f64 = 2.0;

/// Who enqueues what, in order: a flood of cheap jobs, one of expensive ones, a mix, and a
/// user with two jobs.
fn workload() -> Vec<(usize, JobType)> {
    use JobType::{SdxlImageFast as Fast, SdxlImageHigh as High};
    let mut jobs = Vec::new();
    jobs.extend(std::iter::repeat_n((0, Fast), 10));
    jobs.extend(std::iter::repeat_n((1, High), 5));
    for i in 0..6 {
        jobs.push((2, if i % 2 == 0 { High } else { Fast }));
    }
    jobs.extend(std::iter::repeat_n((3, Fast), 2));
    jobs
}

/// Runs part 3 on its own stack (2 workers of 2 slots); returns the median relative error
/// and the number of jobs it is taken over.
pub(crate) async fn run(
    redis_url: &str,
    dispatcher: &str,
    callback: &str,
) -> anyhow::Result<Vec<Figure>> {
    let ns = format!("bench-{}", Uuid::new_v4().simple());
    let d = start_dispatcher(dispatcher, redis_url, &ns, &[]).await?;
    let cb = start_callback(callback, &d.database, redis_url, &ns).await?;
    let stack = Stack {
        http: reqwest::Client::new(),
        base: d.base.clone(),
        db: PgPool::connect(&d.database).await?,
    };
    let stop = CancellationToken::new();
    let workers = sdxl_workers(redis_url, &ns, &cb.1, 2, 2, 1.0, &stop)?;
    // The workers advertise their slots with their first claim.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let users: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut ids = Vec::new();
    for (who, job_type) in workload() {
        let id = stack
            .enqueue(users[who], job_type.as_str(), 1)
            .await?
            .remove(0);
        ids.push((who, job_type, id));
    }

    // The forecasts, all at (nearly) one moment.
    let mut predicted = Vec::new();
    for (who, job_type, id) in &ids {
        let token = mint_token(SECRET, users[*who]);
        let res = stack
            .http
            .get(format!("{}/v1/jobs/{id}", stack.base))
            .bearer_auth(&token)
            .send()
            .await?;
        let answer: Value = res.json().await?;
        let asked_at: f64 =
            sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
                .fetch_one(&stack.db)
                .await?;
        if let Some(eta) = answer["etaSeconds"].as_f64() {
            let own = f64::from(job_type.spec().typical_seconds);
            predicted.push((id.clone(), asked_at, (eta - own).max(0.0)));
        }
    }
    stack
        .until(
            "SELECT count(*) FROM jobs WHERE status = 'completed'",
            ids.len() as i64,
        )
        .await?;

    let mut errors = Vec::new();
    for (id, asked_at, wait) in &predicted {
        let started: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM started_at)::float8 FROM jobs WHERE id = $1::uuid",
        )
        .bind(id)
        .fetch_one(&stack.db)
        .await?;
        let actual = started - asked_at;
        if actual >= MIN_WAIT {
            errors.push((wait - actual).abs() / actual);
        }
    }
    errors.sort_by(f64::total_cmp);
    let median = errors.get(errors.len() / 2).copied().unwrap_or(f64::NAN);

    stop_workers(&stop, workers).await;
    drop(cb);
    drop(d);
    drop_namespace(redis_url, &ns).await?;
    let params = json!({"jobs": ids.len(), "slots": 4, "time_scale": 1.0,
        "judged": errors.len(), "min_wait_s": MIN_WAIT});
    Ok(vec![Figure {
        scenario: "fairness",
        metric: "median error of predicted against actual start, mixed workload".into(),
        value: median,
        unit: "ratio",
        params,
    }])
}
