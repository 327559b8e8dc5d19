//! The queue's live capacity: the slots each live consumer advertised, for ETAs.

use std::time::Duration;

use gpuq_queue::QueueConfig;

use crate::helpers::*;

#[tokio::test]
async fn live_slots_add_what_each_live_consumer_advertised_and_one_for_the_silent() {
    let q = queue().await;
    assert_eq!(q.stats().await.unwrap().live_slots, 0);
    let four = consumer("four");
    q.claim_as(&four, 1, Some(4)).await.unwrap();
    q.claim(&consumer("silent"), 1).await.unwrap();
    q.claim_as(&consumer("two"), 1, Some(2)).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.live_consumers, s.live_slots), (3, 7));
    // A new figure replaces the old one.
    q.claim_as(&four, 1, Some(1)).await.unwrap();
    assert_eq!(q.stats().await.unwrap().live_slots, 4);
}

#[tokio::test]
async fn a_consumer_that_went_silent_leaves_the_capacity_and_the_slots_hash() {
    let q = queue_with(QueueConfig {
        consumer_ttl: Duration::from_millis(200),
        ..fast_config()
    })
    .await;
    q.claim_as(&consumer("gone"), 1, Some(8)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.stats().await.unwrap().live_slots, 0);
    q.reap_once().await.unwrap();
    let left: usize = redis::cmd("HLEN")
        .arg(q.keys().slots())
        .query_async(&mut conn().await)
        .await
        .unwrap();
    assert_eq!(left, 0, "the reaper forgets a dead consumer's slots");
}

#[tokio::test]
async fn a_slot_count_out_of_range_is_clamped_so_the_worker_still_claims() {
    let q = queue().await;
    q.claim_as(&consumer("zero"), 1, Some(0)).await.unwrap();
    assert_eq!(q.stats().await.unwrap().live_slots, 1);
    q.claim_as(&consumer("huge"), 1, Some(u32::MAX))
        .await
        .unwrap();
    assert_eq!(q.stats().await.unwrap().live_slots, 1 + 100_000);
}
