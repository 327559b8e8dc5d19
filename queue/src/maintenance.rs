//! Maintenance transitions run by the dispatcher's background loops: reaping expired
//! leases, promoting due retries, and the dead-letter set an admin works with. Each is a
//! single bounded step; the loops around them live in the services.

use gpuq_schemas::JobId;

use crate::scripts::SCRIPTS;
use crate::{Lane, Queue, QueueError, Result};

/// What one [`Queue::reap_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Lease expired; waiting again for any consumer.
    pub requeued: Vec<JobId>,
    /// Lease expired on the last attempt; dead-lettered.
    pub dead: Vec<JobId>,
    /// Lease expired on a cancelled job; gone.
    pub cancelled: Vec<JobId>,
}

impl Reaped {
    /// Jobs touched.
    pub fn len(&self) -> usize {
        self.requeued.len() + self.dead.len() + self.cancelled.len()
    }

    /// True when nothing had expired.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dead-lettered job, for admins.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadJob {
    /// The job.
    pub id: JobId,
    /// When it died (ms since epoch).
    pub died_at_ms: u64,
    /// The last error.
    pub error: Option<String>,
    /// Its envelope.
    pub payload: Option<String>,
}

fn ids(script: &'static str, raw: Vec<String>) -> Result<Vec<JobId>> {
    raw.into_iter()
        .map(|s| {
            s.parse().map_err(|_| QueueError::Protocol {
                script,
                detail: format!("bad id {s:?}"),
            })
        })
        .collect()
}

impl Queue {
    /// Requeues (or dead-letters) up to one batch of jobs whose lease has expired. Safe to
    /// run from any number of processes at once: each job is reaped by exactly one call.
    pub async fn reap_once(&self) -> Result<Reaped> {
        let k = &self.keys;
        let (requeued, dead, cancelled): (Vec<String>, Vec<String>, Vec<String>) = SCRIPTS
            .reap
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.leases())
            .key(k.dead())
            .key(k.errors())
            .key(k.cancelled())
            .key(k.signal())
            .key(k.consumers())
            .key(k.slots())
            .key(k.finish(Lane::High))
            .key(k.finish(Lane::Normal))
            .arg(self.config.maintenance_batch)
            .arg(self.config.consumer_ttl.as_millis() as u64)
            .arg(self.config.signal_cap)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Reaped {
            requeued: ids("reap_expired", requeued)?,
            dead: ids("reap_expired", dead)?,
            cancelled: ids("reap_expired", cancelled)?,
        })
    }

    /// Moves up to one batch of due retries back to their lanes; returns their ids.
    pub async fn promote_due_once(&self) -> Result<Vec<JobId>> {
        let k = &self.keys;
        let promoted: Vec<String> = SCRIPTS
            .promote
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.delayed())
            .key(k.signal())
            .arg(self.config.maintenance_batch)
            .arg(self.config.signal_cap)
            .invoke_async(&mut self.conn())
            .await?;
        ids("promote_due", promoted)
    }

    /// Removes up to one batch of jobs whose start deadline passed before any consumer
    /// claimed them; returns their ids (fail their rows with `start_deadline_exceeded`).
    /// Safe to run from any number of processes: each job expires in exactly one call.
    pub async fn expire_unstarted_once(&self) -> Result<Vec<JobId>> {
        let k = &self.keys;
        let expired: Vec<String> = SCRIPTS
            .expire_unstarted
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.deadlines())
            .key(k.finish(Lane::High))
            .key(k.finish(Lane::Normal))
            .arg(self.config.maintenance_batch)
            .invoke_async(&mut self.conn())
            .await?;
        ids("expire_unstarted", expired)
    }

    /// Takes `job` out of the queue if it is waiting and was never claimed, so it can be
    /// enqueued elsewhere (overflow to a provider's queue). False, and nothing changed, if
    /// it was ever claimed, is in flight, delayed, dead or unknown.
    pub async fn withdraw_unstarted(&self, job: JobId) -> Result<bool> {
        let k = &self.keys;
        let code: i64 = SCRIPTS
            .withdraw_unstarted
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.deadlines())
            .key(k.finish(Lane::High))
            .key(k.finish(Lane::Normal))
            .arg(job.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(code == 1)
    }

    /// Gives a dead job a fresh start (attempts reset). False if it is not dead.
    pub async fn requeue_dead(&self, job: JobId) -> Result<bool> {
        let k = &self.keys;
        let code: i64 = SCRIPTS
            .requeue_dead
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.dead())
            .key(k.errors())
            .key(k.signal())
            .arg(job.to_string())
            .arg(self.config.signal_cap)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(code == 1)
    }

    /// Deletes a dead job from Redis for good. False if it is not dead.
    pub async fn discard_dead(&self, job: JobId) -> Result<bool> {
        let k = &self.keys;
        let code: i64 = SCRIPTS
            .discard_dead
            .key(k.jobs())
            .key(k.meta())
            .key(k.dead())
            .key(k.errors())
            .arg(job.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(code == 1)
    }

    /// The most recently dead jobs, newest first, at most `limit`.
    pub async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>> {
        let k = &self.keys;
        let mut conn = self.conn();
        let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(k.dead())
            .arg(0)
            .arg(limit.max(1) as i64 - 1)
            .arg("REV")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ids_raw: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        let (payloads, errors): (Vec<Option<String>>, Vec<Option<String>>) = redis::pipe()
            .cmd("HMGET")
            .arg(k.jobs())
            .arg(&ids_raw)
            .cmd("HMGET")
            .arg(k.errors())
            .arg(&ids_raw)
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for (((id, score), payload), error) in entries.into_iter().zip(payloads).zip(errors) {
            let id = ids("dead_jobs", vec![id])?.remove(0);
            out.push(DeadJob {
                id,
                died_at_ms: score as u64,
                error,
                payload,
            });
        }
        Ok(out)
    }
}
