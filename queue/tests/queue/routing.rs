//! Model routing (ADR 0020): a routed claim never takes a job whose model its worker cannot
//! run or that needs more GPU memory than it has, takes a job whose model (then LoRAs) is
//! warm before an older one within the wait bound, and an overdue job before anything.

use std::time::Duration;

use gpuq_queue::{EnqueueOptions, Queue, Route, RoutedClaims, WorkerProfile};
use gpuq_schemas::{JobId, Lora};

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
        vram_gb: None,
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

#[tokio::test]
async fn a_job_needing_more_vram_than_a_worker_has_is_never_claimed_by_it() {
    let q = queue().await;
    let mut video = envelope(&q, 3);
    video.vram_gb = Some(24);
    q.enqueue(&video, &EnqueueOptions::default()).await.unwrap();
    let mut image = envelope(&q, 3);
    image.vram_gb = Some(10);
    q.enqueue(&image, &EnqueueOptions::default()).await.unwrap();
    // Past its wait bound too: a bound makes a job go to any worker that can run it.
    let small = Route {
        vram_gb: Some(16),
        ..route(&[], None, Duration::from_millis(1))
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(claim_one(&q, &small).await, Some(image.job_id));
    assert_eq!(claim_one(&q, &small).await, None, "24 GiB do not fit in 16");
    let big = Route {
        vram_gb: Some(48),
        ..route(&[], None, Duration::from_secs(60))
    };
    assert_eq!(claim_one(&q, &big).await, Some(video.job_id));
}

#[tokio::test]
async fn with_its_model_warm_the_job_whose_loras_are_warm_too_goes_first() {
    let q = queue().await;
    let lora = |name: &str| Lora {
        name: name.into(),
        weight: 0.8,
    };
    let mut cold_lora = envelope(&q, 3);
    cold_lora.model = Some("x".into());
    cold_lora.loras = vec![lora("grain")];
    let mut warm_lora = envelope(&q, 3);
    warm_lora.model = Some("x".into());
    warm_lora.loras = vec![lora("detail")];
    for env in [&cold_lora, &warm_lora] {
        q.enqueue(env, &EnqueueOptions::default()).await.unwrap();
    }
    let warm = route(&["x", "detail"], None, Duration::from_secs(60));
    assert_eq!(claim_one(&q, &warm).await, Some(warm_lora.job_id));
    assert_eq!(claim_one(&q, &warm).await, Some(cold_lora.job_id));
}

#[tokio::test]
async fn routed_claims_count_the_jobs_whose_model_was_warm_and_the_model_loads() {
    let q = queue().await;
    for model in ["x", "y", "x"] {
        enqueue_model(&q, model).await;
    }
    let warm_x = route(&["x"], None, Duration::from_secs(60));
    for _ in 0..3 {
        claim_one(&q, &warm_x).await.unwrap();
    }
    q.claim(&consumer("plain"), 1).await.unwrap();
    assert_eq!(
        q.routed_claims().await.unwrap(),
        RoutedClaims { warm: 2, cold: 1 },
        "plain claims are not counted"
    );
}

#[tokio::test]
async fn a_workers_profile_is_read_back_until_it_expires() {
    let q = queue().await;
    let (a, b) = (consumer("a"), consumer("b"));
    let profile = WorkerProfile {
        gpu: Some("NVIDIA L40S".into()),
        vram_gb: Some(48),
        slots: 2,
        loaded: vec!["x".into(), "detail".into()],
        runnable: Some(vec!["x".into(), "y".into()]),
        loads: 7,
    };
    q.advertise(&a, &profile, Duration::from_millis(300))
        .await
        .unwrap();
    let read = q.profiles(&[a.as_str(), b.as_str()]).await.unwrap();
    assert_eq!(read, [Some(profile), None]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(q.profiles(&[a.as_str()]).await.unwrap(), [None]);
}

#[tokio::test]
async fn an_oversized_profile_keeps_the_loaded_names_that_fit_and_one_that_cannot_fit_is_refused() {
    let q = queue().await;
    let a = consumer("a");
    let profile = WorkerProfile {
        slots: 1,
        loaded: (0..200).map(|i| format!("{i:0>100}")).collect(),
        ..WorkerProfile::default()
    };
    q.advertise(&a, &profile, Duration::from_secs(5))
        .await
        .unwrap();
    let read = q.profiles(&[a.as_str()]).await.unwrap()[0].clone().unwrap();
    assert!(!read.loaded.is_empty() && read.loaded.len() < 200);
    assert_eq!(read.loaded[0], profile.loaded[0], "the most recent first");
    let runs_too_much = WorkerProfile {
        runnable: Some(profile.loaded.clone()),
        ..profile
    };
    let err = q
        .advertise(&a, &runs_too_much, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

#[tokio::test]
async fn a_route_whose_bound_or_memory_is_not_a_whole_number_is_refused_before_anything_is_written()
{
    let q = queue().await;
    enqueue_model(&q, "x").await;
    for (bound, vram) in [
        ("60000", "24GB"),
        ("60000", "-5"),
        ("soon", "24"),
        ("1.5", ""),
    ] {
        let reply: redis::RedisResult<Vec<String>> = raw_claim(&q)
            .arg("hand-written")
            .arg(30_000)
            .arg(1)
            .arg(256)
            .arg("")
            .arg("")
            .arg("x")
            .arg("*")
            .arg(bound)
            .arg(vram)
            .invoke_async(&mut conn().await)
            .await;
        let err = reply.unwrap_err().to_string();
        assert!(err.contains("whole numbers"), "{bound} {vram}: {err}");
    }
    assert_eq!(q.stats().await.unwrap().waiting(), 1, "nothing was claimed");
    assert!(
        q.live_consumers().await.unwrap().is_empty(),
        "the refused worker was not recorded"
    );
}

#[tokio::test]
async fn a_claim_for_several_slots_counts_one_load_per_model_it_takes() {
    let q = queue().await;
    let user = envelope(&q, 3).user_id;
    for model in ["x", "x", "y"] {
        let mut env = envelope(&q, 3);
        env.user_id = user;
        env.model = Some(model.into());
        q.enqueue(&env, &EnqueueOptions::default()).await.unwrap();
    }
    let cold = route(&[], None, Duration::from_secs(60));
    let jobs = q
        .claim_routed(&consumer("gpu"), 3, None, Some(&cold))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        q.routed_claims().await.unwrap(),
        RoutedClaims { warm: 1, cold: 2 },
        "x loaded once for both of its jobs, then y"
    );
}

#[tokio::test]
async fn the_virtual_time_never_goes_back_after_a_routed_claim_took_a_later_job() {
    let q = queue().await;
    let cost = |ms| EnqueueOptions {
        cost_ms: ms,
        ..EnqueueOptions::default()
    };
    let (a, b) = (envelope(&q, 3).user_id, envelope(&q, 3).user_id);
    for (user, model, ms) in [(a, "y", 10), (a, "x", 10), (b, "y", 5), (b, "y", 5)] {
        let mut env = envelope(&q, 3);
        env.user_id = user;
        env.model = Some(model.into());
        q.enqueue(&env, &cost(ms)).await.unwrap();
    }
    let vtime = || async {
        let v: Option<u64> = redis::cmd("HGET")
            .arg(q.keys().vtime())
            .arg("normal")
            .query_async(&mut conn().await)
            .await
            .unwrap();
        v.unwrap_or(0)
    };
    // A's later job (model x) goes first to a worker that runs only x: A is charged up to it.
    let only_x = route(&[], Some(&["x"]), Duration::from_secs(60));
    assert!(claim_one(&q, &only_x).await.is_some());
    let mut last = vtime().await;
    for _ in 0..3 {
        q.claim(&consumer("plain"), 1).await.unwrap();
        let now = vtime().await;
        assert!(
            now >= last,
            "the virtual time went back from {last} to {now}"
        );
        last = now;
    }
}

#[tokio::test]
async fn a_waiting_entry_without_a_job_body_is_dropped_by_a_routed_claim_too() {
    let q = queue().await;
    let lost = enqueue_model(&q, "x").await;
    let kept = enqueue_model(&q, "x").await;
    let _: () = redis::cmd("HDEL")
        .arg(q.keys().jobs())
        .arg(lost.to_string())
        .query_async(&mut conn().await)
        .await
        .unwrap();
    let only_x = route(&["x"], Some(&["x"]), Duration::from_secs(60));
    let c = consumer("gpu");
    let jobs = q.claim_routed(&c, 2, None, Some(&only_x)).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [kept]);
    assert_eq!(q.stats().await.unwrap().waiting(), 0, "the debris is gone");
}

#[tokio::test]
async fn a_route_that_runs_no_model_is_refused() {
    let q = queue().await;
    let none = route(&[], Some(&[]), Duration::ZERO);
    let err = q
        .claim_routed(&consumer("gpu"), 1, None, Some(&none))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least one model"), "{err}");
    let raw: redis::RedisResult<Vec<String>> = raw_claim(&q)
        .arg("hand-written")
        .arg(30_000)
        .arg(1)
        .arg(256)
        .arg("")
        .arg("")
        .arg("")
        .arg("")
        .arg(0)
        .arg("")
        .invoke_async(&mut conn().await)
        .await;
    let err = raw.unwrap_err().to_string();
    assert!(err.contains("may not be empty"), "{err}");
}
