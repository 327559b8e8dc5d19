//! Every transition of the queue protocol.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use gpuq_queue::*;
use gpuq_schemas::QueueName;

/// Enqueues for one tenant, so that jobs of a lane are claimed in their order (between
/// tenants, the fair share decides: fairness.rs).
async fn enqueue(q: &Queue, max_attempts: u32, lane: Lane) -> gpuq_schemas::JobId {
    let mut env = envelope(q, max_attempts);
    env.tenant = Some("tests".parse().unwrap());
    let out = q
        .enqueue(
            &env,
            &EnqueueOptions {
                lane,
                ..EnqueueOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(out, EnqueueOutcome::Enqueued { .. }), "{out:?}");
    env.job_id
}

#[tokio::test]
async fn one_job_and_eight_concurrent_claimers_exactly_one_gets_it() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            q.claim(&consumer(&format!("c{i}")), 1).await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.extend(t.await.unwrap());
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].attempt, 1);
    assert_eq!(got[0].envelope().unwrap().attempt, 1);
}

#[tokio::test]
async fn blocking_claim_wakes_when_a_job_arrives() {
    let q = queue().await;
    let mut claimer = q.claimer(consumer("blocker")).await.unwrap();
    let waiter =
        tokio::spawn(async move { claimer.claim(1, Duration::from_secs(10)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let got = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
}

#[tokio::test]
async fn blocking_claim_returns_empty_when_the_wait_runs_out() {
    let q = queue().await;
    let mut claimer = q.claimer(consumer("idle")).await.unwrap();
    assert!(claimer
        .claim(1, Duration::from_millis(150))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_silent_claimer_loses_the_job_and_another_gets_it_with_attempt_two() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let (a, b) = (consumer("a"), consumer("b"));
    assert_eq!(q.claim(&a, 1).await.unwrap()[0].attempt, 1);
    assert!(q.reap_once().await.unwrap().is_empty(), "lease still valid");
    tokio::time::sleep(q.config().lease + Duration::from_millis(100)).await;
    let reaped = q.reap_once().await.unwrap();
    assert_eq!(reaped.requeued, vec![id]);
    let again = q.claim(&b, 1).await.unwrap();
    assert_eq!((again[0].id, again[0].attempt), (id, 2));
    assert_eq!(
        q.heartbeat(id, &a).await.unwrap(),
        LeaseStatus::Lost,
        "the first holder learns it lost the job"
    );
    assert_eq!(q.ack(id, Some(&a)).await.unwrap(), AckOutcome::HeldByOther);
    assert_eq!(q.ack(id, Some(&b)).await.unwrap(), AckOutcome::Removed);
}

#[tokio::test]
async fn a_heartbeating_claimer_keeps_its_job_across_many_lease_periods() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let a = consumer("a");
    q.claim(&a, 1).await.unwrap();
    let lease = q.config().lease;
    for _ in 0..8 {
        tokio::time::sleep(lease / 3).await;
        assert_eq!(q.heartbeat(id, &a).await.unwrap(), LeaseStatus::Held);
        assert!(q.reap_once().await.unwrap().is_empty());
    }
    assert!(q.claim(&consumer("b"), 1).await.unwrap().is_empty());
    assert_eq!(q.stats().await.unwrap().in_flight, 1);
}

#[tokio::test]
async fn an_expired_last_attempt_is_dead_lettered_not_redelivered() {
    let q = queue().await;
    let id = enqueue(&q, 1, Lane::Normal).await;
    q.claim(&consumer("a"), 1).await.unwrap();
    tokio::time::sleep(q.config().lease + Duration::from_millis(100)).await;
    assert_eq!(q.reap_once().await.unwrap().dead, vec![id]);
    let dead = q.dead_jobs(10).await.unwrap();
    assert_eq!(dead[0].id, id);
    assert!(dead[0].error.as_deref().unwrap().contains("lease expired"));
}

#[tokio::test]
async fn retryable_failures_back_off_growing_then_dead_letter_then_requeue_delivers_again() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let c = consumer("a");
    let failure = Failure {
        retryable: true,
        message: "CUDA out of memory".into(),
    };
    let mut delays = Vec::new();
    for attempt in 1..=3u32 {
        let claimed = claim_when_due(&q, &c).await;
        assert_eq!((claimed.id, claimed.attempt), (id, attempt));
        let failed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        match q.fail(id, Some(&c), &failure).await.unwrap() {
            FailOutcome::Retrying { attempt: a, due_ms } => {
                assert_eq!(a, attempt);
                delays.push(due_ms.saturating_sub(failed_at));
                assert!(
                    q.claim(&c, 1).await.unwrap().is_empty(),
                    "not claimable before it is due"
                );
            }
            FailOutcome::Dead { attempt: a } => assert_eq!((a, attempt), (3, 3)),
            other => panic!("{other:?}"),
        }
    }
    // Backoff base 50 ms with jitter in [d/2, d]: retry 1 in [25, 50], retry 2 in [50, 100].
    assert_eq!(delays.len(), 2);
    assert!(delays[0] <= 60 && delays[1] >= 45, "{delays:?}");
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.dead, stats.delayed, stats.in_flight, stats.waiting()),
        (1, 0, 0, 0)
    );
    assert_eq!(
        q.dead_jobs(5).await.unwrap()[0].error.as_deref(),
        Some("CUDA out of memory")
    );

    assert!(q.requeue_dead(id).await.unwrap());
    assert!(
        !q.requeue_dead(id).await.unwrap(),
        "only dead jobs can be requeued"
    );
    let again = q.claim(&c, 1).await.unwrap();
    assert_eq!(
        (again[0].id, again[0].attempt),
        (id, 1),
        "a requeued job starts its attempts afresh"
    );
}

/// Promotes due retries until the job can be claimed (at most 2 s).
async fn claim_when_due(q: &Queue, c: &ConsumerName) -> ClaimedJob {
    for _ in 0..200 {
        q.promote_due_once().await.unwrap();
        if let Some(job) = q.claim(c, 1).await.unwrap().pop() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job never became claimable");
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let q = queue().await;
    let id = enqueue(&q, 5, Lane::Normal).await;
    let c = consumer("a");
    q.claim(&c, 1).await.unwrap();
    let out = q
        .fail(
            id,
            Some(&c),
            &Failure {
                retryable: false,
                message: "prompt refused".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(out, FailOutcome::Dead { attempt: 1 });
}

#[tokio::test]
async fn a_cancelled_waiting_job_is_never_delivered() {
    let q = queue().await;
    let first = enqueue(&q, 3, Lane::Normal).await;
    let cancelled = enqueue(&q, 3, Lane::Normal).await;
    let last = enqueue(&q, 3, Lane::Normal).await;
    assert_eq!(q.cancel(cancelled).await.unwrap(), CancelOutcome::Removed);
    assert_eq!(q.cancel(cancelled).await.unwrap(), CancelOutcome::NotFound);
    let got: Vec<_> = q
        .claim(&consumer("a"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, vec![first, last]);
}

#[tokio::test]
async fn a_cancelled_in_flight_job_is_reported_at_the_next_heartbeat_and_never_retried() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let c = consumer("a");
    q.claim(&c, 1).await.unwrap();
    assert_eq!(q.cancel(id).await.unwrap(), CancelOutcome::Flagged);
    assert_eq!(q.heartbeat(id, &c).await.unwrap(), LeaseStatus::Cancelled);
    let out = q
        .fail(
            id,
            Some(&c),
            &Failure {
                retryable: true,
                message: "stopped".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(out, FailOutcome::Cancelled);
    assert!(job_keys_of(&q).await.is_empty());
}

#[tokio::test]
async fn a_cancelled_delayed_job_is_removed() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let c = consumer("a");
    q.claim(&c, 1).await.unwrap();
    q.fail(
        id,
        Some(&c),
        &Failure {
            retryable: true,
            message: "x".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(q.cancel(id).await.unwrap(), CancelOutcome::Removed);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(q.promote_due_once().await.unwrap().is_empty());
    assert_eq!(q.stats().await.unwrap().delayed, 0);
}

#[tokio::test]
async fn the_same_idempotency_key_twice_gives_one_job() {
    let q = queue().await;
    let opts = EnqueueOptions {
        lane: Lane::Normal,
        idempotency_key: Some("user-1:order-7".into()),
        ..EnqueueOptions::default()
    };
    let first = envelope(&q, 3);
    let second = envelope(&q, 3);
    assert!(matches!(
        q.enqueue(&first, &opts).await.unwrap(),
        EnqueueOutcome::Enqueued { .. }
    ));
    assert_eq!(
        q.enqueue(&second, &opts).await.unwrap(),
        EnqueueOutcome::Duplicate {
            existing: first.job_id
        }
    );
    assert_eq!(q.stats().await.unwrap().waiting(), 1);
    let other_key = EnqueueOptions {
        idempotency_key: Some("user-2:order-7".into()),
        ..opts
    };
    assert!(matches!(
        q.enqueue(&second, &other_key).await.unwrap(),
        EnqueueOutcome::Enqueued { .. }
    ));
}

#[tokio::test]
async fn the_high_lane_is_claimed_first() {
    let q = queue().await;
    let n1 = enqueue(&q, 3, Lane::Normal).await;
    let h1 = enqueue(&q, 3, Lane::High).await;
    let n2 = enqueue(&q, 3, Lane::Normal).await;
    let h2 = enqueue(&q, 3, Lane::High).await;
    let got: Vec<_> = q
        .claim(&consumer("a"), 4)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, vec![h1, h2, n1, n2]);
}

#[tokio::test]
async fn enqueue_reports_position_and_refuses_a_full_queue() {
    let q = queue_with(QueueConfig {
        max_depth: Some(2),
        ..fast_config()
    })
    .await;
    let out = q
        .enqueue(&envelope(&q, 3), &EnqueueOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            EnqueueOutcome::Enqueued {
                position: 0,
                waiting: 1,
                ..
            }
        ),
        "{out:?}"
    );
    let out = q
        .enqueue(&envelope(&q, 3), &EnqueueOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            EnqueueOutcome::Enqueued {
                position: 1,
                waiting: 2,
                ..
            }
        ),
        "{out:?}"
    );
    let full = envelope(&q, 3);
    assert_eq!(
        q.enqueue(&full, &EnqueueOptions::default()).await.unwrap(),
        EnqueueOutcome::QueueFull { waiting: 2 }
    );
    assert_eq!(q.stats().await.unwrap().waiting(), 2);
}

#[tokio::test]
async fn released_jobs_go_back_at_once_without_spending_an_attempt() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let a = consumer("a");
    q.claim(&a, 1).await.unwrap();
    assert!(!q.release(id, &consumer("stranger")).await.unwrap());
    assert!(q.release(id, &a).await.unwrap());
    let again = q.claim(&consumer("b"), 1).await.unwrap();
    assert_eq!((again[0].id, again[0].attempt), (id, 1));
}

#[tokio::test]
async fn stats_count_every_state_and_the_oldest_wait() {
    let q = queue().await;
    enqueue(&q, 3, Lane::High).await;
    for _ in 0..3 {
        enqueue(&q, 3, Lane::Normal).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let c = consumer("a");
    let claimed = q.claim(&c, 2).await.unwrap();
    q.fail(
        claimed[1].id,
        Some(&c),
        &Failure {
            retryable: false,
            message: "bad".into(),
        },
    )
    .await
    .unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!(
        (
            s.waiting_high,
            s.waiting_normal,
            s.in_flight,
            s.delayed,
            s.dead,
            s.live_consumers
        ),
        (0, 2, 1, 0, 1, 1)
    );
    assert_eq!(s.oldest_wait_high_ms, None);
    assert!(s.oldest_wait_normal_ms.unwrap() >= 25, "{s:?}");
}

#[tokio::test]
async fn ten_thousand_jobs_sixteen_consumers_each_seen_once_and_nothing_left() {
    let q = queue_with(QueueConfig {
        lease: Duration::from_secs(60),
        max_depth: None,
        ..fast_config()
    })
    .await;
    let total = 10_000;
    let mut expected = HashSet::new();
    for chunk in 0..(total / 500) {
        let batch: Vec<_> = (0..500)
            .map(|_| (envelope(&q, 3), EnqueueOptions::default()))
            .collect();
        let _ = chunk;
        expected.extend(batch.iter().map(|(e, _)| e.job_id));
        for out in q.enqueue_batch(&batch).await.unwrap() {
            assert!(matches!(out, EnqueueOutcome::Enqueued { .. }));
        }
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (q, seen) = (q.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut claimer = q.claimer(consumer(&format!("c{i}"))).await.unwrap();
            loop {
                let jobs = claimer.claim(8, Duration::from_millis(200)).await.unwrap();
                if jobs.is_empty() {
                    break;
                }
                for job in jobs {
                    assert_eq!(
                        q.ack(job.id, Some(claimer.consumer())).await.unwrap(),
                        AckOutcome::Removed
                    );
                    seen.lock().unwrap().push(job.id);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total, "every job delivered once");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), expected);
    let left = job_keys_of(&q).await;
    assert!(left.is_empty(), "finished jobs left keys behind: {left:?}");
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    assert!(QueueName::parse("").is_err());
    assert!(matches!(
        "urgent".parse::<Lane>(),
        Err(QueueError::UnknownLane(_))
    ));

    let q = queue_with(QueueConfig {
        max_payload_bytes: 1024,
        ..fast_config()
    })
    .await;
    let big = envelope_sized(&q, 3, 4096);
    match q.enqueue(&big, &EnqueueOptions::default()).await {
        Err(QueueError::PayloadTooLarge { size, max: 1024 }) => assert!(size > 1024),
        other => panic!("{other:?}"),
    }
    let mut wrong = envelope(&q, 3);
    wrong.queue = "wan_queue".into();
    assert!(matches!(
        q.enqueue(&wrong, &EnqueueOptions::default()).await,
        Err(QueueError::WrongQueue { .. })
    ));
    let bad_key = EnqueueOptions {
        idempotency_key: Some(String::new()),
        ..Default::default()
    };
    assert!(matches!(
        q.enqueue(&envelope(&q, 3), &bad_key).await,
        Err(QueueError::InvalidIdempotencyKey)
    ));
    let batch = vec![
        (envelope(&q, 3), EnqueueOptions::default()),
        (big, EnqueueOptions::default()),
    ];
    assert!(
        q.enqueue_batch(&batch).await.is_err(),
        "one bad job refuses the whole batch"
    );
    assert!(keys_of(&q).await.is_empty(), "nothing written");
}

#[tokio::test]
async fn two_reapers_at_once_requeue_each_expired_job_once() {
    let q = queue().await;
    for _ in 0..50 {
        enqueue(&q, 3, Lane::Normal).await;
    }
    q.claim(&consumer("a"), 50).await.unwrap();
    tokio::time::sleep(q.config().lease + Duration::from_millis(100)).await;
    let (r1, r2) = tokio::join!(q.reap_once(), q.reap_once());
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.requeued.len() + r2.requeued.len(), 50);
    assert_eq!(q.stats().await.unwrap().waiting(), 50);
}

#[tokio::test]
async fn claims_survive_a_script_cache_flush() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    // On a cluster, SCRIPT FLUSH is sent to every node.
    let mut conn = crate::helpers::conn().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(q.claim(&consumer("a"), 1).await.unwrap()[0].id, id);
}

#[tokio::test]
async fn admins_see_jobs_in_flight_with_holder_and_live_consumers() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let a = consumer("a");
    q.claim(&a, 1).await.unwrap();
    let held = q.in_flight(10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].id, held[0].consumer.as_str(), held[0].attempt),
        (id, a.as_str(), 1)
    );
    assert!(held[0].lease_until_ms > held[0].since_ms);
    let live = q.live_consumers().await.unwrap();
    assert_eq!(
        live.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        [a.as_str()]
    );
}

#[tokio::test]
async fn a_dead_job_can_be_discarded_and_only_a_dead_one() {
    let q = queue().await;
    let id = enqueue(&q, 1, Lane::Normal).await;
    assert!(
        !q.discard_dead(id).await.unwrap(),
        "a waiting job is not discarded"
    );
    let c = consumer("a");
    q.claim(&c, 1).await.unwrap();
    q.fail(
        id,
        Some(&c),
        &Failure {
            retryable: false,
            message: "x".into(),
        },
    )
    .await
    .unwrap();
    assert!(q.discard_dead(id).await.unwrap());
    assert!(q.dead_jobs(10).await.unwrap().is_empty());
    assert!(job_keys_of(&q).await.is_empty());
}

#[tokio::test]
async fn a_restored_job_keeps_counting_its_attempts() {
    let q = queue().await;
    let w = ConsumerName::unique("gpu");
    // Restored after two deliveries out of three, with an idempotency key as well.
    let restored = envelope(&q, 3);
    let opts = EnqueueOptions {
        lane: Lane::High,
        idempotency_key: Some("user-1:restored".into()),
        attempts_used: 2,
        ..EnqueueOptions::default()
    };
    assert!(matches!(
        q.enqueue(&restored, &opts).await.unwrap(),
        EnqueueOutcome::Enqueued { .. }
    ));
    assert_eq!(
        q.enqueue(&envelope(&q, 3), &opts).await.unwrap(),
        EnqueueOutcome::Duplicate {
            existing: restored.job_id
        },
        "the key still counts"
    );
    let fresh = enqueue(&q, 3, Lane::Normal).await;
    let claimed = q.claim(&w, 2).await.unwrap();
    let attempts: Vec<_> = claimed.iter().map(|j| (j.id, j.attempt)).collect();
    assert_eq!(attempts, vec![(restored.job_id, 3), (fresh, 1)]);
    // Its third delivery is its last: a retryable failure dead-letters it.
    q.fail(
        restored.job_id,
        Some(&w),
        &gpuq_queue::Failure {
            retryable: true,
            message: "oom".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        q.dead_jobs(10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![restored.job_id]
    );
}

#[tokio::test]
async fn every_claim_gets_its_own_fence_and_only_that_fence_fails_it() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let c = consumer("a");
    let first = q.claim(&c, 1).await.unwrap().remove(0);
    let held = q.holding(id).await.unwrap().unwrap();
    assert_eq!(
        (held.consumer.as_str(), &held.fence),
        (c.as_str(), &first.fence())
    );
    let failure = Failure {
        retryable: true,
        message: "oom".into(),
    };
    let stale = Fence {
        attempt: first.attempt,
        token: Fence::new_token(),
    };
    assert_eq!(
        q.fail_fenced(id, c.as_str(), &stale, &failure)
            .await
            .unwrap(),
        FailOutcome::HeldByOther
    );
    assert!(matches!(
        q.fail_fenced(id, c.as_str(), &first.fence(), &failure)
            .await
            .unwrap(),
        FailOutcome::Retrying { attempt: 1, .. }
    ));
    assert_eq!(
        q.holding(id).await.unwrap(),
        None,
        "not in flight while delayed"
    );
    // The same fence again (a replayed report) finds nothing to fail.
    assert_eq!(
        q.fail_fenced(id, c.as_str(), &first.fence(), &failure)
            .await
            .unwrap(),
        FailOutcome::NotInFlight
    );
}

#[tokio::test]
async fn a_claim_token_that_is_not_hex_is_refused() {
    let q = queue().await;
    enqueue(&q, 3, Lane::Normal).await;
    let reply: redis::RedisResult<Vec<String>> = raw_claim(&q)
        .arg("w")
        .arg(30_000)
        .arg(1)
        .arg(256)
        .arg("ab|0")
        .invoke_async(&mut conn().await)
        .await;
    let err = reply.unwrap_err();
    assert!(err.to_string().contains("fence token"), "{err}");
    assert_eq!(q.stats().await.unwrap().waiting(), 1, "nothing was claimed");
}

#[tokio::test]
async fn ack_and_release_by_fence_never_touch_a_later_claim_of_the_same_job() {
    let q = queue().await;
    let id = enqueue(&q, 3, Lane::Normal).await;
    let c = consumer("a");
    let first = q.claim(&c, 1).await.unwrap().remove(0);
    // The first claim is handed back, and the same worker claims the job again.
    assert!(q.release_claim(id, &c, &first.fence()).await.unwrap());
    let second = q.claim(&c, 1).await.unwrap().remove(0);
    assert_ne!(first.fence(), second.fence());
    // A stale task of the first claim acts now: nothing happens to the second.
    assert_eq!(
        q.ack_claim(id, &c, &first.fence()).await.unwrap(),
        AckOutcome::HeldByOther
    );
    assert!(!q.release_claim(id, &c, &first.fence()).await.unwrap());
    let held = q.holding(id).await.unwrap().unwrap();
    assert_eq!(held.fence, second.fence());
    assert_eq!(
        q.ack_claim(id, &c, &second.fence()).await.unwrap(),
        AckOutcome::Removed
    );
}
