//! Quarantine: a quarantined consumer is refused at its claim (and still seen alive), the
//! others claim as before, and a release lets it claim again.

use gpuq_queue::{EnqueueOptions, QueueError};

use crate::helpers::*;

#[tokio::test]
async fn a_quarantined_consumer_leases_nothing_until_it_is_released_while_others_claim() {
    let q = queue().await;
    let (sick, healthy) = (consumer("sick"), consumer("healthy"));
    for _ in 0..3 {
        q.enqueue(&envelope(&q, 3), &EnqueueOptions::default())
            .await
            .unwrap();
    }
    q.quarantine(&sick, "5 failed attempts on 3 jobs in a row")
        .await
        .unwrap();
    match q.claim(&sick, 1).await {
        Err(QueueError::Quarantined(reason)) => {
            assert_eq!(reason, "5 failed attempts on 3 jobs in a row")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let live: Vec<_> = q.live_consumers().await.unwrap();
    assert!(
        live.iter().any(|c| c.name == sick.as_str()),
        "still seen alive"
    );
    assert_eq!(q.stats().await.unwrap().waiting(), 3, "nothing leased");
    assert_eq!(q.claim(&healthy, 1).await.unwrap().len(), 1);
    assert_eq!(
        q.quarantined().await.unwrap(),
        vec![(
            sick.to_string(),
            "5 failed attempts on 3 jobs in a row".to_owned()
        )]
    );

    assert!(q.release_quarantine(&sick).await.unwrap());
    assert!(!q.release_quarantine(&sick).await.unwrap(), "only once");
    assert!(q.quarantined().await.unwrap().is_empty());
    assert_eq!(q.claim(&sick, 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_quarantined_consumer_is_alive_but_not_capacity() {
    let q = queue().await;
    let (sick, healthy) = (consumer("sick"), consumer("healthy"));
    q.quarantine(&sick, "sick").await.unwrap();
    assert!(q.claim_as(&sick, 1, Some(8)).await.is_err());
    q.claim_as(&healthy, 1, Some(4)).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.live_consumers, 2);
    assert_eq!(stats.live_slots, 4, "only the healthy one's slots");
    q.release_quarantine(&sick).await.unwrap();
    q.claim_as(&sick, 1, Some(8)).await.unwrap();
    assert_eq!(q.stats().await.unwrap().live_slots, 12);
}
