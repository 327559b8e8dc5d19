//! A worker may not load code into Redis (deploy/redis/users.acl): it runs the same
//! transitions as scripts until a service has loaded the library. Its own test binary:
//! that choice holds for the whole process for a while.

#[allow(dead_code)]
#[path = "queue/helpers.rs"]
mod helpers;

use gpuq_queue::{AckOutcome, EnqueueOptions};

use helpers::*;

#[tokio::test]
async fn a_worker_that_may_not_load_code_runs_the_same_transitions_as_scripts() {
    let (_redis, port) = private_redis().await;
    let mut admin = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // The worker user of deploy/redis/users.acl, on every key of this private Redis.
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/redis/users.acl"
    ))
    .unwrap();
    let worker = rules
        .lines()
        .find(|l| l.starts_with("user worker_sdxl "))
        .expect("a worker user");
    // The commands of its root rule; a selector `( ... )` (its profile keys) comes after.
    let root = worker.split('(').next().unwrap_or(worker);
    let commands = root.split_whitespace().filter(|w| w.starts_with('+'));
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("w")
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("-@all")
        .arg(commands.collect::<Vec<_>>())
        .query_async(&mut admin)
        .await
        .unwrap();

    // The worker looks first (its load is refused), then a service enqueues: within the
    // next seconds this process runs every transition as a script.
    let worker = queue_at(&format!("redis://w:pw@127.0.0.1:{port}")).await;
    let c = consumer("gpu");
    assert!(worker.claim(&c, 1).await.unwrap().is_empty());
    let service = queue_at(&format!("redis://127.0.0.1:{port}")).await;
    let env = envelope(&service, 3);
    service
        .enqueue(&env, &EnqueueOptions::default())
        .await
        .unwrap();
    let got = worker.claim(&c, 1).await.unwrap();
    assert_eq!(got.first().map(|j| j.id), Some(env.job_id));
    assert_eq!(
        worker.ack(env.job_id, Some(&c)).await.unwrap(),
        AckOutcome::Removed
    );
    // Its acks in batches (ack_jobs.lua) run as a script too.
    let env = envelope(&service, 3);
    service
        .enqueue(&env, &EnqueueOptions::default())
        .await
        .unwrap();
    let job = worker.claim(&c, 1).await.unwrap().remove(0);
    assert_eq!(
        worker
            .acker()
            .ack_claim(job.id, &c, &job.fence())
            .await
            .unwrap(),
        AckOutcome::Removed
    );
    assert!(libraries(port).await.is_empty(), "no code was loaded");
}
