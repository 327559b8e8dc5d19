//! Finishing an attempt: ack (success, or any recorded terminal outcome) and fail (retry
//! with backoff, or dead-letter).

use gpuq_schemas::JobId;

use crate::scripts::SCRIPTS;
use crate::{ConsumerName, Fence, Lane, Queue, QueueError, Result};

/// What [`Queue::ack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The job is gone from Redis.
    Removed,
    /// Redis did not know the job (already acked, or never there).
    NotFound,
    /// Another consumer holds it now; nothing changed.
    HeldByOther,
}

impl AckOutcome {
    /// `ack_job.lua`'s reply.
    pub(crate) fn from_code(code: i64) -> Result<Self> {
        match code {
            1 => Ok(Self::Removed),
            0 => Ok(Self::NotFound),
            -1 => Ok(Self::HeldByOther),
            other => Err(QueueError::Protocol {
                script: "ack_job",
                detail: format!("code {other}"),
            }),
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// Why it failed; kept with the job while it is delayed or dead.
    pub message: String,
}

/// What [`Queue::fail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Retry scheduled.
    Retrying {
        /// The attempt that failed.
        attempt: u32,
        /// When the retry becomes claimable (ms since epoch, Redis clock).
        due_ms: u64,
    },
    /// Dead-lettered: permanent failure or no attempts left.
    Dead {
        /// The attempt that failed.
        attempt: u32,
    },
    /// The job had been cancelled; it is gone.
    Cancelled,
    /// The job was not in flight (unknown, already finished, or waiting again).
    NotInFlight,
    /// Another consumer holds it now; nothing changed.
    HeldByOther,
}

impl Queue {
    /// Removes every trace of `job` from Redis: call it once the outcome is recorded.
    /// With `consumer`, refuses when someone else holds the job; without, removes it
    /// wherever it is (the callback service, which records the first terminal result).
    pub async fn ack(&self, job: JobId, consumer: Option<&ConsumerName>) -> Result<AckOutcome> {
        self.ack_script(job, consumer.map_or("", ConsumerName::as_str), "")
            .await
    }

    /// [`Self::ack`] by exactly one claim: refused ([`AckOutcome::HeldByOther`]) while the
    /// job is in flight under another fence (a later claim of the same job).
    pub async fn ack_claim(
        &self,
        job: JobId,
        consumer: &ConsumerName,
        fence: &Fence,
    ) -> Result<AckOutcome> {
        self.ack_script(job, consumer.as_str(), &fence.to_string())
            .await
    }

    pub(crate) async fn ack_script(
        &self,
        job: JobId,
        consumer: &str,
        fence: &str,
    ) -> Result<AckOutcome> {
        let code: i64 = SCRIPTS
            .ack
            .key(&self.keys.everywhere()[..])
            .key(self.keys.signal())
            .arg(job.to_string())
            .arg(consumer)
            .arg(fence)
            .invoke_async(&mut self.conn())
            .await?;
        AckOutcome::from_code(code)
    }

    /// Records a failed attempt of an in-flight job: a retryable failure with attempts left
    /// is retried after [`crate::Backoff`]; anything else goes to the dead-letter set.
    pub async fn fail(
        &self,
        job: JobId,
        consumer: Option<&ConsumerName>,
        failure: &Failure,
    ) -> Result<FailOutcome> {
        self.fail_script(job, consumer.map_or("", ConsumerName::as_str), "", failure)
            .await
    }

    /// [`Self::fail`] for exactly one claim: refused ([`FailOutcome::HeldByOther`]) unless
    /// `consumer` holds the job under `fence` (attempt and token; an empty token matches a
    /// claim made without one), so a stale or replayed failure report cannot fail a later
    /// attempt.
    pub async fn fail_fenced(
        &self,
        job: JobId,
        consumer: &str,
        fence: &Fence,
        failure: &Failure,
    ) -> Result<FailOutcome> {
        if consumer.is_empty() {
            return Ok(FailOutcome::HeldByOther);
        }
        self.fail_script(job, consumer, &fence.to_string(), failure)
            .await
    }

    async fn fail_script(
        &self,
        job: JobId,
        consumer: &str,
        fence: &str,
        failure: &Failure,
    ) -> Result<FailOutcome> {
        let k = &self.keys;
        // Failing is rare, so a second round trip to read the attempt number keeps the
        // backoff schedule in one place (Rust). If the job changes hands in between, the
        // script refuses anyway (not in flight, or held by another consumer).
        let attempt_hint = self.current_attempt(job).await?.max(1);
        let delay = self.config.backoff.delay(attempt_hint);
        let (code, attempt, at): (i64, u32, u64) = SCRIPTS
            .fail
            .key(k.jobs())
            .key(k.meta())
            .key(k.leases())
            .key(k.delayed())
            .key(k.dead())
            .key(k.errors())
            .key(k.cancelled())
            .key(k.vtime())
            .key(k.tenants(Lane::High))
            .key(k.tenants(Lane::Normal))
            .key(k.signal())
            .arg(job.to_string())
            .arg(consumer)
            .arg(if failure.retryable { "1" } else { "0" })
            .arg(delay.as_millis() as u64)
            .arg(truncate(&failure.message, 2000))
            .arg(fence)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match code {
            1 => FailOutcome::Retrying {
                attempt,
                due_ms: at,
            },
            2 => FailOutcome::Dead { attempt },
            3 => FailOutcome::Cancelled,
            0 => FailOutcome::NotInFlight,
            -1 => FailOutcome::HeldByOther,
            other => {
                return Err(QueueError::Protocol {
                    script: "fail_job",
                    detail: format!("code {other}"),
                })
            }
        })
    }

    /// The attempt number recorded for `job` (0 if never claimed).
    pub async fn current_attempt(&self, job: JobId) -> Result<u32> {
        let meta: Option<String> = redis::cmd("HGET")
            .arg(self.keys.meta())
            .arg(job.to_string())
            .query_async(&mut self.conn())
            .await?;
        Ok(meta
            .as_deref()
            .and_then(|m| m.split('|').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or(0))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
