//! Leases: heartbeats that keep a job, and handing a job back on shutdown.

use gpuq_schemas::JobId;

use crate::scripts::SCRIPTS;
use crate::{ConsumerName, Fence, Queue, QueueError, Result};

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Still ours; the lease was renewed.
    Held,
    /// Still ours, but the job was cancelled: stop, then [`Queue::ack`] or
    /// [`Queue::release`] it (either removes it).
    Cancelled,
    /// No longer ours (the lease expired and the job was redelivered, or it finished):
    /// stop working on it and report nothing.
    Lost,
}

impl Queue {
    /// Renews `consumer`'s lease on `job` for another [`crate::QueueConfig::lease`].
    pub async fn heartbeat(&self, job: JobId, consumer: &ConsumerName) -> Result<LeaseStatus> {
        let k = &self.keys;
        let code: i64 = SCRIPTS
            .extend_lease
            .key(k.meta())
            .key(k.leases())
            .key(k.consumers())
            .key(k.cancelled())
            .arg(job.to_string())
            .arg(consumer.as_str())
            .arg(self.config.lease.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        match code {
            1 => Ok(LeaseStatus::Held),
            2 => Ok(LeaseStatus::Cancelled),
            0 => Ok(LeaseStatus::Lost),
            other => Err(QueueError::Protocol {
                script: "extend_lease",
                detail: format!("code {other}"),
            }),
        }
    }

    /// Hands `job` back to the front of its lane at once (graceful shutdown). The attempt
    /// is not counted. Returns false if `consumer` did not hold it.
    pub async fn release(&self, job: JobId, consumer: &ConsumerName) -> Result<bool> {
        self.release_script(job, consumer, "").await
    }

    /// [`Self::release`] for exactly one claim: refused (`false`) when `consumer` holds
    /// the job under another fence (a later claim of the same job).
    pub async fn release_claim(
        &self,
        job: JobId,
        consumer: &ConsumerName,
        fence: &Fence,
    ) -> Result<bool> {
        self.release_script(job, consumer, &fence.to_string()).await
    }

    async fn release_script(
        &self,
        job: JobId,
        consumer: &ConsumerName,
        fence: &str,
    ) -> Result<bool> {
        let k = &self.keys;
        let code: i64 = SCRIPTS
            .release
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.leases())
            .key(k.signal())
            .key(k.cancelled())
            .arg(job.to_string())
            .arg(consumer.as_str())
            .arg(self.config.signal_cap)
            .arg(fence)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(code != 0)
    }
}
