//! Per-tenant concurrency caps: a tenant at its cap gets no more jobs until one of its jobs
//! leaves flight, however it leaves; other tenants use the free slots meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gpuq_queue::{Caps, ConsumerName, EnqueueOptions, Failure, Queue, QueueError};
use gpuq_schemas::{JobId, Tenant};

use crate::helpers::*;

fn tenant(name: &str) -> Tenant {
    name.parse().unwrap()
}

fn cap(who: &str, n: u32) -> Caps {
    Caps {
        tenants: [(tenant(who), n)].into(),
        ..Caps::default()
    }
}

async fn enqueue_for(q: &Queue, who: &str, n: usize) -> Vec<JobId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let mut env = envelope(q, 3);
        env.tenant = Some(tenant(who));
        q.enqueue(&env, &EnqueueOptions::default()).await.unwrap();
        ids.push(env.job_id);
    }
    ids
}

/// The one consumer of these tests (`consumer` makes a new name on every call).
fn gpu() -> &'static ConsumerName {
    static GPU: OnceLock<ConsumerName> = OnceLock::new();
    GPU.get_or_init(|| consumer("gpu"))
}

/// Claims one job as [`gpu`].
async fn claim_id(q: &Queue) -> Option<JobId> {
    q.claim(gpu(), 1).await.unwrap().first().map(|j| j.id)
}

#[tokio::test]
async fn a_tenant_at_its_cap_gets_no_more_jobs_until_one_of_its_jobs_is_acked() {
    let q = queue().await;
    assert_eq!(q.set_caps(&cap("capped", 2)).await.unwrap(), Some(0));
    let capped = enqueue_for(&q, "capped", 4).await;
    let other = enqueue_for(&q, "other", 4).await;

    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(claim_id(&q).await.expect("a job was claimable"));
    }
    let capped_running: Vec<_> = got.iter().filter(|id| capped.contains(id)).collect();
    assert_eq!(capped_running, vec![&capped[0], &capped[1]], "{got:?}");
    assert!(
        other.iter().all(|id| got.contains(id)),
        "the other tenant used the free slots"
    );
    assert_eq!(
        claim_id(&q).await,
        None,
        "only the capped tenant's jobs wait"
    );

    q.ack(capped[0], None).await.unwrap();
    assert_eq!(claim_id(&q).await, Some(capped[2]), "its slot came back");
    assert_eq!(claim_id(&q).await, None);
    let stats = q.stats().await.unwrap();
    assert_eq!(
        stats.waiting_normal, 1,
        "the parked job still counts as waiting"
    );
}

#[tokio::test]
async fn every_way_a_job_leaves_flight_gives_its_slot_back() {
    let q = queue().await;
    q.set_caps(&cap("capped", 1)).await.unwrap();
    let ids = enqueue_for(&q, "capped", 4).await;

    // A retryable failure.
    assert_eq!(claim_id(&q).await, Some(ids[0]));
    assert_eq!(claim_id(&q).await, None);
    let failure = Failure {
        retryable: true,
        message: "out of memory".into(),
    };
    q.fail(ids[0], None, &failure).await.unwrap();
    // A release (a worker shutting down).
    assert_eq!(claim_id(&q).await, Some(ids[1]));
    assert!(q.release(ids[1], gpu()).await.unwrap());
    // A lease that ran out.
    assert_eq!(
        claim_id(&q).await,
        Some(ids[1]),
        "the released job goes first"
    );
    assert_eq!(claim_id(&q).await, None);
    tokio::time::sleep(q.config().lease + Duration::from_millis(100)).await;
    assert_eq!(q.reap_once().await.unwrap().requeued, vec![ids[1]]);
    assert_eq!(claim_id(&q).await, Some(ids[1]));
    // A permanent failure (dead letter).
    let fatal = Failure {
        retryable: false,
        message: "bad input".into(),
    };
    q.fail(ids[1], None, &fatal).await.unwrap();
    assert_eq!(claim_id(&q).await, Some(ids[2]));
}

#[tokio::test]
async fn the_concurrency_cap_holds_under_16_concurrent_claimers() {
    const CAP: usize = 3;
    let q = Arc::new(queue().await);
    q.set_caps(&cap("capped", CAP as u32)).await.unwrap();
    let capped = Arc::new(enqueue_for(&q, "capped", 48).await);
    enqueue_for(&q, "other", 48).await;

    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..16 {
        let (q, capped, running, most, done) = (
            q.clone(),
            capped.clone(),
            running.clone(),
            most.clone(),
            done.clone(),
        );
        workers.push(tokio::spawn(async move {
            let me = consumer(&format!("gpu-{w}"));
            let mut idle = 0;
            while done.load(Ordering::SeqCst) < 96 && idle < 500 {
                let Some(job) = q.claim(&me, 1).await.unwrap().pop() else {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                };
                // Counted after the claim and uncounted before the ack: never more than
                // Redis had in flight at once.
                let mine = capped.contains(&job.id);
                if mine {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
                if mine {
                    running.fetch_sub(1, Ordering::SeqCst);
                }
                q.ack(job.id, Some(&me)).await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 96, "every job ran");
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= CAP,
        "{most} of the capped tenant's jobs ran at once"
    );
    assert_eq!(most, CAP, "the cap is a limit, not a throttle below it");
}

#[tokio::test]
async fn setting_caps_recounts_and_lifting_a_cap_brings_a_parked_tenant_back() {
    let q = queue().await;
    q.set_caps(&cap("capped", 1)).await.unwrap();
    let ids = enqueue_for(&q, "capped", 3).await;
    assert_eq!(claim_id(&q).await, Some(ids[0]));
    assert_eq!(claim_id(&q).await, None);
    assert_eq!(
        q.set_caps(&cap("capped", 1)).await.unwrap(),
        Some(1),
        "parked"
    );

    // A count gone wrong (say, a lost write) is recounted from the jobs in flight.
    let mut conn = conn().await;
    let share = q.keys().vtime();
    let _: () = redis::cmd("HSET")
        .arg(share)
        .arg("run:capped")
        .arg(7)
        .query_async(&mut conn)
        .await
        .unwrap();
    q.set_caps(&cap("capped", 2)).await.unwrap();
    assert_eq!(
        claim_id(&q).await,
        Some(ids[1]),
        "recounted: 1 in flight, cap 2"
    );
    assert_eq!(claim_id(&q).await, None);

    assert_eq!(q.set_caps(&Caps::default()).await.unwrap(), Some(0));
    assert_eq!(claim_id(&q).await, Some(ids[2]), "no cap: back at once");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(share)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        fields
            .iter()
            .all(|f| ["normal", "high", "caps_version"].contains(&f.as_str())),
        "caps off leaves no cap state: {fields:?}"
    );
}

#[tokio::test]
async fn a_default_cap_applies_to_every_tenant_without_its_own() {
    let q = queue().await;
    let caps = Caps {
        default: Some(1),
        tenants: [(tenant("big"), 2)].into(),
        ..Caps::default()
    };
    q.set_caps(&caps).await.unwrap();
    let small = enqueue_for(&q, "small", 2).await;
    let big = enqueue_for(&q, "big", 3).await;
    let mut got = Vec::new();
    while let Some(id) = claim_id(&q).await {
        got.push(id);
    }
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.contains(&small[0]) && got.contains(&big[0]) && got.contains(&big[1]));
}

#[tokio::test]
async fn a_cap_out_of_range_is_refused_and_changes_nothing() {
    let q = queue().await;
    q.set_caps(&cap("capped", 1)).await.unwrap();
    for bad in [0, gpuq_queue::MAX_CAP + 1] {
        let err = q.set_caps(&cap("capped", bad)).await.unwrap_err();
        assert!(matches!(err, QueueError::InvalidCap { .. }), "{err:?}");
    }
    let ids = enqueue_for(&q, "capped", 2).await;
    assert_eq!(claim_id(&q).await, Some(ids[0]));
    assert_eq!(claim_id(&q).await, None, "the cap of 1 still holds");
}

#[tokio::test]
async fn a_cap_set_while_jobs_run_counts_the_jobs_already_in_flight() {
    let q = queue().await;
    let ids = enqueue_for(&q, "busy", 3).await;
    assert_eq!(claim_id(&q).await, Some(ids[0]));
    assert_eq!(claim_id(&q).await, Some(ids[1]));
    // Two of its jobs run, claimed while no cap counted them: a cap of 2 is reached.
    assert_eq!(
        q.set_caps(&cap("busy", 2)).await.unwrap(),
        Some(1),
        "parked"
    );
    assert_eq!(claim_id(&q).await, None);
    q.ack(ids[0], None).await.unwrap();
    assert_eq!(
        claim_id(&q).await,
        Some(ids[2]),
        "the ack gave its slot back"
    );
}

#[tokio::test]
async fn caps_older_than_the_ones_set_last_change_nothing() {
    let q = queue().await;
    let newer = Caps {
        version: 20,
        ..cap("late", 1)
    };
    assert_eq!(q.set_caps(&newer).await.unwrap(), Some(0));
    let stale = Caps {
        version: 10,
        ..Caps::default()
    };
    assert_eq!(q.set_caps(&stale).await.unwrap(), None, "refused");
    let ids = enqueue_for(&q, "late", 2).await;
    assert_eq!(claim_id(&q).await, Some(ids[0]));
    assert_eq!(claim_id(&q).await, None, "the newer cap of 1 holds");
}
