//! [`Keys`]: every Redis key of one queue, built in one place.
//!
//! All keys of a queue share the hash tag `{<queue>}`, so they live in one Redis Cluster
//! slot and every Lua script can declare them all in `KEYS`. Per-job state is kept in
//! per-queue hashes and sorted sets (never one key per job) for the same reason.

use std::sync::Arc;

use gpuq_schemas::{QueueName, Tenant};

use crate::Lane;

/// The key layout of one queue under one namespace (`gpuq` in production, a random one per
/// test so that tests share a Redis without seeing each other).
///
/// The fixed names are built once, when the queue is opened, and shared by its clones: a
/// claim and an ack declare a dozen keys each, on the hot path.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    fixed: Arc<Fixed>,
}

/// The names of the queue's keys that do not depend on a job or a tenant.
#[derive(Debug)]
struct Fixed {
    /// Indexed by [`lane_index`].
    waiting: [String; 2],
    tenants: [String; 2],
    finish: [String; 2],
    vtime: String,
    jobs: String,
    meta: String,
    leases: String,
    delayed: String,
    dead: String,
    deadlines: String,
    errors: String,
    cancelled: String,
    consumers: String,
    slots: String,
    signal: String,
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::High => 0,
        Lane::Normal => 1,
    }
}

impl Keys {
    /// Keys of `queue` under `namespace`.
    pub fn new(namespace: &str, queue: &QueueName) -> Self {
        let prefix = format!("{namespace}:{{{queue}}}:");
        let key = |suffix: &str| format!("{prefix}{suffix}");
        let lanes = |kind: &str| Lane::ALL.map(|lane| key(&format!("{kind}:{}", lane.as_str())));
        let fixed = Fixed {
            waiting: lanes("wait"),
            tenants: lanes("tenants"),
            finish: lanes("finish"),
            vtime: key("vtime"),
            jobs: key("jobs"),
            meta: key("meta"),
            leases: key("leases"),
            delayed: key("delayed"),
            dead: key("dead"),
            deadlines: key("deadlines"),
            errors: key("errors"),
            cancelled: key("cancelled"),
            consumers: key("consumers"),
            slots: key("slots"),
            signal: key("signal"),
        };
        Self {
            prefix,
            fixed: Arc::new(fixed),
        }
    }

    /// LIST of one token per waiting job of a lane: its length is the lane's backlog (what
    /// KEDA reads). The jobs themselves wait in their tenants' lists ([`Self::tenants`]).
    pub fn waiting(&self, lane: Lane) -> &str {
        &self.fixed.waiting[lane_index(lane)]
    }

    /// ZSET tenant → start tag of its next job, for the tenants with jobs waiting in a lane.
    /// Each tenant's jobs are the LIST `<this key>:<tenant>` of `<tag>|<id>` entries, next
    /// at the right (built inside the scripts; docs/protocol.md, "Fair share").
    pub fn tenants(&self, lane: Lane) -> &str {
        &self.fixed.tenants[lane_index(lane)]
    }

    /// LIST of one tenant's waiting jobs in a lane (see [`Self::tenants`]).
    pub fn tenant_jobs(&self, lane: Lane, tenant: &Tenant) -> String {
        format!("{}:{tenant}", self.tenants(lane))
    }

    /// ZSET tenant → finish tag of its last enqueued job in a lane (history older than the
    /// lane's virtual time is pruned).
    pub fn finish(&self, lane: Lane) -> &str {
        &self.fixed.finish[lane_index(lane)]
    }

    /// HASH lane → the lane's virtual time: the start tag of the job it served last.
    pub fn vtime(&self) -> &str {
        &self.fixed.vtime
    }

    /// The five keys every script that touches waiting jobs declares first, in order:
    /// both token lists, both tenant sets, the virtual times.
    pub fn lanes(&self) -> [&str; 5] {
        [
            self.waiting(Lane::High),
            self.waiting(Lane::Normal),
            self.tenants(Lane::High),
            self.tenants(Lane::Normal),
            self.vtime(),
        ]
    }

    /// HASH job id → envelope JSON, for every job Redis knows (waiting, in flight, delayed, dead).
    pub fn jobs(&self) -> &str {
        &self.fixed.jobs
    }

    /// HASH job id → `"<attempt>|<lane>|<consumer>|<since_ms>|<token>"`, for jobs claimed at
    /// least once (`token`: the claim's fence token; absent in meta of earlier releases).
    pub fn meta(&self) -> &str {
        &self.fixed.meta
    }

    /// ZSET job id → lease deadline (ms since epoch, Redis clock): the jobs in flight.
    pub fn leases(&self) -> &str {
        &self.fixed.leases
    }

    /// ZSET job id → due time (ms): retries waiting out their backoff.
    pub fn delayed(&self) -> &str {
        &self.fixed.delayed
    }

    /// ZSET job id → time of death (ms): the dead-letter set.
    pub fn dead(&self) -> &str {
        &self.fixed.dead
    }

    /// ZSET job id → start deadline (ms): jobs that must be claimed by then or fail
    /// (`expire_unstarted.lua`). Entries of jobs that started are dropped when due.
    pub fn deadlines(&self) -> &str {
        &self.fixed.deadlines
    }

    /// HASH job id → last error message, for delayed and dead jobs.
    pub fn errors(&self) -> &str {
        &self.fixed.errors
    }

    /// SET of in-flight job ids whose cancellation the holder has yet to see.
    pub fn cancelled(&self) -> &str {
        &self.fixed.cancelled
    }

    /// ZSET consumer name → last seen (ms): live workers.
    pub fn consumers(&self) -> &str {
        &self.fixed.consumers
    }

    /// HASH consumer name → jobs it runs at once (advertised when it claims).
    pub fn slots(&self) -> &str {
        &self.fixed.slots
    }

    /// LIST of wake-up tokens idle consumers `BLPOP` on; bounded length.
    pub fn signal(&self) -> &str {
        &self.fixed.signal
    }

    /// STRING: the JSON profile a worker advertises (GPU, loaded models), expiring when it
    /// stops renewing it.
    pub fn profile(&self, consumer: &str) -> String {
        format!("{}profile:{consumer}", self.prefix)
    }

    /// STRING idempotency key → the first job's id, expiring after the window.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}idem:{key}", self.prefix)
    }

    /// Every key a job can be in, in the order `ack_job.lua` and `cancel_job.lua` declare
    /// them: [`Self::lanes`], jobs, meta, leases, delayed, dead, cancelled, errors.
    pub fn everywhere(&self) -> [&str; 12] {
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
            keys.waiting(Lane::High).to_string(),
            keys.waiting(Lane::Normal).to_string(),
            keys.jobs().to_string(),
            keys.meta().to_string(),
            keys.leases().to_string(),
            keys.delayed().to_string(),
            keys.dead().to_string(),
            keys.errors().to_string(),
            keys.cancelled().to_string(),
            keys.consumers().to_string(),
            keys.signal().to_string(),
            keys.idempotency("k").to_string(),
            keys.tenants(Lane::Normal).to_string(),
            keys.tenant_jobs(Lane::High, &"acme".parse().unwrap())
                .to_string(),
            keys.finish(Lane::High).to_string(),
            keys.vtime().to_string(),
            keys.deadlines().to_string(),
        ];
        for k in all {
            assert!(k.starts_with("gpuq:{sdxl_queue}:"), "{k}");
        }
        assert_eq!(keys.waiting(Lane::High), "gpuq:{sdxl_queue}:wait:high");
    }
}
