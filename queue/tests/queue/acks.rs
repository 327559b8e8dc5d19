//! Acks in batches: `ack_jobs.lua` and the [`Acker`] that sends it.

use futures_util::future::join_all;
use gpuq_queue::*;
use gpuq_schemas::JobId;

use crate::helpers::*;

async fn enqueue_n(q: &Queue, n: usize) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let env = envelope(q, 3);
        q.enqueue(&env, &EnqueueOptions::default()).await.unwrap();
        ids.push(env.job_id);
    }
    ids
}

/// `ack_jobs.lua` as a worker in another language sends it (`EVAL` of the prelude and the
/// script), with its keys declared; `args` are (job id, consumer, fence) triples.
async fn raw_acks(q: &Queue, args: &[String]) -> redis::RedisResult<Vec<i64>> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(&format!(
            "{}{}",
            include_str!("../../lua/prelude.lua"),
            include_str!("../../lua/ack_jobs.lua")
        ))
    });
    let k = q.keys();
    let mut call = SCRIPT.key(&k.everywhere()[..]);
    call.key(k.signal()).arg(args);
    call.invoke_async(&mut conn().await).await
}

fn triple(id: JobId, consumer: &str, fence: &str) -> [String; 3] {
    [id.to_string(), consumer.to_owned(), fence.to_owned()]
}

#[tokio::test]
async fn acks_sent_in_one_call_each_get_the_answer_they_would_have_alone() {
    let q = queue().await;
    let ids = enqueue_n(&q, 3).await;
    let c = consumer("gpu");
    let claimed = q.claim(&c, 2).await.unwrap();
    let (done, again) = (&claimed[0], &claimed[1]);
    // `again` is handed back and claimed anew: its first fence is stale.
    assert!(q.release_claim(again.id, &c, &again.fence()).await.unwrap());
    let later = q.claim(&c, 1).await.unwrap().remove(0);
    assert_eq!(later.id, again.id);
    let waiting = *ids
        .iter()
        .find(|id| ![done.id, again.id].contains(id))
        .unwrap();

    let args = [
        triple(done.id, c.as_str(), &done.fence().to_string()),
        triple(again.id, c.as_str(), &again.fence().to_string()),
        triple(waiting, "", ""),
        triple(done.id, c.as_str(), &done.fence().to_string()),
        triple(JobId::new(), "", ""),
    ]
    .concat();
    let codes = raw_acks(&q, &args).await.unwrap();
    // Removed; held under a later claim; removed while waiting; already gone; unknown.
    assert_eq!(codes, vec![1, -1, 1, 0, 0]);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.waiting(), stats.in_flight), (0, 1), "{stats:?}");
    assert_eq!(
        q.holding(again.id).await.unwrap().map(|h| h.fence),
        Some(later.fence())
    );
}

#[tokio::test]
async fn an_ack_call_that_is_not_made_of_triples_is_refused_and_changes_nothing() {
    let q = queue().await;
    enqueue_n(&q, 1).await;
    let c = consumer("gpu");
    let job = q.claim(&c, 1).await.unwrap().remove(0);
    assert_eq!(raw_acks(&q, &[]).await.unwrap(), Vec::<i64>::new());
    // A job id and a consumer, without the fence.
    let [id, who, _] = triple(job.id, c.as_str(), "");
    let err = raw_acks(&q, &[id, who]).await.unwrap_err();
    assert!(err.to_string().contains("triples"), "{err}");
    assert_eq!(q.stats().await.unwrap().in_flight, 1, "still in flight");
}

#[tokio::test]
async fn a_workers_acker_removes_every_job_however_many_end_together() {
    let q = queue().await;
    enqueue_n(&q, 300).await;
    let c = consumer("gpu");
    let claimed = q.claim(&c, 300).await.unwrap();
    assert_eq!(claimed.len(), 300);
    let acks = q.acker();
    let fences: Vec<Fence> = claimed.iter().map(ClaimedJob::fence).collect();
    let outcomes = join_all(
        claimed
            .iter()
            .zip(&fences)
            .map(|(job, fence)| acks.ack_claim(job.id, &c, fence)),
    )
    .await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(AckOutcome::Removed))),
        "{outcomes:?}"
    );
    // A second ack of each, as the SDK's after the callback service's, finds nothing.
    let again = join_all(claimed.iter().map(|job| acks.ack(job.id, None))).await;
    assert!(again.iter().all(|o| matches!(o, Ok(AckOutcome::NotFound))));
    assert_eq!(job_keys_of(&q).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_cancelled_job_acked_in_a_batch_leaves_nothing_behind() {
    let q = queue().await;
    enqueue_n(&q, 2).await;
    let c = consumer("gpu");
    let claimed = q.claim(&c, 2).await.unwrap();
    // One is flagged cancelled while it runs; its worker then stops and acks it.
    assert_eq!(
        q.cancel(claimed[0].id).await.unwrap(),
        CancelOutcome::Flagged
    );
    let args = [
        triple(claimed[0].id, c.as_str(), &claimed[0].fence().to_string()),
        triple(claimed[1].id, c.as_str(), &claimed[1].fence().to_string()),
    ]
    .concat();
    assert_eq!(raw_acks(&q, &args).await.unwrap(), vec![1, 1]);
    assert_eq!(job_keys_of(&q).await, Vec::<String>::new());
}
