//! Model routing on the worker's side (ADR 0020). The handler says, through its context,
//! which models it loaded or evicted; the worker sends them as warm with every claim, with
//! the models it can run at all, so that the queue gives it jobs it can run, warm ones
//! first, within a bounded wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpuq_queue::Route;

/// Most models remembered as loaded (most recent first); a GPU holds a few.
const MAX_WARM: usize = 32;

/// What a routing worker can run and how long a job may wait for a warm worker.
#[derive(Debug, Clone)]
pub(crate) struct Routing {
    /// None: any model.
    pub runnable: Option<Vec<String>>,
    pub max_wait: Duration,
}

/// The models a worker has loaded, most recently loaded first. Shared by its jobs'
/// contexts and its claim loop.
#[derive(Debug, Clone, Default)]
pub(crate) struct WarmModels(Arc<Mutex<Vec<String>>>);

impl WarmModels {
    /// `model` is loaded now.
    pub fn loaded(&self, model: &str) {
        let mut warm = self.0.lock().unwrap_or_else(|e| e.into_inner());
        warm.retain(|m| m != model);
        warm.insert(0, model.to_owned());
        warm.truncate(MAX_WARM);
    }

    /// `model` is no longer loaded.
    pub fn evicted(&self, model: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|m| m != model);
    }

    /// The route of the next claim.
    pub fn route(&self, routing: &Routing) -> Route {
        Route {
            warm: self.0.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            runnable: routing.runnable.clone(),
            max_wait: routing.max_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_loaded_model_comes_first_and_an_evicted_one_is_gone() {
        let warm = WarmModels::default();
        warm.loaded("a");
        warm.loaded("b");
        warm.loaded("a");
        let routing = Routing {
            runnable: None,
            max_wait: Duration::from_secs(1),
        };
        assert_eq!(warm.route(&routing).warm, ["a", "b"]);
        warm.evicted("a");
        assert_eq!(warm.route(&routing).warm, ["b"]);
    }
}
