//! Stats: one consistent snapshot of a queue's depth by state, in O(log n + tenants), and
//! a waiting job's position under the fair share.

use serde::Serialize;

use gpuq_schemas::JobId;

use crate::scripts::SCRIPTS;
use crate::{Lane, Queue, Result, WorkAhead};

/// A queue's state at one instant (Redis clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Waiting in the high lane.
    pub waiting_high: u64,
    /// Waiting in the normal lane.
    pub waiting_normal: u64,
    /// Leased to a consumer.
    pub in_flight: u64,
    /// Waiting out a retry backoff.
    pub delayed: u64,
    /// In the dead-letter set.
    pub dead: u64,
    /// Consumers seen within the liveness window.
    pub live_consumers: u64,
    /// Jobs the live consumers run at once, as each advertised when it last claimed (1 for
    /// a consumer that never said): the queue's capacity right now.
    pub live_slots: u64,
    /// Tenants with jobs waiting in the high lane.
    pub tenants_high: u64,
    /// Tenants with jobs waiting in the normal lane.
    pub tenants_normal: u64,
    /// How long the next job of the high lane has waited, ms.
    pub oldest_wait_high_ms: Option<u64>,
    /// How long the next job of the normal lane has waited, ms.
    pub oldest_wait_normal_ms: Option<u64>,
}

impl QueueStats {
    /// Waiting in both lanes.
    pub fn waiting(&self) -> u64 {
        self.waiting_high + self.waiting_normal
    }

    /// The longest current wait in either lane, ms.
    pub fn oldest_wait_ms(&self) -> Option<u64> {
        self.oldest_wait_high_ms.max(self.oldest_wait_normal_ms)
    }
}

type StatsReply = (
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    String,
    u64,
    String,
    u64,
    (u64, u64, u64),
);

impl Queue {
    /// Depth by state, live consumers and the age of the next job of each lane.
    pub async fn stats(&self) -> Result<QueueStats> {
        let k = &self.keys;
        let r: StatsReply = SCRIPTS
            .stats
            .key(&k.lanes()[..])
            .key(k.meta())
            .key(k.leases())
            .key(k.delayed())
            .key(k.dead())
            .key(k.consumers())
            .key(k.slots())
            .arg(self.config.consumer_ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        let now = r.0;
        Ok(QueueStats {
            queue: self.name.to_string(),
            waiting_high: r.1,
            waiting_normal: r.2,
            in_flight: r.3,
            delayed: r.4,
            dead: r.5,
            live_consumers: r.6,
            live_slots: r.11 .0,
            tenants_high: r.11 .1,
            tenants_normal: r.11 .2,
            oldest_wait_high_ms: age(now, &r.7, r.8),
            oldest_wait_normal_ms: age(now, &r.9, r.10),
        })
    }
}

impl Queue {
    /// Jobs expected to start before `job` under the fair share and their work, or None when it is not
    /// waiting (in flight, delayed, dead, or unknown to Redis). O(its tenant's waiting jobs).
    pub async fn position(&self, job: JobId) -> Result<Option<(u64, WorkAhead)>> {
        let k = &self.keys;
        let (ahead, work): (i64, Vec<String>) = SCRIPTS
            .position
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.finish(Lane::High))
            .key(k.finish(Lane::Normal))
            .arg(job.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        match u64::try_from(ahead) {
            Ok(ahead) => Ok(Some((ahead, WorkAhead::parse("job_position", work)?))),
            Err(_) => Ok(None),
        }
    }
}

/// Age of a lane's next job: since it was queued again (`since`), or since its UUIDv7 id
/// was minted for a job never delivered.
fn age(now: u64, id: &str, since: u64) -> Option<u64> {
    if id.is_empty() {
        return None;
    }
    let since = if since > 0 {
        Some(since)
    } else {
        id.parse::<JobId>().ok()?.created_at_ms()
    };
    since.map(|s| now.saturating_sub(s))
}
