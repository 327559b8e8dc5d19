//! [`Keys`]: every Redis key of one queue, built in one place.
//!
//! All keys of a queue share the hash tag `{<queue>}`, so they live in one Redis Cluster
//! slot and every Lua script can declare them all in `KEYS`. Per-job state is kept in
//! per-queue hashes and sorted sets (never one key per job) for the same reason.

use gpuq_schemas::{QueueName, Tenant};

use crate::Lane;

/// The key layout of one queue under one namespace (`gpuq` in production, a random one per
/// test so that tests share a Redis without seeing each other).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys of `queue` under `namespace`.
    pub fn new(namespace: &str, queue: &QueueName) -> Self {
        Self {
            prefix: format!("{namespace}:{{{queue}}}:"),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.prefix, suffix)
    }

    /// LIST of one token per waiting job of a lane: its length is the lane's backlog (what
    /// KEDA reads). The jobs themselves wait in their tenants' lists ([`Self::tenants`]).
    pub fn waiting(&self, lane: Lane) -> String {
        self.key(&format!("wait:{}", lane.as_str()))
    }

    /// ZSET tenant → start tag of its next job, for the tenants with jobs waiting in a lane.
    /// Each tenant's jobs are the LIST `<this key>:<tenant>` of `<tag>|<id>` entries, next
    /// at the right (built inside the scripts; docs/protocol.md, "Fair share").
    pub fn tenants(&self, lane: Lane) -> String {
        self.key(&format!("tenants:{}", lane.as_str()))
    }

    /// LIST of one tenant's waiting jobs in a lane (see [`Self::tenants`]).
    pub fn tenant_jobs(&self, lane: Lane, tenant: &Tenant) -> String {
        format!("{}:{tenant}", self.tenants(lane))
    }

    /// ZSET tenant → finish tag of its last enqueued job in a lane (history older than the
    /// lane's virtual time is pruned).
    pub fn finish(&self, lane: Lane) -> String {
        self.key(&format!("finish:{}", lane.as_str()))
    }

    /// HASH lane → the lane's virtual time: the start tag of the job it served last.
    pub fn vtime(&self) -> String {
        self.key("vtime")
    }

    /// The five keys every script that touches waiting jobs declares first, in order:
    /// both token lists, both tenant sets, the virtual times.
    pub fn lanes(&self) -> [String; 5] {
        [
            self.waiting(Lane::High),
            self.waiting(Lane::Normal),
            self.tenants(Lane::High),
            self.tenants(Lane::Normal),
            self.vtime(),
        ]
    }

    /// HASH job id → envelope JSON, for every job Redis knows (waiting, in flight, delayed, dead).
    pub fn jobs(&self) -> String {
        self.key("jobs")
    }

    /// HASH job id → `"<attempt>|<lane>|<consumer>|<since_ms>|<token>"`, for jobs claimed at
    /// least once (`token`: the claim's fence token; absent in meta of earlier releases).
    pub fn meta(&self) -> String {
        self.key("meta")
    }

    /// ZSET job id → lease deadline (ms since epoch, Redis clock): the jobs in flight.
    pub fn leases(&self) -> String {
        self.key("leases")
    }

    /// ZSET job id → due time (ms): retries waiting out their backoff.
    pub fn delayed(&self) -> String {
        self.key("delayed")
    }

    /// ZSET job id → time of death (ms): the dead-letter set.
    pub fn dead(&self) -> String {
        self.key("dead")
    }

    /// ZSET job id → start deadline (ms): jobs that must be claimed by then or fail
    /// (`expire_unstarted.lua`). Entries of jobs that started are dropped when due.
    pub fn deadlines(&self) -> String {
        self.key("deadlines")
    }

    /// HASH job id → last error message, for delayed and dead jobs.
    pub fn errors(&self) -> String {
        self.key("errors")
    }

    /// SET of in-flight job ids whose cancellation the holder has yet to see.
    pub fn cancelled(&self) -> String {
        self.key("cancelled")
    }

    /// ZSET consumer name → last seen (ms): live workers.
    pub fn consumers(&self) -> String {
        self.key("consumers")
    }

    /// HASH consumer name → jobs it runs at once (advertised when it claims).
    pub fn slots(&self) -> String {
        self.key("slots")
    }

    /// LIST of wake-up tokens idle consumers `BLPOP` on; bounded length.
    pub fn signal(&self) -> String {
        self.key("signal")
    }

    /// STRING idempotency key → the first job's id, expiring after the window.
    pub fn idempotency(&self, key: &str) -> String {
        self.key(&format!("idem:{key}"))
    }

    /// Every key a job can be in, in the order `ack_job.lua` and `cancel_job.lua` declare
    /// them: [`Self::lanes`], jobs, meta, leases, delayed, dead, cancelled, errors.
    pub fn everywhere(&self) -> [String; 12] {
        let [wh, wn, th, tn, v] = self.lanes();
        [
            wh,
            wn,
            th,
            tn,
            v,
            self.jobs(),
            self.meta(),
            self.leases(),
            self.delayed(),
            self.dead(),
            self.cancelled(),
            self.errors(),
        ]
    }

    /// The prefix shared by all keys of this queue (for tests and operators).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_queue_hash_tag() {
        let keys = Keys::new("gpuq", &QueueName::parse("sdxl_queue").unwrap());
        let all = [
            keys.waiting(Lane::High),
            keys.waiting(Lane::Normal),
            keys.jobs(),
            keys.meta(),
            keys.leases(),
            keys.delayed(),
            keys.dead(),
            keys.errors(),
            keys.cancelled(),
            keys.consumers(),
            keys.signal(),
            keys.idempotency("k"),
            keys.tenants(Lane::Normal),
            keys.tenant_jobs(Lane::High, &"acme".parse().unwrap()),
            keys.finish(Lane::High),
            keys.vtime(),
            keys.deadlines(),
        ];
        for k in all {
            assert!(k.starts_with("gpuq:{sdxl_queue}:"), "{k}");
        }
        assert_eq!(keys.waiting(Lane::High), "gpuq:{sdxl_queue}:wait:high");
    }
}
