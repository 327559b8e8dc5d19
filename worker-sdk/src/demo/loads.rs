//! [`SimulatedLoads`]: the demo worker's stand-in for loading checkpoints into VRAM, so that
//! model routing (ADR 0020) shows without a GPU. A job whose model is not resident costs a
//! load first; at most `resident` models stay loaded, the least recently used evicted; the
//! worker hears of both through the job's context.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{JobContext, JobError};

/// Simulated model loads.
#[derive(Debug, Clone)]
pub struct SimulatedLoads {
    /// What one load costs (before the handler's time scale).
    pub load: Duration,
    /// Models resident at once (at least 1).
    pub resident: usize,
    /// Resident models, most recently used first, and how many loads happened.
    state: Arc<Mutex<(VecDeque<String>, u64)>>,
}

impl SimulatedLoads {
    /// Loads costing `load` each, with room for `resident` models.
    pub fn new(load: Duration, resident: usize) -> Self {
        Self {
            load,
            resident: resident.max(1),
            state: Arc::default(),
        }
    }

    /// Loads so far.
    pub fn loads(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Makes `model` resident: free when it is, `load × time_scale` when not (cancellable).
    pub async fn ensure(
        &self,
        model: &str,
        ctx: &JobContext,
        time_scale: f64,
    ) -> Result<(), JobError> {
        if self.touch(model) {
            ctx.loaded(model);
            return Ok(());
        }
        ctx.progress(0.01, format!("loading {model}"));
        tokio::select! {
            _ = ctx.cancelled() => return Err(JobError::retryable("cancelled while loading the model")),
            _ = tokio::time::sleep(self.load.mul_f64(time_scale.max(0.0))) => {}
        }
        let evicted = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (resident, loads) = &mut *state;
            *loads += 1;
            resident.retain(|m| m != model);
            resident.push_front(model.to_owned());
            let keep = self.resident;
            resident.split_off(keep.min(resident.len()))
        };
        for old in evicted {
            ctx.evicted(&old);
        }
        ctx.loaded(model);
        Ok(())
    }

    /// Marks `model` used if it is resident; returns whether it was.
    fn touch(&self, model: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let resident = &mut state.0;
        match resident.iter().position(|m| m == model) {
            Some(i) => {
                if let Some(m) = resident.remove(i) {
                    resident.push_front(m);
                }
                true
            }
            None => false,
        }
    }
}
