//! [`Batcher`]: does what concurrent requests ask for in batches, one round trip each.
//!
//! Written one by one, every write costs PostgreSQL a round trip, a transaction and a WAL
//! flush (and sqlx a connection checkout), and every ack costs Redis a call. A batcher lets
//! requests queue up while up to `in_flight` batches are being written, and writes whatever
//! has queued (up to `max_batch`) as the next batch. A lone request is written at once,
//! alone: batching adds no wait, it only collects what is already waiting. Each request
//! still gets its own answer, after its own batch is done.
//!
//! It lives in the queue crate because every gpuq crate depends on it: the queue's
//! [`crate::Acker`] acks this way; the dispatcher writes enqueued jobs this way, and the
//! callback service its starts and completions and the job reads before them.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// Writes one batch.
pub trait BatchWrite: Send + Sync + 'static {
    /// What a request asks to write.
    type Item: Send + 'static;
    /// What it is answered.
    type Answer: Send + 'static;

    /// Writes `items`; one answer per item, in their order.
    fn write(&self, items: Vec<Self::Item>) -> impl Future<Output = Vec<Self::Answer>> + Send;
}

type Pending<W> = (
    <W as BatchWrite>::Item,
    oneshot::Sender<<W as BatchWrite>::Answer>,
);

/// Handle to a batch writer; cheap to clone. The writer task ends when every handle is
/// gone.
pub struct Batcher<W: BatchWrite> {
    queue: mpsc::Sender<Pending<W>>,
}

impl<W: BatchWrite> Clone for Batcher<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<W: BatchWrite> Batcher<W> {
    /// Starts `writer` on the current tokio runtime: at most `in_flight` batches at once
    /// (each holds one pooled connection), of at most `max_batch` items.
    pub fn spawn(writer: W, in_flight: usize, max_batch: usize) -> Self {
        let (in_flight, max_batch) = (in_flight.max(1), max_batch.max(1));
        let (queue, pending) = mpsc::channel(max_batch * in_flight * 4);
        tokio::spawn(write_batches(
            Arc::new(writer),
            in_flight,
            max_batch,
            pending,
        ));
        Self { queue }
    }

    /// Writes `item` with whatever else is waiting; `None` if the writer has stopped.
    pub async fn submit(&self, item: W::Item) -> Option<W::Answer> {
        let (answer, answered) = oneshot::channel();
        self.queue.send((item, answer)).await.ok()?;
        answered.await.ok()
    }
}

async fn write_batches<W: BatchWrite>(
    writer: Arc<W>,
    in_flight: usize,
    max_batch: usize,
    mut pending: mpsc::Receiver<Pending<W>>,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        // Wait for a free slot first: while every slot is busy, requests pile up in the
        // channel and become the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = pending.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let writer = Arc::clone(&writer);
        tokio::spawn(async move {
            let (items, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let results = writer.write(items).await;
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(result);
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Records the size of every batch and answers each item doubled, after a pause that
    /// lets later requests pile up.
    struct Doubler(Arc<Mutex<Vec<usize>>>);

    impl BatchWrite for Doubler {
        type Item = u32;
        type Answer = u32;

        async fn write(&self, items: Vec<u32>) -> Vec<u32> {
            self.0.lock().unwrap().push(items.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
            items.into_iter().map(|i| i * 2).collect()
        }
    }

    #[tokio::test]
    async fn a_lone_request_is_written_at_once_and_alone() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::spawn(Doubler(Arc::clone(&sizes)), 2, 8);
        assert_eq!(batcher.submit(7).await, Some(14));
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[tokio::test]
    async fn waiting_requests_share_capped_batches_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::spawn(Doubler(Arc::clone(&sizes)), 1, 4);
        let answers = futures_util::future::join_all((0..20).map(|i| batcher.submit(i))).await;
        let expected: Vec<Option<u32>> = (0..20).map(|i| Some(i * 2)).collect();
        assert_eq!(answers, expected);
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        assert!(sizes.len() < 20, "nothing was batched: {sizes:?}");
    }
}
