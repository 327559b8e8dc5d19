//! What workers advertise about themselves (ADR 0020): their GPU, the models and LoRAs they
//! have loaded and can run, and how many loads they did; and how routed claims went (warm
//! hits and model loads), for `/admin/workers`, the dashboard and metrics.
//!
//! A profile is one expiring key per consumer, renewed by the worker with its heartbeats:
//! a worker that stops renewing it disappears from the fleet's view without cleanup.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ConsumerName, Queue, QueueError, Result};

/// Longest profile kept, bytes: a profile is a few names, not a payload.
pub const MAX_PROFILE_BYTES: usize = 8 * 1024;

/// A worker's description of itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerProfile {
    /// Its GPU's name, e.g. `NVIDIA L40S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// The GPU memory it offers jobs, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_gb: Option<u32>,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Checkpoints and LoRAs loaded now, most recently loaded first.
    #[serde(default)]
    pub loaded: Vec<String>,
    /// The models it can run; None: any.
    #[serde(default)]
    pub runnable: Option<Vec<String>>,
    /// Loads its handlers reported since it started.
    #[serde(default)]
    pub loads: u64,
}

/// How routed claims of a queue went since it began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutedClaims {
    /// Jobs given to a worker that had their model loaded.
    pub warm: u64,
    /// Jobs given to a worker that had to load their model.
    pub cold: u64,
}

impl Queue {
    /// Publishes `consumer`'s profile for `ttl` (renew it before then). A profile over
    /// [`MAX_PROFILE_BYTES`] keeps only its first loaded names that fit; one still over it
    /// is refused ([`QueueError::ProfileTooLarge`]).
    pub async fn advertise(
        &self,
        consumer: &ConsumerName,
        profile: &WorkerProfile,
        ttl: Duration,
    ) -> Result<()> {
        let mut profile = profile.clone();
        let mut json = serde_json::to_string(&profile)?;
        while json.len() > MAX_PROFILE_BYTES && !profile.loaded.is_empty() {
            profile.loaded.pop();
            json = serde_json::to_string(&profile)?;
        }
        if json.len() > MAX_PROFILE_BYTES {
            return Err(QueueError::ProfileTooLarge {
                size: json.len(),
                max: MAX_PROFILE_BYTES,
            });
        }
        redis::cmd("SET")
            .arg(self.keys.profile(consumer.as_str()))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Takes `consumer`'s profile down (a worker that stopped). Returns whether it had one.
    pub async fn withdraw_profile(&self, consumer: &ConsumerName) -> Result<bool> {
        let removed: u32 = redis::cmd("DEL")
            .arg(self.keys.profile(consumer.as_str()))
            .query_async(&mut self.conn())
            .await?;
        Ok(removed == 1)
    }

    /// The profiles of `consumers`, in order; None where a consumer has none (it does not
    /// advertise, or its profile expired or does not decode).
    pub async fn profiles(&self, consumers: &[&str]) -> Result<Vec<Option<WorkerProfile>>> {
        if consumers.is_empty() {
            return Ok(Vec::new());
        }
        // One key per consumer, all in the queue's hash slot: one MGET, also on a cluster.
        let keys: Vec<String> = consumers.iter().map(|c| self.keys.profile(c)).collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn())
            .await?;
        Ok(raw
            .into_iter()
            .map(|r| r.and_then(|json| serde_json::from_str(&json).ok()))
            .collect())
    }

    /// The counts of routed claims (`claim_jobs.lua` keeps them in the share-state hash).
    pub async fn routed_claims(&self) -> Result<RoutedClaims> {
        let (warm, cold): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.keys.vtime())
            .arg("routed_warm")
            .arg("routed_cold")
            .query_async(&mut self.conn())
            .await?;
        Ok(RoutedClaims {
            warm: warm.unwrap_or(0),
            cold: cold.unwrap_or(0),
        })
    }
}
