//! The scripts as one Redis Functions library: loaded by the first call that finds it
//! missing, and run as plain scripts by a process that may not load code (a worker).
//! Each test has a private redis-server, so no other test sees its library come and go.
//! (A worker's side is `tests/worker_scripts.rs`: it changes how its whole process calls.)

use gpuq_queue::{EnqueueOptions, Queue};

use crate::helpers::*;

/// Enqueues, claims and acks one job.
pub async fn one_job_through(q: &Queue) {
    let env = envelope(q, 3);
    q.enqueue(&env, &EnqueueOptions::default()).await.unwrap();
    let c = consumer("gpu");
    let got = q.claim(&c, 1).await.unwrap();
    assert_eq!(got.first().map(|j| j.id), Some(env.job_id));
    q.ack(env.job_id, Some(&c)).await.unwrap();
    assert_eq!(q.stats().await.unwrap().waiting(), 0);
}

#[tokio::test]
async fn a_redis_without_the_library_gets_it_from_the_first_call_and_again_after_losing_it() {
    let (_redis, port) = private_redis().await;
    assert!(libraries(port).await.is_empty());
    let q = queue_at(&format!("redis://127.0.0.1:{port}")).await;
    one_job_through(&q).await;
    assert_eq!(libraries(port).await.len(), 1, "one library, loaded once");

    // A Redis restarted empty: the next call loads it again, and nothing is lost.
    let mut admin = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    one_job_through(&q).await;
    assert_eq!(libraries(port).await.len(), 1);
}
