//! Per-job event streams: ordered, resumable, and blocking readers wake on publish.

use std::time::Duration;

use gpuq_queue::{publish_event, read_events};
use gpuq_schemas::{JobEvent, JobId, JobStatus};

/// A connection of its own (readers block on it).
async fn conn() -> gpuq_queue::RedisConn {
    crate::helpers::target()
        .blocking_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn events_read_in_order_and_resume_after_the_last_seen_id() {
    let ns = format!("test-{}", uuid::Uuid::new_v4().simple());
    let job = JobId::new();
    let mut c = conn().await;
    let first = publish_event(&mut c, &ns, &JobEvent::status(job, JobStatus::Queued, None))
        .await
        .unwrap();
    publish_event(
        &mut c,
        &ns,
        &JobEvent::progress(job, 0.5, Some("denoising".into())),
    )
    .await
    .unwrap();
    let all = read_events(&mut c, &ns, job, "0", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0, first);
    let rest = read_events(&mut c, &ns, job, &first, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.progress, Some(0.5));
}

#[tokio::test]
async fn a_blocked_reader_wakes_on_publish() {
    let ns = format!("test-{}", uuid::Uuid::new_v4().simple());
    let job = JobId::new();
    let ns2 = ns.clone();
    let reader = tokio::spawn(async move {
        let mut c = conn().await;
        read_events(&mut c, &ns2, job, "$", Duration::from_secs(5))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    publish_event(
        &mut conn().await,
        &ns,
        &JobEvent::status(job, JobStatus::Completed, None),
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(3), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].1.is_terminal());
}
