//! Fair share within a lane: tenants get GPU time by weight, not by how many jobs they
//! enqueue; a tenant's own jobs keep their order; redeliveries go first.

use std::collections::HashMap;

use gpuq_queue::{CancelOutcome, EnqueueOptions, EnqueueOutcome, Lane, Queue};
use gpuq_schemas::{JobId, Tenant};

use crate::helpers::*;

fn tenant(name: &str) -> Tenant {
    name.parse().unwrap()
}

/// Enqueues `n` jobs of `cost_ms` for `who` (weight `weight`); returns their ids in order
/// and the last enqueue's outcome.
async fn flood(
    q: &Queue,
    who: &str,
    n: usize,
    cost_ms: u64,
    weight: u32,
) -> (Vec<JobId>, EnqueueOutcome) {
    let opts = EnqueueOptions {
        cost_ms,
        weight,
        ..EnqueueOptions::default()
    };
    let mut ids = Vec::new();
    let mut last = None;
    for _ in 0..n {
        let mut env = envelope(q, 3);
        env.tenant = Some(tenant(who));
        last = Some(q.enqueue(&env, &opts).await.unwrap());
        ids.push(env.job_id);
    }
    (ids, last.unwrap())
}

/// Claims one job at a time, `n` times, and returns the ids in claim order.
async fn claim_one_by_one(q: &Queue, n: usize) -> Vec<JobId> {
    let c = consumer("gpu");
    let mut order = Vec::new();
    for _ in 0..n {
        let got = q.claim(&c, 1).await.unwrap();
        assert_eq!(got.len(), 1, "a job was waiting");
        order.push(got[0].id);
    }
    order
}

/// `job`'s position alone.
async fn position_of(q: &Queue, job: JobId) -> Result<Option<u64>, gpuq_queue::QueueError> {
    Ok(q.position(job).await?.map(|(jobs, _)| jobs))
}

/// GPU milliseconds served to each tenant among the claimed ids.
fn served(order: &[JobId], tenants: &[(&str, &[JobId], u64)]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for id in order {
        for (name, ids, cost) in tenants {
            if ids.contains(id) {
                *out.entry(name.to_string()).or_default() += cost;
            }
        }
    }
    out
}

#[tokio::test]
async fn a_flooding_tenant_does_not_delay_another_tenants_single_job_beyond_the_next_claim() {
    let q = queue().await;
    let (flood_ids, _) = flood(&q, "flooder", 100, 60_000, 1).await;
    claim_one_by_one(&q, 1).await;
    let (lone, out) = flood(&q, "lone", 1, 600, 1).await;
    assert!(
        matches!(
            out,
            EnqueueOutcome::Enqueued {
                position: 0,
                waiting: 100,
                ..
            }
        ),
        "{out:?}"
    );
    let order = claim_one_by_one(&q, 2).await;
    assert_eq!(
        order[0], lone[0],
        "the lone job is next, not after 99 others"
    );
    assert_eq!(
        order[1], flood_ids[1],
        "the flooder's jobs keep their order"
    );
}

#[tokio::test]
async fn tenants_of_weight_one_and_three_share_gpu_time_one_to_three() {
    let q = queue().await;
    let (light, _) = flood(&q, "w1", 200, 1_000, 1).await;
    let (heavy, _) = flood(&q, "w3", 200, 1_000, 3).await;
    let order = claim_one_by_one(&q, 100).await;
    let got = served(&order, &[("w1", &light, 1_000), ("w3", &heavy, 1_000)]);
    assert!((24_000..=26_000).contains(&got["w1"]), "{got:?}");
    assert!((74_000..=76_000).contains(&got["w3"]), "{got:?}");
}

#[tokio::test]
async fn cheap_and_expensive_floods_get_equal_gpu_seconds_not_equal_job_counts() {
    let q = queue().await;
    let (cheap, _) = flood(&q, "cheap", 400, 500, 1).await;
    let (dear, _) = flood(&q, "dear", 100, 4_000, 1).await;
    let order = claim_one_by_one(&q, 90).await;
    let got = served(&order, &[("cheap", &cheap, 500), ("dear", &dear, 4_000)]);
    let (c, d) = (got["cheap"] as i64, got["dear"] as i64);
    assert!(
        (c - d).abs() <= 4_000,
        "GPU ms differ by more than one job: {got:?}"
    );
    let cheap_jobs = order.iter().filter(|id| cheap.contains(id)).count();
    assert!(
        cheap_jobs >= 70,
        "the cheap tenant ran ~8x the jobs: {cheap_jobs}"
    );
}

#[tokio::test]
async fn a_tenant_alone_gets_every_job_in_its_order() {
    let q = queue().await;
    let (ids, _) = flood(&q, "alone", 30, 5_000, 1).await;
    let c = consumer("gpu");
    let got: Vec<_> = q
        .claim(&c, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, ids);
    assert!(job_keys_of(&q).await.iter().all(|k| !k.contains(":wait:")));
}

#[tokio::test]
async fn a_released_job_goes_before_its_tenants_other_jobs_and_before_other_tenants() {
    let q = queue().await;
    let (a, _) = flood(&q, "a", 3, 1_000, 1).await;
    let (b, _) = flood(&q, "b", 3, 1_000, 1).await;
    let c = consumer("gpu");
    let first = q.claim(&c, 1).await.unwrap().remove(0);
    let second = q.claim(&c, 1).await.unwrap().remove(0);
    assert!(q.release(first.id, &c).await.unwrap());
    let next = claim_one_by_one(&q, 1).await;
    assert_eq!(next[0], first.id, "the handed-back job runs next");
    let rest = claim_one_by_one(&q, 4).await;
    let mut all: Vec<_> = [first.id, second.id].into_iter().chain(rest).collect();
    all.sort();
    let mut expected: Vec<_> = a.iter().chain(&b).copied().collect();
    expected.sort();
    assert_eq!(all, expected, "every job claimed once");
}

#[tokio::test]
async fn cancelling_a_tenants_next_job_hands_its_turn_to_the_following_one() {
    let q = queue().await;
    let (a, _) = flood(&q, "a", 3, 1_000, 1).await;
    assert_eq!(q.cancel(a[0]).await.unwrap(), CancelOutcome::Removed);
    assert_eq!(q.cancel(a[2]).await.unwrap(), CancelOutcome::Removed);
    let s = q.stats().await.unwrap();
    assert_eq!((s.waiting_normal, s.tenants_normal), (1, 1));
    assert_eq!(claim_one_by_one(&q, 1).await, vec![a[1]]);
    let s = q.stats().await.unwrap();
    assert_eq!((s.waiting_normal, s.tenants_normal), (0, 0));
    assert!(job_keys_of(&q)
        .await
        .iter()
        .all(|k| k.ends_with(":jobs") || k.ends_with(":meta") || k.ends_with(":leases")));
}

#[tokio::test]
async fn fairness_holds_inside_each_lane_and_the_high_lane_still_goes_first() {
    let q = queue().await;
    let (normal, _) = flood(&q, "a", 2, 1_000, 1).await;
    let high_opts = EnqueueOptions {
        lane: Lane::High,
        cost_ms: 1_000,
        ..EnqueueOptions::default()
    };
    let mut env = envelope(&q, 3);
    env.tenant = Some(tenant("b"));
    let out = q.enqueue(&env, &high_opts).await.unwrap();
    assert!(
        matches!(out, EnqueueOutcome::Enqueued { position: 0, .. }),
        "{out:?}"
    );
    let order = claim_one_by_one(&q, 3).await;
    assert_eq!(order, vec![env.job_id, normal[0], normal[1]]);
}

#[tokio::test]
async fn position_counts_the_jobs_the_fair_share_puts_first_not_the_lane_length() {
    let q = queue().await;
    flood(&q, "big", 40, 2_000, 1).await;
    // Its 40 jobs span virtual time 0..80,000; a job of another tenant starting at 0 has
    // only the first of them (a tie) before it.
    let (_, out) = flood(&q, "small", 1, 2_000, 1).await;
    assert!(
        matches!(
            out,
            EnqueueOutcome::Enqueued {
                position: 1,
                waiting: 41,
                ..
            }
        ),
        "{out:?}"
    );
    // A second job of that tenant starts at 2,000: its own first job and two of big's.
    let (second, out) = flood(&q, "small", 1, 2_000, 1).await;
    assert!(
        matches!(out, EnqueueOutcome::Enqueued { position: 3, .. }),
        "{out:?}"
    );
    // Asked later, a waiting job's position is the same count.
    assert_eq!(position_of(&q, second[0]).await.unwrap(), Some(3));
}

#[tokio::test]
async fn a_waiting_jobs_position_shrinks_as_jobs_start_and_a_started_one_has_none() {
    let q = queue().await;
    let (big, _) = flood(&q, "big", 10, 2_000, 1).await;
    let (small, _) = flood(&q, "small", 2, 2_000, 1).await;
    // big's third job (tag 4,000): its own two, and small's two (tags 0 and 2,000).
    assert_eq!(position_of(&q, big[2]).await.unwrap(), Some(4));
    let started = claim_one_by_one(&q, 2).await;
    assert_eq!(position_of(&q, big[2]).await.unwrap(), Some(2));
    assert_eq!(
        position_of(&q, started[0]).await.unwrap(),
        None,
        "in flight"
    );
    assert_eq!(position_of(&q, small[1]).await.unwrap(), Some(1));
    assert_eq!(
        position_of(&q, JobId::new()).await.unwrap(),
        None,
        "unknown"
    );
}

#[tokio::test]
async fn a_tenant_whose_whole_backlog_was_cancelled_is_not_charged_for_it() {
    let q = queue().await;
    let (a, _) = flood(&q, "a", 10, 1_000, 1).await;
    let (b, _) = flood(&q, "b", 3, 1_000, 1).await;
    // Cancelled out of order, the oldest last.
    for id in a.iter().rev() {
        assert_eq!(q.cancel(*id).await.unwrap(), CancelOutcome::Removed);
    }
    let (again, out) = flood(&q, "a", 1, 1_000, 1).await;
    assert!(
        matches!(
            out,
            EnqueueOutcome::Enqueued {
                position: 1,
                waiting: 4,
                ..
            }
        ),
        "{out:?}"
    );
    let order = claim_one_by_one(&q, 2).await;
    assert!(
        order.contains(&again[0]),
        "not behind b's backlog: {order:?}"
    );
    assert!(order.contains(&b[0]));
}

#[tokio::test]
async fn position_past_the_scanned_tenants_counts_each_further_tenant_once_per_job() {
    let q = queue().await;
    // Six tenants with one job each, all starting at 0; then a seventh.
    for name in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        flood(&q, name, 1, 1_000, 1).await;
    }
    let (_, out) = flood(&q, "t7", 1, 1_000, 1).await;
    assert!(
        matches!(
            out,
            EnqueueOutcome::Enqueued {
                position: 6,
                waiting: 7,
                ..
            }
        ),
        "{out:?}"
    );
    // t1 again: behind its own job and the five others' (all tied at 0 or before 1,000).
    let (_, out) = flood(&q, "t1", 1, 1_000, 1).await;
    assert!(
        matches!(out, EnqueueOutcome::Enqueued { position: 7, .. }),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_position_deep_in_a_long_backlog_counts_every_job_ahead_of_it() {
    let q = queue().await;
    let (deep, _) = flood(&q, "deep", 40, 1_000, 1).await;
    assert_eq!(position_of(&q, deep[0]).await.unwrap(), Some(0));
    assert_eq!(
        position_of(&q, deep[30]).await.unwrap(),
        Some(30),
        "past the first 16"
    );
    assert_eq!(q.cancel(deep[35]).await.unwrap(), CancelOutcome::Removed);
    assert_eq!(position_of(&q, deep[39]).await.unwrap(), Some(38));
    assert_eq!(q.stats().await.unwrap().waiting(), 39);
}

#[tokio::test]
async fn the_work_ahead_of_a_job_is_its_costs_not_its_count() {
    let q = queue().await;
    let (cheap, _) = flood(&q, "cheap", 4, 500, 1).await;
    let (video, _) = flood(&q, "video", 1, 60_000, 1).await;
    let (_, out) = flood(&q, "cheap", 1, 500, 1).await;
    let EnqueueOutcome::Enqueued { position, work, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(position, 5, "its own 4 and the video");
    let even = |_: &Tenant| 1;
    assert_eq!(work.gpu_ms(even), 4 * 500 + 60_000);
    assert_eq!(work.high_jobs, 0);
    // A weight-3 tenant's span is a third of its GPU time.
    let heavy = |t: &Tenant| if t.as_str() == "video" { 3 } else { 1 };
    assert_eq!(work.gpu_ms(heavy), 4 * 500 + 180_000);
    let (jobs, again) = q.position(cheap[2]).await.unwrap().unwrap();
    assert_eq!(jobs, 3, "its own two and the video");
    assert_eq!(again.gpu_ms(even), 2 * 500 + 60_000);
    let (jobs, tied) = q.position(video[0]).await.unwrap().unwrap();
    assert_eq!(
        (jobs, tied.gpu_ms(even)),
        (1, 500),
        "the tie with cheap's first job"
    );
}

#[tokio::test]
async fn the_virtual_time_stays_where_the_lane_served_when_its_waiting_jobs_are_cancelled() {
    let q = queue().await;
    let (ids, _) = flood(&q, "a", 6, 1_000, 1).await;
    claim_one_by_one(&q, 3).await;
    for id in &ids[3..] {
        assert_eq!(q.cancel(*id).await.unwrap(), CancelOutcome::Removed);
    }
    let vtime = || async {
        let v: Option<String> = redis::cmd("HGET")
            .arg(q.keys().vtime())
            .arg("normal")
            .query_async(&mut conn().await)
            .await
            .unwrap();
        v
    };
    assert_eq!(
        vtime().await.as_deref(),
        Some("2000"),
        "the tag served last"
    );
    // A newcomer starts there, not at 0 ahead of every tag a busy lane ever gave out.
    let (_, out) = flood(&q, "b", 2, 1_000, 1).await;
    assert!(
        matches!(out, EnqueueOutcome::Enqueued { position: 1, .. }),
        "{out:?}"
    );
    claim_one_by_one(&q, 1).await;
    assert_eq!(vtime().await.as_deref(), Some("2000"));
    claim_one_by_one(&q, 1).await;
    assert_eq!(vtime().await.as_deref(), Some("3000"));
}
