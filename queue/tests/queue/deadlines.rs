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
