//! Per-tenant concurrency caps: at most N of a tenant's jobs in flight at once in a queue
//! (ADR 0012, "Concurrency caps"). Off unless set; a claim counts a job against its
//! tenant's cap, and a tenant at its cap is parked (skipped by claims, its jobs keep their
//! place) until one of its jobs ends.

use std::collections::BTreeMap;

use gpuq_schemas::Tenant;

use crate::scripts::SCRIPTS;
use crate::{Queue, QueueError, Result};

/// The largest cap: beyond it a cap limits nothing a fleet can run.
pub const MAX_CAP: u32 = 100_000;

/// The concurrency caps of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    /// Which caps these are, as a whole number that grows with every change (e.g. the
    /// time of the last change, in ms): older caps than those set last change nothing.
    pub version: u64,
    /// The cap of every tenant without one of its own; `None`: such tenants are uncapped.
    pub default: Option<u32>,
    /// Tenants' own caps, 1 to [`MAX_CAP`].
    pub tenants: BTreeMap<Tenant, u32>,
}

impl Caps {
    /// No cap at all: claims count nothing.
    pub fn is_off(&self) -> bool {
        self.default.is_none() && self.tenants.is_empty()
    }
}

impl Queue {
    /// Replaces the queue's caps, recounts every tenant's counted jobs in flight and parks
    /// or releases tenants to match (`set_caps.lua`). Idempotent: maintenance runs it on
    /// every tick, so the counts heal within one tick whatever happened. Returns how many
    /// tenants are parked at their cap now, or None when caps of a later version were set
    /// already (nothing changed).
    pub async fn set_caps(&self, caps: &Caps) -> Result<Option<u32>> {
        let all = caps.default.iter().chain(caps.tenants.values());
        if let Some(&cap) = all.into_iter().find(|&&c| c == 0 || c > MAX_CAP) {
            return Err(QueueError::InvalidCap { cap, max: MAX_CAP });
        }
        let k = &self.keys;
        let mut script = SCRIPTS.set_caps.key(&k.lanes()[..]);
        script
            .key(k.signal())
            .key(k.leases())
            .key(k.meta())
            .arg(caps.version)
            .arg(caps.default.unwrap_or(0));
        for (tenant, cap) in &caps.tenants {
            script.arg(tenant.as_str()).arg(*cap);
        }
        let parked: i64 = script.invoke_async(&mut self.conn()).await?;
        Ok(u32::try_from(parked).ok())
    }
}
