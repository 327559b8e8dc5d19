//! Start deadlines: a job no consumer claimed in time leaves the queue; one that would not
//! start in time is refused before anything is written.

use std::time::Duration;

use gpuq_queue::{EnqueueOptions, EnqueueOutcome};

use crate::helpers::*;

#[tokio::test]
async fn a_job_not_claimed_by_its_start_deadline_expires_and_a_claimed_one_does_not() {
    let q = queue().await;
    let opts = EnqueueOptions {
        start_within: Some(Duration::from_millis(100)),
        ..EnqueueOptions::default()
    };
    let mut started = envelope(&q, 3);
    started.tenant = Some("t".parse().unwrap());
    let mut late = envelope(&q, 3);
    late.tenant = Some("t".parse().unwrap());
    for env in [&started, &late] {
        assert!(matches!(
            q.enqueue(env, &opts).await.unwrap(),
            EnqueueOutcome::Enqueued { .. }
        ));
    }
    let claimed = q.claim(&consumer("gpu"), 1).await.unwrap();
    assert_eq!(claimed[0].id, started.job_id);
    assert!(
        q.expire_unstarted_once().await.unwrap().is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(q.expire_unstarted_once().await.unwrap(), vec![late.job_id]);
    assert!(
        q.expire_unstarted_once().await.unwrap().is_empty(),
        "expired once"
    );
    let s = q.stats().await.unwrap();
    assert_eq!((s.waiting(), s.in_flight, s.tenants_normal), (0, 1, 0));
    assert_eq!(
        q.known(&[late.job_id, started.job_id]).await.unwrap(),
        vec![false, true]
    );
}

#[tokio::test]
async fn a_job_with_more_jobs_ahead_than_its_bound_is_refused_and_nothing_is_written() {
    let q = queue().await;
    for _ in 0..5 {
        let mut env = envelope(&q, 3);
        env.tenant = Some("busy".parse().unwrap());
        q.enqueue(&env, &EnqueueOptions::default()).await.unwrap();
    }
    let mut env = envelope(&q, 3);
    env.tenant = Some("busy".parse().unwrap());
    let bounded = EnqueueOptions {
        max_ahead: Some(2),
        start_within: Some(Duration::from_secs(60)),
        ..EnqueueOptions::default()
    };
    let out = q.enqueue(&env, &bounded).await.unwrap();
    assert!(
        matches!(out, EnqueueOutcome::WouldStartLate { position: 5, .. }),
        "{out:?}"
    );
    assert_eq!(q.known(&[env.job_id]).await.unwrap(), vec![false]);
    assert_eq!(q.stats().await.unwrap().waiting(), 5);
    // Another tenant's job starts next under the fair share: admitted.
    let other = envelope(&q, 3);
    assert!(matches!(
        q.enqueue(&other, &bounded).await.unwrap(),
        EnqueueOutcome::Enqueued { position: 1, .. }
    ));
}

#[tokio::test]
async fn only_a_job_never_claimed_is_withdrawn_and_it_leaves_no_trace() {
    let q = queue().await;
    let with_deadline = EnqueueOptions {
        start_within: Some(Duration::from_secs(60)),
        ..EnqueueOptions::default()
    };
    let mut jobs = Vec::new();
    for (i, tenant) in ["a", "a", "b"].into_iter().enumerate() {
        let mut env = envelope(&q, 3);
        env.tenant = Some(tenant.parse().unwrap());
        let opts = if i == 0 {
            EnqueueOptions::default()
        } else {
            with_deadline.clone()
        };
        assert!(matches!(
            q.enqueue(&env, &opts).await.unwrap(),
            EnqueueOutcome::Enqueued { .. }
        ));
        jobs.push(env.job_id);
    }
    let claimed = q.claim(&consumer("gpu"), 1).await.unwrap();
    assert_eq!(claimed[0].id, jobs[0]);
    assert!(!q.withdraw_unstarted(jobs[0]).await.unwrap(), "in flight");
    // The second of a tenant's jobs and a tenant's only job, both waiting.
    assert!(q.withdraw_unstarted(jobs[1]).await.unwrap());
    assert!(q.withdraw_unstarted(jobs[2]).await.unwrap());
    assert!(!q.withdraw_unstarted(jobs[2]).await.unwrap(), "once");
    assert!(!q
        .withdraw_unstarted(gpuq_schemas::JobId::new())
        .await
        .unwrap());
    let s = q.stats().await.unwrap();
    assert_eq!((s.waiting(), s.in_flight, s.tenants_normal), (0, 1, 0));
    assert!(q.claim(&consumer("gpu"), 5).await.unwrap().is_empty());
    q.ack(jobs[0], None).await.unwrap();
    assert_eq!(
        job_keys_of(&q).await,
        Vec::<String>::new(),
        "no deadline, list or tag left"
    );
}
