//! [`Acker`]: acks of one queue gathered into batches (`ack_jobs.lua`).
//!
//! A worker with many slots, or the callback service after a batch of completions, acks
//! many jobs at about the same time. Alone, each ack is a Redis call whose fixed cost (the
//! round trip, parsing 13 keys, entering the function) is most of it; `gpuq-bench queue`
//! showed Redis on one core at 97 % with acks one call per job. An [`Acker`] sends the acks
//! that queue up while one call is in flight as the next call ([`crate::batch`]); a lone ack
//! is sent at once. Each ack is answered as [`Queue::ack`] answers it: the script runs the
//! same transition per job, in order. After a failed call each ack is sent again alone, and
//! one that the failed call had already applied answers [`AckOutcome::NotFound`].

use gpuq_schemas::JobId;

use crate::batch::{BatchWrite, Batcher};
use crate::scripts::SCRIPTS;
use crate::{AckOutcome, ConsumerName, Fence, Queue, Result};

/// Calls in flight at once: one more gathers the next batch while the first runs.
const IN_FLIGHT: usize = 2;
/// Acks per call: Redis runs a call to its end before anything else, so a call is kept
/// well under a millisecond.
const MAX_BATCH: usize = 64;

/// Acks of one queue, sent in batches; cheap to clone. Made by [`Queue::acker`].
#[derive(Clone)]
pub struct Acker {
    queue: Queue,
    batches: Batcher<AckWriter>,
}

impl std::fmt::Debug for Acker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acker").field("queue", &self.queue).finish()
    }
}

/// One ack: `ack_jobs.lua`'s triple.
struct Ack {
    job: JobId,
    consumer: String,
    fence: String,
}

impl Queue {
    /// An [`Acker`] for this queue. Its writer runs on the current tokio runtime until
    /// every clone is dropped.
    pub fn acker(&self) -> Acker {
        Acker {
            queue: self.clone(),
            batches: Batcher::spawn(AckWriter(self.clone()), IN_FLIGHT, MAX_BATCH),
        }
    }
}

impl Acker {
    /// [`Queue::ack`], sent with the acks waiting beside it.
    pub async fn ack(&self, job: JobId, consumer: Option<&ConsumerName>) -> Result<AckOutcome> {
        let consumer = consumer.map_or("", ConsumerName::as_str);
        self.send(job, consumer, String::new()).await
    }

    /// [`Queue::ack_claim`], sent with the acks waiting beside it.
    pub async fn ack_claim(
        &self,
        job: JobId,
        consumer: &ConsumerName,
        fence: &Fence,
    ) -> Result<AckOutcome> {
        self.send(job, consumer.as_str(), fence.to_string()).await
    }

    async fn send(&self, job: JobId, consumer: &str, fence: String) -> Result<AckOutcome> {
        let ack = Ack {
            job,
            consumer: consumer.to_owned(),
            fence: fence.clone(),
        };
        match self.batches.submit(ack).await.flatten() {
            Some(code) => AckOutcome::from_code(code),
            // The batch's call failed (or its writer is gone with its runtime): this ack
            // alone, so that its caller gets the error itself. Acks repeat safely: one that
            // did run answers `NotFound` the second time.
            None => self.queue.ack_script(job, consumer, &fence).await,
        }
    }
}

struct AckWriter(Queue);

impl BatchWrite for AckWriter {
    type Item = Ack;
    /// `ack_job.lua`'s code, or `None` when the call failed.
    type Answer = Option<i64>;

    async fn write(&self, acks: Vec<Ack>) -> Vec<Option<i64>> {
        let queue = &self.0;
        let mut call = SCRIPTS.ack_many.key(&queue.keys.everywhere()[..]);
        call.key(queue.keys.signal());
        for a in &acks {
            call.arg(a.job.to_string()).arg(&a.consumer).arg(&a.fence);
        }
        match call.invoke_async::<Vec<i64>, _>(&mut queue.conn()).await {
            Ok(codes) if codes.len() == acks.len() => codes.into_iter().map(Some).collect(),
            Ok(codes) => {
                tracing::warn!(
                    sent = acks.len(),
                    answered = codes.len(),
                    "ack_jobs answered a different count; acking one by one"
                );
                acks.iter().map(|_| None).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, acks = acks.len(), "batched ack failed; acking one by one");
                acks.iter().map(|_| None).collect()
            }
        }
    }
}
