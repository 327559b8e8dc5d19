//! Cancel: remove a job that has not started; flag one that has.

use gpuq_schemas::JobId;

use crate::scripts::SCRIPTS;
use crate::{Lane, Queue, QueueError, Result};

/// What [`Queue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting, delayed or dead; it is gone and will never be delivered.
    Removed,
    /// It is in flight; its holder learns at the next heartbeat, and it will not be
    /// retried or redelivered.
    Flagged,
    /// Redis does not know it.
    NotFound,
}

impl Queue {
    /// Cancels `job`. Removing a waiting job is O(n) in its tenant's waiting jobs in its lane
    /// (`LREM`); cancels are rare next to enqueues and claims, and this keeps waiting jobs
    /// free of any per-job bookkeeping beyond one list entry.
    pub async fn cancel(&self, job: JobId) -> Result<CancelOutcome> {
        let code: i64 = SCRIPTS
            .cancel
            .key(&self.keys.everywhere()[..])
            .key(self.keys.finish(Lane::High))
            .key(self.keys.finish(Lane::Normal))
            .arg(job.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        match code {
            1 => Ok(CancelOutcome::Removed),
            2 => Ok(CancelOutcome::Flagged),
            0 => Ok(CancelOutcome::NotFound),
            other => Err(QueueError::Protocol {
                script: "cancel_job",
                detail: format!("code {other}"),
            }),
        }
    }
}
