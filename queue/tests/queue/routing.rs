//! Model routing (ADR 0020): a routed claim never takes a job whose model its worker cannot
//! run, takes a job whose model is warm before an older one within the wait bound, and an
//! overdue job before anything.

use std::time::Duration;

use gpuq_queue::{EnqueueOptions, Queue, Route};
use gpuq_schemas::JobId;

use crate::helpers::*;

async fn enqueue_model(q: &Queue, model: &str) -> JobId {
    let mut env = envelope(q, 3);
    env.model = Some(model.to_owned());
    q.enqueue(&env, &EnqueueOptions::default()).await.unwrap();
    env.job_id
}

fn route(warm: &[&str], runnable: Option<&[&str]>, max_wait: Duration) -> Route {
    let names = |m: &[&str]| m.iter().map(|s| s.to_string()).collect();
    Route {
        warm: names(warm),
        runnable: runnable.map(names),
        max_wait,
    }
}

async fn claim_one(q: &Queue, route: &Route) -> Option<JobId> {
    let c = consumer("gpu");
    let jobs = q.claim_routed(&c, 1, None, Some(route)).await.unwrap();
    jobs.first().map(|j| j.id)
}

#[tokio::test]
async fn a_worker_is_never_given_a_job_whose_model_it_cannot_run() {
    let q = queue().await;
    let big = enqueue_model(&q, "wan-14b").await;
    let small = enqueue_model(&q, "sdxl-base").await;
    let fits = route(&[], Some(&["sdxl-base"]), Duration::from_secs(60));
    assert_eq!(claim_one(&q, &fits).await, Some(small));
    assert_eq!(
        claim_one(&q, &fits).await,
        None,
        "the other needs a bigger GPU"
    );
    let plain = q.claim(&consumer("big-gpu"), 1).await.unwrap();
    assert_eq!(plain[0].id, big, "a worker that can run it takes it");
}

#[tokio::test]
async fn a_worker_with_model_x_warm_gets_the_x_job_before_an_older_y_job_within_the_wait_bound() {
    let q = queue().await;
    let y = enqueue_model(&q, "y").await;
    let x = enqueue_model(&q, "x").await;
    let warm_x = route(&["x"], None, Duration::from_secs(60));
    assert_eq!(claim_one(&q, &warm_x).await, Some(x));
    assert_eq!(claim_one(&q, &warm_x).await, Some(y), "then the rest");
    assert_eq!(
        q.stats().await.unwrap().waiting(),
        0,
        "the backlog counts both"
    );
}

#[tokio::test]
async fn past_the_wait_bound_the_older_job_goes_first() {
    let q = queue().await;
    let y = enqueue_model(&q, "y").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let x = enqueue_model(&q, "x").await;
    // Wide margins both ways: y's wait is read from its id (this process's clock), against
    // Redis's TIME.
    let warm_x = route(&["x"], None, Duration::from_millis(250));
    assert_eq!(
        claim_one(&q, &warm_x).await,
        Some(y),
        "y waited past the bound"
    );
    assert_eq!(claim_one(&q, &warm_x).await, Some(x));
}

#[tokio::test]
async fn a_tenant_whose_next_job_nobody_here_runs_is_not_served_its_later_jobs_first() {
    let q = queue().await;
    let mut stuck = envelope(&q, 3);
    stuck.model = Some("z".into());
    let mut later = envelope(&q, 3);
    later.model = Some("x".into());
    later.user_id = stuck.user_id;
    let mut other = envelope(&q, 3);
    other.model = Some("x".into());
    for env in [&stuck, &later, &other] {
        q.enqueue(env, &EnqueueOptions::default()).await.unwrap();
    }
    let only_x = route(&[], Some(&["x"]), Duration::from_secs(60));
    assert_eq!(
        claim_one(&q, &only_x).await,
        Some(other.job_id),
        "the next tenant's next job"
    );
    assert_eq!(claim_one(&q, &only_x).await, Some(later.job_id));
    assert_eq!(claim_one(&q, &only_x).await, None);
}

#[tokio::test]
async fn model_names_a_claim_cannot_carry_are_refused() {
    let q = queue().await;
    let bad = route(&["a,b"], None, Duration::ZERO);
    let err = q
        .claim_routed(&consumer("gpu"), 1, None, Some(&bad))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid model name"), "{err}");
}
