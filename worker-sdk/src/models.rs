//! Model routing on the worker's side (ADR 0020). The handler says, through its context,
//! which checkpoints and LoRAs it loaded or evicted; the worker sends them as warm with
//! every claim, with the models it can run and its GPU memory, so that the queue gives it
//! jobs it can run, warm ones first, within a bounded wait. It also advertises them, with
//! its GPU, in a profile admins see ([`advertise`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gpuq_queue::{ConsumerName, Queue, Route, WorkerProfile};
use tokio_util::sync::CancellationToken;

use crate::error::chain;

/// Most names remembered as loaded (most recent first); a GPU holds a few.
const MAX_WARM: usize = 32;

/// What a routing worker can run and how long a job may wait for a warm worker.
#[derive(Debug, Clone)]
pub(crate) struct Routing {
    /// None: any model.
    pub runnable: Option<Vec<String>>,
    pub max_wait: Duration,
    /// None: not said; any job fits.
    pub vram_gb: Option<u32>,
}

/// The checkpoints and LoRAs a worker has loaded, most recently loaded first, and how many
/// loads it did. Shared by its jobs' contexts, its claim loop and its advertiser.
#[derive(Debug, Clone, Default)]
pub(crate) struct WarmModels(Arc<Mutex<Warm>>);

#[derive(Debug, Default)]
struct Warm {
    names: Vec<String>,
    loads: u64,
}

impl WarmModels {
    fn lock(&self) -> MutexGuard<'_, Warm> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `name` is loaded now; a load when it was not already.
    pub fn loaded(&self, name: &str) {
        let mut warm = self.lock();
        let before = warm.names.len();
        warm.names.retain(|m| m != name);
        if warm.names.len() == before {
            warm.loads += 1;
        }
        warm.names.insert(0, name.to_owned());
        warm.names.truncate(MAX_WARM);
    }

    /// `name` is no longer loaded.
    pub fn evicted(&self, name: &str) {
        self.lock().names.retain(|m| m != name);
    }

    /// The route of the next claim.
    pub fn route(&self, routing: &Routing) -> Route {
        Route {
            warm: self.lock().names.clone(),
            runnable: routing.runnable.clone(),
            max_wait: routing.max_wait,
            vram_gb: routing.vram_gb,
        }
    }

    /// What the worker advertises now.
    fn profile(&self, routing: Option<&Routing>, gpu: Option<&str>, slots: u32) -> WorkerProfile {
        let warm = self.lock();
        WorkerProfile {
            gpu: gpu.map(str::to_owned),
            vram_gb: routing.and_then(|r| r.vram_gb),
            slots,
            loaded: warm.names.clone(),
            runnable: routing.and_then(|r| r.runnable.clone()),
            loads: warm.loads,
        }
    }
}

/// What [`advertise`] publishes, and how often.
pub(crate) struct Advert<'a> {
    pub consumer: &'a ConsumerName,
    pub warm: &'a WarmModels,
    pub routing: Option<&'a Routing>,
    pub gpu: Option<&'a str>,
    pub slots: u32,
    pub every: Duration,
}

/// Publishes the worker's profile every `every` until `done`, each copy living three
/// periods (a worker that dies drops out of the fleet's view on its own), then withdraws
/// it. A failed write is logged when writes start failing and tried again at the next
/// period; it never stops the worker, and `done` never waits for Redis.
pub(crate) async fn advertise(queue: Queue, advert: Advert<'_>, done: CancellationToken) {
    let mut tick = tokio::time::interval(advert.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tick.tick() => {}
        }
        let profile = advert
            .warm
            .profile(advert.routing, advert.gpu, advert.slots);
        let write = queue.advertise(advert.consumer, &profile, advert.every * 3);
        let res = tokio::select! {
            _ = done.cancelled() => break,
            res = write => res,
        };
        match res {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %chain(&e), "could not advertise this worker's profile (GPU, loaded models) for /admin/workers; retrying every heartbeat");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("advertising this worker's profile again");
            }
            _ => {}
        }
    }
    let withdraw = queue.withdraw_profile(advert.consumer);
    let _ = tokio::time::timeout(advert.every, withdraw).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_loaded_model_comes_first_an_evicted_one_is_gone_and_a_warm_one_loaded_again_is_no_new_load(
    ) {
        let warm = WarmModels::default();
        warm.loaded("a");
        warm.loaded("b");
        warm.loaded("a");
        let routing = Routing {
            runnable: None,
            max_wait: Duration::from_secs(1),
            vram_gb: Some(24),
        };
        assert_eq!(warm.route(&routing).warm, ["a", "b"]);
        warm.evicted("a");
        assert_eq!(warm.route(&routing).warm, ["b"]);
        let profile = warm.profile(Some(&routing), Some("L4"), 2);
        assert_eq!(
            (profile.loads, profile.vram_gb),
            (2, Some(24)),
            "a was still warm"
        );
    }
}
