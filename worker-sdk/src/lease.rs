//! Lease renewal, on a thread of its own.
//!
//! One [`LeaseKeeper`] per worker renews the leases of every job the worker holds, every
//! heartbeat period, from a dedicated OS thread with its own single-threaded tokio runtime
//! and its own Redis connection. Nothing a handler does can delay it: not an `async` handler
//! that blocks its thread by mistake (`std::thread::sleep`, a synchronous GPU call), not
//! every runtime worker thread being busy. Each held job gets a [`LeaseHandle`] whose state
//! turns to [`LeaseState::Cancelled`] or [`LeaseState::Lost`] when a heartbeat says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::join_all;
use gpuq_queue::{ConsumerName, LeaseStatus, Queue};
use gpuq_schemas::JobId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connect::QueueTarget;

/// What the last heartbeat of a job said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// Ours.
    Held,
    /// Ours, but cancelled: stop and ack.
    Cancelled,
    /// Not ours any more: stop and report nothing.
    Lost,
}

/// Held jobs, each with the number of the claim that registered it: when Redis lost a job
/// and this worker claims it again while the first run is still winding down, the older
/// handle must not unregister the newer claim.
#[derive(Default)]
struct Registry {
    jobs: Mutex<HashMap<JobId, (u64, watch::Sender<LeaseState>)>>,
    claims: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<JobId, (u64, watch::Sender<LeaseState>)>> {
        // The map stays consistent even if a holder panicked mid-operation.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Renews the leases of registered jobs until stopped.
pub(crate) struct LeaseKeeper {
    registry: Arc<Registry>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts the keeper thread; it connects to Redis on its own, with retries.
    pub(crate) fn start(
        target: QueueTarget,
        consumer: ConsumerName,
        every: Duration,
    ) -> std::io::Result<Self> {
        let registry = Arc::new(Registry::default());
        let stop = CancellationToken::new();
        let (reg, st) = (Arc::clone(&registry), stop.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("gpuq-lease-keeper".into())
            .spawn(move || rt.block_on(keep(target, consumer, every, reg, st)))?;
        Ok(Self {
            registry,
            stop,
            thread: Some(thread),
        })
    }

    /// A cheap handle job tasks register their leases with.
    pub(crate) fn leases(&self) -> Leases {
        Leases(Arc::clone(&self.registry))
    }

    /// Stops the thread and waits for it.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn keep(
    target: QueueTarget,
    consumer: ConsumerName,
    every: Duration,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    let Some(queue) = target.connect(&stop, "lease keeper").await else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        renew_all(&queue, &consumer, &registry).await;
    }
}

/// One heartbeat per held job, all in flight at once on the multiplexed connection.
async fn renew_all(queue: &Queue, consumer: &ConsumerName, registry: &Registry) {
    let ids: Vec<JobId> = registry.lock().keys().copied().collect();
    let replies = join_all(ids.iter().map(|id| queue.heartbeat(*id, consumer))).await;
    let jobs = registry.lock();
    for (id, reply) in ids.into_iter().zip(replies) {
        let Some((_, tx)) = jobs.get(&id) else {
            continue;
        };
        let next = match reply {
            Ok(LeaseStatus::Held) => continue,
            Ok(LeaseStatus::Cancelled) => LeaseState::Cancelled,
            Ok(LeaseStatus::Lost) => LeaseState::Lost,
            Err(e) => {
                // Keep going: the connection reconnects, and if Redis stays away past
                // the lease the next answer is `Lost`.
                tracing::warn!(job_id = %id, error = %crate::error::chain(&e), "heartbeat failed");
                continue;
            }
        };
        tx.send_if_modified(|s| {
            let changed = *s != next && *s != LeaseState::Lost;
            if changed {
                *s = next;
            }
            changed
        });
    }
}

/// Registers jobs with the [`LeaseKeeper`].
#[derive(Clone)]
pub(crate) struct Leases(Arc<Registry>);

impl Leases {
    /// Starts renewing `job`'s lease; renewal stops when the handle is dropped.
    /// A second claim of a job still registered replaces the first: the older run sees
    /// its lease lost and stops without reporting.
    pub(crate) fn hold(&self, job: JobId) -> LeaseHandle {
        let (tx, rx) = watch::channel(LeaseState::Held);
        let claim = self
            .0
            .claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((_, older)) = self.0.lock().insert(job, (claim, tx)) {
            older.send_replace(LeaseState::Lost);
        }
        LeaseHandle {
            job,
            claim,
            registry: Arc::clone(&self.0),
            rx,
        }
    }
}

/// A registered job's lease; dropping it stops renewal.
pub(crate) struct LeaseHandle {
    job: JobId,
    claim: u64,
    registry: Arc<Registry>,
    rx: watch::Receiver<LeaseState>,
}

impl LeaseHandle {
    /// Waits until the lease is no longer plainly held; returns the new state.
    pub(crate) async fn changed(&mut self) -> LeaseState {
        match self.rx.wait_for(|s| *s != LeaseState::Held).await {
            Ok(s) => *s,
            Err(_) => LeaseState::Lost,
        }
    }

    /// Waits until the lease is lost.
    pub(crate) async fn lost(&mut self) {
        let _ = self.rx.wait_for(|s| *s == LeaseState::Lost).await;
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        let mut jobs = self.registry.lock();
        if jobs
            .get(&self.job)
            .is_some_and(|(claim, _)| *claim == self.claim)
        {
            jobs.remove(&self.job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_of_a_held_job_outlives_the_first() {
        let leases = Leases(Arc::default());
        let job = JobId::new();
        let mut first = leases.hold(job);
        let second = leases.hold(job);
        assert_eq!(
            first.changed().await,
            LeaseState::Lost,
            "the older run stops"
        );
        drop(first);
        assert!(
            leases.0.lock().contains_key(&job),
            "dropping the older handle keeps the newer claim registered"
        );
        assert_eq!(*second.rx.borrow(), LeaseState::Held);
        drop(second);
        assert!(leases.0.lock().is_empty());
    }
}
