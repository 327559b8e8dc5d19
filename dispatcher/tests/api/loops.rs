use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use gpuq_queue::ConsumerName;

use crate::helpers::*;

#[tokio::test]
async fn two_dispatchers_reap_expired_leases_without_losing_or_doubling_a_job() {
    let first = spawn_app_with(|s| s.limits.max_active_jobs_per_user = 1000).await;
    // A second replica on the same database and Redis namespace.
    let second = spawn_with_settings(first.settings.clone()).await;
    let token = token_for(Uuid::new_v4());
    let mut ids = HashSet::new();
    for i in 0..40 {
        let app = if i % 2 == 0 { &first } else { &second };
        let body: Value = app
            .post_job(&token, &job_body("sdxl_image_fast", "x"))
            .await
            .json()
            .await
            .unwrap();
        ids.insert(body["job"]["id"].as_str().unwrap().to_owned());
    }
    let q = first.queue("sdxl_queue").await;
    let crashed = ConsumerName::unique("crashed");
    assert_eq!(q.claim(&crashed, 40).await.unwrap().len(), 40);
    // The worker never heartbeats; both replicas' reapers race for the expired leases.
    tokio::time::sleep(Duration::from_millis(first.settings.queue.lease_ms + 600)).await;
    let survivor = ConsumerName::unique("survivor");
    let again = q.claim(&survivor, 100).await.unwrap();
    let seen: Vec<String> = again.iter().map(|j| j.id.to_string()).collect();
    assert_eq!(seen.len(), 40, "every job redelivered exactly once");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);
    assert!(again.iter().all(|j| j.attempt == 2));
}
